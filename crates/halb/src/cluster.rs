//! A node whose shared config comes from etcd (`[cluster.etcd]`): cold
//! start (etcd, else the last-known-good copy, else only the node-local
//! sections until etcd answers), each published snapshot composed with the
//! node's own file and handed to the main loop to apply as a diff, the
//! refusals reported, the last-known-good written, and the node's record
//! kept in the registry.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use halb_admin::{ConfigInfo, ReloadOutcome, SourceInfo, SourceReport};
use halb_cluster::registry::node_key;
use halb_cluster::{
    Client, Composer, EtcdSource, Identity, KeptKey, LastKnownGood, NodeRecord, Snapshot,
    StoreHealth,
};
use halb_config::Config;
use serde::Serialize;
use tokio::sync::watch;

use crate::run::{self, Loaded, Source};

/// At start, how long to wait for etcd before serving the last-known-good.
const COLD_START_WAIT: Duration = Duration::from_secs(5);
/// The node registry's lease: a node that dies leaves the registry after it.
const NODE_TTL: Duration = Duration::from_secs(10);

/// `halb run` with `[cluster.etcd]`.
pub fn run(path: &Path, local: Loaded) -> ExitCode {
    run::init_tracing(local.config.log.level.as_deref());
    let path = path.to_owned();
    run::block_on_main(async move {
        let (cluster, loaded) = ClusterNode::start(path, local.config).await;
        run::serve(loaded, Source::Cluster(Box::new(cluster)), None).await
    })
}

/// The etcd side of a running node, owned by the main loop.
pub struct ClusterNode {
    local_path: PathBuf,
    /// The node's own file, validated (no listeners or pools of its own).
    local: Config,
    prefix: String,
    node: String,
    client: Arc<Client>,
    /// Taken by the main loop, which waits on it.
    source: Option<EtcdSource>,
    composer: Composer,
    /// The last snapshot seen from etcd (or the last-known-good).
    latest: Option<Arc<Snapshot>>,
    /// What runs now, and the snapshot it came from.
    applied: Option<(Identity, Arc<Snapshot>)>,
    /// Composed and handed to the main loop, not yet settled.
    pending: Option<(Identity, Arc<Snapshot>, Vec<String>)>,
    /// The errors of the last refused revision, until a good one applies.
    refused: Option<Vec<String>>,
    lkg: LastKnownGood,
    lkg_writer: watch::Sender<Option<Arc<Snapshot>>>,
    record: NodeRecord,
    registry: watch::Sender<Option<Vec<u8>>>,
    kept: Option<KeptKey>,
    report: Arc<ClusterReport>,
}

/// What the status API shows under `cluster`.
#[derive(Debug)]
pub struct ClusterReport {
    store: Arc<StoreHealth>,
    view: Mutex<ReportView>,
}

#[derive(Debug, Clone, Serialize)]
struct ReportView {
    node: String,
    prefix: String,
    /// `etcd`, `last-known-good`, or `none` (only the node-local sections
    /// run: etcd was unreachable at start and there was no copy yet).
    served_from: &'static str,
    /// The store revision of the snapshot that runs.
    applied_store_revision: i64,
    /// The revision of `<prefix>/config` last refused (0: none pending).
    refused_config_revision: i64,
    /// Backend keys left out of the running config, each with why.
    ignored_backends: Vec<String>,
    last_known_good: LkgView,
}

#[derive(Debug, Clone, Default, Serialize)]
struct LkgView {
    path: String,
    /// The store revision last written (0: not yet).
    written_revision: i64,
    error: String,
}

impl SourceReport for ClusterReport {
    fn status(&self) -> serde_json::Value {
        let view = self.view.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut value = serde_json::to_value(view).unwrap_or_default();
        value["store"] = serde_json::to_value(self.store.status()).unwrap_or_default();
        value
    }

    fn store_up(&self) -> Option<bool> {
        Some(self.store.status().connected)
    }
}

