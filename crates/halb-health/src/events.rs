//! What the health machinery tells the rest of the node: state changes of
//! backends and pools, for alerts and logs.

use std::net::SocketAddr;
use std::sync::Arc;

/// A change in a backend's or pool's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthEvent {
    BackendDown {
        pool: String,
        backend: SocketAddr,
        reason: String,
    },
    BackendUp {
        pool: String,
        backend: SocketAddr,
    },
    /// No backend of the pool passes its checks any more.
    PoolUnavailable {
        pool: String,
    },
    /// A backend of a pool that had none passes its checks again.
    PoolAvailable {
        pool: String,
    },
}

/// Where health events go; must not block.
pub type EventSink = Arc<dyn Fn(HealthEvent) + Send + Sync>;

/// A sink that drops every event.
pub fn no_events() -> EventSink {
    Arc::new(|_| {})
}
