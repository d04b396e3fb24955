//! `weighted_round_robin`: nginx's smooth weighted round robin, computed
//! once when the balancer is built, then replayed with an atomic cursor.
//!
//! nginx runs the algorithm live under a lock: on every pick each backend's
//! `current` grows by its weight, the largest `current` wins (the first in
//! pool order on a tie) and loses the total weight. The outcome depends only
//! on the weights and repeats every `sum(weights)` picks, so computing that
//! cycle up front gives the same order with no lock and no shared mutable
//! state beyond one ticket counter.

use crate::cursor::Cursor;
use crate::gcd;
use crate::{BackendSet, Balancer};

/// Longest cycle kept in memory, in entries of 4 bytes (256 KiB). Weights
/// are first divided by their greatest common divisor; a pool whose reduced
/// weights still sum to more is scaled down proportionally: each scaled
/// weight is rounded down by less than 1 and kept at least 1, e.g. under
/// 0.2 % of a backend's share for 100 backends of equal weight.
const MAX_CYCLE: u64 = 1 << 16;

/// How many cycle entries a pick looks through for a usable backend before
/// it falls back to a scan in pool order. Bounds the cost of a pick when
/// most of the cycle belongs to backends that are down.
const SEARCH_WINDOW: usize = 32;

/// Weighted rotation in nginx's smooth order: weights 5, 1, 1 give
/// `a a b a c a a` in every cycle, spreading each backend's turns instead
/// of sending them in bursts. Exact across threads: over any whole number
/// of cycles with every backend usable, each backend gets exactly its
/// (gcd-reduced) weight per cycle.
///
/// When the backend whose turn it is cannot be used, its turn is skipped
/// (the pick takes the next ticket, 32 at most, then the next usable
/// backend in pool order), so the usable backends share a down backend's
/// traffic exactly by their weights. Backends of weight 0 are never picked.
#[derive(Debug)]
pub struct SmoothWeighted {
    /// One cycle of picks, as backend indices.
    cycle: Box<[u32]>,
    /// Backends with a nonzero weight, in pool order, for the fallback scan.
    members: Box<[u32]>,
    cursor: Cursor,
}

impl SmoothWeighted {
    /// Precomputes the cycle for `weights` (pool order). Cost: one pass over
    /// the weighted backends per cycle entry, about 5 ms for 100 backends
    /// of weights up to 1000 and 20 ms for 300; it is paid once per pool
    /// snapshot, not per pick.
    pub fn new(weights: &[u32]) -> Self {
        let members: Vec<u32> = (0..weights.len())
            .filter(|&i| weights[i] > 0)
            .map(|i| u32::try_from(i).expect("fewer than 2^32 backends"))
            .collect();
        let reduced = reduce(members.iter().map(|&i| u64::from(weights[i as usize])));
        Self {
            cycle: smooth_cycle(&members, &reduced).into(),
            members: members.into(),
            cursor: Cursor::default(),
        }
    }

    /// Length of one cycle: the sum of the (reduced) weights.
    pub fn cycle_len(&self) -> usize {
        self.cycle.len()
    }
}

impl Balancer for SmoothWeighted {
    fn pick(&self, backends: &dyn BackendSet, _key: Option<u64>) -> Option<usize> {
        let cycle = &self.cycle[..];
        if cycle.is_empty() {
            return None;
        }
        let len = backends.len();
        let usable = |i: u32| (i as usize) < len && backends.usable(i as usize);
        // A turn that cannot be used is skipped by taking the next ticket,
        // so the usable backends keep their exact weight ratio.
        let mut turn = 0;
        for _ in 0..SEARCH_WINDOW {
            turn = self.cursor.next(cycle.len());
            if usable(cycle[turn]) {
                return Some(cycle[turn] as usize);
            }
        }
        let owner = self.members.partition_point(|&i| i <= cycle[turn]);
        let (before, after) = self.members.split_at(owner);
        after
            .iter()
            .chain(before)
            .copied()
            .find(|&i| usable(i))
            .map(|i| i as usize)
    }
}

/// Divides the weights by their gcd, then scales them down if they still
/// sum to more than [`MAX_CYCLE`].
fn reduce(weights: impl Iterator<Item = u64>) -> Vec<u64> {
    let weights: Vec<u64> = weights.collect();
    let divisor = weights.iter().copied().fold(0, gcd).max(1);
    let mut reduced: Vec<u64> = weights.iter().map(|w| w / divisor).collect();
    let sum: u64 = reduced.iter().sum();
    if sum > MAX_CYCLE {
        for w in &mut reduced {
            *w = (*w * MAX_CYCLE / sum).max(1);
        }
        let divisor = reduced.iter().copied().fold(0, gcd).max(1);
        reduced.iter_mut().for_each(|w| *w /= divisor);
    }
    reduced
}

