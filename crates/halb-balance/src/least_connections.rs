//! `least_connections`: the usable backend with the fewest requests in
//! flight per unit of weight.

use crate::cursor::Cursor;
use crate::gcd;
use crate::{BackendSet, Balancer, UNUSABLE};

/// Backends read per [`BackendSet::usable_in_flight`] call: 512 bytes of
/// stack, and one dynamic call per 64 backends.
const CHUNK: usize = 64;

/// The first chunk of a pick is smaller, so that a scan that can stop
/// early (an idle backend of the largest weight comes first) reads little.
const FIRST_CHUNK: usize = 16;

/// Loads are capped here for ranking, so that `(load + 1) * scale` and
/// `(load + 1) * weight` fit a `u64` (scales and weights are below 2^32)
/// and stay below [`INELIGIBLE`]. No backend has 4 billion requests in
/// flight; beyond that, loads rank equal.
const MAX_LOAD: u64 = u32::MAX as u64 - 1;

/// The rank of an unusable or weight-0 backend: above every real rank.
const INELIGIBLE: u64 = u64::MAX;

/// Picks the usable backend minimizing `(in_flight + 1) / weight`. The `+ 1`
/// counts the request being placed, so among idle backends the heaviest
/// wins, and a backend of weight 2 carries about twice the requests of one
/// of weight 1 under steady load. The ranking is exact integer arithmetic,
/// no float and no rounding: `(in_flight + 1) * (lcm / weight)`, where `lcm`
/// is the least common multiple of the weights, so one multiply per backend
/// and a plain minimum (equal weights give scale 1); when the weights' lcm
/// is 2^32 or more, cross-multiplication of the two fractions, slower.
///
/// Ties go to the first tied backend from where the scan starts, and the
/// start advances by one on every pick (a shared ticket counter): equal
/// backends take turns instead of the first in pool order taking every
/// tie, which matters most when everything is idle. A backend right after
/// unusable ones also wins the scans that start on them, as in round
/// robin; the load it gains then evens that out.
///
/// A pick reads the pool in chunks through [`BackendSet::usable_in_flight`]
/// and stops as soon as it meets a backend nothing can beat, an idle one of
/// the largest weight (which, met first, also wins every tie): O(1) while
/// such backends are common, as in a lightly loaded pool, and a full O(n)
/// scan under load.
#[derive(Debug)]
pub struct LeastConnections {
    rank: Rank,
    cursor: Cursor,
}

/// How a pick ranks backends, chosen once from the weights.
#[derive(Debug)]
enum Rank {
    /// Rank by `(load + 1) * scale - 1`, `scale = lcm / weight`, or 0 for
    /// weight 0 (which ranks as [`INELIGIBLE`]). `floor` is the best rank
    /// possible, `smallest scale - 1`, or [`INELIGIBLE`] with no weights.
    Scaled { scales: Box<[u64]>, floor: u64 },
    /// Rank by comparing `(load + 1) / weight` fractions by
    /// cross-multiplication: for weights whose lcm is 2^32 or more. An
    /// idle backend of `max_weight` ranks best possible.
    CrossMultiplied {
        weights: Box<[u64]>,
        max_weight: u64,
    },
}

impl LeastConnections {
    /// A balancer over backends with these weights (pool order).
    pub fn new(weights: &[u32]) -> Self {
        let lcm = weights
            .iter()
            .filter(|&&w| w > 0)
            .try_fold(1u64, |lcm, &w| {
                let w = u64::from(w);
                let lcm = lcm / gcd(lcm, w) * w;
                (lcm <= u64::from(u32::MAX)).then_some(lcm)
            });
        let max_weight = weights.iter().copied().max().map_or(0, u64::from);
        let rank = match lcm {
            Some(lcm) => Rank::Scaled {
                scales: weights
                    .iter()
                    .map(|&w| if w == 0 { 0 } else { lcm / u64::from(w) })
                    .collect(),
                floor: lcm
                    .checked_div(max_weight)
                    .map_or(INELIGIBLE, |scale| scale - 1),
            },
            None => Rank::CrossMultiplied {
                weights: weights.iter().map(|&w| u64::from(w)).collect(),
                max_weight,
            },
        };
        Self {
            rank,
            cursor: Cursor::default(),
        }
    }
}

