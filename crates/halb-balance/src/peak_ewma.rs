//! `peak_ewma`: latency-aware balancing as in Finagle and linkerd. Each
//! backend keeps a [`PeakEwma`] estimate of its round-trip time; the
//! [`PeakEwmaBalancer`] draws two backends and sends the request to the one
//! with the lower expected cost, `latency * (in_flight + 1) / weight`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sample::two_candidates;
use crate::{BackendSet, Balancer};

/// `stamp_ns` before the first sample.
const NO_SAMPLE: u64 = u64::MAX;

/// A backend's round-trip-time estimate, pessimistic by design: a sample
/// above the estimate replaces it at once (one slow answer is news worth
/// acting on now), while samples below pull it down only gradually, by an
/// exponentially weighted moving average whose weight depends on the time
/// since the previous sample (time constant `decay`, 10 s by default). So a
/// backend that starts to stall is avoided immediately and trusted again
/// only after it has been fast for a while.
///
/// Reads decay the estimate toward zero with the same time constant, as
/// Finagle and linkerd do: a backend the balancer has stopped choosing
/// looks cheaper as time passes, gets tried again, and its next sample
/// restores a real value. The data path should therefore observe every
/// finished attempt, failures and timeouts included, with the time it took.
/// A backend with no sample yet reports a default (1 ms unless set), low
/// enough that new backends are tried.
///
/// Lock-free: the estimate (an `f64`'s bits) and the time of the last
/// sample are two atomics, updated by load-compute-store. Two samples that
/// race may lose one of them or pair one's estimate with the other's time.
/// Both are recent real values, so the estimate remains a blend of observed
/// round trips, off by at most one sample: a fair price for a balancing
/// heuristic that is updated on every response by every worker.
#[derive(Debug)]
pub struct PeakEwma {
    /// Monotonic base: times are nanoseconds since it, so they fit a `u64`.
    epoch: Instant,
    decay_ns: f64,
    default_ns: f64,
    estimate_bits: AtomicU64,
    /// Nanoseconds since `epoch` at the last sample, or [`NO_SAMPLE`].
    stamp_ns: AtomicU64,
}

impl PeakEwma {
    /// Time constant of the decay, as in linkerd.
    pub const DEFAULT_DECAY: Duration = Duration::from_secs(10);
    /// Estimate of a backend with no sample yet.
    pub const DEFAULT_ESTIMATE: Duration = Duration::from_millis(1);

    /// An estimator with the default decay and default estimate.
    pub fn new() -> Self {
        Self::with_decay(Self::DEFAULT_DECAY)
    }

    /// An estimator whose samples below the estimate, and reads, decay with
    /// time constant `decay`: after `decay` without samples, 37 % of the old
    /// estimate is left. Shorter reacts faster to recovery, longer
    /// remembers slowness longer. A zero decay is taken as 1 ns.
    pub fn with_decay(decay: Duration) -> Self {
        let default_ns = duration_ns(Self::DEFAULT_ESTIMATE);
        Self {
            epoch: Instant::now(),
            decay_ns: duration_ns(decay).max(1.0),
            default_ns,
            estimate_bits: AtomicU64::new(default_ns.to_bits()),
            stamp_ns: AtomicU64::new(NO_SAMPLE),
        }
    }

    /// Sets the estimate reported until the first sample: lower than the
    /// pool's typical latency so a new backend gets tried, not so low that
    /// it is flooded before its first answer arrives.
    pub fn with_default_estimate(mut self, estimate: Duration) -> Self {
        self.default_ns = duration_ns(estimate);
        self.estimate_bits = AtomicU64::new(self.default_ns.to_bits());
        self
    }

    /// Records the round-trip time of one finished attempt.
    pub fn observe(&self, rtt: Duration) {
        self.observe_at(duration_ns(rtt), self.since_epoch(Instant::now()));
    }

    /// The current estimate in nanoseconds, what
    /// [`BackendSet::latency_ns`] should return. Costs a clock read.
    pub fn estimate_ns(&self) -> f64 {
        self.estimate_ns_at(Instant::now())
    }

    /// The estimate as of `now`: lets a caller that compares several
    /// backends for one request read the clock once for all of them.
    pub fn estimate_ns_at(&self, now: Instant) -> f64 {
        self.estimate_at(self.since_epoch(now))
    }

    /// Nanoseconds from the epoch to `now`; saturates 584 years in, below
    /// the [`NO_SAMPLE`] marker.
    fn since_epoch(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(elapsed).map_or(NO_SAMPLE - 1, |ns| ns.min(NO_SAMPLE - 1))
    }

    /// The weight left on a value `elapsed` nanoseconds old.
    fn decay(&self, elapsed: u64) -> f64 {
        (-(elapsed as f64) / self.decay_ns).exp()
    }

