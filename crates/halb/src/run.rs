//! `halb run` and `halb check`: load and validate a config, start the data
//! path and the admin endpoint, reload on SIGHUP / API / file change, stop
//! gracefully on SIGTERM/SIGINT. The main loop here is the one owner that
//! applies every change to the running node.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use halb_access_log::{AccessLogStats, AccessLogWriter};
use halb_admin::{Command, ConfigInfo, MetricSources, ReloadOutcome};
use halb_alerts::{Alert, Alerter};
use halb_config::{AccessLog, Config};
use halb_proxy::{Proxy, ReloadSummary};
use halb_state::{Event, State};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

use crate::notify::Notifier;
use crate::resolve::{self, Resolver};
use crate::vrrp;

/// How often `--watch` looks at the config file.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// How often a fleet node's record is brought up to date with its VRRP
/// states.
const VRRP_RECORD_INTERVAL: Duration = Duration::from_millis(250);
/// At shutdown, how long the access log may take to write what is queued.
const ACCESS_LOG_FLUSH: Duration = Duration::from_secs(2);

/// A config file's text, validated.
pub struct Loaded {
    pub config: Config,
    pub hash: String,
}

/// Read and validate a config file; every error as a line naming its key.
pub fn load(path: &Path) -> Result<Loaded, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?;
    parse(path, &text).map(|config| Loaded {
        config,
        hash: config_hash(&text),
    })
}

/// Validate a config file's text; every error as a line naming its key.
fn parse(path: &Path, text: &str) -> Result<Config, Vec<String>> {
    halb_config::parse(text).map_err(|errors| {
        errors
            .0
            .iter()
            .map(|e| format!("{}: {e}", path.display()))
            .collect()
    })
}

