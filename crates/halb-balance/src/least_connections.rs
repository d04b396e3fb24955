//! `least_connections`: the usable backend with the fewest requests in
//! flight per unit of weight.

mod keys;

use crate::cursor::{Cursor, Modulus};
use crate::gcd;
use crate::{BackendSet, Balancer};
use keys::{KeyPick, Keys};

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
/// of weight 1 under steady load. The ranking is exact, no rounding:
/// `(in_flight + 1) * (lcm / weight)`, where `lcm` is the least common
/// multiple of the weights, so one multiply per backend and a plain
/// minimum (equal weights give scale 1); when the weights' lcm is 2^32 or
/// more, cross-multiplication of the two fractions, slower.
///
/// Ties go to the first tied backend from where the scan starts, and the
/// start advances by one on every pick (a shared ticket counter): equal
/// backends take turns instead of the first in pool order taking every
/// tie, which matters most when everything is idle. A backend right after
/// unusable ones also wins the scans that start on them, as in round
/// robin; the load it gains then evens that out.
///
/// A pick reads the in-flight counts where the set keeps them when it
/// offers them as one slice ([`BackendSet::in_flight_slice`]), else through
/// [`BackendSet::in_flight_range`], up to 128 backends per call, and asks
/// [`BackendSet::usable`] only about a backend that would beat the best so
/// far, usually just the one it returns: checking health and the request's
/// tried set of every backend would cost more than the whole scan.
///
/// For the usual weights and pool sizes (`lcm * n` below 2^32: any weights
/// up to 16 in a pool of up to 4,096 backends, say) the scan has no
/// branch per backend: each backend gets a key, its rank followed by its
/// position counted from the start of the scan, and the least key, found
/// two backends per instruction, names the least rank and, among equal
/// ones, the first backend from the start (see [`keys`]). Only when that
/// backend is not usable, or some backend has 2^28 (268 million) requests
/// in flight, does the pick rank again one backend at a time in scan order.
///
/// A pool larger than 128 backends is read from the part holding the
/// start, and the scan stops as soon as it has met a backend nothing can
/// beat, an idle one of the largest weight, ahead of every backend it
/// would tie with: cheap while such backends are common, as in a lightly
/// loaded pool, and a full O(n) scan under load.
#[derive(Debug)]
pub struct LeastConnections {
    rank: Rank,
    cursor: Cursor,
    /// Reduces tickets to a start in the whole pool, without a division.
    modulus: Modulus,
}

/// How a pick ranks backends, chosen once from the weights.
#[derive(Debug)]
enum Rank {
    /// Rank by `(load + 1) * scale - 1`, `scale = lcm / weight`, or 0 for
    /// weight 0 (which ranks as [`INELIGIBLE`]). `floor` is the best rank
    /// possible, `smallest scale - 1`, or [`INELIGIBLE`] with no weights.
    /// Ranked by [`Keys`] when the lcm and the pool are small enough.
    Scaled {
        scales: Box<[u64]>,
        floor: u64,
        keys: Option<Keys>,
    },
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
            Some(lcm) => {
                let scales: Box<[u64]> = weights
                    .iter()
                    .map(|&w| if w == 0 { 0 } else { lcm / u64::from(w) })
                    .collect();
                Rank::Scaled {
                    keys: Keys::new(&scales, lcm),
                    scales,
                    floor: lcm
                        .checked_div(max_weight)
                        .map_or(INELIGIBLE, |scale| scale - 1),
                }
            }
            None => Rank::CrossMultiplied {
                weights: weights.iter().map(|&w| u64::from(w)).collect(),
                max_weight,
            },
        };
        Self {
            rank,
            cursor: Cursor::default(),
            modulus: Modulus::new(weights.len()),
        }
    }

    /// Where a pick of `n` backends starts: the next ticket, reduced.
    #[inline]
    fn start(&self, n: usize) -> usize {
        if n == self.modulus.n() {
            self.cursor.next_of(&self.modulus)
        } else {
            self.cursor.next(n)
        }
    }
}

