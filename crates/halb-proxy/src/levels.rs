//! Priority levels and zones of one pool snapshot: which level, and which
//! side of the node's zone, a request goes to before the balancer picks in
//! it (semantics in `docs/zones.md`, shares in [`halb_balance::spread`]).
//!
//! A pool with one level and no zone in play has no [`Spread`]: its picks
//! are today's, primaries then backups. Otherwise the shares follow the
//! backends' health, which changes without a new snapshot: the first
//! request after a change of health (seen as a new
//! [`State::generation`]) recomputes them, and at least every [`REFRESH`]
//! (ejections end with time, without an event); a request otherwise costs
//! a load, a ticket and a few comparisons.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use arc_swap::ArcSwap;
use halb_balance::spread::{Capacity, Choice, Draws, LevelCapacity, Locality, Plan, SCALE};
use halb_balance::{BackendSet, Balancer};
use halb_config::{Pool, MAX_PRIORITY};
use halb_state::State;

use crate::state::BackendState;

/// The level of `backup = true` backends: after every priority, used only
/// when no other backend can take the request.
pub const BACKUP_LEVEL: u8 = MAX_PRIORITY + 1;

/// How stale the shares may be: health changes reach them within this.
pub const REFRESH: u64 = 100_000_000;

/// The levels and zones of a pool snapshot, and its current shares.
pub struct Spread {
    /// The priorities the pool's non-backup backends have, ascending.
    pub levels: Vec<u8>,
    /// Per level: its backends as a whole, in the node's zone, and in
    /// other zones, each with a balancer of its own so that each group's
    /// rotation is exact whatever share of the traffic it gets.
    groups: Vec<[Option<Group>; 3]>,
    overflow: u32,
    /// The node has a zone and some backend is in it.
    zoned: bool,
    draws: Draws,
    plan: ArcSwap<Plan>,
    /// Clock nanos after which the next request recomputes the plan
    /// (ejections end with time, without an event).
    refresh_at: AtomicU64,
    /// The state's generation the plan was computed at: a change of
    /// health is an event, and the next request recomputes the plan.
    generation: AtomicU64,
    /// Whether the last plan sent part of the traffic out of the zone.
    spilling: AtomicBool,
    /// The share kept local by the last plan, in permille (1000: all).
    local_permille: AtomicU32,
}

impl std::fmt::Debug for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spread")
            .field("levels", &self.levels)
            .field("zoned", &self.zoned)
            .field("plan", &self.plan.load())
            .finish()
    }
}

/// Some backends of a pool and a balancer over them alone.
pub struct Group {
    /// Pool indices of the members, in pool order.
    members: Box<[usize]>,
    balancer: Arc<dyn Balancer>,
}

impl Group {
    fn new(
        config: &Pool,
        backends: &[Arc<BackendState>],
        member: impl Fn(&BackendState) -> bool,
    ) -> Option<Group> {
        let members: Box<[usize]> = (0..backends.len())
            .filter(|&i| member(&backends[i]))
            .collect();
        if members.is_empty() {
            return None;
        }
        let chosen: Vec<Arc<BackendState>> = members.iter().map(|&i| backends[i].clone()).collect();
        Some(Group {
            members,
            balancer: crate::state::balancer(config.algorithm, &chosen),
        })
    }

    /// The balancer's pick among the members that `pool` allows; a pool index.
    #[inline]
    pub fn pick(&self, pool: &dyn BackendSet, key: Option<u64>) -> Option<usize> {
        let view = Members {
            members: &self.members,
            pool,
        };
        self.balancer.pick(&view, key).map(|i| self.members[i])
    }
}

/// A group's members seen through the pool's view of its backends.
struct Members<'a> {
    members: &'a [usize],
    pool: &'a dyn BackendSet,
}

impl BackendSet for Members<'_> {
    fn len(&self) -> usize {
        self.members.len()
    }

    fn usable(&self, index: usize) -> bool {
        self.pool.usable(self.members[index])
    }

    fn in_flight(&self, index: usize) -> u64 {
        self.pool.in_flight(self.members[index])
    }

    fn latency_ns(&self, index: usize) -> f64 {
        self.pool.latency_ns(self.members[index])
    }
}

