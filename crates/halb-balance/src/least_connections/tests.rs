//! Tests of least connections: the ranking against its definition, ties,
//! weights, and what a pick reads and asks.

use super::keys::CHUNK;
use super::*;
use crate::test_support::{pick_counts, picks, TestBackends, WithCounters};

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
    // The same with the loads read in place.
    let counters = WithCounters::new(&backends);
    let picks: Vec<_> = (0..8).map(|_| lc.pick(&counters, None)).collect();
    assert_eq!(picks, [0, 2, 2, 3, 0, 2, 2, 3].map(Some));
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
/// least `(load + 1) / weight`, loads capped at `MAX_LOAD`, fractions
/// compared in 128 bits.
fn reference(backends: &TestBackends, weights: &[u32], start: usize) -> Option<usize> {
    let n = weights.len();
    let rank = |i: usize| {
        (
            u128::from(backends.in_flight[i].min(MAX_LOAD)) + 1,
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

/// Loads a scan of keys must not take for small ones: past the largest
/// exact key load, past 32 bits (a multiplier's width), at the cap, past
/// 52 and 63 bits, and a counter decremented below zero.
const HUGE_LOADS: [u64; 11] = [
    1 << 28,
    (1 << 32) - 1,
    1 << 32,
    (1 << 32) + 1,
    MAX_LOAD,
    MAX_LOAD + 1,
    1 << 52,
    (1 << 53) + 2,
    1 << 62,
    1 << 63,
    u64::MAX,
];

/// The three ways to rank the same weights: by keys, by scaled loads
/// one backend at a time, by cross-multiplication.
fn rankings(weights: &[u32]) -> [LeastConnections; 3] {
    let keyed = LeastConnections::new(weights);
    let Rank::Scaled {
        scales,
        floor,
        keys,
    } = &keyed.rank
    else {
        panic!("weights {weights:?} rank by cross-multiplication");
    };
    assert!(keys.is_some(), "weights {weights:?} have no keys");
    let scaled = LeastConnections {
        rank: Rank::Scaled {
            scales: scales.clone(),
            floor: *floor,
            keys: None,
        },
        cursor: Cursor::default(),
        modulus: Modulus::new(weights.len()),
    };
    let crossed = LeastConnections {
        rank: Rank::CrossMultiplied {
            weights: weights.iter().map(|&w| u64::from(w)).collect(),
            max_weight: weights.iter().copied().max().map_or(0, u64::from),
        },
        cursor: Cursor::default(),
        modulus: Modulus::new(weights.len()),
    };
    [keyed, scaled, crossed]
}

/// Every ranking picks exactly what the definition says, in pools of
/// one chunk and of several, with loads too large for keys and with
/// least loaded backends that are not usable, whether it copies the loads
/// or reads them in place.
#[test]
fn every_ranking_matches_the_definition() {
    assert!(matches!(
        LeastConnections::new(&[997, 991, 983, 977, 971]).rank,
        Rank::CrossMultiplied { .. }
    ));
    for seed in 0..200 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let n = if seed % 4 == 0 {
            rng.usize(1..300)
        } else {
            rng.usize(1..40)
        };
        let weights: Vec<u32> = (0..n).map(|_| rng.u32(0..12)).collect();
        let mut backends = TestBackends::random(&mut rng, n);
        // Few distinct loads, so that ties are common; now and then, or
        // everywhere, loads too large for keys, some beyond the cap or
        // beyond what 32, 52 or 63 bits hold.
        let huge = if seed % 5 == 1 { 1 << 31 } else { 0 };
        for load in &mut backends.in_flight {
            *load = match rng.u8(..50) {
                0 => (1 << 31) + *load % 4,
                1 => HUGE_LOADS[rng.usize(..HUGE_LOADS.len())],
                _ => huge + *load % 4,
            };
        }
        if seed % 3 == 0 {
            backends.usable = vec![true; n];
        }
        let counters = WithCounters::new(&backends);
        for lc in rankings(&weights) {
            // 2n picks each: the next view starts where the first did.
            for set in [&backends as &dyn BackendSet, &counters] {
                for turn in 0..2 * n {
                    let expected = reference(&backends, &weights, turn % n);
                    assert_eq!(lc.pick(set, None), expected, "seed {seed}");
                }
            }
        }
    }
}

/// A huge load ranks as capped wherever it sits in a scan of keys: in the
/// pairs of four, in a last pair, or last on its own; alone, or with
/// every other load huge too.
#[test]
fn huge_loads_rank_as_capped_in_every_place() {
    let mut rng = fastrand::Rng::with_seed(9);
    for n in 1..=12 {
        let weights: Vec<u32> = (0..n).map(|_| rng.u32(1..5)).collect();
        let lc = LeastConnections::new(&weights);
        assert!(matches!(lc.rank, Rank::Scaled { keys: Some(_), .. }));
        for place in 0..n {
            for (which, &huge) in HUGE_LOADS.iter().enumerate() {
                let mut backends = TestBackends::idle(n);
                backends.in_flight = (0..n).map(|_| rng.u64(..3)).collect();
                if which % 2 == 1 {
                    backends.in_flight = vec![HUGE_LOADS[which - 1]; n];
                }
                backends.in_flight[place] = huge;
                let counters = WithCounters::new(&backends);
                for set in [&backends as &dyn BackendSet, &counters] {
                    for turn in 0..n {
                        let expected = reference(&backends, &weights, turn);
                        let loads = &backends.in_flight;
                        assert_eq!(lc.pick(set, None), expected, "{loads:?} {weights:?}");
                    }
                }
            }
        }
    }
}

/// Keys of loads of four billion would not be exact (they would exceed
/// 2^53); such a pool ranks without keys, exactly.
#[test]
fn loads_too_large_for_keys_rank_exactly() {
    let mut rng = fastrand::Rng::with_seed(7);
    let weights: Vec<u32> = [7, 9, 11, 13, 16].into_iter().cycle().take(200).collect();
    let mut backends = TestBackends::idle(200);
    backends.in_flight = (0..200).map(|_| MAX_LOAD - rng.u64(1..20)).collect();
    let lc = LeastConnections::new(&weights);
    assert!(matches!(lc.rank, Rank::Scaled { keys: Some(_), .. }));
    let counters = WithCounters::new(&backends);
    for turn in 0..400 {
        let expected = reference(&backends, &weights, turn % 200);
        let set: &dyn BackendSet = if turn < 200 { &backends } else { &counters };
        assert_eq!(lc.pick(set, None), expected, "turn {turn}");
    }
}

#[test]
fn weights_with_a_large_lcm_rank_without_keys() {
    // lcm = 65536 * 65535, below 2^32, but not once shifted for positions.
    let lc = LeastConnections::new(&[1 << 16, (1 << 16) - 1]);
    assert!(matches!(lc.rank, Rank::Scaled { keys: None, .. }));
    let mut backends = TestBackends::idle(2);
    // 65536 / 65536 < 65536 / 65535.
    backends.in_flight = vec![65535, 65535];
    assert_eq!(picks(&lc, &backends, 2), [0, 0]);
    // 65537 / 65536 > 65535 / 65535.
    backends.in_flight = vec![65536, 65534];
    assert_eq!(picks(&lc, &backends, 2), [1, 1]);
}

/// Records how often a pick asks whether each backend is usable.
struct AskCounting<'a>(&'a dyn BackendSet, std::cell::RefCell<Vec<u32>>);

impl BackendSet for AskCounting<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn usable(&self, index: usize) -> bool {
        self.1.borrow_mut()[index] += 1;
        self.0.usable(index)
    }
    fn in_flight(&self, index: usize) -> u64 {
        self.0.in_flight(index)
    }
    fn in_flight_slice(&self) -> Option<&[std::sync::atomic::AtomicU64]> {
        self.0.in_flight_slice()
    }
}

