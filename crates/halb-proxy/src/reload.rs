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

/// The running listener that `wanted` continues: the one with its name and
/// socket, else one with its socket under another name (a rename keeps the
/// socket open: closing it would reset the connections queued on it).
fn continued<'a>(
    running: &'a [Arc<ListenerContext>],
    wanted: &Listener,
    taken: &[Arc<ListenerContext>],
) -> Option<&'a Arc<ListenerContext>> {
    let free = |l: &&Arc<ListenerContext>| {
        same_socket(l, wanted) && !taken.iter().any(|t| Arc::ptr_eq(t, l))
    };
    running
        .iter()
        .filter(free)
        .find(|l| l.config.load().name == wanted.name)
        .or_else(|| running.iter().find(free))
}

impl Proxy {
    /// Move to `config`. On error nothing has changed.
    pub fn apply(&self, config: &Config) -> Result<ReloadSummary, StartError> {
        let old = self.topology.load_full();
        let mut summary = ReloadSummary::default();

        // Match the listeners that continue, then bind what is new: the only
        // step that can fail, done before anything changes.
        let mut continuing: Vec<Option<Arc<ListenerContext>>> = Vec::new();
        let mut taken: Vec<Arc<ListenerContext>> = Vec::new();
        let mut to_bind = Vec::new();
        for wanted in &config.listeners {
            let running = continued(&old.listeners, wanted, &taken).cloned();
            match &running {
                Some(running) => taken.push(running.clone()),
                None => to_bind.push(wanted),
            }
            continuing.push(running);
        }
        let bound = bind_all(to_bind.into_iter(), self.workers.len())?;

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
                        // Connections may hold the old pool a while; its
                        // checks stop now so each backend has one checker.
                        running.stop_checks();
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
                running.stop_checks();
                for backend in &running.backends {
                    backend.health.set_admin_state(AdminState::Draining);
                }
            }
        }
        // Rebuilt pools take over the in-flight counts of the backends they
        // keep only now, just before listeners switch to them: until then
        // the old pools serve, and see those counts.
        for pool in &pools {
            pool.take_over_in_flight();
        }

        let mut listeners = Vec::with_capacity(config.listeners.len());
        for (wanted, running) in config.listeners.iter().zip(continuing) {
            if let Some(running) = running {
                running.config.store(Arc::new(wanted.clone()));
                running.set_pool(pool_named(&pools, &wanted.pool));
                listeners.push(running);
            }
        }
        for bound in bound {
            summary.listeners_added.push(bound.config.name.clone());
            listeners.push(self.open(bound, &pools));
        }
        for running in &old.listeners {
            if !listeners.iter().any(|l| Arc::ptr_eq(l, running)) {
                summary.listeners_removed.push(running.name());
                running.close();
            }
        }
        // Keep the config's listener order for the status API.
        listeners.sort_by_key(|l| {
            let name = l.name();
            config.listeners.iter().position(|c| c.name == name)
        });

        self.topology.store(Arc::new(Topology { listeners, pools }));
        Ok(summary)
    }
}
