//! Fencing: when a backend of a pool with `on_down = "close"` is marked
//! down, its fence is raised and every TCP connection to it closes at once
//! (see [`halb_state::Fence`]). Driven by the state's event stream, so a
//! verdict closes connections the moment it is applied.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use halb_config::OnDown;
use halb_state::{CheckState, Event, State};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::Topology;

/// The task that raises fences; dropping it stops it.
pub(crate) struct Fencer {
    task: JoinHandle<()>,
}

impl Drop for Fencer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fencer {
    /// Start following `state`'s verdicts. Subscribes before it returns, so
    /// no verdict applied afterwards is missed.
    pub(crate) fn start(state: &State, topology: Arc<ArcSwap<Topology>>) -> Fencer {
        let mut events = state.subscribe();
        let task = tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(Event::Verdict {
                        pool,
                        backend,
                        up: false,
                        reason,
                        ..
                    }) => fence(&topology.load(), &pool, backend, &reason),
                    Ok(_) => {}
                    // Verdicts were missed: fence whatever is down now.
                    Err(RecvError::Lagged(_)) => fence_every_down_backend(&topology.load()),
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Fencer { task }
    }
}

fn fence(topology: &Topology, pool: &str, address: SocketAddr, reason: &str) {
    let Some(pool) = topology.pools.iter().find(|p| p.config.name == pool) else {
        return;
    };
    if pool.config.on_down != OnDown::Close {
        return;
    }
    if let Some(backend) = pool.backends.iter().find(|b| b.address == address) {
        tracing::warn!(
            pool = %pool.config.name,
            backend = %address,
            open = backend.in_flight(),
            %reason,
            "backend marked down; closing its open connections (on_down = \"close\")"
        );
        backend.health.fence.raise();
    }
}

fn fence_every_down_backend(topology: &Topology) {
    for pool in &topology.pools {
        if pool.config.on_down != OnDown::Close {
            continue;
        }
        for backend in &pool.backends {
            if backend.health.check_state() == CheckState::Down {
                backend.health.fence.raise();
            }
        }
    }
}
