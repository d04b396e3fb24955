//! [`State`]: the one writer of the node's runtime state. It knows every
//! pool's backends and their [`BackendHealth`], applies each [`Change`] to
//! them (checks, outlier detection, the operator, config), logs it in the
//! words the API uses, and publishes it as an [`Event`].
//!
//! The data path never takes its lock: it reads the health atomics through
//! the pool snapshots it holds. Writers are rare (a verdict that changes, an
//! ejection, an operator action), so one mutex orders them, and so orders
//! the events, per node.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::broadcast;

use crate::clock;
use crate::event::{clock_to_unix_ms, unix_ms, Event, Origin};
use crate::health::{AdminState, BackendHealth, CheckState};
use crate::sticky::{StickyEntry, StickyTable};

/// Events kept for a subscriber that falls behind; one that falls further
/// behind is told it lagged and should read the state afresh.
const EVENT_BACKLOG: usize = 4096;

/// A backend as a pool's config (or a dynamic source) has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberSpec {
    pub address: SocketAddr,
    /// The weight the pool balances with now; 0 takes no traffic.
    pub weight: u32,
    /// The pool runs active checks: a new backend starts pending.
    pub checked: bool,
}

/// One typed change to one backend.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The active checks' verdict: up or down, and why.
    Verdict { up: bool, detail: String },
    /// A check ran and the verdict stays: its outcome, for the status API.
    CheckNoted { detail: String },
    /// The operator state.
    Admin(AdminState),
    /// Eject for `base × the backend's ejection count` (at most `max`),
    /// unless `max_percent` of the pool is ejected already (at least one
    /// backend may always be).
    Eject {
        failures: u32,
        base: Duration,
        max: Duration,
        max_percent: u32,
    },
}

/// What applying a [`Change`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The state changed (and an event went out).
    Changed,
    /// The backend was already in that state.
    Unchanged,
    /// Operator state set; the one it had before.
    Admin { previous: AdminState },
    /// Ejected for this long.
    Ejected(Duration),
    /// Not ejected: the pool's share of ejected backends is reached, or
    /// another failure ejected it first.
    NotEjected,
}

/// A change named a backend this node does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unknown {
    #[error("no pool named {0:?}")]
    Pool(String),
    #[error("pool {pool:?} has no backend {backend}")]
    Backend { pool: String, backend: SocketAddr },
}

struct Member {
    address: SocketAddr,
    weight: u32,
    health: Arc<BackendHealth>,
}

struct PoolMembers {
    name: Arc<str>,
    members: Vec<Member>,
    usable: bool,
}

impl PoolMembers {
    fn compute_usable(&self) -> bool {
        self.members
            .iter()
            .any(|m| m.weight > 0 && m.health.is_in_service())
    }
}

/// Sticky entries kept for a peer link that falls behind; one that falls
/// further behind resyncs.
const STICKY_BACKLOG: usize = 65_536;

/// The node's runtime state: see the module docs.
pub struct State {
    pools: Mutex<HashMap<Arc<str>, PoolMembers>>,
    events: broadcast::Sender<Event>,
    node: Mutex<Arc<str>>,
    fleet_secret: Mutex<Option<Arc<str>>>,
    sticky: Mutex<HashMap<Arc<str>, Arc<StickyTable>>>,
    /// Made at the first subscription (a peer link): its 65,536 slots
    /// would cost a node without peers some 10 MB of memory.
    sticky_learned: std::sync::OnceLock<broadcast::Sender<StickyEntry>>,
    /// Counts the events published: a reader that keeps something derived
    /// from health (a pool's level shares) sees with one load that it
    /// must look again.
    generation: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").finish_non_exhaustive()
    }
}

