//! The metric cells: plain atomics, updated with relaxed ordering.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A count that only goes up.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Self {
        Counter(AtomicU64::new(0))
    }

    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }

    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A value that goes up and down (open connections).
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub const fn new() -> Self {
        Gauge(AtomicI64::new(0))
    }

    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }

    #[inline]
    pub fn dec(&self) {
        self.0.fetch_sub(1, Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

/// Upper bounds (inclusive, in nanoseconds) of the latency buckets: 100 µs
/// to 60 s, about three per decade, as Prometheus clients' defaults but
/// reaching down to what a load balancer on a LAN sees.
pub const LATENCY_BUCKETS: [u64; 18] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
];

/// A latency histogram over [`LATENCY_BUCKETS`], lock-free: an observation
/// is two relaxed atomic adds (its bucket and the sum). Buckets are stored
/// per bucket, not cumulative; the count is their total, so `_count` always
/// equals the `+Inf` bucket.
#[derive(Debug)]
pub struct Histogram {
    /// One per bound, then the overflow (`+Inf`) bucket.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }

    #[inline]
    pub fn observe(&self, value: Duration) {
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        let index = LATENCY_BUCKETS.partition_point(|&bound| bound < nanos);
        self.buckets[index].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// The histogram as Prometheus shows it: cumulative counts per bound.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = [0u64; LATENCY_BUCKETS.len() + 1];
        let mut total = 0u64;
        for (slot, bucket) in cumulative.iter_mut().zip(&self.buckets) {
            total += bucket.load(Relaxed);
            *slot = total;
        }
        HistogramSnapshot {
            cumulative,
            sum_seconds: self.sum_nanos.load(Relaxed) as f64 / 1e9,
        }
    }
}

/// A histogram read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Observations at or below each bound of [`LATENCY_BUCKETS`]; the last
    /// entry is every observation (`+Inf`).
    pub cumulative: [u64; LATENCY_BUCKETS.len() + 1],
    pub sum_seconds: f64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.cumulative[LATENCY_BUCKETS.len()]
    }

    /// `(upper bound in seconds, cumulative count)`, `+Inf` last.
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        LATENCY_BUCKETS
            .iter()
            .map(|&nanos| nanos as f64 / 1e9)
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.cumulative.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_whose_bound_they_do_not_exceed() {
        let histogram = Histogram::new();
        histogram.observe(Duration::from_micros(50)); // <= 100 µs
        histogram.observe(Duration::from_micros(100)); // exactly on the bound
        histogram.observe(Duration::from_micros(101)); // <= 250 µs
        histogram.observe(Duration::from_millis(3)); // <= 5 ms
        histogram.observe(Duration::from_secs(3600)); // +Inf
        let snapshot = histogram.snapshot();
        let buckets: Vec<(f64, u64)> = snapshot.buckets().collect();
        assert_eq!(buckets[0], (0.0001, 2));
        assert_eq!(buckets[1], (0.00025, 3));
        assert_eq!(buckets[4], (0.0025, 3));
        assert_eq!(buckets[5], (0.005, 4));
        assert_eq!(buckets[17], (60.0, 4));
        assert_eq!(buckets[18], (f64::INFINITY, 5));
        assert_eq!(snapshot.count(), 5);
        let expected = 0.000_05 + 0.000_1 + 0.000_101 + 0.003 + 3600.0;
        assert!((snapshot.sum_seconds - expected).abs() < 1e-9);
    }

    #[test]
    fn cumulative_counts_never_decrease_and_end_at_the_count() {
        let histogram = Histogram::new();
        for i in 0..1000u64 {
            histogram.observe(Duration::from_micros(i * i));
        }
        let snapshot = histogram.snapshot();
        let counts: Vec<u64> = snapshot.buckets().map(|(_, c)| c).collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
        assert_eq!(snapshot.count(), 1000);
    }

    #[test]
    fn observations_from_many_threads_are_all_counted() {
        let histogram = std::sync::Arc::new(Histogram::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let histogram = histogram.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        histogram.observe(Duration::from_millis(1));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count(), 40_000);
        assert!((snapshot.sum_seconds - 40.0).abs() < 1e-6);
    }

    #[test]
    fn counters_and_gauges() {
        let counter = Counter::new();
        counter.inc();
        counter.add(41);
        assert_eq!(counter.get(), 42);
        let gauge = Gauge::new();
        gauge.inc();
        gauge.inc();
        gauge.dec();
        assert_eq!(gauge.get(), 1);
    }
}
