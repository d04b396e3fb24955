//! Reload: take a new, already validated config and move the running data
//! path to it by the typed changes between the two ([`halb_config::diff`]),
//! without dropping work.
//!
//! - A pool whose config is unchanged is kept as is: backend connections,
//!   health, counters. A changed pool gets its next snapshot
//!   ([`PoolState::next`]), which keeps everything of the backends it
//!   keeps. Each backend has its own active check: one added starts its
//!   check, one removed stops its check and drains (its in-flight work
//!   finishes and its TCP connections close after the drain timeout), and
//!   the others' checks go on untouched (all restart only when the
//!   pool's `health_check` itself changed). Idle connections to a backend
//!   that no pool has any more are closed.
//! - A listener kept (same name, address and protocol) takes the new
//!   settings and pool in place; its sockets never close.
//! - New listeners are bound before anything changes, so a reload that
//!   cannot bind changes nothing. Removed listeners stop accepting; their
//!   connections finish what is in flight and close.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use halb_config::{Change, Config, Listener};
use halb_health::{AdminState, Checker};
use halb_state::{Change as StateChange, Origin};

use crate::listener::{bind_reuseport, ListenerContext};
use crate::state::PoolState;
use crate::worker::WorkerCommand;
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
    virtual_ips: &[std::net::IpAddr],
) -> Result<Vec<BoundListener>, StartError> {
    listeners
        .map(|listener| {
            let (address, sockets) = bind_reuseport(
                listener.bind,
                workers,
                virtual_ips.contains(&listener.bind.ip()),
            )
            .map_err(|source| StartError::Bind {
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

/// What a reload changed, by kind (for the admin API's answer).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    pub listeners_added: Vec<String>,
    pub listeners_removed: Vec<String>,
    pub pools_changed: Vec<String>,
    pub pools_added: Vec<String>,
    pub pools_removed: Vec<String>,
    pub backends_added: Vec<String>,
    pub backends_removed: Vec<String>,
    /// Every change, in words (`pool app: 127.0.0.1:9001 weight changed`).
    pub changes: Vec<String>,
}

impl ReloadSummary {
    pub fn of(changes: &[Change]) -> ReloadSummary {
        let mut summary = ReloadSummary::default();
        for change in changes {
            summary.changes.push(change.to_string());
            let changed_pool = match change {
                Change::ListenerAdded(name) => {
                    summary.listeners_added.push(name.clone());
                    None
                }
                Change::ListenerRemoved(name) => {
                    summary.listeners_removed.push(name.clone());
                    None
                }
                Change::PoolAdded(name) => {
                    summary.pools_added.push(name.clone());
                    None
                }
                Change::PoolRemoved(name) => {
                    summary.pools_removed.push(name.clone());
                    None
                }
                Change::BackendAdded { pool, backend } => {
                    summary.backends_added.push(format!("{pool}/{backend}"));
                    Some(pool)
                }
                Change::BackendRemoved { pool, backend } => {
                    summary.backends_removed.push(format!("{pool}/{backend}"));
                    Some(pool)
                }
                Change::PoolChanged { pool, .. } | Change::BackendChanged { pool, .. } => {
                    Some(pool)
                }
                Change::ListenerChanged(_) | Change::Section(_) => None,
            };
            if let Some(pool) = changed_pool {
                if !summary.pools_changed.contains(pool) {
                    summary.pools_changed.push(pool.clone());
                }
            }
        }
        summary
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// One line for the log: every change, or "nothing changed".
impl std::fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.changes.is_empty() {
            return f.write_str("nothing changed");
        }
        f.write_str(&self.changes.join("; "))
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
    /// Move to `config` by the changes from the running config; returns
    /// them. On error nothing has changed.
    pub fn apply(&mut self, config: &Config) -> Result<Vec<Change>, StartError> {
        let changes = halb_config::diff(&self.running, config);
        let old = self.topology.load_full();

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
        let mut tls = crate::tls::load_all(&config.listeners)?;
        crate::check_backend_tls(&config.pools)?;
        let bound = bind_all(
            to_bind.into_iter(),
            self.workers.len(),
            &crate::virtual_ips(config),
        )?;

        let mut pools: Vec<Arc<PoolState>> = Vec::with_capacity(config.pools.len());
        let zone = config.runtime.zone.as_deref();
        // The node moved to another zone: every pool places its backends anew.
        let zone_moved = self.running.runtime.zone != config.runtime.zone;
        for wanted in &config.pools {
            let running = old.pools.iter().find(|p| p.config.name == wanted.name);
            let pool = match running {
                None => {
                    let pool = Arc::new(PoolState::new_in_zone(wanted.clone(), zone, &self.state));
                    self.start_checks(&pool, pool.backends.iter().map(|b| b.address));
                    pool
                }
                Some(running)
                    if !zone_moved && !changes.iter().any(|c| touches_pool(c, &wanted.name)) =>
                {
                    running.clone()
                }
                Some(running) => self.next_snapshot(running, wanted, zone, &changes),
            };
            pools.push(pool);
        }
        for running in &old.pools {
            if config.pool(&running.config.name).is_none() {
                self.checkers.remove(&running.config.name);
                for backend in &running.backends {
                    self.drain(&running.config.name, backend.address);
                }
                self.state.remove_pool(&running.config.name);
            }
        }
        // New snapshots take over the in-flight counts of the backends they
        // keep only now, just before listeners switch to them: until then
        // the old snapshots serve, and see those counts.
        for pool in &pools {
            pool.take_over_in_flight();
            // As listener certificates are: "replace the files, reload"
            // is enough.
            pool.reread_tls();
        }

        let mut listeners = Vec::with_capacity(config.listeners.len());
        for (wanted, running) in config.listeners.iter().zip(continuing) {
            if let Some(running) = running {
                running.config.store(Arc::new(wanted.clone()));
                running.set_tls(wanted.tls.as_ref(), tls.remove(&wanted.name));
                running.set_routes(&pools);
                listeners.push(running);
            }
        }
        for bound in bound {
            listeners.push(self.open(bound, &pools, &mut tls));
        }
        for running in &old.listeners {
            if !listeners.iter().any(|l| Arc::ptr_eq(l, running)) {
                running.close();
            }
        }
        // Keep the config's listener order for the status API.
        listeners.sort_by_key(|l| {
            let name = l.name();
            config.listeners.iter().position(|c| c.name == name)
        });

        self.topology.store(Arc::new(Topology { listeners, pools }));
        self.forget_idle_connections(&old, config);
        self.running = config.clone();
        // `[chaos]` takes effect with the rest: turning it off ends every
        // fault, and a removed pool takes its faults with it.
        self.faults.set_allowed(config.chaos.allow);
        let names: Vec<&str> = config.pools.iter().map(|p| p.name.as_str()).collect();
        self.faults.retain_pools(&names);
        Ok(changes)
    }

    /// The next snapshot of a pool that `changes` touch: removed backends
    /// drain and stop their checks, added ones start theirs.
    fn next_snapshot(
        &mut self,
        running: &Arc<PoolState>,
        wanted: &halb_config::Pool,
        zone: Option<&str>,
        changes: &[Change],
    ) -> Arc<PoolState> {
        let name = &wanted.name;
        for change in changes {
            if let Change::BackendRemoved { pool, backend } = change {
                if pool == name {
                    self.drain(name, *backend);
                    if let Some(checks) = self.checkers.get_mut(name) {
                        checks.remove(backend);
                    }
                }
            }
        }
        let next = Arc::new(running.next_in_zone(wanted.clone(), zone));
        let check_changed = running.config.health_check != wanted.health_check;
        if check_changed {
            self.checkers.remove(name);
            self.start_checks(&next, next.backends.iter().map(|b| b.address));
        } else {
            let added = changes.iter().filter_map(|change| match change {
                Change::BackendAdded { pool, backend } if pool == name => Some(*backend),
                _ => None,
            });
            let added: Vec<SocketAddr> = added.collect();
            self.start_checks(&next, added.into_iter());
        }
        next
    }

    /// Start the active checks of `backends` of `pool` (none when the pool
    /// runs no checks).
    pub(crate) fn start_checks(
        &mut self,
        pool: &PoolState,
        backends: impl Iterator<Item = SocketAddr>,
    ) {
        let checks = self.checkers.entry(pool.config.name.clone()).or_default();
        for address in backends {
            let Some(backend) = pool.backends.iter().find(|b| b.address == address) else {
                continue;
            };
            let checker = Checker::start(
                pool.name.clone(),
                &pool.config.health_check,
                address,
                backend.health.clone(),
                self.state.clone(),
                pool.tls.clone(),
            );
            if let Some(checker) = checker {
                checks.insert(address, checker);
            }
        }
    }

    /// A backend leaving its pool: no new traffic, in-flight work finishes.
    fn drain(&self, pool: &str, backend: SocketAddr) {
        let drain = StateChange::Admin(AdminState::Draining);
        let _ = self.state.apply(pool, backend, Origin::Config, drain);
    }

    /// Workers close their idle connections to backends that were in
    /// `old` and are in no pool of `config`.
    fn forget_idle_connections(&self, old: &Topology, config: &Config) {
        let kept: HashSet<SocketAddr> = (config.pools.iter())
            .flat_map(|p| p.backends.iter().map(|b| b.address))
            .collect();
        let gone: Vec<SocketAddr> = (old.pools.iter())
            .flat_map(|p| p.backends.iter().map(|b| b.address))
            .filter(|address| !kept.contains(address))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if gone.is_empty() {
            return;
        }
        let gone: Arc<[SocketAddr]> = gone.into();
        for worker in &self.workers {
            let _ = worker.commands.send(WorkerCommand::Forget(gone.clone()));
        }
    }
}

/// Whether `change` is about the pool named `name` or its backends.
fn touches_pool(change: &Change, name: &str) -> bool {
    match change {
        Change::PoolChanged { pool, .. }
        | Change::BackendAdded { pool, .. }
        | Change::BackendRemoved { pool, .. }
        | Change::BackendChanged { pool, .. } => pool == name,
        _ => false,
    }
}
