//! Reload: take a new, already validated config and move the running data
//! path to it as a diff, without dropping work.
//!
//! - A pool whose config is unchanged is kept as is: backend connections,
//!   health, counters. A changed pool is rebuilt around the backends it
//!   keeps ([`PoolState::rebuild`]); backends it drops are set draining, so
//!   their in-flight work finishes and their TCP connections close after
//!   the drain timeout.
//! - A listener kept (same name, address and protocol) takes the new
//!   settings and pool in place; its sockets never close.
//! - New listeners are bound before anything changes, so a reload that
//!   cannot bind changes nothing. Removed listeners stop accepting; their
//!   connections finish what is in flight and close.

use std::net::SocketAddr;
use std::sync::Arc;

use halb_config::{Config, Listener};
use halb_health::AdminState;

use crate::listener::{bind_reuseport, ListenerContext};
use crate::state::PoolState;
use crate::{Proxy, StartError, Topology};

/// A listener whose sockets are bound but not yet served.
pub(crate) struct BoundListener {
    pub config: Listener,
    pub address: SocketAddr,
    pub sockets: Vec<std::net::TcpListener>,
}

/// Bind every listener given, one socket per worker; all or nothing.
pub(crate) fn bind_all<'a>(
    listeners: impl Iterator<Item = &'a Listener>,
    workers: usize,
) -> Result<Vec<BoundListener>, StartError> {
    listeners
        .map(|listener| {
            let (address, sockets) =
                bind_reuseport(listener.bind, workers).map_err(|source| StartError::Bind {
                    listener: listener.name.clone(),
                    address: listener.bind,
                    source,
                })?;
            Ok(BoundListener {
                config: listener.clone(),
                address,
                sockets,
            })
        })
        .collect()
}

/// The pool a validated listener names.
pub(crate) fn pool_named(pools: &[Arc<PoolState>], name: &str) -> Arc<PoolState> {
    pools
        .iter()
        .find(|p| p.config.name == name)
        .expect("validated config: a listener's pool exists")
        .clone()
}

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    pub listeners_added: Vec<String>,
    pub listeners_removed: Vec<String>,
    pub pools_changed: Vec<String>,
    pub pools_added: Vec<String>,
    pub pools_removed: Vec<String>,
    pub backends_removed: Vec<String>,
}

impl ReloadSummary {
    pub fn is_empty(&self) -> bool {
        *self == ReloadSummary::default()
    }
}

fn same_socket(running: &ListenerContext, wanted: &Listener) -> bool {
    let config = running.config.load();
    config.bind == wanted.bind && config.protocol == wanted.protocol
}

impl Proxy {
    /// Move to `config`. On error nothing has changed.
    pub fn apply(&self, config: &Config) -> Result<ReloadSummary, StartError> {
        let old = self.topology.load_full();
        let mut summary = ReloadSummary::default();

        // Bind what is new first: the only step that can fail.
        let to_bind = config.listeners.iter().filter(|wanted| {
            !old.listeners
                .iter()
                .any(|running| running.name == wanted.name && same_socket(running, wanted))
        });
        let bound = bind_all(to_bind, self.workers.len())?;

        let pools: Vec<Arc<PoolState>> = config
            .pools
            .iter()
            .map(
                |wanted| match old.pools.iter().find(|p| p.config.name == wanted.name) {
                    Some(running) if running.config == *wanted => running.clone(),
                    Some(running) => {
                        summary.pools_changed.push(wanted.name.clone());
                        for backend in &running.backends {
                            if !wanted.backends.iter().any(|b| b.address == backend.address) {
                                backend.health.set_admin_state(AdminState::Draining);
                                summary
                                    .backends_removed
                                    .push(format!("{}/{}", wanted.name, backend.address));
                            }
                        }
                        Arc::new(PoolState::rebuild(
                            wanted.clone(),
                            Some(running),
                            self.events.clone(),
                        ))
                    }
                    None => {
                        summary.pools_added.push(wanted.name.clone());
                        Arc::new(PoolState::new(wanted.clone(), self.events.clone()))
                    }
                },
            )
            .collect();
        for running in &old.pools {
            if !config.pools.iter().any(|p| p.name == running.config.name) {
                summary.pools_removed.push(running.config.name.clone());
                for backend in &running.backends {
                    backend.health.set_admin_state(AdminState::Draining);
                }
            }
        }

        let mut listeners = Vec::with_capacity(config.listeners.len());
        for wanted in &config.listeners {
            let kept = old
                .listeners
                .iter()
                .find(|running| running.name == wanted.name && same_socket(running, wanted));
            if let Some(running) = kept {
                running.config.store(Arc::new(wanted.clone()));
                running.pool.store(pool_named(&pools, &wanted.pool));
                listeners.push(running.clone());
            }
        }
        for bound in bound {
            summary.listeners_added.push(bound.config.name.clone());
            listeners.push(self.open(bound, &pools));
        }
        for running in &old.listeners {
            if !listeners.iter().any(|l| Arc::ptr_eq(l, running)) {
                summary.listeners_removed.push(running.name.clone());
                running.close();
            }
        }
        // Keep the config's listener order for the status API.
        listeners.sort_by_key(|l| config.listeners.iter().position(|c| c.name == l.name));

        self.topology.store(Arc::new(Topology { listeners, pools }));
        Ok(summary)
    }
}