/// A short, stable identity of a config file's text (FNV-1a, 64 bits).
pub fn config_hash(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

fn report(path: &Path, errors: &[String]) {
    for error in errors {
        eprintln!("{error}");
    }
    let n = errors.len();
    eprintln!(
        "halb: {} has {n} error{}; nothing started",
        path.display(),
        if n == 1 { "" } else { "s" }
    );
}

pub fn check_file(path: &Path) -> ExitCode {
    match load(path) {
        Ok(Loaded { config, .. }) if config.etcd().is_some() => {
            println!(
                "{}: OK (node-local; listeners, pools and alerts come from etcd)",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Ok(Loaded { config, .. }) => {
            if let Err(error) = halb_proxy::check_tls(&config.listeners)
                .and_then(|()| halb_proxy::check_backend_tls(&config.pools))
            {
                report(path, &[error.to_string()]);
                return ExitCode::FAILURE;
            }
            println!(
                "{}: OK ({} listener{}, {} pool{})",
                path.display(),
                config.listeners.len(),
                if config.listeners.len() == 1 { "" } else { "s" },
                config.pools.len(),
                if config.pools.len() == 1 { "" } else { "s" },
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            report(path, &errors);
            ExitCode::FAILURE
        }
    }
}

pub fn run_file(path: &Path, watch: bool) -> ExitCode {
    let loaded = match load(path) {
        Ok(loaded) => loaded,
        Err(errors) => {
            report(path, &errors);
            return ExitCode::FAILURE;
        }
    };
    if loaded.config.etcd().is_some() {
        return crate::cluster::run(path, loaded);
    }
    init_tracing(loaded.config.log.level.as_deref());
    let source = Source::File {
        path: path.to_owned(),
        watch,
    };
    block_on_main(serve(loaded, source, None))
}

/// Run a node's future on the main runtime until it ends; its error, if
/// any, on stderr.
pub fn block_on_main(node: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let result = runtime().and_then(|rt| {
        let result = rt.block_on(node);
        // Nothing left to wait for: do not block on idle runtime threads.
        rt.shutdown_background();
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("halb: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Log through `tracing`: `RUST_LOG` if set, else `[log] level`, else info.
pub fn init_tracing(level: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::try_new(level.unwrap_or("info"))
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// The main runtime: signals, admin, health checks. The data path runs on
/// its own worker threads.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("halb-main")
        .enable_all()
        .build()
        .context("cannot start the main runtime")
}

/// Where the running config came from.
pub enum Source {
    /// A file, reloadable; `watch` reloads it when it changes.
    File { path: PathBuf, watch: bool },
    /// Built in memory (the demo): nothing to reload.
    Inline,
    /// The node's own file and etcd's shared config (`[cluster.etcd]`).
    Cluster(Box<crate::cluster::ClusterNode>),
}

/// Where a started node listens.
#[derive(Debug, Clone, Default)]
pub struct Started {
    pub listeners: Vec<std::net::SocketAddr>,
    pub admin: Option<std::net::SocketAddr>,
}

/// Run a node until SIGTERM/SIGINT, then drain. `started` is told the bound
/// addresses once everything listens.
pub async fn serve(
    loaded: Loaded,
    mut source: Source,
    started: Option<watch::Sender<Started>>,
) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;

    let Loaded { config, hash } = loaded;
    let alerter = Arc::new(ArcSwap::from_pointee(Alerter::new(&config.alerts)));
    let access_log_stats = Arc::new(AccessLogStats::default());
    let access_log = start_access_log(config.access_log.as_ref(), &access_log_stats)?;
    let state = State::new();
    crate::peers::prepare(&config, &state);
    tokio::spawn(alert_on_events(state.clone(), alerter.clone()));
    // Host-name backends are looked up before anything listens, so that a
    // pool of names serves from the first request.
    let mut resolver = Resolver::default();
    let names = config.backend_names();
    if !names.is_empty() {
        resolver.take(resolve::lookup(&names, resolve::LOOKUP_TIMEOUT).await);
    }
    let (wanted, wanted_rx) = watch::channel(resolve::wanted(&config));
    let (round_tx, mut rounds) = mpsc::channel(4);
    resolve::spawn(wanted_rx, round_tx);
    let proxy = Proxy::start(
        &config.with_resolved(resolver.answers()),
        state.clone(),
        access_log.as_ref().map(AccessLogWriter::sink),
    )?;
    crate::chaos::spawn_alerts(proxy.faults(), alerter.clone());
    let peer_links = match crate::peers::start(&config, &state).await {
        Ok(links) => links,
        Err(e) => {
            proxy.shutdown(Duration::ZERO);
            return Err(e);
        }
    };
    // Listeners are bound (a virtual IP's with IP_FREEBIND): now this node
    // may take part in its VRRP groups.
    let vrrp = match &config.vrrp {
        None => None,
        Some(settings) => match vrrp::start(settings, &state, alerter.clone()).await {
            Ok(instances) => Some(instances),
            Err(e) => {
                proxy.shutdown(Duration::ZERO);
                return Err(e);
            }
        },
    };
    let info = Arc::new(ConfigInfo::new(hash.clone()));
    let (commands, mut requests) = mpsc::channel::<Command>(16);
    let (stop_admin, admin_stopped) = watch::channel(false);
    let mut admin_address = None;
    if let Some(admin) = &config.admin {
        let listener = match tokio::net::TcpListener::bind(admin.bind).await {
            Ok(listener) => listener,
            Err(e) => {
                proxy.shutdown(Duration::ZERO);
                anyhow::bail!("admin: cannot bind {}: {e}", admin.bind);
            }
        };
        admin_address = listener.local_addr().ok();
        let address = admin_address.unwrap_or(admin.bind);
        tracing::info!(%address, "admin listening");
        let endpoint = halb_admin::Admin::new(
            proxy.topology(),
            state.clone(),
            admin.token.clone(),
            info.clone(),
            commands.clone(),
            MetricSources {
                alerts: Some(alerter.clone()),
                access_log: Some(access_log_stats.clone()),
                vrrp: vrrp.as_ref().map(|v| v.registry.clone()),
                faults: Some(proxy.faults().clone()),
                peers: peer_links.clone(),
            },
        );
        tokio::spawn(endpoint.serve(listener, admin_stopped));
    }
    let notifier = Notifier::from_env();
    notifier.ready(&serving_status(&config));
    if let Some(started) = started {
        let topology = proxy.topology();
        let listeners = topology.load().listeners.iter().map(|l| l.bound).collect();
        let _ = started.send(Started {
            listeners,
            admin: admin_address,
        });
    }

    let mut stored_admin = crate::fleet_admin::Applied::default();
    match &mut source {
        Source::Cluster(cluster) => {
            if let Some(links) = &peer_links {
                crate::peers::discover(cluster, &config, links);
            }
            cluster.started(&info, admin_address);
            let (client, prefix, node) = cluster.discovery();
            crate::fleet_admin::spawn_writer(client, prefix, node, state.clone());
            if let Some(snapshot) = cluster.latest() {
                stored_admin.apply(&snapshot, &state);
            }
        }
        Source::Inline => info.set_source(halb_admin::SourceInfo {
            source: "inline".to_owned(),
            revision: hash.clone(),
            ..halb_admin::SourceInfo::default()
        }),
        Source::File { .. } => {}
    }
    let mut etcd = crate::cluster::take_source(&mut source);
    let mut node = Node {
        proxy,
        config,
        seen_hash: hash,
        info,
        source,
        alerter,
        access_log,
        access_log_stats,
        weights: HashMap::new(),
        notifier,
        resolver,
        wanted,
        stored_admin,
    };
    let mut watch_tick = tokio::time::interval(WATCH_INTERVAL);
    watch_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watching = matches!(node.source, Source::File { watch: true, .. });
    // A fleet node's record carries its VRRP states.
    let fleet_vrrp = match (&node.source, &vrrp) {
        (Source::Cluster(_), Some(instances)) => Some(instances.registry.clone()),
        _ => None,
    };
    // And its peer links.
    let fleet_peers = match &node.source {
        Source::Cluster(_) => peer_links.clone(),
        _ => None,
    };
    let mut vrrp_tick = tokio::time::interval(VRRP_RECORD_INTERVAL);
    let which = loop {
        tokio::select! {
            _ = terminate.recv() => break "SIGTERM",
            _ = interrupt.recv() => break "SIGINT",
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the config");
                node.reload().await;
            }
            Some(command) = requests.recv() => match command {
                Command::Reload { reply } => {
                    tracing::info!("reload requested through the admin API");
                    let _ = reply.send(node.reload().await);
                }
                Command::SetWeight { pool, backend, weight, reply } => {
                    let _ = reply.send(node.set_weight(&pool, backend, weight));
                }
            },
            Some(round) = rounds.recv() => node.resolved(round),
            snapshot = crate::cluster::changed(&mut etcd) => node.apply_snapshot(snapshot).await,
            _ = vrrp_tick.tick(), if fleet_vrrp.is_some() || fleet_peers.is_some() => {
                if let Source::Cluster(cluster) = &mut node.source {
                    if let Some(registry) = &fleet_vrrp {
                        cluster.vrrp_states(&registry.snapshot());
                    }
                    if let Some(links) = &fleet_peers {
                        cluster.peer_states(&links.status());
                    }
                }
            }
            _ = watch_tick.tick(), if watching => {
                if node.file_changed() {
                    tracing::info!("config file changed: reloading");
                    node.reload().await;
                }
            }
        }
    };

    let drain = node.config.runtime.drain_timeout;
    node.notifier.stopping();
    // A master hands its virtual IPs over first (its open connections on
    // them finished, then priority 0), so that new connections go to the
    // next node while this one drains.
    if let Some(vrrp) = &vrrp {
        vrrp.shutdown(&node.proxy).await;
    }
    tracing::info!(
        signal = which,
        ?drain,
        "stopping: finishing in-flight work (signal again to exit now)"
    );
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::warn!("second signal: exiting now");
        std::process::exit(1);
    });
    let _ = stop_admin.send(true);
    if let Source::Cluster(cluster) = &mut node.source {
        cluster.leave().await;
    }
    let (proxy, access_log) = (node.proxy, node.access_log);
    tokio::task::spawn_blocking(move || {
        proxy.shutdown(drain);
        if let Some(access_log) = access_log {
            access_log.stop(ACCESS_LOG_FLUSH);
        }
    })
    .await?;
    // What was learned while draining has gone out; the links end now
    // rather than redialling until the process exits.
    if let Some(links) = &peer_links {
        links.stop();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Start the access log writer `[access_log]` asks for, if any.
fn start_access_log(
    config: Option<&AccessLog>,
    stats: &Arc<AccessLogStats>,
) -> anyhow::Result<Option<AccessLogWriter>> {
    config
        .map(|config| AccessLogWriter::start(config, stats.clone()).context("access_log"))
        .transpose()
}

/// Changes to backends and pools become alerts (webhooks), through
/// whichever alerter the running config has: a verdict of the checks, and
/// a pool losing (or regaining) its last usable backend.
async fn alert_on_events(state: Arc<State>, alerter: Arc<ArcSwap<Alerter>>) {
    let mut events = state.subscribe();
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "alerts fell behind the state's events; some were not sent"
                );
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let alert = match event {
            Event::Verdict {
                pool,
                backend,
                up: false,
                reason,
                ..
            } => Alert::BackendDown {
                pool: pool.to_string(),
                backend,
                reason,
            },
            Event::Verdict {
                pool,
                backend,
                up: true,
                ..
            } => Alert::BackendUp {
                pool: pool.to_string(),
                backend,
            },
            Event::PoolUsable {
                pool,
                usable: false,
                ..
            } => Alert::PoolUnavailable {
                pool: pool.to_string(),
            },
            Event::PoolUsable {
                pool, usable: true, ..
            } => Alert::PoolAvailable {
                pool: pool.to_string(),
            },
            Event::ZoneSpill {
                pool,
                spilling: true,
                local_permille,
                ..
            } => Alert::ZoneSpillStarted {
                pool: pool.to_string(),
                local_percent: format!("{:.1}", f64::from(local_permille) / 10.0),
            },
            Event::ZoneSpill {
                pool,
                spilling: false,
                ..
            } => Alert::ZoneSpillEnded {
                pool: pool.to_string(),
            },
            _ => continue,
        };
        alerter.load().send(alert);
    }
}

/// The running node, owned by the main loop.
struct Node {
    proxy: Proxy,
    config: Config,
    /// Hash of the file text last applied or refused, so `--watch` reacts
    /// to each new version once.
    seen_hash: String,
    info: Arc<ConfigInfo>,
    source: Source,
    /// Swapped when a reload changes `[alerts]`.
    alerter: Arc<ArcSwap<Alerter>>,
    /// Replaced when a reload changes `[access_log]` or reopens its file.
    access_log: Option<AccessLogWriter>,
    /// Shared by every access log writer this node starts.
    access_log_stats: Arc<AccessLogStats>,
    /// Operator actions last applied from etcd (`[cluster.etcd]`).
    stored_admin: crate::fleet_admin::Applied,
    /// Weights set through the admin API, by pool and backend: they win
    /// over the config's until the next reload.
    weights: HashMap<(String, SocketAddr), u32>,
    /// systemd hears of reloads through it.
    notifier: Notifier,
    /// The last addresses of host-name backends.
    resolver: Resolver,
    /// Tells the background lookups which names the config has.
    wanted: watch::Sender<resolve::Wanted>,
}

/// The service manager's one-line status of a serving node.
fn serving_status(config: &Config) -> String {
    let backends: usize = config.pools.iter().map(|pool| pool.backends.len()).sum();
    format!(
        "serving: {} listener(s), {} pool(s), {backends} backend(s)",
        config.listeners.len(),
        config.pools.len()
    )
}

impl Node {
    /// Reload the config file: validate it, then apply it as a diff. A bad
    /// file changes nothing.
    async fn reload(&mut self) -> ReloadOutcome {
        self.notifier.reloading();
        let outcome = match &mut self.source {
            Source::Cluster(cluster) => match cluster.reload_local() {
                Ok((config, hash)) => self.apply(config, hash).await,
                Err(errors) => ReloadOutcome::Rejected { errors },
            },
            Source::Inline => ReloadOutcome::Rejected {
                errors: vec!["this node was not started from a config file".to_owned()],
            },
            Source::File { ref path, .. } => match std::fs::read_to_string(path) {
                Err(e) => ReloadOutcome::Rejected {
                    errors: vec![format!("cannot read {}: {e}", path.display())],
                },
                Ok(text) => {
                    // Applied or refused, this version has been seen:
                    // `--watch` must not take it up again.
                    let hash = config_hash(&text);
                    self.seen_hash = hash.clone();
                    match parse(path, &text) {
                        Err(errors) => ReloadOutcome::Rejected { errors },
                        Ok(config) => self.apply(config, hash).await,
                    }
                }
            },
        };
        self.settle(outcome)
    }

    /// A new snapshot from etcd: apply what it makes, or report why not.
    async fn apply_snapshot(&mut self, snapshot: Arc<halb_cluster::Snapshot>) {
        let Source::Cluster(cluster) = &mut self.source else {
            return;
        };
        let outcome = match cluster.compose(snapshot.clone()) {
            None => None,
            Some(Ok((config, hash))) => Some(self.apply(config, hash).await),
            Some(Err(errors)) => Some(ReloadOutcome::Rejected { errors }),
        };
        if let Some(outcome) = outcome {
            self.settle(outcome);
        }
        // After the config: the backends the actions name exist by now.
        self.stored_admin.apply(&snapshot, self.proxy.state());
    }

    /// Record, log and (when refused) alert a reload's outcome.
    fn settle(&mut self, outcome: ReloadOutcome) -> ReloadOutcome {
        if let Source::Cluster(cluster) = &mut self.source {
            cluster.settled(&outcome, &self.info);
        }
        self.info.record(&outcome);
        match &outcome {
            ReloadOutcome::Applied { config_hash, .. } => {
                tracing::info!(hash = %config_hash, "config reloaded");
            }
            ReloadOutcome::Rejected { errors } => {
                for error in errors {
                    tracing::error!(%error, "reload refused; the running config stays");
                }
                self.alerter.load().send(Alert::ReloadFailed {
                    errors: errors.clone(),
                });
            }
        }
        // Applied or refused, the node serves (a refused reload keeps the
        // running config).
        self.notifier.ready(&serving_status(&self.config));
        outcome
    }

    async fn apply(&mut self, config: Config, hash: String) -> ReloadOutcome {
        if config.runtime.workers != self.config.runtime.workers {
            tracing::warn!("runtime.workers changed; it takes effect at the next restart");
        }
        if config.admin != self.config.admin {
            tracing::warn!("[admin] changed; it takes effect at the next restart");
        }
        if config.vrrp != self.config.vrrp {
            tracing::warn!("[vrrp] changed; it takes effect at the next restart");
        }
        let peers = |c: &Config| c.cluster.as_ref().and_then(|c| c.peers.clone());
        if peers(&config) != peers(&self.config) {
            tracing::warn!("[cluster.peers] changed; it takes effect at the next restart");
        }
        // A reload reopens an access log file even when `[access_log]` is
        // unchanged, so that a reload after rotating the file writes to the
        // new one. A file that cannot be opened refuses the reload.
        let reopen = config.access_log != self.config.access_log
            || config
                .access_log
                .as_ref()
                .is_some_and(|log| log.path.is_some());
        let reopened = if reopen {
            match start_access_log(config.access_log.as_ref(), &self.access_log_stats) {
                Ok(access_log) => Some(access_log),
                Err(e) => {
                    return ReloadOutcome::Rejected {
                        errors: vec![format!("{e:#}")],
                    }
                }
            }
        } else {
            None
        };
        // Names new in this config are looked up now, so that their
        // backends arrive with the reload rather than a round later.
        let names = config.backend_names();
        let unknown: BTreeSet<resolve::Name> = names
            .iter()
            .filter(|name| !self.resolver.knows(name))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            self.resolver
                .take(resolve::lookup(&unknown, resolve::LOOKUP_TIMEOUT).await);
        }
        match self
            .proxy
            .apply(&config.with_resolved(self.resolver.answers()))
        {
            Ok(changes) => {
                self.resolver.retain(&names);
                let _ = self.wanted.send(resolve::wanted(&config));
                let summary = ReloadSummary::of(&changes);
                if !summary.is_empty() {
                    tracing::info!(changes = %summary, "reload applied");
                }
                if let Some(access_log) = reopened {
                    self.proxy
                        .set_access_log(access_log.as_ref().map(AccessLogWriter::sink));
                    // The old writer ends once requests in flight on it are logged.
                    if let Some(old) = std::mem::replace(&mut self.access_log, access_log) {
                        old.retire();
                    }
                }
                if config.alerts != self.config.alerts {
                    let alerter = self.alerter.load().reconfigured(&config.alerts);
                    self.alerter.store(Arc::new(alerter));
                }
                self.config = config;
                // Weights set at run time last until a reload.
                self.weights.clear();
                self.seen_hash = hash.clone();
                ReloadOutcome::applied(hash, summary)
            }
            Err(e) => ReloadOutcome::Rejected {
                errors: vec![e.to_string()],
            },
        }
    }

    /// Balance `backend` of `pool` with `weight` until the next reload.
    fn set_weight(&mut self, pool: &str, backend: SocketAddr, weight: u32) -> Result<(), String> {
        let running = self.running();
        let Some(configured) = running.pool(pool) else {
            return Err(format!("no pool named {pool:?}"));
        };
        if !configured.backends.iter().any(|b| b.address == backend) {
            return Err(format!("pool {pool:?} has no backend {backend}"));
        }
        self.weights.insert((pool.to_owned(), backend), weight);
        match self.proxy.apply(&self.running()) {
            Ok(changes) => {
                if !changes.is_empty() {
                    tracing::info!(%pool, %backend, weight, "weight set through the admin API (until the next reload)");
                }
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// What the proxy runs: the config with host names replaced by their
    /// addresses and the weights set at run time.
    fn running(&self) -> Config {
        let mut running = self.config.with_resolved(self.resolver.answers());
        for ((pool, address), weight) in &self.weights {
            let backends = running
                .pools
                .iter_mut()
                .filter(|p| p.name == *pool)
                .flat_map(|p| p.backends.iter_mut());
            for configured in backends.filter(|b| b.address == *address) {
                configured.weight = *weight;
            }
        }
        running
    }

    /// A round of host-name lookups: addresses that came are added, those
    /// that went drain.
    fn resolved(&mut self, round: resolve::Round) {
        if !self.resolver.take(round) {
            return;
        }
        match self.proxy.apply(&self.running()) {
            Ok(changes) => {
                let summary = ReloadSummary::of(&changes);
                if !summary.is_empty() {
                    tracing::info!(changes = %summary, "host-name backends changed");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot apply the new addresses of host-name backends")
            }
        }
    }

    /// Whether the watched file's text differs from what runs now (or from
    /// the last refused version, so a bad file is reported once).
    fn file_changed(&mut self) -> bool {
        let Source::File { path, .. } = &self.source else {
            return false;
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return false;
        };
        let hash = config_hash(&text);
        if hash == self.seen_hash {
            return false;
        }
        self.seen_hash = hash;
        true
    }
}
