//! The fleet's commands: `halb config push` (validate and store the shared
//! config), `halb register` (keep a backend registered while this process
//! lives) and `halb cluster status` (every node, and whether it runs what
//! etcd holds).

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use halb_cluster::snapshot::{CONFIG_KEY, POOLS_DIR};
use halb_cluster::{fleet_status, Client, KeptKey};
use halb_config::{Config, Shared, WebhookUrl};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// `halb config push`.
pub struct Push<'a> {
    pub etcd: &'a str,
    pub prefix: &'a str,
    pub dry_run: bool,
    pub file: &'a Path,
    /// Nodes to try the file on first (none: store it for every node).
    pub canary: Vec<String>,
    pub watch: &'a str,
    pub max_error_rate: f64,
}

/// `halb register`.
pub struct Register<'a> {
    pub etcd: &'a str,
    pub prefix: &'a str,
    pub pool: &'a str,
    pub address: SocketAddr,
    pub ttl: &'a str,
    pub check: Option<&'a str>,
    pub weight: Option<u32>,
    pub backup: bool,
}

/// A one-thread runtime for a command, its result as an exit code.
fn block_on(command: impl std::future::Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime")
        .and_then(|rt| rt.block_on(command));
    result.unwrap_or_else(|e| {
        eprintln!("halb: {e:#}");
        ExitCode::FAILURE
    })
}

fn client(etcd: &str, prefix: &str) -> anyhow::Result<Client> {
    halb_config::check_etcd_prefix(prefix).map_err(|e| anyhow::anyhow!("--prefix {e}"))?;
    Client::from_urls(etcd).map_err(|e| anyhow::anyhow!("--etcd: {e}"))
}

/// A node-local base that shared sections are put on, to diff them.
fn as_config(shared: Shared) -> Config {
    const BASE: &str = "[cluster.etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\n";
    halb_config::parse(BASE)
        .expect("the base node config is valid")
        .with_shared(shared)
}

pub fn push(args: Push<'_>) -> ExitCode {
    let text = match std::fs::read_to_string(args.file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("halb: cannot read {}: {e}", args.file.display());
            return ExitCode::FAILURE;
        }
    };
    // The same validation as `halb check` and as every node applies.
    let shared = match halb_config::parse_shared(&text) {
        Ok(shared) => shared,
        Err(errors) => {
            for error in &errors.0 {
                eprintln!("{}: {error}", args.file.display());
            }
            let n = errors.0.len();
            eprintln!(
                "halb: {} has {n} error{}; nothing written",
                args.file.display(),
                if n == 1 { "" } else { "s" }
            );
            return ExitCode::FAILURE;
        }
    };
    block_on(push_valid(args, text, shared))
}