/// A pick asks about a backend at most once, so that a usability drawn
/// at random (slow start) is drawn once.
#[test]
fn asks_whether_a_backend_is_usable_at_most_once_per_pick() {
    for seed in 0..100 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let n = rng.usize(1..200);
        let weights: Vec<u32> = (0..n).map(|_| rng.u32(0..6)).collect();
        let mut backends = TestBackends::random(&mut rng, n);
        if seed % 2 == 0 {
            backends.in_flight[rng.usize(..n)] = 1 << 30;
        }
        let counters = WithCounters::new(&backends);
        for lc in rankings(&weights) {
            for set in [&backends as &dyn BackendSet, &counters] {
                for _ in 0..n {
                    let asked = AskCounting(set, vec![0; n].into());
                    lc.pick(&asked, None);
                    let asked = asked.1.into_inner();
                    assert!(asked.iter().all(|&count| count <= 1), "{asked:?}");
                }
            }
        }
    }
}

/// Reads its loads while picking from another pool, as a set whose
/// reads pick would.
struct PickingInside<'a> {
    outer: &'a TestBackends,
    inner: &'a TestBackends,
    balancer: &'a LeastConnections,
    picked: std::cell::Cell<Option<Option<usize>>>,
}

impl BackendSet for PickingInside<'_> {
    fn len(&self) -> usize {
        self.outer.len()
    }
    fn usable(&self, index: usize) -> bool {
        self.outer.usable(index)
    }
    fn in_flight(&self, index: usize) -> u64 {
        self.outer.in_flight(index)
    }
    fn in_flight_range(&self, first: usize, out: &mut [u64]) {
        self.picked.set(Some(self.balancer.pick(self.inner, None)));
        for (index, load) in (first..).zip(out) {
            *load = self.outer.in_flight(index);
        }
    }
}

