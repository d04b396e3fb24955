//! Pool snapshots shared by all workers: a pool's backends with their live
//! counters, and the balancer built for them. Workers read them through
//! [`arc_swap::ArcSwap`] snapshots and never lock them.
//!
//! A snapshot is immutable. A change to a pool (a backend added, removed or
//! re-weighted, a setting changed) makes the next snapshot from the last
//! ([`PoolState::next`]): the backends it keeps keep their health, counters
//! and latency (and their in-flight counts move over, see [`in_flight`]);
//! the pool's outlier detector and retry budget carry on; only the member
//! list and the balancer table are made anew.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use halb_balance::{
    BackendSet, Balancer, LeastConnections, Maglev, PeakEwma, PeakEwmaBalancer, RoundRobin,
    SmoothWeighted, TwoChoices,
};
use halb_config::{Algorithm, HealthCheckKind, Pool};
use halb_health::{clock, BackendHealth, OutlierDetector, RetryBudget};
use halb_metrics::Histogram;
use halb_state::{MemberSpec, State};

use crate::in_flight::{self, InFlightCount};
use crate::levels::{Spread, BACKUP_LEVEL};
use halb_balance::spread::Locality;

/// One backend and its live counters, shared by every worker.
///
/// A reload that rebuilds the pool around another list of backends makes a
/// successor for each backend it keeps with the same settings: the same
/// counters, health and latency, and a place in the new pool's array of
/// in-flight counts, to which the count moves when the new pool starts
/// serving (see [`in_flight`](crate::in_flight)).
#[derive(Debug)]
pub struct BackendState {
    pub address: SocketAddr,
    pub weight: u32,
    pub backup: bool,
    /// `priority` as configured (0 for a backup).
    pub priority: u8,
    /// `zone` as configured.
    pub zone: Option<Arc<str>>,
    /// The level it serves in: its priority, or [`BACKUP_LEVEL`].
    pub level: u8,
    /// In the node's zone (`[runtime] zone`).
    pub local: bool,
    /// Requests (HTTP) or connections (TCP) currently using the backend: a
    /// place in its pool's array of counts.
    in_flight: Arc<InFlightCount>,
    /// Requests or connections sent to the backend (attempts, retries included).
    pub requests: Arc<AtomicU64>,
    /// Attempts that failed (connect error, timeout, broken response).
    pub failures: Arc<AtomicU64>,
    /// Latency estimate for `peak_ewma`.
    pub latency: Arc<PeakEwma>,
    /// Checks, operator state, ejection, slow start.
    pub health: Arc<BackendHealth>,
    /// HTTP: from sending a request to the backend's response head (connect
    /// time excluded). Kept when a reload rebuilds the backend.
    pub response_time: Arc<Histogram>,
}

impl BackendState {
    /// A backend counting its requests in flight at `counters[index]`.
    fn new(
        config: &halb_config::Backend,
        local_zone: Option<&str>,
        health: Arc<BackendHealth>,
        counters: &Arc<[AtomicU64]>,
        index: usize,
    ) -> Self {
        BackendState {
            health,
            address: config.address,
            weight: config.weight,
            backup: config.backup,
            priority: config.priority,
            zone: config.zone.as_deref().map(Arc::from),
            level: level_of(config),
            local: is_local(config, local_zone),
            in_flight: Arc::new(InFlightCount::new(counters, index)),
            requests: Arc::default(),
            failures: Arc::default(),
            latency: Arc::default(),
            response_time: Arc::default(),
        }
    }

    /// A backend whose settings changed: new settings, the same health,
    /// counters and latency, nothing in flight yet (requests in flight on
    /// the old settings end there).
    fn carried_over(
        config: &halb_config::Backend,
        local_zone: Option<&str>,
        old: &BackendState,
        counters: &Arc<[AtomicU64]>,
        index: usize,
    ) -> Self {
        BackendState {
            address: config.address,
            weight: config.weight,
            backup: config.backup,
            priority: config.priority,
            zone: config.zone.as_deref().map(Arc::from),
            level: level_of(config),
            local: is_local(config, local_zone),
            in_flight: Arc::new(InFlightCount::new(counters, index)),
            requests: old.requests.clone(),
            failures: old.failures.clone(),
            latency: old.latency.clone(),
            health: old.health.clone(),
            response_time: old.response_time.clone(),
        }
    }