    fn observe_at(&self, rtt_ns: f64, now: u64) {
        let stamp = self.stamp_ns.load(Ordering::Acquire);
        let old = f64::from_bits(self.estimate_bits.load(Ordering::Relaxed));
        let estimate = if stamp == NO_SAMPLE || rtt_ns > old {
            rtt_ns
        } else {
            let kept = self.decay(now.saturating_sub(stamp));
            old * kept + rtt_ns * (1.0 - kept)
        };
        self.estimate_bits
            .store(estimate.to_bits(), Ordering::Relaxed);
        self.stamp_ns.store(now, Ordering::Release);
    }

    fn estimate_at(&self, now: u64) -> f64 {
        let stamp = self.stamp_ns.load(Ordering::Acquire);
        if stamp == NO_SAMPLE {
            return self.default_ns;
        }
        let estimate = f64::from_bits(self.estimate_bits.load(Ordering::Relaxed));
        estimate * self.decay(now.saturating_sub(stamp))
    }
}

impl Default for PeakEwma {
    fn default() -> Self {
        Self::new()
    }
}

fn duration_ns(duration: Duration) -> f64 {
    duration.as_nanos() as f64
}

/// Two random choices by expected cost, `latency_ns * (in_flight + 1) /
/// weight` from [`BackendSet::latency_ns`] (the backends' [`PeakEwma`]
/// estimates): the time the request would wait behind those already in
/// flight, scaled down for backends configured to take more. Unlike least
/// connections it sees a backend that answers slowly before requests pile
/// up on it. Equal costs go to the lower `(in_flight + 1) / weight`, then to
/// the first drawn, so with no latency data it acts like
/// [`TwoChoices`](crate::TwoChoices).
#[derive(Debug)]
pub struct PeakEwmaBalancer {
    weights: Box<[u32]>,
}

impl PeakEwmaBalancer {
    /// A balancer over backends with these weights (pool order).
    pub fn new(weights: &[u32]) -> Self {
        Self {
            weights: weights.into(),
        }
    }
}

