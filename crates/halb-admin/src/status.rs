//! The `GET /api/v1/status` document.

use std::sync::atomic::Ordering::Relaxed;

use halb_config::Protocol;
use halb_proxy::{BackendState, Topology};
use serde::Serialize;

/// Listeners, pools and every backend's state and counters.
#[derive(Debug, Serialize)]
pub struct Status {
    pub version: &'static str,
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
}

impl Status {
    pub fn of(topology: &Topology) -> Status {
        Status {
            version: env!("CARGO_PKG_VERSION"),
            listeners: topology
                .listeners
                .iter()
                .map(|l| ListenerStatus {
                    name: l.config.name.clone(),
                    bind: l.bound.to_string(),
                    protocol: match l.config.protocol {
                        Protocol::Http => "http",
                        Protocol::Tcp => "tcp",
                    },
                    pool: l.config.pool.clone(),
                })
                .collect(),
            pools: topology
                .pools
                .iter()
                .map(|p| PoolStatus {
                    name: p.config.name.clone(),
                    algorithm: p.config.algorithm.as_str(),
                    backends: p.backends.iter().map(|b| backend_status(b)).collect(),
                })
                .collect(),
        }
    }
}

fn backend_status(backend: &BackendState) -> BackendStatus {
    BackendStatus {
        address: backend.address.to_string(),
        state: "up",
        weight: backend.weight,
        backup: backend.backup,
        in_flight: backend.in_flight.load(Relaxed),
        requests: backend.requests.load(Relaxed),
        failures: backend.failures.load(Relaxed),
    }
}
