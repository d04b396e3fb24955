//! The `GET /api/v1/status` document.

use std::sync::atomic::Ordering::Relaxed;

use halb_config::{PathMatch, Protocol};
use halb_health::clock;
use halb_proxy::{BackendState, PoolState, Route, Routes, Topology};
use serde::Serialize;

use crate::control::{ConfigInfo, ConfigStatus};

/// Listeners, pools and every backend's state and counters.
#[derive(Debug, Serialize)]
pub struct Status {
    pub version: &'static str,
    /// This node's name in the fleet (`[cluster] node`), if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `file`, `inline` or `etcd`.
    pub config_source: String,
    /// The version that runs: a file's hash, or the etcd revision of
    /// `<prefix>/config`.
    pub config_revision: String,
    /// The config source's own report (etcd: the store's health).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<serde_json::Value>,
    /// The running config's hash and the reloads so far.
    pub config: ConfigStatus,
    pub listeners: Vec<ListenerStatus>,
    pub pools: Vec<PoolStatus>,
    /// Each VRRP instance (empty without `[vrrp]`).
    pub vrrp: Vec<halb_vrrp::InstanceStatus>,
    /// Each peer link (empty without `[cluster.peers]`).
    pub peers: Vec<halb_cluster::LinkStatus>,
    /// The injected faults now active (as `GET /api/v1/faults` lists them).
    pub faults: serde_json::Value,
}

#[derive(Debug, Serialize)]
pub struct ListenerStatus {
    pub name: String,
    /// The address actually bound.
    pub bind: String,
    pub protocol: &'static str,
    pub pool: String,
    /// `[[listener.route]]` in order, then `default` (requests no rule
    /// matched, to `pool`).
    pub routes: Vec<RouteStatus>,
}

#[derive(Debug, Serialize)]
pub struct RouteStatus {
    pub name: String,
    pub pool: String,
    /// The rule's conditions as configured (absent for `default`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// HTTP responses sent on this route (TCP: connections relayed).
    pub requests: u64,
}

#[derive(Debug, Serialize)]
pub struct PoolStatus {
    pub name: String,
    pub algorithm: &'static str,
    /// Retries made and retries refused by the retry budget.
    pub retries: u64,
    pub retries_denied: u64,
    /// Ejections are being ignored because too few backends are left.
    pub panic: bool,
    /// `overflow`: the healthy share (percent) a level or zone needs to
    /// take all of its traffic.
    pub overflow: u32,
    /// The node's zone (`[runtime] zone`), if it has one.
    pub zone: Option<String>,
    /// The share of the traffic each priority level takes now.
    pub levels: Vec<LevelStatus>,
    /// The share of the traffic that stays in the node's zone now, in
    /// percent; `null` when zones are not in play in this pool.
    pub local_zone_percent: Option<f64>,
    pub backends: Vec<BackendStatus>,
}

/// One priority level of a pool.
#[derive(Debug, Serialize)]
pub struct LevelStatus {
    pub priority: u8,
    /// Its share of the pool's traffic, in percent.
    pub percent: f64,
    /// The share of its traffic kept in the node's zone, in percent;
    /// `null` when zones are not in play in this level.
    pub local_percent: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct BackendStatus {
    pub address: String,
    pub state: &'static str,
    pub weight: u32,
    pub backup: bool,
    /// `priority`: the level it serves in (0 first).
    pub priority: u8,
    /// `zone`, if set.
    pub zone: Option<String>,
    /// In the node's zone.
    pub local: bool,
    pub in_flight: u64,
    pub requests: u64,
    pub failures: u64,
    /// The last active check's outcome.
    pub check: String,
    /// Times outlier detection ejected the backend.
    pub ejections: u64,
    /// Recent response latency (peak EWMA), in milliseconds.
    pub latency_ms: f64,
}

impl Status {
    pub fn of(topology: &Topology, config: &ConfigInfo) -> Status {
        let source = config.source();
        Status {
            version: env!("CARGO_PKG_VERSION"),
            node: source.node,
            config_source: source.source,
            config_revision: source.revision,
            cluster: source.report.map(|report| report.status()),
            config: config.status(),
            listeners: topology
                .listeners
                .iter()
                .map(|l| ListenerStatus {
                    name: l.name(),
                    bind: l.bound.to_string(),
                    protocol: match l.protocol {
                        Protocol::Http => "http",
                        Protocol::Tcp => "tcp",
                    },
                    pool: l.config.load().pool.clone(),
                    routes: route_statuses(&l.routes.load()),
                })
                .collect(),
            pools: topology.pools.iter().map(|p| pool_status(p)).collect(),
            vrrp: Vec::new(),
            peers: Vec::new(),
            faults: serde_json::Value::Array(Vec::new()),
        }
    }
}

fn route_statuses(routes: &Routes) -> Vec<RouteStatus> {
    let served = |route: &Route| -> u64 {
        std::iter::once(&route.local)
            .chain(route.backends.iter())
            .map(|cell| {
                cell.responses.iter().map(|c| c.get()).sum::<u64>() + cell.connections.get()
            })
            .sum()
    };
    let rules = routes.rules.iter().map(|rule| {
        let matcher = &rule.matcher;
        let (path_prefix, path) = match &matcher.path {
            Some(PathMatch::Prefix(prefix)) => (Some(prefix.clone()), None),
            Some(PathMatch::Exact(exact)) => (None, Some(exact.clone())),
            None => (None, None),
        };
        RouteStatus {
            name: matcher.name.clone(),
            pool: matcher.pool.clone(),
            host: matcher.host.as_ref().map(ToString::to_string),
            path_prefix,
            path,
            header: matcher.header.as_ref().map(|h| match &h.value {
                Some(value) => format!("{}: {value}", h.name),
                None => h.name.clone(),
            }),
            requests: served(&rule.route),
        }
    });
    let default = RouteStatus {
        name: routes.default.name.to_string(),
        pool: routes.default.pool_name.to_string(),
        host: None,
        path_prefix: None,
        path: None,
        header: None,
        requests: served(&routes.default),
    };
    rules.chain(std::iter::once(default)).collect()
}

/// The status of one pool.
pub fn pool_status(pool: &PoolState) -> PoolStatus {
    let now = clock::now();
    PoolStatus {
        name: pool.config.name.clone(),
        algorithm: pool.config.algorithm.as_str(),
        retries: pool.retry_budget.spent(),
        retries_denied: pool.retry_budget.denied(),
        panic: pool.outlier.any_ejected(now) && pool.in_panic(now),
        overflow: pool.config.overflow,
        zone: pool.local_zone.as_deref().map(str::to_owned),
        levels: (pool.level_shares().into_iter())
            .map(|l| LevelStatus {
                priority: l.priority,
                percent: l.percent,
                local_percent: l.local_percent,
            })
            .collect(),
        local_zone_percent: pool.local_share(),
        backends: pool
            .backends
            .iter()
            .map(|b| backend_status(b, now))
            .collect(),
    }
}

/// The status of one backend.
pub fn backend_status(backend: &BackendState, now: u64) -> BackendStatus {
    BackendStatus {
        address: backend.address.to_string(),
        state: backend.health.serving_state(now).as_str(),
        weight: backend.weight,
        backup: backend.backup,
        priority: backend.priority,
        zone: backend.zone.as_deref().map(str::to_owned),
        local: backend.local,
        in_flight: backend.in_flight(),
        requests: backend.requests.load(Relaxed),
        failures: backend.failures.load(Relaxed),
        check: backend.health.last_check(),
        ejections: backend.health.ejections_total(),
        latency_ms: (backend.latency.estimate_ns() / 1e4).round() / 100.0,
    }
}