async fn push_valid(args: Push<'_>, text: String, shared: Shared) -> anyhow::Result<ExitCode> {
    let client = client(args.etcd, args.prefix)?;
    let key = format!("{}/{CONFIG_KEY}", args.prefix);
    let stored = client.get(&key).await?;
    let current = stored.kvs.first();
    let expected = current.map_or(0, |kv| kv.mod_revision);
    match current {
        None => println!("{key} does not exist yet; this is its first version"),
        Some(kv) if kv.value == text.as_bytes() => {
            println!("{key} already holds this config (revision {expected}); nothing written");
            return Ok(ExitCode::SUCCESS);
        }
        Some(kv) => {
            let stored_text = String::from_utf8_lossy(&kv.value);
            match halb_config::parse_shared(&stored_text) {
                Ok(running) => {
                    let changes = halb_config::diff(&as_config(running), &as_config(shared));
                    println!("changes against revision {expected}:");
                    if changes.is_empty() {
                        println!("  none in effect (only the text differs)");
                    }
                    for change in changes {
                        println!("  {change}");
                    }
                }
                Err(_) => println!(
                    "the stored config (revision {expected}) is not valid; this replaces it"
                ),
            }
        }
    }
    if args.dry_run {
        println!("dry run: nothing written");
        return Ok(ExitCode::SUCCESS);
    }
    if !args.canary.is_empty() {
        let watch =
            halb_config::parse_duration(args.watch).map_err(|e| anyhow::anyhow!("--watch: {e}"))?;
        if !(0.0..=1.0).contains(&args.max_error_rate) {
            anyhow::bail!(
                "--max-error-rate must be from 0 to 1, got {}",
                args.max_error_rate
            );
        }
        let trial = crate::canary::Trial {
            nodes: args.canary,
            watch,
            max_error_rate: args.max_error_rate,
        };
        return crate::canary::run(&client, args.prefix, &text, expected, trial).await;
    }
    match client
        .put_if_unchanged(&key, text.as_bytes(), expected)
        .await?
    {
        Some(revision) => {
            println!("stored {key} at revision {revision}");
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!(
                "halb: {key} changed while this push ran (it was at revision {expected}); \
                 nothing written: look at the new version and push again"
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

pub fn register(args: Register<'_>) -> ExitCode {
    block_on(register_async(args))
}

async fn register_async(args: Register<'_>) -> anyhow::Result<ExitCode> {
    let client = Arc::new(client(args.etcd, args.prefix)?);
    if args.pool.is_empty() || args.pool.contains('/') {
        anyhow::bail!("--pool must be a pool name (no \"/\"), got {:?}", args.pool);
    }
    let ttl = halb_config::parse_duration(args.ttl).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
    if ttl < Duration::from_secs(1) {
        anyhow::bail!("--ttl must be at least 1s (etcd leases count whole seconds)");
    }
    if args
        .weight
        .is_some_and(|w| w > halb_config::MAX_BACKEND_WEIGHT)
    {
        anyhow::bail!(
            "--weight must be from 0 to {}",
            halb_config::MAX_BACKEND_WEIGHT
        );
    }
    let check = args
        .check
        .map(WebhookUrl::parse_plain)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--check: {e}"))?;
    let key = format!(
        "{}/{POOLS_DIR}{}/backends/{}",
        args.prefix, args.pool, args.address
    );
    let value = match (args.weight, args.backup) {
        (None, false) => Vec::new(),
        (weight, backup) => serde_json::to_vec(&serde_json::json!({
            "weight": weight.unwrap_or(1),
            "backup": backup,
        }))?,
    };

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let healthy_at_start = match &check {
        Some(url) => probe(url).await.is_ok(),
        None => true,
    };
    let (value_tx, value_rx) = watch::channel(healthy_at_start.then(|| value.clone()));
    let mut kept = KeptKey::start(client.clone(), key.clone(), value_rx, ttl);
    if healthy_at_start {
        kept.written().await;
        println!(
            "registered {key} on lease {:x} (ttl {}s); it goes when this process stops",
            kept.lease(),
            ttl.as_secs()
        );
    } else {
        println!("{key}: the check fails; registering once it passes");
    }
    let every = (ttl / 3).max(Duration::from_millis(500));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let which = loop {
        tokio::select! {
            _ = terminate.recv() => break "SIGTERM",
            _ = interrupt.recv() => break "SIGINT",
            _ = tick.tick(), if check.is_some() => {
                let Some(url) = &check else { continue };
                let healthy = probe(url).await;
                let was = value_tx.borrow().is_some();
                match (&healthy, was) {
                    (Ok(()), false) => println!("{key}: the check passes; registering"),
                    (Err(why), true) => println!("{key}: the check fails ({why}); no longer renewing, the key expires after its TTL"),
                    _ => {}
                }
                value_tx.send_replace(healthy.is_ok().then(|| value.clone()));
            }
        }
    };
    println!("{which}: removing {key}");
    kept.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// GET `url`: `Ok` on a 2xx answer within 2 s.
async fn probe(url: &WebhookUrl) -> Result<(), String> {
    let (status, _) = get(&format!("{}:{}", url.host, url.port), &url.path).await?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

/// GET `path` from `authority` (`host:port`): the status and body, within 2 s.
pub async fn get(authority: &str, path: &str) -> Result<(http::StatusCode, Bytes), String> {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = http::Request::get(path)
            .header(http::header::HOST, authority)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .unwrap_or_else(|_| Err("no answer in 2s".to_owned()))
}

pub fn cluster_status(etcd: &str, prefix: &str, json: bool) -> ExitCode {
    block_on(async move {
        let client = client(etcd, prefix)?;
        let fleet = fleet_status(&client, prefix).await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&fleet)?);
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "{prefix}/{CONFIG_KEY} at revision {}, {} dynamic backend{}, store revision {}",
            fleet.config_revision,
            fleet.backends,
            if fleet.backends == 1 { "" } else { "s" },
            fleet.revision
        );
        let mut rows: Vec<[String; 9]> = vec![[
            "NODE".to_owned(),
            "ADMIN".to_owned(),
            "VERSION".to_owned(),
            "SOURCE".to_owned(),
            "REVISION".to_owned(),
            "CONVERGED".to_owned(),
            "VRRP".to_owned(),
            "PEERS".to_owned(),
            "ERROR".to_owned(),
        ]];
        for node in &fleet.nodes {
            let r = &node.record;
            rows.push([
                r.node.clone(),
                r.admin.clone().unwrap_or_else(|| "-".to_owned()),
                r.version.clone(),
                r.source.clone(),
                r.config_revision.to_string(),
                if node.converged { "yes" } else { "no" }.to_owned(),
                vrrp_column(&r.vrrp),
                peers_column(&r.peers),
                r.errors.first().cloned().unwrap_or_default(),
            ]);
        }
        let widths: Vec<usize> = (0..9)
            .map(|i| rows.iter().map(|row| row[i].len()).max().unwrap_or(0))
            .collect();
        for row in &rows {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:width$}"))
                .collect();
            println!("{}", line.join("  ").trim_end());
        }
        if let Some(canary) = &fleet.canary {
            println!(
                "canary on trial: revision {} on {} (`halb config push --canary` decides)",
                canary.revision,
                canary.nodes.join(", ")
            );
        }
        if fleet.nodes.is_empty() {
            println!("(no node is registered under {prefix}/nodes/)");
        }
        for entry in &fleet.unreadable {
            println!("unreadable registry entry: {entry}");
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The peers a node is linked with both ways, `lb2,lb3`, with the down
/// ones as `address(down)`, or `-`.
fn peers_column(peers: &[halb_cluster::PeerRecord]) -> String {
    if peers.is_empty() {
        return "-".to_owned();
    }
    (peers.iter())
        .map(|p| match (&p.node, p.connected) {
            (Some(node), true) => node.clone(),
            _ => format!("{}(down)", p.address),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `name=state,...` of a node's VRRP instances, or `-`.
fn vrrp_column(instances: &[halb_cluster::VrrpRecord]) -> String {
    if instances.is_empty() {
        return "-".to_owned();
    }
    (instances.iter())
        .map(|i| format!("{}={}", i.name, i.state))
        .collect::<Vec<_>>()
        .join(",")
}