/// One cycle of nginx's smooth weighted round robin over `members` with
/// the given nonzero `weights`.
fn smooth_cycle(members: &[u32], weights: &[u64]) -> Vec<u32> {
    let total: u64 = weights.iter().sum();
    let weights: Vec<i64> = weights.iter().map(|&w| w as i64).collect();
    let mut current = vec![0i64; weights.len()];
    let mut cycle = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        let mut best_current = i64::MIN;
        for (k, (current, weight)) in current.iter_mut().zip(&weights).enumerate() {
            *current += weight;
            // Strictly greater: on a tie the first in pool order wins, as in nginx.
            if *current > best_current {
                best = k;
                best_current = *current;
            }
        }
        current[best] -= total as i64;
        cycle.push(members[best]);
    }
    cycle
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{pick_counts, pick_counts_concurrently, picks, TestBackends};

    #[test]
    fn follows_nginx_order() {
        let backends = TestBackends::idle(3);
        let wrr = SmoothWeighted::new(&[5, 1, 1]);
        let (a, b, c) = (0, 1, 2);
        let cycle = [a, a, b, a, c, a, a];
        assert_eq!(picks(&wrr, &backends, 7), cycle);
        assert_eq!(picks(&wrr, &backends, 7), cycle);
    }

    #[test]
    fn reduces_weights_by_their_gcd() {
        let wrr = SmoothWeighted::new(&[500, 100, 100]);
        assert_eq!(wrr.cycle_len(), 7);
        assert_eq!(
            picks(&wrr, &TestBackends::idle(3), 7),
            [0, 0, 1, 0, 2, 0, 0]
        );
    }

    #[test]
    fn exact_counts_over_many_cycles() {
        let backends = TestBackends::idle(3);
        let wrr = SmoothWeighted::new(&[5, 1, 1]);
        assert_eq!(pick_counts(&wrr, &backends, 7 * 1000), [5000, 1000, 1000]);
    }

    /// Random weights (fixed seeds): every cycle gives each backend exactly
    /// its reduced weight, and no backend of weight 0.
    #[test]
    fn each_backend_gets_its_weight_per_cycle() {
        for seed in 0..200 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let n = rng.usize(1..20);
            let weights: Vec<u32> = (0..n)
                .map(|_| {
                    if rng.u8(..5) == 0 {
                        0
                    } else {
                        rng.u32(1..=1000)
                    }
                })
                .collect();
            let wrr = SmoothWeighted::new(&weights);
            let divisor = weights
                .iter()
                .fold(0u32, |a, &w| gcd(a.into(), w.into()) as u32);
            let cycle_len: u32 = weights.iter().map(|w| w / divisor.max(1)).sum();
            assert_eq!(
                wrr.cycle_len(),
                cycle_len as usize,
                "seed {seed} {weights:?}"
            );
            let backends = TestBackends::idle(n);
            for _ in 0..2 {
                let counts = pick_counts(&wrr, &backends, cycle_len as usize);
                let expected: Vec<u64> = weights
                    .iter()
                    .map(|&w| u64::from(w / divisor.max(1)))
                    .collect();
                assert_eq!(counts, expected, "seed {seed} weights {weights:?}");
            }
        }
    }

    #[test]
    fn spreads_turns_smoothly() {
        // Weights 3:1 must never give the light backend two turns in a row,
        // nor the heavy one more than 3.
        let wrr = SmoothWeighted::new(&[3, 1]);
        let order = picks(&wrr, &TestBackends::idle(2), 40);
        assert!(order.windows(2).all(|w| w != [1, 1]), "{order:?}");
        assert!(order.windows(4).all(|w| w != [0, 0, 0, 0]), "{order:?}");
    }

    #[test]
    fn an_unusable_backends_turns_are_skipped_and_the_others_keep_their_ratio() {
        let mut backends = TestBackends::idle(3);
        backends.usable[1] = false;
        let wrr = SmoothWeighted::new(&[5, 1, 1]);
        // a a b a c a a with b down: b's turn is skipped, not given to a.
        assert_eq!(picks(&wrr, &backends, 6), [0, 0, 0, 2, 0, 0]);
        let counts = picks(&wrr, &backends, 600)
            .iter()
            .fold([0; 3], |mut c, &i| {
                c[i] += 1;
                c
            });
        assert_eq!(counts, [500, 0, 100], "exactly 5:1 between the usable ones");
        backends.usable[0] = false;
        assert_eq!(picks(&wrr, &backends, 7), [2; 7]);
    }

    #[test]
    fn falls_back_to_pool_order_beyond_the_search_window() {
        // Backend 0 holds 1000 of 1001 entries; with it down, a pick that
        // lands far from backend 1's single entry still finds backend 1.
        let mut backends = TestBackends::idle(2);
        backends.usable[0] = false;
        let wrr = SmoothWeighted::new(&[1000, 1]);
        assert_eq!(pick_counts(&wrr, &backends, 2002), [0, 2002]);
    }

    #[test]
    fn huge_cycles_are_scaled_down_proportionally() {
        // Coprime weights near 1000 over 300 backends sum to ~300 000.
        let weights: Vec<u32> = (0..300).map(|i| 1000 - i).collect();
        let wrr = SmoothWeighted::new(&weights);
        assert!(wrr.cycle_len() as u64 <= MAX_CYCLE + 300);
        let counts = pick_counts(&wrr, &TestBackends::idle(300), wrr.cycle_len());
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        for (i, (&count, &w)) in counts.iter().zip(&weights).enumerate() {
            let share = count as f64 / wrr.cycle_len() as f64;
            let expected = f64::from(w) / total as f64;
            assert!((share / expected - 1.0).abs() < 0.01, "backend {i}");
        }
    }

    #[test]
    fn zero_weights_and_nothing_usable_give_none() {
        let backends = TestBackends::idle(2);
        assert_eq!(SmoothWeighted::new(&[0, 0]).pick(&backends, None), None);
        assert_eq!(SmoothWeighted::new(&[]).pick(&backends, None), None);
        let mut down = TestBackends::idle(2);
        down.usable = vec![false, false];
        assert_eq!(SmoothWeighted::new(&[1, 2]).pick(&down, None), None);
        let wrr = SmoothWeighted::new(&[0, 3]);
        assert_eq!(pick_counts(&wrr, &backends, 30), [0, 30]);
    }

    #[test]
    fn exact_across_threads() {
        let backends = TestBackends::idle(3);
        let wrr = SmoothWeighted::new(&[5, 1, 1]);
        let counts = pick_counts_concurrently(&wrr, &backends, 4, 7 * 5_000);
        assert_eq!(counts, [100_000, 20_000, 20_000]);
    }
}