/// Backends read per [`BackendSet::in_flight_range`] call when ranking one
/// backend at a time: 512 bytes of stack, and one dynamic call per 64
/// backends.
const SCAN_CHUNK: usize = 64;

/// The first chunk of such a scan is smaller, so that a scan that can stop
/// early (an idle backend of the largest weight comes first) reads little.
const FIRST_SCAN_CHUNK: usize = 16;

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
    let mut loads = [0u64; SCAN_CHUNK];
    let mut chunk = FIRST_SCAN_CHUNK;
    for (from, to) in [(start, n), (0, start)] {
        let mut first = from;
        while first < to {
            let len = (to - first).min(chunk);
            let loads = &mut loads[..len];
            backends.in_flight_range(first, loads);
            if scan(first, loads) {
                return;
            }
            first += len;
            chunk = SCAN_CHUNK;
        }
    }
}

/// The least `(load + 1) * scale - 1` so far, and where.
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

    /// Considers backends `first..` with these loads and scales, except
    /// `unusable`. A backend is asked whether it is usable only if it
    /// would be the new best, so the first of equal backends keeps winning.
    #[inline]
    fn scan(
        &mut self,
        backends: &dyn BackendSet,
        first: usize,
        loads: &[u64],
        scales: &[u64],
        unusable: Option<usize>,
    ) {
        for ((index, &load), &scale) in (first..).zip(loads).zip(scales) {
            // Weight 0: scale 0, and 0 - 1 wraps to INELIGIBLE.
            let rank = ((load.min(MAX_LOAD) + 1) * scale).wrapping_sub(1);
            if rank < self.rank && unusable != Some(index) && backends.usable(index) {
                *self = BestScaled { index, rank };
            }
        }
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

    /// Considers backends `first..` with these loads and weights, asking
    /// whether one is usable only if it would be the new best.
    #[inline]
    fn scan(&mut self, backends: &dyn BackendSet, first: usize, loads: &[u64], weights: &[u64]) {
        for ((index, &load), &weight) in (first..).zip(loads).zip(weights) {
            let load_plus_one = load.min(MAX_LOAD) + 1;
            // load_plus_one / weight < self.load_plus_one / self.weight,
            // never true for weight 0.
            if load_plus_one * self.weight < self.load_plus_one * weight && backends.usable(index) {
                *self = BestFraction {
                    index,
                    load_plus_one,
                    weight,
                };
            }
        }
    }
}

impl Balancer for LeastConnections {
    fn pick(&self, backends: &dyn BackendSet, _key: Option<u64>) -> Option<usize> {
        match &self.rank {
            Rank::Scaled {
                scales,
                floor,
                keys,
            } => {
                // The set's own counters, if it has them for every backend,
                // stand for `len()`, one dynamic call fewer.
                let loads = keys.as_ref().and(backends.in_flight_slice());
                let n = match loads {
                    Some(loads) if loads.len() == scales.len() => loads.len(),
                    _ => scales.len().min(backends.len()),
                };
                if n == 0 {
                    return None;
                }
                let start = self.start(n);
                let mut unusable = None;
                if let Some(keys) = keys.as_ref().filter(|_| n == scales.len()) {
                    match keys.pick(backends, loads, start) {
                        KeyPick::Backend(index) => return Some(index),
                        KeyPick::Nothing => return None,
                        KeyPick::Rescan { unusable: known } => unusable = known,
                    }
                }
                let mut best = BestScaled::NONE;
                scan_pool(backends, n, start, |first, loads| {
                    let scales = &scales[first..first + loads.len()];
                    best.scan(backends, first, loads, scales, unusable);
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
                scan_pool(backends, n, self.start(n), |first, loads| {
                    let weights = &weights[first..first + loads.len()];
                    best.scan(backends, first, loads, weights);
                    best.load_plus_one == 1 && best.weight == *max_weight
                });
                (best.weight > 0).then_some(best.index)
            }
        }
    }
}

#[cfg(test)]
mod tests;