impl Balancer for PeakEwmaBalancer {
    fn pick(&self, backends: &dyn BackendSet, _key: Option<u64>) -> Option<usize> {
        let (a, b) = two_candidates(backends, &self.weights)?;
        let Some(b) = b else { return Some(a) };
        // Costs cross-multiplied by the other's weight: no division.
        let load_a = (backends.in_flight(a) as f64 + 1.0) * f64::from(self.weights[b]);
        let load_b = (backends.in_flight(b) as f64 + 1.0) * f64::from(self.weights[a]);
        let cost_a = backends.latency_ns(a) * load_a;
        let cost_b = backends.latency_ns(b) * load_b;
        let b_wins = cost_b < cost_a || (cost_b == cost_a && load_b < load_a);
        Some(if b_wins { b } else { a })
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use super::*;
    use crate::test_support::{pick_counts, TestBackends};

    const MS: f64 = 1e6;
    const SECOND: u64 = 1_000_000_000;

    fn close(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() <= expected * 1e-9
    }

    #[test]
    fn starts_at_the_default_estimate() {
        assert_eq!(PeakEwma::new().estimate_ns(), MS);
        let ewma = PeakEwma::new().with_default_estimate(Duration::from_millis(30));
        assert_eq!(ewma.estimate_ns(), 30.0 * MS);
    }

    #[test]
    fn the_first_sample_replaces_the_default() {
        let ewma = PeakEwma::new();
        ewma.observe_at(0.2 * MS, 5 * SECOND);
        assert_eq!(ewma.estimate_at(5 * SECOND), 0.2 * MS);
        // The same on the real clock.
        let ewma = PeakEwma::new();
        ewma.observe(Duration::from_millis(5));
        let estimate = ewma.estimate_ns();
        assert!(estimate <= 5.0 * MS && estimate > 4.99 * MS, "{estimate}");
    }

    #[test]
    fn peaks_replace_the_estimate_at_once() {
        let ewma = PeakEwma::new();
        ewma.observe_at(2.0 * MS, 0);
        // Even a moment later, a higher sample wins outright.
        ewma.observe_at(40.0 * MS, 1);
        assert_eq!(ewma.estimate_at(1), 40.0 * MS);
    }

    #[test]
    fn lower_samples_pull_the_estimate_down_with_time() {
        let ewma = PeakEwma::new();
        ewma.observe_at(100.0 * MS, 0);
        // A moment later a low sample barely moves it...
        ewma.observe_at(10.0 * MS, 1_000);
        let kept = (-1_000.0 / 1e10f64).exp();
        let expected = 100.0 * MS * kept + 10.0 * MS * (1.0 - kept);
        assert!(close(ewma.estimate_at(1_000), expected));
        assert!(ewma.estimate_at(1_000) > 99.99 * MS);
        // ...one time constant (10 s) later it moves 63 % of the way.
        ewma.observe_at(10.0 * MS, 1_000 + 10 * SECOND);
        let before = expected;
        let kept = (-1f64).exp();
        let expected = before * kept + 10.0 * MS * (1.0 - kept);
        assert!(close(ewma.estimate_at(1_000 + 10 * SECOND), expected));
        // Steady low samples converge on them.
        for k in 2..30 {
            ewma.observe_at(10.0 * MS, 1_000 + k * 10 * SECOND);
        }
        let estimate = ewma.estimate_at(1_000 + 29 * 10 * SECOND);
        assert!((estimate - 10.0 * MS).abs() < 0.001 * MS, "{estimate}");
    }

    #[test]
    fn the_decay_is_configurable() {
        let ewma = PeakEwma::with_decay(Duration::from_secs(1));
        ewma.observe_at(100.0 * MS, 0);
        ewma.observe_at(10.0 * MS, SECOND);
        let kept = (-1f64).exp();
        assert!(close(
            ewma.estimate_at(SECOND),
            100.0 * MS * kept + 10.0 * MS * (1.0 - kept)
        ));
    }

    #[test]
    fn reads_decay_toward_zero_so_avoided_backends_are_retried() {
        let ewma = PeakEwma::new();
        ewma.observe_at(100.0 * MS, 0);
        assert!(close(
            ewma.estimate_at(10 * SECOND),
            100.0 * MS * (-1f64).exp()
        ));
        assert!(ewma.estimate_at(60 * SECOND) < 0.25 * MS);
        // Reading changed nothing: the next sample still decays from the
        // last one.
        assert_eq!(ewma.estimate_at(0), 100.0 * MS);
    }

    #[test]
    fn estimates_at_a_given_instant() {
        let ewma = PeakEwma::new();
        assert_eq!(ewma.estimate_ns_at(Instant::now()), MS);
        ewma.observe(Duration::from_millis(8));
        let later = Instant::now() + Duration::from_secs(10);
        let estimate = ewma.estimate_ns_at(later);
        let expected = 8.0 * MS * (-1f64).exp();
        assert!((estimate - expected).abs() < expected * 1e-3, "{estimate}");
        // An instant before the last sample reads as no decay at all.
        assert_eq!(ewma.estimate_ns_at(ewma.epoch), 8.0 * MS);
    }

    #[test]
    fn racing_samples_keep_the_estimate_in_range() {
        let ewma = PeakEwma::new();
        thread::scope(|scope| {
            for seed in 0..4 {
                let ewma = &ewma;
                scope.spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(seed);
                    for _ in 0..20_000 {
                        ewma.observe(Duration::from_micros(rng.u64(1_000..2_000)));
                    }
                });
            }
        });
        let estimate = ewma.estimate_at(ewma.stamp_ns.load(Ordering::Relaxed));
        assert!((1.0 * MS..2.0 * MS).contains(&estimate), "{estimate}");
    }

    #[test]
    fn prefers_the_low_latency_backend() {
        fastrand::seed(3);
        let mut backends = TestBackends::idle(3);
        backends.latency_ns = vec![10.0 * MS, 1.0 * MS, 10.0 * MS];
        let balancer = PeakEwmaBalancer::new(&[1, 1, 1]);
        let counts = pick_counts(&balancer, &backends, 3000);
        // Backend 1 wins every pair it is in: 2 pairs in 3.
        assert!((1900..2100).contains(&counts[1]), "{counts:?}");
        // With two backends both are always drawn: the fast one always wins.
        let balancer = PeakEwmaBalancer::new(&[1, 1]);
        backends = TestBackends::idle(2);
        backends.latency_ns = vec![10.0 * MS, 1.0 * MS];
        assert_eq!(pick_counts(&balancer, &backends, 100), [0, 100]);
    }

    #[test]
    fn weighs_latency_by_load_and_weight() {
        let mut backends = TestBackends::idle(2);
        backends.latency_ns = vec![10.0 * MS, 1.0 * MS];
        // 1 ms behind 19 requests (20 ms) costs more than 10 ms idle.
        backends.in_flight = vec![0, 19];
        let balancer = PeakEwmaBalancer::new(&[1, 1]);
        assert_eq!(pick_counts(&balancer, &backends, 50), [50, 0]);
        // Weight 4 brings it to 5 ms: the fast backend wins again.
        let balancer = PeakEwmaBalancer::new(&[1, 4]);
        assert_eq!(pick_counts(&balancer, &backends, 50), [0, 50]);
    }

    #[test]
    fn without_latency_data_it_balances_by_load() {
        let mut backends = TestBackends::idle(2);
        backends.latency_ns = vec![0.0, 0.0];
        backends.in_flight = vec![3, 1];
        let balancer = PeakEwmaBalancer::new(&[1, 1]);
        assert_eq!(pick_counts(&balancer, &backends, 50), [0, 50]);
    }

    #[test]
    fn single_backend_and_nothing_usable() {
        let balancer = PeakEwmaBalancer::new(&[2]);
        assert_eq!(pick_counts(&balancer, &TestBackends::idle(1), 5), [5]);
        let mut backends = TestBackends::idle(3);
        backends.usable = vec![false; 3];
        assert_eq!(PeakEwmaBalancer::new(&[1; 3]).pick(&backends, None), None);
    }
}
