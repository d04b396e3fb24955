//! What [`State`](crate::State) tells the rest of the node: every change it
//! applied, in the order it applied them. Alerts, VRRP tracking, the
//! dashboard and peer replication subscribe to the same stream.
//!
//! Times are wall-clock milliseconds since the Unix epoch, so that an event
//! means the same on another node.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::health::AdminState;

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// This node's active health checks.
    Check,
    /// This node's passive outlier detection (real traffic).
    Outlier,
    /// An operator, through the admin API.
    Operator,
    /// A config change (a backend removed from the config drains).
    Config,
    /// Another node of the fleet, over a peer link.
    Peer,
}

impl Origin {
    /// The word logs and the API use.
    pub fn as_str(&self) -> &'static str {
        match self {
            Origin::Check => "check",
            Origin::Outlier => "outlier",
            Origin::Operator => "operator",
            Origin::Config => "config",
            Origin::Peer => "peer",
        }
    }
}

/// One change to the node's runtime state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A backend joined a pool (config, or a dynamic source).
    BackendAdded {
        pool: Arc<str>,
        backend: SocketAddr,
        at_ms: u64,
    },
    /// A backend left a pool; requests in flight on it finish.
    BackendRemoved {
        pool: Arc<str>,
        backend: SocketAddr,
        at_ms: u64,
    },
    /// The active-check verdict changed. `generation` counts the verdict
    /// changes of this backend on this node.
    Verdict {
        pool: Arc<str>,
        backend: SocketAddr,
        up: bool,
        reason: String,
        origin: Origin,
        generation: u64,
        at_ms: u64,
    },
    /// The operator state changed (drain, disable, enable).
    Admin {
        pool: Arc<str>,
        backend: SocketAddr,
        #[serde(serialize_with = "admin_word")]
        from: AdminState,
        #[serde(serialize_with = "admin_word")]
        to: AdminState,
        origin: Origin,
        at_ms: u64,
    },
    /// Outlier detection ejected a backend until `until_ms`.
    Ejected {
        pool: Arc<str>,
        backend: SocketAddr,
        failures: u32,
        until_ms: u64,
        at_ms: u64,
    },
    /// Whether the pool has a backend that may take traffic (enabled,
    /// passing its checks, weight above 0) changed.
    PoolUsable {
        pool: Arc<str>,
        usable: bool,
        at_ms: u64,
    },
    /// Whether part of the pool's traffic leaves the node's zone changed:
    /// `spilling` while a serving level's local zone is below the pool's
    /// `overflow` threshold. `local_permille`: the share that stays local.
    ZoneSpill {
        pool: Arc<str>,
        spilling: bool,
        local_permille: u32,
        at_ms: u64,
    },
}

impl Event {
    /// The pool the event is about.
    pub fn pool(&self) -> &str {
        match self {
            Event::BackendAdded { pool, .. }
            | Event::BackendRemoved { pool, .. }
            | Event::Verdict { pool, .. }
            | Event::Admin { pool, .. }
            | Event::Ejected { pool, .. }
            | Event::PoolUsable { pool, .. }
            | Event::ZoneSpill { pool, .. } => pool,
        }
    }
}

fn admin_word<S: serde::Serializer>(state: &AdminState, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(state.as_str())
}

/// Now, in milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A time of [`crate::clock`] as milliseconds since the Unix epoch.
pub fn clock_to_unix_ms(nanos: u64) -> u64 {
    let now = crate::clock::now();
    let wall = unix_ms();
    if nanos >= now {
        wall + (nanos - now) / 1_000_000
    } else {
        wall.saturating_sub((now - nanos) / 1_000_000)
    }
}
