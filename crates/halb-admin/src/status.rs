//! The `GET /api/v1/status` document.

use std::sync::atomic::Ordering::Relaxed;

use halb_config::Protocol;
use halb_health::clock;
use halb_proxy::{BackendState, PoolState, Topology};
use serde::Serialize;

use crate::control::{ConfigInfo, ConfigStatus};

/// Listeners, pools and every backend's state and counters.
#[derive(Debug, Serialize)]
pub struct Status {
    pub version: &'static str,
    /// The running config's hash and the reloads so far.
    pub config: ConfigStatus,
    pub listeners: Vec<ListenerStatus>,
    pub pools: Vec<PoolStatus>,
}

#[derive(Debug, Serialize)]
pub struct ListenerStatus {
    pub name: String,
    /// The address actually bound.
    pub bind: String,
    pub protocol: &'static str,
    pub pool: String,
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
    pub backends: Vec<BackendStatus>,
}

#[derive(Debug, Serialize)]
pub struct BackendStatus {
    pub address: String,
    pub state: &'static str,
    pub weight: u32,
    pub backup: bool,
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
        Status {
            version: env!("CARGO_PKG_VERSION"),
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
                })
                .collect(),
            pools: topology.pools.iter().map(|p| pool_status(p)).collect(),
        }
    }
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
        in_flight: backend.in_flight(),
        requests: backend.requests.load(Relaxed),
        failures: backend.failures.load(Relaxed),
        check: backend.health.last_check(),
        ejections: backend.health.ejections_total(),
        latency_ms: (backend.latency.estimate_ns() / 1e4).round() / 100.0,
    }
}