    /// The same backend in a rebuilt pool, counting its requests in flight
    /// at `counters[index]` once its count moves there.
    fn successor(&self, counters: &Arc<[AtomicU64]>, index: usize) -> Self {
        BackendState {
            address: self.address,
            weight: self.weight,
            backup: self.backup,
            priority: self.priority,
            zone: self.zone.clone(),
            level: self.level,
            local: self.local,
            in_flight: Arc::new(InFlightCount::new(counters, index)),
            requests: self.requests.clone(),
            failures: self.failures.clone(),
            latency: self.latency.clone(),
            health: self.health.clone(),
            response_time: self.response_time.clone(),
        }
    }

    /// Requests (HTTP) or connections (TCP) currently using the backend.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.get()
    }

    /// Count one attempt and hold an in-flight slot until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Relaxed);
        self.in_flight.increment();
        InFlight(self.clone())
    }
}

/// The level a backend serves in.
fn level_of(config: &halb_config::Backend) -> u8 {
    if config.backup {
        BACKUP_LEVEL
    } else {
        config.priority
    }
}

/// Whether a backend is in the node's zone.
fn is_local(config: &halb_config::Backend, local_zone: Option<&str>) -> bool {
    local_zone.is_some_and(|zone| config.zone.as_deref() == Some(zone))
}

/// An in-flight slot on a backend; released on drop.
#[derive(Debug)]
pub struct InFlight(Arc<BackendState>);

impl InFlight {
    pub fn backend(&self) -> &Arc<BackendState> {
        &self.0
    }

    /// Record that this attempt failed.
    pub fn fail(&self) {
        self.0.failures.fetch_add(1, Relaxed);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.decrement();
    }
}

/// A pool: its config, its backends, the balancer built over them, and the
/// health machinery that decides which backends may be picked.
pub struct PoolState {
    pub config: Pool,
    pub backends: Vec<Arc<BackendState>>,
    /// The backends' requests in flight, in pool order: least connections
    /// ranks them where they are.
    in_flight: Arc<[AtomicU64]>,
    /// The counts of the backends this pool kept from the pool it was
    /// rebuilt from, still counting there (from, to), until
    /// [`PoolState::take_over_in_flight`] moves them into `in_flight`.
    kept_in_flight: Mutex<Vec<(Arc<InFlightCount>, Arc<InFlightCount>)>>,
    /// Shared with the next snapshot when neither the backends nor the
    /// algorithm change.
    balancer: Arc<dyn Balancer>,
    pub outlier: Arc<OutlierDetector>,
    pub retry_budget: Arc<RetryBudget>,
    /// Slow-start window in clock nanos; 0 = off.
    slow_start: u64,
    /// Where every change to a backend's health goes.
    pub(crate) state: Arc<State>,
    /// The pool's name, for the state and for logs.
    pub name: Arc<str>,
    /// `[pool.sticky]`, over this snapshot's backends.
    pub(crate) affinity: Option<crate::sticky::Affinity>,
    /// `[runtime] zone` of the node.
    pub local_zone: Option<Arc<str>>,
    /// The levels in the order they serve: priorities, then backups.
    order: Box<[u8]>,
    /// Levels and zones in play; `None`: primaries, then backups.
    pub spread: Option<Spread>,
    /// `[pool.tls]` loaded; `Err`: its files could not be used (checked
    /// before a config is applied, so only when they changed since), and
    /// connections fail saying so rather than go out in the clear.
    /// Shared by the snapshots of a pool whose `[pool.tls]` keys stay the
    /// same; a reload swaps in the files read again.
    pub(crate) tls: Option<halb_tls::SharedBackendTls>,
}

impl std::fmt::Debug for PoolState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolState")
            .field("name", &self.config.name)
            .field("backends", &self.backends)
            .finish()
    }
}

impl PoolState {
    /// The first snapshot of a pool. Its backends join `state` (new ones
    /// start pending when the pool runs checks); the owner starts their
    /// checks.
    pub fn new(config: Pool, state: &Arc<State>) -> Self {
        Self::build(config, None, None, state)
    }

