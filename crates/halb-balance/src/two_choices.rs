//! `random_two_choices`: the power of two random choices. Draw two
//! backends at random, send the request to the less loaded one.

use crate::sample::two_candidates;
use crate::{BackendSet, Balancer};

/// Picks two distinct random usable backends and takes the one with fewer
/// requests in flight per unit of weight, `(in_flight + 1) / weight` as in
/// [`LeastConnections`](crate::LeastConnections), ties going to the first
/// drawn. Nearly as even as least connections (the maximum load drops
/// exponentially compared with one random choice), at constant cost per
/// pick however large the pool, and without the herd effect of every worker
/// rushing the single least loaded backend at once.
#[derive(Debug)]
pub struct TwoChoices {
    weights: Box<[u32]>,
}

impl TwoChoices {
    /// A balancer over backends with these weights (pool order).
    pub fn new(weights: &[u32]) -> Self {
        Self {
            weights: weights.into(),
        }
    }
}

impl Balancer for TwoChoices {
    fn pick(&self, backends: &dyn BackendSet, _key: Option<u64>) -> Option<usize> {
        let (a, b) = two_candidates(backends, &self.weights)?;
        let Some(b) = b else { return Some(a) };
        let per_weight = |i: usize| {
            (
                u128::from(backends.in_flight(i)) + 1,
                u128::from(self.weights[i]),
            )
        };
        let ((load_a, weight_a), (load_b, weight_b)) = (per_weight(a), per_weight(b));
        Some(if load_b * weight_a < load_a * weight_b {
            b
        } else {
            a
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{pick_counts, TestBackends};

    #[test]
    fn never_picks_the_most_loaded_of_three_when_two_are_idle() {
        fastrand::seed(1);
        let mut backends = TestBackends::idle(3);
        backends.in_flight = vec![0, 50, 0];
        let p2c = TwoChoices::new(&[1, 1, 1]);
        let counts = pick_counts(&p2c, &backends, 3000);
        assert_eq!(counts[1], 0);
        // The idle two share the load: each wins against 1, and they split
        // the pairs they form together.
        assert!(counts[0] > 1200 && counts[2] > 1200, "{counts:?}");
    }

    #[test]
    fn the_heaviest_loaded_backend_never_wins() {
        // Any pair drawn contains a backend less loaded than the maximum.
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..50 {
            let n = rng.usize(2..12);
            let mut backends = TestBackends::idle(n);
            backends.in_flight = (0..n).map(|_| rng.u64(..10)).collect();
            let worst = rng.usize(..n);
            backends.in_flight[worst] = 100;
            let p2c = TwoChoices::new(&vec![1; n]);
            assert_eq!(pick_counts(&p2c, &backends, 200)[worst], 0);
        }
    }

    #[test]
    fn weighs_the_load() {
        let mut backends = TestBackends::idle(2);
        // 6/1 against 9/2: the heavier weight wins despite more in flight.
        backends.in_flight = vec![5, 8];
        let p2c = TwoChoices::new(&[1, 2]);
        assert_eq!(pick_counts(&p2c, &backends, 100), [0, 100]);
    }

    #[test]
    fn single_and_sparse_pools() {
        let p2c = TwoChoices::new(&[3]);
        assert_eq!(pick_counts(&p2c, &TestBackends::idle(1), 10), [10]);
        // One usable backend among many: draws mostly miss, the scan finds it.
        let mut backends = TestBackends::idle(100);
        backends.usable = vec![false; 100];
        backends.usable[73] = true;
        let p2c = TwoChoices::new(&[1; 100]);
        let counts = pick_counts(&p2c, &backends, 500);
        assert_eq!(counts[73], 500);
        backends.usable[73] = false;
        assert_eq!(p2c.pick(&backends, None), None);
        assert_eq!(TwoChoices::new(&[]).pick(&backends, None), None);
    }

    #[test]
    fn idle_equal_backends_share_evenly() {
        fastrand::seed(2);
        let p2c = TwoChoices::new(&[1; 4]);
        let counts = pick_counts(&p2c, &TestBackends::idle(4), 40_000);
        for count in counts {
            assert!((9_000..11_000).contains(&count), "{count}");
        }
    }
}