impl Spread {
    /// The spread of a pool whose backends are `backends`; `None` when
    /// there is one level and no zone in play (today's behaviour).
    pub fn new(config: &Pool, backends: &[Arc<BackendState>]) -> Option<Spread> {
        let mut levels: Vec<u8> = (backends.iter())
            .filter(|b| b.level != BACKUP_LEVEL)
            .map(|b| b.level)
            .collect();
        levels.sort_unstable();
        levels.dedup();
        let zoned = backends.iter().any(|b| b.local) && backends.iter().any(|b| !b.local);
        if levels.len() <= 1 && !zoned {
            return None;
        }
        let groups = (levels.iter())
            .map(|&level| {
                let in_level = |b: &BackendState| b.level == level;
                [
                    Group::new(config, backends, in_level),
                    Group::new(config, backends, |b| in_level(b) && b.local),
                    Group::new(config, backends, |b| in_level(b) && !b.local),
                ]
            })
            .collect();
        Some(Spread {
            groups,
            levels,
            overflow: config.overflow,
            zoned,
            draws: Draws::default(),
            plan: ArcSwap::from_pointee(Plan::new(&[], config.overflow, zoned)),
            refresh_at: AtomicU64::new(0),
            generation: AtomicU64::new(u64::MAX),
            spilling: AtomicBool::new(false),
            local_permille: AtomicU32::new(1000),
        })
    }

    /// Where the next request goes: a level (its priority) and a side of
    /// the zone; `None` when no level has a healthy backend.
    #[inline]
    pub fn choose(
        &self,
        pool: &str,
        backends: &[Arc<BackendState>],
        state: &State,
        now: u64,
        ignore_ejections: bool,
        key: Option<u64>,
    ) -> Option<(u8, Choice)> {
        let generation = state.generation();
        if generation != self.generation.load(Relaxed) || now >= self.refresh_at.load(Relaxed) {
            self.refresh(pool, backends, state, now, ignore_ejections);
        }
        let choice = self.plan.load().choose(self.draws.next(key))?;
        Some((self.levels[choice.level], choice))
    }

    /// The backends a choice sends a request to.
    #[inline]
    pub fn group(&self, choice: Choice) -> Option<&Group> {
        let side = match choice.locality {
            Locality::Any => 0,
            Locality::Local => 1,
            Locality::Remote => 2,
        };
        self.groups.get(choice.level)?[side].as_ref()
    }

    /// Recompute the shares from the backends' health now (one thread
    /// does it; the others go on with the last plan), and report when
    /// traffic starts or stops leaving the zone.
    fn refresh(
        &self,
        pool: &str,
        backends: &[Arc<BackendState>],
        state: &State,
        now: u64,
        ignore_ejections: bool,
    ) {
        // One thread recomputes for a new generation, one for a due time;
        // the others go on with the last plan meanwhile.
        let generation = state.generation();
        let new_generation = self.generation.swap(generation, Relaxed) != generation;
        let due = self.refresh_at.load(Relaxed);
        let timed = now >= due
            && (self.refresh_at)
                .compare_exchange(due, now + REFRESH, Relaxed, Relaxed)
                .is_ok();
        if !new_generation && !timed {
            return;
        }
        let plan = self.plan_now(backends, now, ignore_ejections);
        let (spilling, local) = spill(&plan);
        self.plan.store(Arc::new(plan));
        self.local_permille.store(local, Relaxed);
        if self.spilling.swap(spilling, Relaxed) != spilling {
            tracing::info!(pool, spilling, local_permille = local, "zone spill changed");
            state.report_zone_spill(pool, spilling, local);
        }
    }