/// Feeds the loads of backends `start..n` then `0..start` to `scan`, one
/// chunk at a time, with the index of each chunk's first backend, until
/// `scan` returns `true`: nothing left can rank better.
#[inline]
fn scan_pool(
    backends: &dyn BackendSet,
    n: usize,
    start: usize,
    mut scan: impl FnMut(usize, &[u64]) -> bool,
) {
    let mut loads = [0u64; CHUNK];
    let mut chunk = FIRST_CHUNK;
    for (from, to) in [(start, n), (0, start)] {
        let mut first = from;
        while first < to {
            let len = (to - first).min(chunk);
            let loads = &mut loads[..len];
            backends.usable_in_flight(first, loads);
            if scan(first, loads) {
                return;
            }
            first += len;
            chunk = CHUNK;
        }
    }
}

/// The least `(load + 1) * scale` so far, and where.
#[derive(Clone, Copy)]
struct BestScaled {
    index: usize,
    rank: u64,
}

impl BestScaled {
    /// Nothing found yet: only [`INELIGIBLE`] ranks are not lower.
    const NONE: BestScaled = BestScaled {
        index: usize::MAX,
        rank: INELIGIBLE,
    };

    /// Considers backends `first..` with these loads and scales. The hot
    /// loop for the usual weights: one multiply and one compare per
    /// backend, and a branch taken only when a new minimum is found (a few
    /// times per scan), so the first of equal backends keeps winning.
    #[inline]
    fn scan(&mut self, first: usize, loads: &[u64], scales: &[u64]) {
        let BestScaled {
            mut index,
            mut rank,
        } = *self;
        for (offset, (&load, &scale)) in loads.iter().zip(scales).enumerate() {
            // Unusable or weight 0: scale 0, and 0 - 1 wraps to INELIGIBLE.
            let scale = if load == UNUSABLE { 0 } else { scale };
            let candidate = ((load.min(MAX_LOAD) + 1) * scale).wrapping_sub(1);
            if candidate < rank {
                index = first + offset;
                rank = candidate;
            }
        }
        *self = BestScaled { index, rank };
    }
}

/// The least loaded candidate so far, as the fraction `load_plus_one / weight`.
#[derive(Clone, Copy)]
struct BestFraction {
    index: usize,
    load_plus_one: u64,
    weight: u64,
}

impl BestFraction {
    /// Weight 0 makes any real candidate compare lower: `x * 0 < 1 * w`.
    const NONE: BestFraction = BestFraction {
        index: usize::MAX,
        load_plus_one: 1,
        weight: 0,
    };

    #[inline]
    fn scan(&mut self, first: usize, loads: &[u64], weights: &[u64]) {
        let BestFraction {
            mut index,
            mut load_plus_one,
            mut weight,
        } = *self;
        for (offset, (&load, &configured)) in loads.iter().zip(weights).enumerate() {
            // An unusable backend counts as weight 0, which never compares lower.
            let candidate_weight = if load == UNUSABLE { 0 } else { configured };
            let candidate = load.min(MAX_LOAD) + 1;
            // candidate / candidate_weight < load_plus_one / weight
            if candidate * weight < load_plus_one * candidate_weight {
                index = first + offset;
                load_plus_one = candidate;
                weight = candidate_weight;
            }
        }
        *self = BestFraction {
            index,
            load_plus_one,
            weight,
        };
    }
}