    /// [`PoolState::new`] on a node in `zone`.
    pub fn new_in_zone(config: Pool, zone: Option<&str>, state: &Arc<State>) -> Self {
        Self::build(config, zone.map(Arc::from), None, state)
    }

    /// The next snapshot of this pool, with `config` (the same pool's, with
    /// some settings or backends changed). What `self` knew of the backends
    /// that are still there is kept: a backend whose weight and backup flag
    /// did not change keeps its counters, in-flight count, health and
    /// latency; one whose weight changed keeps its health and counters.
    ///
    /// When the backends are the same, in the same order and with the same
    /// settings, the next snapshot shares their objects, their in-flight
    /// counts and (with the same algorithm) the balancer. Otherwise it
    /// counts requests in flight in an array of its own, and the backends
    /// it keeps go on counting in the old one until
    /// [`PoolState::take_over_in_flight`] moves their counts: call it when
    /// the next snapshot starts serving.
    pub fn next(&self, config: Pool) -> Self {
        let state = self.state.clone();
        Self::build(config, self.local_zone.clone(), Some(self), &state)
    }

    /// [`PoolState::next`] on a node now in `zone`.
    pub fn next_in_zone(&self, config: Pool, zone: Option<&str>) -> Self {
        let state = self.state.clone();
        Self::build(config, zone.map(Arc::from), Some(self), &state)
    }

    fn build(
        config: Pool,
        local_zone: Option<Arc<str>>,
        previous: Option<&PoolState>,
        state: &Arc<State>,
    ) -> Self {
        let checked = config.health_check.kind != HealthCheckKind::None;
        let zone = local_zone.as_deref();
        let old = |b: &halb_config::Backend| {
            previous.and_then(|p| p.backends.iter().find(|o| o.address == b.address))
        };
        let unchanged = |b: &halb_config::Backend, old: &BackendState| {
            old.weight == b.weight
                && old.backup == b.backup
                && old.priority == b.priority
                && old.zone.as_deref() == b.zone.as_deref()
                && old.local == is_local(b, zone)
        };
        let same_backends = previous.filter(|p| {
            p.backends.len() == config.backends.len()
                && config
                    .backends
                    .iter()
                    .zip(&p.backends)
                    .all(|(b, o)| o.address == b.address && unchanged(b, o))
        });
        let (backends, in_flight, kept_in_flight) = match same_backends {
            Some(previous) => (
                previous.backends.clone(),
                previous.in_flight.clone(),
                Vec::new(),
            ),
            None => {
                let members: Vec<MemberSpec> = (config.backends.iter())
                    .map(|b| MemberSpec {
                        address: b.address,
                        weight: b.weight,
                        checked,
                    })
                    .collect();
                let healths = state.set_members(&config.name, &members);
                let counters = in_flight::counters(config.backends.len());
                let mut kept = Vec::new();
                let backends = (config.backends.iter().zip(healths).enumerate())
                    .map(|(index, (b, health))| match old(b) {
                        Some(old) if unchanged(b, old) => {
                            let successor = old.successor(&counters, index);
                            kept.push((old.in_flight.clone(), successor.in_flight.clone()));
                            Arc::new(successor)
                        }
                        Some(old) => {
                            Arc::new(BackendState::carried_over(b, zone, old, &counters, index))
                        }
                        None => Arc::new(BackendState::new(b, zone, health, &counters, index)),
                    })
                    .collect();
                (backends, counters, kept)
            }
        };
        let reuse_balancer = previous.filter(|p| {
            same_backends.is_some()
                && p.config.algorithm == config.algorithm
                && p.config.hash_key == config.hash_key
        });
        let balancer = match reuse_balancer {
            Some(previous) => previous.balancer.clone(),
            None => balancer(config.algorithm, &backends),
        };
        let outlier = match previous {
            Some(p) if p.config.outlier_detection == config.outlier_detection => p.outlier.clone(),
            Some(p) => Arc::new(p.outlier.reconfigured(config.outlier_detection.clone())),
            None => Arc::new(OutlierDetector::new(config.outlier_detection.clone())),
        };
        let retry_budget = match previous {
            Some(p) if p.config.retry_budget == config.retry_budget => p.retry_budget.clone(),
            _ => Arc::new(RetryBudget::new(&config.retry_budget)),
        };
        let affinity = config
            .sticky
            .as_ref()
            .map(|s| crate::sticky::Affinity::build(&config.name, s, &backends, state));
        let spread = Spread::new(&config, &backends);
        let mut order: Vec<u8> = backends.iter().map(|b| b.level).collect();
        order.push(BACKUP_LEVEL);
        order.sort_unstable();
        order.dedup();
        let tls = match (&config.tls, previous) {
            (None, _) => None,
            (Some(_), Some(previous)) if previous.config.tls == config.tls => previous.tls.clone(),
            (Some(settings), _) => Some(halb_tls::shared(settings)),
        };
        PoolState {
            tls,
            local_zone,
            order: order.into(),
            spread,
            affinity,
            name: config.name.as_str().into(),
            outlier,
            retry_budget,
            slow_start: config.slow_start.map_or(0, clock::nanos),
            config,
            backends,
            in_flight,
            kept_in_flight: Mutex::new(kept_in_flight),
            balancer,
            state: state.clone(),
        }
    }