    fn plan_now(&self, backends: &[Arc<BackendState>], now: u64, ignore_ejections: bool) -> Plan {
        let mut capacities = vec![LevelCapacity::default(); self.levels.len()];
        for backend in backends.iter().filter(|b| b.level != BACKUP_LEVEL) {
            let Some(index) = self.levels.iter().position(|&l| l == backend.level) else {
                continue;
            };
            let weight = u64::from(backend.weight);
            let healthy = backend.health.is_in_service()
                && (ignore_ejections || !backend.health.is_ejected(now));
            let group = if self.zoned && backend.local {
                &mut capacities[index].local
            } else {
                &mut capacities[index].remote
            };
            *group = Capacity {
                total: group.total + weight,
                healthy: group.healthy + if healthy { weight } else { 0 },
            };
        }
        Plan::new(&capacities, self.overflow, self.zoned)
    }

    /// The shares now, for the status API: per level (its priority) the
    /// traffic share and the local share, both in percent; freshly
    /// computed, so they are right even when no request came lately.
    pub fn shares(&self, backends: &[Arc<BackendState>], now: u64) -> Vec<LevelShare> {
        let plan = self.plan_now(backends, now, false);
        (self
            .levels
            .iter()
            .zip(plan.level_shares())
            .zip(plan.local_shares()))
        .map(|((&priority, &share), local)| LevelShare {
            priority,
            percent: percent(share),
            local_percent: local.map(percent),
        })
        .collect()
    }

    /// Whether the last plan sent part of the traffic out of the zone.
    pub fn spilling(&self) -> bool {
        self.spilling.load(Relaxed)
    }
}

impl crate::state::PoolState {
    /// The share of traffic each level takes now (backups not listed:
    /// they serve only when these have nothing usable). A pool without a
    /// spread has one level, at 100 % while it has a usable backend.
    pub fn level_shares(&self) -> Vec<LevelShare> {
        let now = halb_health::clock::now();
        if let Some(spread) = &self.spread {
            // A pool without traffic still reports a spill starting or
            // ending when it is looked at (status, metrics scrapes).
            let ignore_ejections = self.outlier.any_ejected(now) && self.in_panic(now);
            spread.refresh(
                &self.name,
                &self.backends,
                &self.state,
                now,
                ignore_ejections,
            );
            return spread.shares(&self.backends, now);
        }
        let serving = self.backends.iter().find(|b| b.level != BACKUP_LEVEL);
        let Some(first) = serving else {
            return Vec::new();
        };
        let usable = (self.backends.iter())
            .any(|b| b.level != BACKUP_LEVEL && b.weight > 0 && b.health.is_in_service());
        vec![LevelShare {
            priority: first.level,
            percent: if usable { 100.0 } else { 0.0 },
            local_percent: None,
        }]
    }

    /// The share of the pool's traffic that stays in the node's zone now,
    /// in percent; `None` when zones are not in play.
    pub fn local_share(&self) -> Option<f64> {
        let shares = self.level_shares();
        let zoned: f64 = (shares.iter())
            .filter(|s| s.local_percent.is_some())
            .map(|s| s.percent)
            .sum();
        if zoned == 0.0 {
            return None;
        }
        let kept: f64 = (shares.iter())
            .filter_map(|s| Some(s.percent * s.local_percent? / 100.0))
            .sum();
        Some((kept * 10_000.0 / zoned).round() / 100.0)
    }
}

/// One level's shares, in percent, for status.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelShare {
    pub priority: u8,
    pub percent: f64,
    /// The share of the level's traffic kept in the node's zone; `None`
    /// when zones are not in play in this level.
    pub local_percent: Option<f64>,
}

fn percent(share: u32) -> f64 {
    (f64::from(share) * 10_000.0 / f64::from(SCALE)).round() / 100.0
}

/// Whether `plan` sends traffic out of the zone, and the share of all the
/// traffic it keeps local, in permille (of the zoned levels' traffic).
fn spill(plan: &Plan) -> (bool, u32) {
    let (mut kept, mut zoned) = (0u64, 0u64);
    for (&share, local) in plan.level_shares().iter().zip(plan.local_shares()) {
        if let Some(local) = local {
            zoned += u64::from(share);
            kept += u64::from(share) * u64::from(local) / u64::from(SCALE);
        }
    }
    if zoned == 0 {
        return (false, 1000);
    }
    let permille = (kept * 1000 / zoned) as u32;
    (kept < zoned, permille)
}

#[cfg(test)]
mod tests;