impl Balancer for LeastConnections {
    fn pick(&self, backends: &dyn BackendSet, _key: Option<u64>) -> Option<usize> {
        match &self.rank {
            Rank::Scaled { scales, floor } => {
                let n = scales.len().min(backends.len());
                if n == 0 {
                    return None;
                }
                let mut best = BestScaled::NONE;
                scan_pool(backends, n, self.cursor.next(n), |first, loads| {
                    best.scan(first, loads, &scales[first..first + loads.len()]);
                    best.rank <= *floor
                });
                (best.rank < INELIGIBLE).then_some(best.index)
            }
            Rank::CrossMultiplied {
                weights,
                max_weight,
            } => {
                let n = weights.len().min(backends.len());
                if n == 0 {
                    return None;
                }
                let mut best = BestFraction::NONE;
                scan_pool(backends, n, self.cursor.next(n), |first, loads| {
                    best.scan(first, loads, &weights[first..first + loads.len()]);
                    best.load_plus_one == 1 && best.weight == *max_weight
                });
                (best.weight > 0).then_some(best.index)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{pick_counts, picks, TestBackends};

    #[test]
    fn picks_the_least_loaded() {
        let mut backends = TestBackends::idle(4);
        backends.in_flight = vec![5, 3, 7, 4];
        let lc = LeastConnections::new(&[1, 1, 1, 1]);
        assert_eq!(picks(&lc, &backends, 8), [1; 8]);
    }

    #[test]
    fn weighs_the_load() {
        let mut backends = TestBackends::idle(3);
        // Per weight, counting the new request: 11/1, 11/4 = 2.75, 5/2 = 2.5.
        backends.in_flight = vec![10, 10, 4];
        let lc = LeastConnections::new(&[1, 4, 2]);
        assert_eq!(picks(&lc, &backends, 4), [2; 4]);
        // 6/2 = 3 > 2.75: now backend 1 is the least loaded per weight.
        backends.in_flight[2] = 5;
        assert_eq!(picks(&lc, &backends, 4), [1; 4]);
    }

    #[test]
    fn idle_heavy_backends_come_first() {
        let backends = TestBackends::idle(3);
        let lc = LeastConnections::new(&[1, 3, 2]);
        assert_eq!(picks(&lc, &backends, 5), [1; 5]);
    }

    #[test]
    fn ties_rotate() {
        let mut backends = TestBackends::idle(4);
        backends.in_flight = vec![2, 9, 2, 2];
        let lc = LeastConnections::new(&[1, 1, 1, 1]);
        let counts = pick_counts(&lc, &backends, 400);
        // Backends 0, 2 and 3 tie, and the first tied one from the scan's
        // start wins: start 0 gives 0, starts 1 and 2 give 2, start 3 gives 3.
        assert_eq!(counts, [100, 0, 200, 100]);
    }

    #[test]
    fn follows_load_as_it_changes() {
        // Placing each pick as a new request keeps equal backends level.
        let mut backends = TestBackends::idle(5);
        let lc = LeastConnections::new(&[1; 5]);
        for _ in 0..100 {
            let i = lc.pick(&backends, None).unwrap();
            backends.in_flight[i] += 1;
        }
        assert_eq!(backends.in_flight, [20; 5]);
        // Weights 1, 2, 3 under accumulating load end up 1 : 2 : 3.
        let mut backends = TestBackends::idle(3);
        let lc = LeastConnections::new(&[1, 2, 3]);
        for _ in 0..600 {
            let i = lc.pick(&backends, None).unwrap();
            backends.in_flight[i] += 1;
        }
        let expected = [100i64, 200, 300];
        for (load, expected) in backends.in_flight.iter().zip(expected) {
            assert!(
                (*load as i64 - expected).abs() <= 1,
                "{:?}",
                backends.in_flight
            );
        }
    }

    #[test]
    fn skips_unusable_and_weight_zero() {
        let mut backends = TestBackends::idle(4);
        backends.in_flight = vec![0, 1, 9, 9];
        backends.usable[1] = false;
        let lc = LeastConnections::new(&[0, 1, 1, 1]);
        // 2 and 3 tie; 2 follows the ineligible 0 and 1, so it also wins
        // the scans that start there (see the type's docs).
        let counts = pick_counts(&lc, &backends, 100);
        assert_eq!(counts, [0, 0, 75, 25]);
        backends.usable = vec![true, false, false, false];
        assert_eq!(lc.pick(&backends, None), None);
    }

    #[test]
    fn scans_pools_larger_than_a_chunk() {
        let mut backends = TestBackends::idle(200);
        backends.in_flight = vec![3; 200];
        backends.in_flight[150] = 2;
        backends.in_flight[10] = 2;
        backends.usable[10] = false;
        let lc = LeastConnections::new(&[1; 200]);
        assert_eq!(picks(&lc, &backends, 300), [150; 300]);
    }

    /// The obvious definition: the first backend from `start` with the
    /// least `(load + 1) / weight`, fractions compared in 128 bits.
    fn reference(backends: &TestBackends, weights: &[u32], start: usize) -> Option<usize> {
        let n = weights.len();
        let rank = |i: usize| {
            (
                u128::from(backends.in_flight[i]) + 1,
                u128::from(weights[i]),
            )
        };
        (start..n)
            .chain(0..start)
            .filter(|&i| backends.usable[i] && weights[i] > 0)
            .fold(None, |best: Option<usize>, i| match best {
                Some(b)
                    if {
                        let ((load_i, w_i), (load_b, w_b)) = (rank(i), rank(b));
                        load_i * w_b >= load_b * w_i
                    } =>
                {
                    Some(b)
                }
                _ => Some(i),
            })
    }

    /// Both rankings pick exactly what the definition says.
    #[test]
    fn both_rankings_match_the_definition() {
        assert!(matches!(
            LeastConnections::new(&[997, 991, 983, 977, 971]).rank,
            Rank::CrossMultiplied { .. }
        ));
        for seed in 0..200 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let n = rng.usize(1..40);
            let weights: Vec<u32> = (0..n).map(|_| rng.u32(0..12)).collect();
            let mut backends = TestBackends::random(&mut rng, n);
            // Few distinct loads, so that ties are common.
            backends.in_flight.iter_mut().for_each(|load| *load %= 4);
            let scaled = LeastConnections::new(&weights);
            assert!(matches!(scaled.rank, Rank::Scaled { .. }));
            let crossed = LeastConnections {
                rank: Rank::CrossMultiplied {
                    weights: weights.iter().map(|&w| u64::from(w)).collect(),
                    max_weight: weights.iter().copied().max().map_or(0, u64::from),
                },
                cursor: Cursor::default(),
            };
            for turn in 0..2 * n {
                let expected = reference(&backends, &weights, turn % n);
                assert_eq!(scaled.pick(&backends, None), expected, "seed {seed}");
                assert_eq!(crossed.pick(&backends, None), expected, "seed {seed}");
            }
        }
    }

    /// Counts the backends a pick reads.
    struct Counting<'a>(&'a TestBackends, std::cell::Cell<usize>);

    impl BackendSet for Counting<'_> {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn usable(&self, index: usize) -> bool {
            self.1.set(self.1.get() + 1);
            self.0.usable(index)
        }
        fn in_flight(&self, index: usize) -> u64 {
            self.0.in_flight(index)
        }
    }

    #[test]
    fn stops_at_an_idle_backend_of_the_largest_weight() {
        let mut backends = TestBackends::idle(1000);
        for weights in [vec![3; 1000], vec![997; 1000]] {
            let lc = LeastConnections::new(&weights);
            let counting = Counting(&backends, 0.into());
            assert_eq!(lc.pick(&counting, None), Some(0));
            assert_eq!(counting.1.get(), FIRST_CHUNK);
        }
        // Busy everywhere but one backend far from the start: a full scan.
        backends.in_flight = vec![1; 1000];
        backends.in_flight[700] = 0;
        let lc = LeastConnections::new(&[1; 1000]);
        let counting = Counting(&backends, 0.into());
        assert_eq!(lc.pick(&counting, None), Some(700));
        assert!(counting.1.get() >= 700, "{}", counting.1.get());
        // An idle backend of a smaller weight does not stop the scan.
        let mut weights = vec![2; 1000];
        weights[0] = 1;
        backends.in_flight = vec![1; 1000];
        backends.in_flight[0] = 0;
        backends.in_flight[999] = 0;
        let lc = LeastConnections::new(&weights);
        assert_eq!(lc.pick(&backends, None), Some(999));
    }

    #[test]
    fn huge_loads_do_not_overflow() {
        let mut backends = TestBackends::idle(3);
        backends.in_flight = vec![u64::MAX - 1, 5_000_000_000, MAX_LOAD - 1];
        // Scaled (equal weights) and cross-multiplied (huge lcm) rankings.
        for weights in [[u32::MAX; 3], [u32::MAX, u32::MAX - 1, u32::MAX]] {
            let lc = LeastConnections::new(&weights);
            assert_eq!(picks(&lc, &backends, 3), [2; 3]);
        }
        // Beyond the cap loads rank equal, and ties rotate.
        backends.in_flight[2] = u64::MAX - 2;
        let lc = LeastConnections::new(&[u32::MAX; 3]);
        assert_eq!(pick_counts(&lc, &backends, 300), [100, 100, 100]);
    }
}