impl ClusterReport {
    fn update(&self, f: impl FnOnce(&mut ReportView)) {
        f(&mut self.view.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl ClusterNode {
    /// Connect, and pick what to start with: etcd's config, else the
    /// last-known-good, else the node-local sections alone.
    async fn start(local_path: PathBuf, local: Config) -> (ClusterNode, Loaded) {
        let cluster = local.cluster.clone().expect("[cluster.etcd] is set");
        let etcd = cluster.etcd.clone().expect("[cluster.etcd] is set");
        let node = cluster.node.clone().unwrap_or_else(host_name);
        let client = Arc::new(Client::new(etcd.endpoints.clone()));
        let mut source = EtcdSource::start(client.clone(), &etcd.prefix);
        let lkg = LastKnownGood::new(&cluster.state_dir);
        let (lkg_writer, lkg_latest) = watch::channel(None);
        let (registry, _) = watch::channel(None);
        let report = Arc::new(ClusterReport {
            store: source.health(),
            view: Mutex::new(ReportView {
                node: node.clone(),
                prefix: etcd.prefix.clone(),
                served_from: "none",
                applied_store_revision: 0,
                refused_config_revision: 0,
                ignored_backends: Vec::new(),
                last_known_good: LkgView {
                    path: lkg.path().display().to_string(),
                    ..LkgView::default()
                },
            }),
        });
        tokio::spawn(write_last_known_good(
            lkg.clone(),
            lkg_latest,
            report.clone(),
        ));
        let first = source.first(COLD_START_WAIT).await;
        let mut this = ClusterNode {
            local_path,
            composer: Composer::new(&etcd.prefix),
            prefix: etcd.prefix,
            record: NodeRecord {
                node: node.clone(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                ..NodeRecord::default()
            },
            node,
            client,
            source: Some(source),
            local: local.clone(),
            latest: None,
            applied: None,
            pending: None,
            refused: None,
            lkg,
            lkg_writer,
            registry,
            kept: None,
            report,
        };

        let mut initial = None;
        match first {
            Some(snapshot) => match this.compose(snapshot) {
                Some(Ok(version)) => initial = Some((version, "etcd")),
                Some(Err(errors)) => this.refused_at_start(errors),
                None => {}
            },
            None => tracing::warn!(
                error = %this.report.store.status().last_error,
                "etcd: unreachable at start; trying the last-known-good config"
            ),
        }
        if initial.is_none() {
            initial = this.load_last_known_good().map(|v| (v, "last-known-good"));
        }
        let loaded = match initial {
            Some(((config, hash), served_from)) => {
                this.settle_applied(served_from);
                tracing::info!(served_from, revision = %this.record.config_revision, "shared config loaded");
                Loaded { config, hash }
            }
            None => {
                tracing::error!(
                    "no shared config yet (etcd unreachable or its config refused, and no \
                     last-known-good): serving nothing until etcd has a good one"
                );
                this.pending = None;
                Loaded {
                    config: local,
                    hash: String::new(),
                }
            }
        };
        (this, loaded)
    }

    /// The last-known-good copy, composed, if there is one and it is good.
    fn load_last_known_good(&mut self) -> Option<(Config, String)> {
        let snapshot = match self.lkg.load() {
            Ok(Some(snapshot)) => snapshot,
            Ok(None) => {
                tracing::warn!(path = %self.lkg.path().display(), "no last-known-good config yet");
                return None;
            }
            Err(e) => {
                tracing::error!(error = %e, "the last-known-good config cannot be read");
                return None;
            }
        };
        match self.compose(Arc::new(snapshot))? {
            Ok(version) => {
                tracing::warn!(path = %self.lkg.path().display(), "serving the last-known-good config until etcd answers");
                Some(version)
            }
            Err(errors) => {
                for error in &errors {
                    tracing::error!(%error, "the last-known-good config is refused");
                }
                None
            }
        }
    }

    fn refused_at_start(&mut self, errors: Vec<String>) {
        for error in &errors {
            tracing::error!(%error, "etcd's shared config refused at start");
        }
        if let Some((identity, _, _)) = self.pending.take() {
            self.record.errors = errors.clone();
            self.report
                .update(|r| r.refused_config_revision = config_revision(&identity));
        }
        self.refused = Some(errors);
    }

    /// The config to apply for `snapshot`, or why it cannot be; `None`
    /// when it holds what already runs (or what was last refused).
    pub fn compose(
        &mut self,
        snapshot: Arc<Snapshot>,
    ) -> Option<Result<(Config, String), Vec<String>>> {
        // A canary that names this node puts its document in place of
        // `<prefix>/config`; every other node never sees it.
        let snapshot = match snapshot.canary {
            Some(_) => Arc::new(snapshot.for_node(&self.record.node)),
            None => snapshot,
        };
        self.latest = Some(snapshot.clone());
        let identity = halb_cluster::compose::identity(&snapshot);
        if let Some((running, _)) = &self.applied {
            if running.same_content(&identity) && self.refused.is_none() {
                self.served_by_etcd(&snapshot);
                return None;
            }
        }
        let composed = self.compose_now(snapshot);
        if let Err(errors) = &composed {
            if self.refused.as_ref() == Some(errors) {
                // The same refusal again (a backend moved): said once.
                self.pending = None;
                return None;
            }
        }
        Some(composed)
    }

    fn compose_now(&mut self, snapshot: Arc<Snapshot>) -> Result<(Config, String), Vec<String>> {
        match self.composer.compose(&self.local, &snapshot) {
            Ok(composed) => {
                let hash = composed.identity.hash();
                self.pending = Some((composed.identity, snapshot, composed.ignored));
                Ok((composed.config, hash))
            }
            Err(refused) => {
                self.pending = Some((refused.identity, snapshot, Vec::new()));
                Err(refused.errors)
            }
        }
    }

    /// The node's own file again, with the shared config that runs.
    pub fn reload_local(&mut self) -> Result<(Config, String), Vec<String>> {
        let loaded = run::load(&self.local_path)?;
        if loaded.config.cluster != self.local.cluster {
            return Err(vec![format!(
                "{}: [cluster] changed; it takes effect at the next restart",
                self.local_path.display()
            )]);
        }
        self.local = loaded.config;
        let snapshot =
            (self.applied.as_ref().map(|(_, s)| s.clone())).or_else(|| self.latest.clone());
        match snapshot {
            Some(snapshot) => self.compose_now(snapshot),
            None => Ok((self.local.clone(), String::new())),
        }
    }

    /// What became of the version [`ClusterNode::compose`] gave.
    pub fn settled(&mut self, outcome: &ReloadOutcome, info: &ConfigInfo) {
        match outcome {
            ReloadOutcome::Applied { .. } => {
                if self.pending.is_some() {
                    self.settle_applied("etcd");
                    info.set_revision(self.record.config_revision.to_string());
                }
            }
            ReloadOutcome::Rejected { errors } => {
                if let Some((identity, _, _)) = self.pending.take() {
                    self.report
                        .update(|r| r.refused_config_revision = config_revision(&identity));
                }
                self.refused = Some(errors.clone());
                self.record.errors = errors.clone();
            }
        }
        self.publish_record();
    }

    fn settle_applied(&mut self, served_from: &'static str) {
        let Some((identity, snapshot, ignored)) = self.pending.take() else {
            return;
        };
        for key in &ignored {
            tracing::warn!(key = %key, "dynamic backend left out");
        }
        self.record.set_applied(&identity);
        self.record.errors.clear();
        self.record.source = served_from.to_owned();
        self.refused = None;
        let _ = self.lkg_writer.send(Some(snapshot.clone()));
        self.report.update(|r| {
            r.served_from = served_from;
            r.applied_store_revision = snapshot.revision;
            r.refused_config_revision = 0;
            r.ignored_backends = ignored;
        });
        self.applied = Some((identity, snapshot));
    }

    /// The running config is what etcd holds (after a start from the
    /// last-known-good, or a reconnection).
    fn served_by_etcd(&mut self, snapshot: &Arc<Snapshot>) {
        if self.record.source != "etcd" {
            tracing::info!("etcd answers; it holds the config that runs");
            self.record.source = "etcd".to_owned();
            self.report.update(|r| r.served_from = "etcd");
            self.publish_record();
        }
        if let Some((identity, applied)) = &mut self.applied {
            *identity = halb_cluster::compose::identity(snapshot);
            *applied = snapshot.clone();
        }
        self.report
            .update(|r| r.applied_store_revision = snapshot.revision);
    }

    /// The node runs: tell the admin API what it runs, and join the registry.
    pub fn started(&mut self, info: &ConfigInfo, admin: Option<SocketAddr>) {
        info.set_source(SourceInfo {
            node: Some(self.node.clone()),
            source: "etcd".to_owned(),
            revision: self.record.config_revision.to_string(),
            report: Some(self.report.clone()),
        });
        if let Some(errors) = &self.refused {
            info.record(&ReloadOutcome::Rejected {
                errors: errors.clone(),
            });
        }
        self.record.admin = admin.map(|a| a.to_string());
        self.publish_record();
        let key = node_key(&self.prefix, &self.node);
        self.kept = Some(KeptKey::start(
            self.client.clone(),
            key,
            self.registry.subscribe(),
            NODE_TTL,
        ));
    }

    /// Put the node's VRRP states in its record, and publish it when they
    /// changed (the main loop calls this a few times a second).
    pub fn vrrp_states(&mut self, instances: &[halb_vrrp::InstanceStatus]) {
        let states: Vec<halb_cluster::VrrpRecord> = instances
            .iter()
            .map(|i| halb_cluster::VrrpRecord {
                name: i.name.clone(),
                state: i.state.as_str().to_owned(),
            })
            .collect();
        if states != self.record.vrrp {
            self.record.vrrp = states;
            self.publish_record();
        }
    }

    /// Put the node's peer links in its record, and publish it when they
    /// changed.
    pub fn peer_states(&mut self, links: &[halb_cluster::LinkStatus]) {
        let states: Vec<halb_cluster::PeerRecord> = links
            .iter()
            .map(|l| halb_cluster::PeerRecord {
                address: l.address.clone(),
                node: l.node.clone(),
                connected: l.connected && l.inbound,
            })
            .collect();
        if states != self.record.peers {
            self.record.peers = states;
            self.publish_record();
        }
    }

    fn publish_record(&self) {
        let bytes = serde_json::to_vec(&self.record).expect("a node record serializes");
        self.registry.send_replace(Some(bytes));
    }

    /// Puts the node's peer address in its record, so that the other nodes
    /// find it; call before [`ClusterNode::started`].
    pub fn advertise_peer(&mut self, address: Option<String>) {
        self.record.peer = address;
    }

    /// The last snapshot seen from etcd (or the last-known-good).
    pub fn latest(&self) -> Option<Arc<Snapshot>> {
        self.latest.clone()
    }

    /// What peer discovery needs: the etcd client, the prefix, this node.
    pub fn discovery(&self) -> (Arc<Client>, String, String) {
        (self.client.clone(), self.prefix.clone(), self.node.clone())
    }

    /// Leave the registry at once (a graceful stop).
    pub async fn leave(&mut self) {
        if let Some(kept) = self.kept.take() {
            kept.stop().await;
        }
    }
}

fn config_revision(identity: &Identity) -> i64 {
    match identity {
        Identity::Etcd {
            config_revision, ..
        } => *config_revision,
        _ => 0,
    }
}

/// The main loop's etcd source, taken out of the node's [`Source`].
pub fn take_source(source: &mut Source) -> Option<EtcdSource> {
    match source {
        Source::Cluster(cluster) => cluster.source.take(),
        _ => None,
    }
}

/// The next snapshot from etcd; never, for a node without it.
pub async fn changed(source: &mut Option<EtcdSource>) -> Arc<Snapshot> {
    match source {
        Some(source) => source.changed().await,
        None => std::future::pending().await,
    }
}

/// Write each applied snapshot to the last-known-good file, off the main
/// loop; a burst of applies writes the latest once.
async fn write_last_known_good(
    lkg: LastKnownGood,
    mut latest: watch::Receiver<Option<Arc<Snapshot>>>,
    report: Arc<ClusterReport>,
) {
    while latest.changed().await.is_ok() {
        let Some(snapshot) = latest.borrow_and_update().clone() else {
            continue;
        };
        let lkg = lkg.clone();
        let revision = snapshot.revision;
        let written = tokio::task::spawn_blocking(move || lkg.store(&snapshot)).await;
        let error = match written {
            Ok(Ok(())) => String::new(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        if !error.is_empty() {
            tracing::error!(%error, "cannot write the last-known-good config");
        }
        report.update(|r| {
            if error.is_empty() {
                r.last_known_good.written_revision = revision;
            }
            r.last_known_good.error = error;
        });
    }
}

/// This machine's host name (the default node name).
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| halb_config::check_node_name(name).is_ok())
        .unwrap_or_else(|| "halb".to_owned())
}
