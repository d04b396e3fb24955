//! Test support: a [`BackendSet`] over plain vectors, and helpers that drive
//! a balancer and tally its picks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use crate::{BackendSet, Balancer};

/// A pool whose live state the test sets directly.
#[derive(Debug, Clone)]
pub(crate) struct TestBackends {
    pub(crate) usable: Vec<bool>,
    pub(crate) in_flight: Vec<u64>,
    pub(crate) latency_ns: Vec<f64>,
}

impl TestBackends {
    /// `n` usable backends, nothing in flight, 1 ms latency each.
    pub(crate) fn idle(n: usize) -> Self {
        Self {
            usable: vec![true; n],
            in_flight: vec![0; n],
            latency_ns: vec![1e6; n],
        }
    }

    /// `n` backends with random usability, load and latency.
    pub(crate) fn random(rng: &mut fastrand::Rng, n: usize) -> Self {
        Self {
            usable: (0..n).map(|_| rng.bool()).collect(),
            in_flight: (0..n).map(|_| rng.u64(..20)).collect(),
            latency_ns: (0..n).map(|_| rng.f64() * 1e7).collect(),
        }
    }
}

impl BackendSet for TestBackends {
    fn len(&self) -> usize {
        self.usable.len()
    }
    fn usable(&self, index: usize) -> bool {
        self.usable[index]
    }
    fn in_flight(&self, index: usize) -> u64 {
        self.in_flight[index]
    }
    fn latency_ns(&self, index: usize) -> f64 {
        self.latency_ns[index]
    }
}

/// A [`TestBackends`] whose in-flight counts are copied into one array of
/// counters that the set offers through [`BackendSet::in_flight_slice`], as
/// the proxy keeps them.
pub(crate) struct WithCounters<'a> {
    backends: &'a TestBackends,
    counters: Vec<AtomicU64>,
}

impl<'a> WithCounters<'a> {
    pub(crate) fn new(backends: &'a TestBackends) -> Self {
        let counters = backends.in_flight.iter().map(|&load| load.into()).collect();
        WithCounters { backends, counters }
    }
}

impl BackendSet for WithCounters<'_> {
    fn len(&self) -> usize {
        self.backends.len()
    }
    fn usable(&self, index: usize) -> bool {
        self.backends.usable(index)
    }
    fn in_flight(&self, index: usize) -> u64 {
        self.counters[index].load(Ordering::Relaxed)
    }
    fn latency_ns(&self, index: usize) -> f64 {
        self.backends.latency_ns(index)
    }
    fn in_flight_slice(&self) -> Option<&[AtomicU64]> {
        Some(&self.counters)
    }
}

/// `count` keyless picks in order; panics on `None`.
pub(crate) fn picks(balancer: &dyn Balancer, backends: &TestBackends, count: usize) -> Vec<usize> {
    (0..count)
        .map(|_| balancer.pick(backends, None).expect("a usable backend"))
        .collect()
}

/// How many of `count` keyless picks went to each backend.
pub(crate) fn pick_counts(
    balancer: &dyn Balancer,
    backends: &TestBackends,
    count: usize,
) -> Vec<u64> {
    let mut counts = vec![0; backends.len()];
    for index in picks(balancer, backends, count) {
        counts[index] += 1;
    }
    counts
}

/// Like [`pick_counts`], with `threads` threads each picking `per_thread`
/// times from the same balancer at once.
pub(crate) fn pick_counts_concurrently(
    balancer: &dyn Balancer,
    backends: &TestBackends,
    threads: usize,
    per_thread: usize,
) -> Vec<u64> {
    let mut counts = vec![0; backends.len()];
    thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| pick_counts(balancer, backends, per_thread)))
            .collect();
        for worker in workers {
            for (total, count) in counts.iter_mut().zip(worker.join().unwrap()) {
                *total += count;
            }
        }
    });
    counts
}