impl Default for State {
    fn default() -> Self {
        State {
            pools: Mutex::new(HashMap::new()),
            events: broadcast::Sender::new(EVENT_BACKLOG),
            node: Mutex::new("halb".into()),
            fleet_secret: Mutex::new(None),
            sticky: Mutex::new(HashMap::new()),
            sticky_learned: std::sync::OnceLock::new(),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl State {
    pub fn new() -> Arc<State> {
        Arc::new(State::default())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, PoolMembers>> {
        self.pools.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every event from now on. A receiver that falls more than a few
    /// thousand events behind gets `Lagged` and should re-read the state.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Names this node: sticky entries it learns carry the name.
    pub fn set_node(&self, node: &str) {
        *self.node.lock().unwrap_or_else(|e| e.into_inner()) = node.into();
    }

    /// The fleet's shared secret (`[cluster.peers] secret`), which signs
    /// sticky cookies so that every node honours every node's.
    pub fn set_fleet_secret(&self, secret: Option<&str>) {
        *self.fleet_secret.lock().unwrap_or_else(|e| e.into_inner()) = secret.map(Into::into);
    }

    /// The fleet's shared secret, if the node has one.
    pub fn fleet_secret(&self) -> Option<Arc<str>> {
        self.fleet_secret
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// This node's name.
    pub fn node(&self) -> Arc<str> {
        self.node.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The stick table of `pool`, made (or made again, empty, when its
    /// settings changed) as the pool's config says. A reload that keeps the
    /// settings keeps the entries.
    pub fn sticky_table(&self, pool: &str, ttl_ms: u64, size: usize) -> Arc<StickyTable> {
        let node = self.node();
        let mut tables = self.sticky.lock().unwrap_or_else(|e| e.into_inner());
        match tables.get(pool) {
            Some(table) if table.has_settings(ttl_ms, size) => table.clone(),
            _ => {
                let table = Arc::new(StickyTable::new(pool, &node, ttl_ms, size));
                tables.insert(pool.into(), table.clone());
                table
            }
        }
    }

    /// Every stick table, for a peer's full resync.
    pub fn sticky_tables(&self) -> Vec<Arc<StickyTable>> {
        self.sticky
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Publishes an entry this node learned, for the peer links.
    pub fn publish_sticky(&self, entry: StickyEntry) {
        if let Some(learned) = self.sticky_learned.get() {
            let _ = learned.send(entry);
        }
    }

    /// Every entry this node learns from now on. A receiver that falls
    /// behind gets `Lagged` and should resync from [`State::sticky_tables`].
    pub fn subscribe_sticky(&self) -> broadcast::Receiver<StickyEntry> {
        self.sticky_learned
            .get_or_init(|| broadcast::Sender::new(STICKY_BACKLOG))
            .subscribe()
    }

    /// Applies an entry a peer learned; `false` when this node has no stick
    /// table for its pool or has a later entry.
    pub fn apply_sticky(&self, entry: &StickyEntry) -> bool {
        let table = self
            .sticky
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(entry.pool.as_str())
            .cloned();
        table.is_some_and(|t| t.apply(entry, unix_ms()))
    }

    /// A pool's traffic started or stopped leaving the node's zone (see
    /// [`Event::ZoneSpill`]); the pool's snapshot notices it when it
    /// recomputes its shares.
    pub fn report_zone_spill(&self, pool: &str, spilling: bool, local_permille: u32) {
        self.publish(Event::ZoneSpill {
            pool: pool.into(),
            spilling,
            local_permille,
            at_ms: crate::event::unix_ms(),
        });
    }

    /// Changes every time an event is published (after the change it
    /// tells of is applied): equal values mean no backend's health,
    /// operator state or membership changed in between.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn publish(&self, event: Event) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        // No subscriber is fine: nobody listens yet.
        let _ = self.events.send(event);
    }

    /// Makes `members` the backends of `pool`, in that order: a backend it
    /// had keeps its health; a new one starts pending (checked pools) or
    /// up; one that is gone leaves the state (snapshots still holding it
    /// keep its health until their requests end). Returns each backend's
    /// health, in order.
    pub fn set_members(&self, pool: &str, members: &[MemberSpec]) -> Vec<Arc<BackendHealth>> {
        let mut pools = self.lock();
        let at_ms = unix_ms();
        let new_pool = !pools.contains_key(pool);
        let entry = match pools.get_mut(pool) {
            Some(entry) => entry,
            None => {
                let name: Arc<str> = pool.into();
                pools.insert(
                    name.clone(),
                    PoolMembers {
                        name,
                        members: Vec::new(),
                        usable: false,
                    },
                );
                pools.get_mut(pool).expect("just inserted")
            }
        };
        let mut old: HashMap<SocketAddr, Member> = entry
            .members
            .drain(..)
            .map(|member| (member.address, member))
            .collect();
        let mut added = Vec::new();
        for spec in members {
            let health = match old.remove(&spec.address) {
                Some(member) => member.health,
                None => {
                    added.push(spec.address);
                    Arc::new(BackendHealth::new(spec.checked))
                }
            };
            entry.members.push(Member {
                address: spec.address,
                weight: spec.weight,
                health,
            });
        }
        let name = entry.name.clone();
        let healths = entry.members.iter().map(|m| m.health.clone()).collect();
        for backend in added {
            self.publish(Event::BackendAdded {
                pool: name.clone(),
                backend,
                at_ms,
            });
        }
        for backend in old.into_keys() {
            tracing::info!(pool = %name, %backend, "backend removed");
            self.publish(Event::BackendRemoved {
                pool: name.clone(),
                backend,
                at_ms,
            });
        }
        if new_pool {
            // A pool's first members: where it starts, not a change.
            entry.usable = entry.compute_usable();
        } else {
            self.update_usable(entry, at_ms);
        }
        healths
    }

    /// Forgets a pool that the config no longer has, with its stick table.
    pub fn remove_pool(&self, pool: &str) {
        self.sticky
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(pool);
        let mut pools = self.lock();
        if let Some(entry) = pools.remove(pool) {
            let at_ms = unix_ms();
            for member in entry.members {
                self.publish(Event::BackendRemoved {
                    pool: entry.name.clone(),
                    backend: member.address,
                    at_ms,
                });
            }
        }
    }

    /// The health of one backend.
    pub fn health(&self, pool: &str, backend: SocketAddr) -> Result<Arc<BackendHealth>, Unknown> {
        let pools = self.lock();
        let entry = pools
            .get(pool)
            .ok_or_else(|| Unknown::Pool(pool.to_owned()))?;
        entry
            .members
            .iter()
            .find(|m| m.address == backend)
            .map(|m| m.health.clone())
            .ok_or_else(|| Unknown::Backend {
                pool: pool.to_owned(),
                backend,
            })
    }

    /// Whether any backend of `pool` is in service (enabled and checked up),
    /// whatever its weight.
    pub fn pool_in_service(&self, pool: &str) -> bool {
        self.lock()
            .get(pool)
            .is_some_and(|entry| entry.members.iter().any(|m| m.health.is_in_service()))
    }

    /// Whether `pool` has a usable backend (see [`Event::PoolUsable`]);
    /// `None` for a pool this node does not have.
    pub fn pool_usable(&self, pool: &str) -> Option<bool> {
        self.lock().get(pool).map(|entry| entry.usable)
    }

    /// Every backend's operator state, for a peer's resync.
    pub fn admin_states(&self) -> Vec<(Arc<str>, SocketAddr, AdminState)> {
        self.lock()
            .values()
            .flat_map(|pool| {
                pool.members
                    .iter()
                    .map(|m| (pool.name.clone(), m.address, m.health.admin_state()))
            })
            .collect()
    }

    /// Applies one change to one backend of one pool.
    pub fn apply(
        &self,
        pool: &str,
        backend: SocketAddr,
        origin: Origin,
        change: Change,
    ) -> Result<Applied, Unknown> {
        let mut pools = self.lock();
        let entry = pools
            .get_mut(pool)
            .ok_or_else(|| Unknown::Pool(pool.to_owned()))?;
        let Some(index) = entry.members.iter().position(|m| m.address == backend) else {
            return Err(Unknown::Backend {
                pool: pool.to_owned(),
                backend,
            });
        };
        let health = entry.members[index].health.clone();
        let name = entry.name.clone();
        let at_ms = unix_ms();
        let applied = match change {
            Change::CheckNoted { detail } => {
                health.note_check(detail);
                return Ok(Applied::Unchanged);
            }
            Change::Verdict { up, detail } => {
                let state = if up { CheckState::Up } else { CheckState::Down };
                let reason = detail.trim_start_matches("failed: ").to_owned();
                if !health.set_check_state(state, detail) {
                    return Ok(Applied::Unchanged);
                }
                if up {
                    tracing::info!(pool = %name, %backend, check = %reason, origin = origin.as_str(), "backend is up");
                } else {
                    tracing::warn!(pool = %name, %backend, reason = %reason, origin = origin.as_str(), "backend is down");
                }
                self.publish(Event::Verdict {
                    pool: name,
                    backend,
                    up,
                    reason,
                    origin,
                    generation: health.transitions(),
                    at_ms,
                });
                Applied::Changed
            }
            Change::Admin(state) => {
                let previous = health.set_admin_state(state);
                if previous != state {
                    tracing::info!(pool = %name, %backend, from = previous.as_str(), to = state.as_str(), origin = origin.as_str(), "backend state set");
                    self.publish(Event::Admin {
                        pool: name,
                        backend,
                        from: previous,
                        to: state,
                        origin,
                        at_ms,
                    });
                }
                Applied::Admin { previous }
            }
            Change::Eject {
                failures,
                base,
                max,
                max_percent,
            } => {
                let now = clock::now();
                let total = entry.members.len();
                let ejected = entry
                    .members
                    .iter()
                    .filter(|m| m.health.is_ejected(now))
                    .count();
                let allowed = match max_percent {
                    0 => 0,
                    percent => (total * percent as usize / 100).max(1),
                };
                if ejected >= allowed {
                    tracing::warn!(pool = %name, %backend, ejected, allowed, "backend keeps failing but max_ejection_percent is reached; not ejected");
                    return Ok(Applied::NotEjected);
                }
                let Some(length) = health.eject(now, base, max) else {
                    return Ok(Applied::NotEjected);
                };
                tracing::warn!(pool = %name, %backend, failures, ejection = ?length, "backend ejected by outlier detection");
                self.publish(Event::Ejected {
                    pool: name,
                    backend,
                    failures,
                    until_ms: clock_to_unix_ms(health.ejected_until()),
                    at_ms,
                });
                Applied::Ejected(length)
            }
        };
        self.update_usable(entry, at_ms);
        Ok(applied)
    }

    fn update_usable(&self, entry: &mut PoolMembers, at_ms: u64) {
        let usable = entry.compute_usable();
        if usable == entry.usable {
            return;
        }
        entry.usable = usable;
        if usable {
            tracing::info!(pool = %entry.name, "pool has a usable backend again");
        } else {
            tracing::error!(pool = %entry.name, "pool has no usable backend");
        }
        self.publish(Event::PoolUsable {
            pool: entry.name.clone(),
            usable,
            at_ms,
        });
    }
}
