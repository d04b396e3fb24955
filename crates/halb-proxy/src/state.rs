//! Runtime state shared by all workers: per-pool backends with their live
//! counters, and the balancer built for them. Workers read it through
//! [`arc_swap::ArcSwap`] snapshots and never lock it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use halb_balance::{
    BackendSet, Balancer, LeastConnections, Maglev, PeakEwma, PeakEwmaBalancer, RoundRobin,
    SmoothWeighted, TwoChoices,
};
use halb_config::{Algorithm, Pool};

/// One backend and its live counters, shared by every worker.
#[derive(Debug)]
pub struct BackendState {
    pub address: SocketAddr,
    pub weight: u32,
    pub backup: bool,
    /// Requests (HTTP) or connections (TCP) currently using the backend.
    pub in_flight: AtomicU64,
    /// Requests or connections sent to the backend (attempts, retries included).
    pub requests: AtomicU64,
    /// Attempts that failed (connect error, timeout, broken response).
    pub failures: AtomicU64,
    /// Latency estimate for `peak_ewma`.
    pub latency: PeakEwma,
}

impl BackendState {
    fn new(config: &halb_config::Backend) -> Self {
        BackendState {
            address: config.address,
            weight: config.weight,
            backup: config.backup,
            in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            latency: PeakEwma::new(),
        }
    }

    /// Count one attempt and hold an in-flight slot until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Relaxed);
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self.clone())
    }
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
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// A pool: its config, its backends and the balancer built over them.
pub struct PoolState {
    pub config: Pool,
    pub backends: Vec<Arc<BackendState>>,
    balancer: Box<dyn Balancer>,
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
    pub fn new(config: Pool) -> Self {
        let backends: Vec<_> = config
            .backends
            .iter()
            .map(|b| Arc::new(BackendState::new(b)))
            .collect();
        let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
        let balancer: Box<dyn Balancer> = match config.algorithm {
            Algorithm::RoundRobin => Box::new(RoundRobin::new(backends.len())),
            Algorithm::WeightedRoundRobin => Box::new(SmoothWeighted::new(&weights)),
            Algorithm::LeastConnections => Box::new(LeastConnections::new(&weights)),
            Algorithm::RandomTwoChoices => Box::new(TwoChoices::new(&weights)),
            Algorithm::PeakEwma => Box::new(PeakEwmaBalancer::new(&weights)),
            Algorithm::Maglev => {
                let ids: Vec<String> = backends.iter().map(|b| b.address.to_string()).collect();
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                Box::new(Maglev::new(&ids, &weights, Maglev::DEFAULT_TABLE_SIZE))
            }
        };
        PoolState {
            config,
            backends,
            balancer,
        }
    }

    /// Pick a backend not yet tried by this request: primaries first, backups
    /// only when no primary is usable.
    pub fn pick(&self, key: Option<u64>, tried: &Tried) -> Option<(usize, &Arc<BackendState>)> {
        for backups in [false, true] {
            let candidates = Candidates {
                backends: &self.backends,
                tried,
                backups,
            };
            if let Some(i) = self.balancer.pick(&candidates, key) {
                return Some((i, &self.backends[i]));
            }
        }
        None
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
    tried: &'a Tried,
    backups: bool,
}

impl BackendSet for Candidates<'_> {
    fn len(&self) -> usize {
        self.backends.len()
    }

    fn usable(&self, index: usize) -> bool {
        let backend = &self.backends[index];
        backend.weight > 0 && backend.backup == self.backups && !self.tried.contains(index)
    }

    fn in_flight(&self, index: usize) -> u64 {
        self.backends[index].in_flight.load(Relaxed)
    }

    fn latency_ns(&self, index: usize) -> f64 {
        self.backends[index].latency.estimate_ns()
    }
}