#[test]
fn a_pick_may_run_inside_another() {
    let mut rng = fastrand::Rng::with_seed(3);
    let mut outer = TestBackends::idle(50);
    let mut inner = TestBackends::idle(30);
    outer.in_flight = (0..50).map(|_| rng.u64(1..9)).collect();
    inner.in_flight = (0..30).map(|_| rng.u64(1..9)).collect();
    outer.in_flight[41] = 0;
    inner.in_flight[17] = 0;
    let inner_lc = LeastConnections::new(&[2; 30]);
    let set = PickingInside {
        outer: &outer,
        inner: &inner,
        balancer: &inner_lc,
        picked: None.into(),
    };
    assert_eq!(LeastConnections::new(&[1; 50]).pick(&set, None), Some(41));
    assert_eq!(set.picked.get(), Some(Some(17)));
}

/// Counts the backends a pick reads.
struct Counting<'a>(&'a TestBackends, std::cell::Cell<usize>);

impl BackendSet for Counting<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn usable(&self, index: usize) -> bool {
        self.0.usable(index)
    }
    fn in_flight(&self, index: usize) -> u64 {
        self.1.set(self.1.get() + 1);
        self.0.in_flight(index)
    }
}

#[test]
fn stops_at_an_idle_backend_of_the_largest_weight() {
    let mut backends = TestBackends::idle(1000);
    // Ranked by keys: the first chunk.
    for weights in [vec![3; 1000], vec![997; 1000]] {
        let lc = LeastConnections::new(&weights);
        let counting = Counting(&backends, 0.into());
        assert_eq!(lc.pick(&counting, None), Some(0));
        assert_eq!(counting.1.get(), CHUNK);
    }
    // Ranked one backend at a time (by cross-multiplication here): the
    // first, smaller chunk.
    let weights: Vec<u32> = [997, 991, 983, 977, 971].repeat(200);
    let lc = LeastConnections::new(&weights);
    assert!(matches!(lc.rank, Rank::CrossMultiplied { .. }));
    let counting = Counting(&backends, 0.into());
    assert_eq!(lc.pick(&counting, None), Some(0));
    assert_eq!(counting.1.get(), FIRST_SCAN_CHUNK);
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