    /// Read the `[pool.tls]` files again (a reload): new connections use
    /// them. Files that cannot be used leave the ones in use (a reload
    /// checks them first, so this is a change in between).
    pub(crate) fn reread_tls(&self) {
        let (Some(slot), Some(settings)) = (&self.tls, &self.config.tls) else {
            return;
        };
        match halb_tls::BackendTls::load(settings) {
            Ok(tls) => slot.store(Arc::new(Ok(tls))),
            Err(error) => {
                tracing::warn!(pool = %self.name, %error, "[pool.tls] files not reread")
            }
        }
    }

    /// Moves the in-flight counts of the backends this pool kept from the
    /// pool it was rebuilt from into its own array: from now on it sees
    /// every request in flight on them, those that began on the old pool
    /// too, and they end there. Call once the pool is about to serve, so
    /// that the old pool, serving until then, sees its counts until then.
    pub fn take_over_in_flight(&self) {
        let kept = std::mem::take(
            &mut *self
                .kept_in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for (from, to) in kept {
            from.move_to(to);
        }
    }

    /// Pick a backend not yet tried by this request: primaries first,
    /// backups only when no primary is usable. Backends failing their checks,
    /// drained, disabled or ejected are skipped (ejections are ignored in
    /// panic, see [`PoolState::in_panic`]); backends in slow start are
    /// admitted with a probability equal to their ramp, falling back to
    /// admitting them when nothing else is usable.
    ///
    /// With priority levels or zones in play ([`Spread`]), the request
    /// first goes to the level and side of the zone its draw gives; when
    /// nothing there can take it (all tried, or just gone down), to the
    /// levels in order, then to the backups.
    pub fn pick(&self, key: Option<u64>, tried: &Tried) -> Option<(usize, &Arc<BackendState>)> {
        let candidates = self.candidates(key, tried, self.slow_start);
        if let Some(spread) = &self.spread {
            let probe = candidates(0, Locality::Any);
            let chosen = spread.choose(
                &self.name,
                &self.backends,
                &self.state,
                probe.now,
                probe.ignore_ejections,
                key,
            );
            if let Some((level, choice)) = chosen {
                if let Some(group) = spread.group(choice) {
                    let mut set = candidates(level, choice.locality);
                    if let Some(i) = group.pick(&set, key) {
                        return Some((i, &self.backends[i]));
                    }
                    if self.slow_start > 0 {
                        set.slow_start = 0;
                        if let Some(i) = group.pick(&set, key) {
                            return Some((i, &self.backends[i]));
                        }
                    }
                }
            }
        }
        for &level in self.order.iter() {
            if let Some(found) = self.pick_in(candidates(level, Locality::Any), key) {
                return Some(found);
            }
        }
        None
    }

    /// The balancer's pick among `candidates`; in slow start, ramping
    /// backends are admitted in full when nothing else is usable.
    #[inline]
    fn pick_in(
        &self,
        mut candidates: Candidates<'_>,
        key: Option<u64>,
    ) -> Option<(usize, &Arc<BackendState>)> {
        if let Some(i) = self.balancer.pick(&candidates, key) {
            return Some((i, &self.backends[i]));
        }
        if self.slow_start > 0 {
            candidates.slow_start = 0;
            if let Some(i) = self.balancer.pick(&candidates, key) {
                return Some((i, &self.backends[i]));
            }
        }
        None
    }

    /// The backends a request may go to now, of one level and side of the
    /// zone; with `slow_start` (clock nanos) 0, ramping backends are
    /// admitted in full.
    fn candidates<'a>(
        &'a self,
        key: Option<u64>,
        tried: &'a Tried,
        slow_start: u64,
    ) -> impl Fn(u8, Locality) -> Candidates<'a> {
        let now = clock::now();
        let ignore_ejections = self.outlier.any_ejected(now) && self.in_panic(now);
        move |level, locality| Candidates {
            backends: &self.backends,
            in_flight: &self.in_flight,
            tried,
            level,
            locality,
            now,
            ignore_ejections,
            slow_start,
            key,
        }
    }

    /// Entries in the pool's stick table, when it has one.
    pub fn sticky_entries(&self) -> Option<usize> {
        self.affinity.as_ref().and_then(|a| a.entries())
    }

    /// A try of a request with a sticky preference: the backend it is tied
    /// to while that one can take it (in slow start too); else, when it was
    /// tied to one (or that one failed this request), the untried usable
    /// backend ranking highest for its key, the same choice on every node;
    /// else the balancer's pick. A retry (`attempt > 0`) needs the budget.
    pub(crate) fn try_sticky(
        &self,
        key: Option<u64>,
        preference: &crate::sticky::Preference,
        tried: &mut Tried,
        attempt: u32,
    ) -> Option<(usize, &Arc<BackendState>)> {
        let chosen = {
            let candidates = self.candidates(key, tried, 0);
            let mut chosen = preference
                .wanted
                .filter(|&i| candidates(self.backends[i].level, Locality::Any).usable(i));
            if chosen.is_none() && (preference.wanted.is_some() || preference.stale) {
                if let Some(hash) = preference.key_hash {
                    for &level in self.order.iter() {
                        let set = candidates(level, Locality::Any);
                        chosen = (0..self.backends.len())
                            .filter(|&i| set.usable(i))
                            .max_by_key(|&i| crate::sticky::score(hash, self.backends[i].address));
                        if chosen.is_some() {
                            break;
                        }
                    }
                }
            }
            chosen
        };
        match chosen {
            Some(index) => {
                if attempt > 0 && !self.retry_budget.try_retry() {
                    return None;
                }
                tried.insert(index);
                Some((index, &self.backends[index]))
            }
            None => self.next_try(key, tried, attempt),
        }
    }

    /// The backend for a request's next try: one it has not tried yet, and,
    /// for a retry (`attempt > 0`), only if the pool's retry budget allows.
    /// The backend is recorded in `tried`.
    pub fn next_try(
        &self,
        key: Option<u64>,
        tried: &mut Tried,
        attempt: u32,
    ) -> Option<(usize, &Arc<BackendState>)> {
        let (index, backend) = self.pick(key, tried)?;
        if attempt > 0 && !self.retry_budget.try_retry() {
            tracing::debug!(pool = %self.config.name, "retry budget spent; not retrying");
            return None;
        }
        tried.insert(index);
        Some((index, backend))
    }

    /// Panic: when honouring ejections would leave fewer than
    /// `panic_threshold` % of the primaries that pass their checks, the
    /// ejections are ignored and traffic spreads over all of them rather
    /// than overloading the few left (as Envoy's panic threshold).
    pub fn in_panic(&self, now: u64) -> bool {
        let threshold = self.config.panic_threshold as usize;
        if threshold == 0 {
            return false;
        }
        let (mut in_service, mut not_ejected) = (0usize, 0usize);
        for backend in self
            .backends
            .iter()
            .filter(|b| b.level != BACKUP_LEVEL && b.weight > 0)
        {
            if backend.health.is_in_service() {
                in_service += 1;
                if !backend.health.is_ejected(now) {
                    not_ejected += 1;
                }
            }
        }
        in_service > 0 && not_ejected * 100 < threshold * in_service
    }

    /// Record the outcome of one attempt on `backend` for outlier detection
    /// and latency-aware balancing: a failure counts as a `connect_timeout`
    /// of latency, or a backend that refuses fast would look fast.
    pub fn record_outcome(&self, backend: &BackendState, failed: bool) {
        if failed {
            backend.latency.observe(self.config.connect_timeout);
            self.outlier
                .on_failure(&self.state, &self.name, &backend.health, backend.address);
        } else {
            backend.health.record_success();
        }
    }
}

/// The balancer `algorithm` builds over `backends`, in their order.
pub(crate) fn balancer(algorithm: Algorithm, backends: &[Arc<BackendState>]) -> Arc<dyn Balancer> {
    let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
    match algorithm {
        Algorithm::RoundRobin => Arc::new(RoundRobin::new(backends.len())),
        Algorithm::WeightedRoundRobin => Arc::new(SmoothWeighted::new(&weights)),
        Algorithm::LeastConnections => Arc::new(LeastConnections::new(&weights)),
        Algorithm::RandomTwoChoices => Arc::new(TwoChoices::new(&weights)),
        Algorithm::PeakEwma => Arc::new(PeakEwmaBalancer::new(&weights)),
        Algorithm::Maglev => {
            let ids: Vec<String> = backends.iter().map(|b| b.address.to_string()).collect();
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            Arc::new(Maglev::new(&ids, &weights, Maglev::DEFAULT_TABLE_SIZE))
        }
    }
}

/// The backends one request has already tried; a retry goes elsewhere.
#[derive(Debug, Default)]
pub struct Tried {
    indices: [u32; 12],
    len: usize,
}

impl Tried {
    pub fn insert(&mut self, index: usize) {
        if self.len < self.indices.len() {
            self.indices[self.len] = index as u32;
            self.len += 1;
        }
    }

    pub fn contains(&self, index: usize) -> bool {
        self.indices[..self.len].contains(&(index as u32))
    }
}

/// The view of a pool that a balancer sees for one pick.
struct Candidates<'a> {
    backends: &'a [Arc<BackendState>],
    /// The backends' in-flight counts, in the same order.
    in_flight: &'a [AtomicU64],
    tried: &'a Tried,
    /// The level picked from: a priority, or [`BACKUP_LEVEL`].
    level: u8,
    locality: Locality,
    now: u64,
    ignore_ejections: bool,
    /// Slow-start window in clock nanos; 0 = admit every usable backend.
    slow_start: u64,
    /// The request's hash key: slow start then admits the same keys each
    /// time (more as the ramp rises), so a hashing balancer keeps its
    /// affinity during a ramp.
    key: Option<u64>,
}

impl BackendSet for Candidates<'_> {
    fn len(&self) -> usize {
        self.backends.len()
    }

    fn usable(&self, index: usize) -> bool {
        let backend = &self.backends[index];
        let health = &backend.health;
        backend.weight > 0
            && backend.level == self.level
            && match self.locality {
                Locality::Any => true,
                Locality::Local => backend.local,
                Locality::Remote => !backend.local,
            }
            && health.is_in_service()
            && (self.ignore_ejections || !health.is_ejected(self.now))
            && !self.tried.contains(index)
            && (self.slow_start == 0 || {
                let ramp = health.ramp(self.now, self.slow_start);
                let draw = match self.key {
                    Some(key) => {
                        let mixed = halb_balance::hash_bytes(&(key ^ index as u64).to_le_bytes());
                        (mixed % 1_000_000) as f64 / 1_000_000.0
                    }
                    None => fastrand::f64(),
                };
                ramp >= 1.0 || draw < ramp
            })
    }

    fn in_flight(&self, index: usize) -> u64 {
        self.in_flight[index].load(Relaxed)
    }

    fn in_flight_range(&self, first: usize, out: &mut [u64]) {
        for (count, load) in self.in_flight[first..].iter().zip(out) {
            *load = count.load(Relaxed);
        }
    }

    fn in_flight_slice(&self) -> Option<&[AtomicU64]> {
        Some(self.in_flight)
    }

    fn latency_ns(&self, index: usize) -> f64 {
        self.backends[index]
            .latency
            .estimate_ns_at(clock::instant(self.now))
    }
}

#[cfg(test)]
mod tests;
