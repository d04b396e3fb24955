//! Ranking a pool by keys: how [`LeastConnections`](super::LeastConnections)
//! scans a pool for the usual weights, two backends per instruction and
//! with no branch per backend.
//!
//! A backend's key is `rank << position_bits | position`: its rank
//! `(in_flight + 1) * scale`, `scale = lcm / weight`, followed by its place
//! in the scan from the pick's start, `(index - start) mod n`. The least key
//! names the least rank and, among equal ranks, the first backend from the
//! start, in one minimum that does not depend on the order in which
//! backends are read. Keys are computed as `f64`, because that is what the
//! baseline x86-64 instruction set (SSE2) computes two at a time (`mulpd`,
//! `addpd`, `minpd`); it has no 64-bit integer minimum. Every step is exact
//! as long as loads are below [`KEY_LOAD_LIMIT`] and `scale <<
//! position_bits` below [`KEY_SCALE_LIMIT`]: keys are then integers below
//! 2^52, and an `f64` holds every integer up to 2^53.

use std::cell::RefCell;

use crate::BackendSet;

/// Backends read per [`BackendSet::in_flight_range`] call: a pool of up to
/// 128 backends is read with one dynamic call.
pub(super) const CHUNK: usize = 128;

/// Keys are exact while every load of a chunk is below this and every
/// `scale << position_bits` below [`KEY_SCALE_LIMIT`]: `2^20 * 2^32 =
/// 2^52`. A chunk with a larger load, a million requests in flight, makes
/// the pick rank again without keys.
const KEY_LOAD_LIMIT: u64 = 1 << 20;

/// See [`KEY_LOAD_LIMIT`]. Weights whose lcm is below `2^32 / n` are ranked
/// by keys: any weights up to 16 in a pool of up to 4,096 backends, say.
const KEY_SCALE_LIMIT: u64 = 1 << 32;

/// The bits of 2^52 as an `f64`. A load below 2^52 fills its 52 mantissa
/// bits exactly, giving `2^52 + load`: a conversion from `u64` that SSE2
/// does two at a time (it has no `u64` to `f64` conversion).
const TWO_POW_52_BITS: u64 = 0x4330_0000_0000_0000;

/// `2^52 - 1`: subtracted from `2^52 + load`, it leaves `load + 1`.
const TWO_POW_52_LESS_ONE: f64 = 4_503_599_627_370_495.0;

/// 2^52: added to a key (below 2^52), it leaves the key as the mantissa,
/// cheaper to read than by an `f64` to `u64` conversion.
const TWO_POW_52: f64 = 4_503_599_627_370_496.0;

/// Two `f64` aligned as one SSE2 register, so that the compiler can read
/// them as the operand of the instruction that uses them.
#[derive(Clone, Copy, Debug)]
#[repr(align(16))]
struct Pair([f64; 2]);

/// What a pick needs to rank a pool of `n` backends by keys.
#[derive(Debug)]
pub(super) struct Keys {
    /// `scale << position_bits` of each backend, two at a time (the last
    /// pair padded); infinite for weight 0, whose keys are then infinite.
    key_scales: Box<[Pair]>,
    /// `j mod n` for `j` in `0..2n + 2`, two at a time from an even `j`
    /// (`[0]`) and from an odd one (`[1]`): from `n - start`, the position
    /// of each backend in the scan from `start`, in pool order and aligned.
    positions: [Box<[Pair]>; 2],
    /// Bits that hold a position: `2^position_bits >= n`.
    position_bits: u32,
    /// The least rank possible, `(0 + 1) * smallest scale` (an idle
    /// backend of the largest weight), or `u64::MAX` without weights.
    floor: u64,
}

/// The outcome of ranking by keys.
#[derive(Debug)]
pub(super) enum KeyPick {
    /// This backend, usable.
    Backend(usize),
    /// No backend of nonzero weight.
    Nothing,
    /// Rank again one backend at a time: a load is too large for exact
    /// keys, or the least key names a backend that is not usable.
    Rescan { unusable: Option<usize> },
}

/// Loads of one chunk, two at a time.
struct Scratch([[u64; 2]; CHUNK / 2]);

thread_local! {
    /// A chunk of loads per thread, so that a pick does not zero 1 KiB of
    /// stack first (no safe Rust leaves an array uninitialized).
    static SCRATCH: RefCell<Scratch> = const { RefCell::new(Scratch([[0; 2]; CHUNK / 2])) };
}

impl Keys {
    /// Keys for a pool with these scales, the largest being `lcm`, if they
    /// stay exact.
    pub(super) fn new(scales: &[u64], lcm: u64) -> Option<Keys> {
        let n = scales.len();
        let position_bits = n.next_power_of_two().trailing_zeros();
        if lcm >= KEY_SCALE_LIMIT.checked_shr(position_bits).unwrap_or(0) {
            return None;
        }
        let key_scale = |index: usize| match scales.get(index) {
            Some(&scale) if scale > 0 => (scale << position_bits) as f64,
            _ => f64::INFINITY,
        };
        let position = |j: usize| (j % n.max(1)) as f64;
        Some(Keys {
            key_scales: (0..n.div_ceil(2))
                .map(|pair| Pair([key_scale(2 * pair), key_scale(2 * pair + 1)]))
                .collect(),
            positions: [0, 1].map(|odd| {
                (0..=n)
                    .map(|pair| Pair([position(2 * pair + odd), position(2 * pair + odd + 1)]))
                    .collect()
            }),
            position_bits,
            floor: scales
                .iter()
                .filter(|&&scale| scale > 0)
                .min()
                .copied()
                .unwrap_or(u64::MAX),
        })
    }

    /// Ranks the pool (of the `n` backends the keys were made for) from
    /// `start`.
    #[inline]
    pub(super) fn pick(&self, backends: &dyn BackendSet, start: usize) -> KeyPick {
        let n = self.positions[0].len() - 1;
        let offset = n - start;
        let positions = &self.positions[offset % 2][offset / 2..];
        let least = SCRATCH.with(|scratch| {
            let (mut borrowed, mut fresh);
            let scratch = match scratch.try_borrow_mut() {
                Ok(scratch) => {
                    borrowed = scratch;
                    &mut *borrowed
                }
                // A pick further up the stack is using it (a BackendSet
                // that picks).
                Err(_) => {
                    fresh = Scratch([[0; 2]; CHUNK / 2]);
                    &mut fresh
                }
            };
            if n <= CHUNK {
                self.least_key(backends, 0, n, positions, scratch)
            } else {
                self.least_key_by_chunks(backends, start, positions, scratch)
            }
        });
        let Some(key) = least else {
            return KeyPick::Rescan { unusable: None };
        };
        if key == f64::INFINITY {
            return KeyPick::Nothing;
        }
        let index = start + self.position(key);
        let index = if index >= n { index - n } else { index };
        if backends.usable(index) {
            KeyPick::Backend(index)
        } else {
            KeyPick::Rescan {
                unusable: Some(index),
            }
        }
    }

    /// A key's position: the backend's place in the scan from the start.
    #[inline(always)]
    fn position(&self, key: f64) -> usize {
        (bits(key) & ((1 << self.position_bits) - 1)) as usize
    }

    /// The least key of a pool of several chunks, read from the chunk
    /// holding `start`, or `None` if a load is too large for exact keys.
    /// Stops at a backend of the least rank possible that comes, from the
    /// start, before every backend not yet read (the next chunk's first
    /// one comes first of those).
    #[inline(never)]
    fn least_key_by_chunks(
        &self,
        backends: &dyn BackendSet,
        start: usize,
        positions: &[Pair],
        scratch: &mut Scratch,
    ) -> Option<f64> {
        let n = self.positions[0].len() - 1;
        let chunks = n.div_ceil(CHUNK);
        let first_chunk = start / CHUNK;
        let mut least = f64::INFINITY;
        for chunk in (first_chunk..chunks).chain(0..first_chunk) {
            let first = chunk * CHUNK;
            let len = (n - first).min(CHUNK);
            least = smaller(
                self.least_key(backends, first, len, positions, scratch)?,
                least,
            );
            let next = match first + CHUNK {
                next if next >= n => n - start,
                next if next >= start => next - start,
                next => next + n - start,
            };
            if least < f64::INFINITY
                && bits(least) >> self.position_bits <= self.floor
                && self.position(least) < next
            {
                break;
            }
        }
        Some(least)
    }

    /// The least key of backends `first..first + len` (`first` even), or
    /// `None` if a load is too large for exact keys.
    #[inline(always)]
    fn least_key(
        &self,
        backends: &dyn BackendSet,
        first: usize,
        len: usize,
        positions: &[Pair],
        scratch: &mut Scratch,
    ) -> Option<f64> {
        backends.in_flight_range(first, &mut scratch.0.as_flattened_mut()[..len]);
        if len % 2 == 1 {
            // The padding's key scale is infinite; its load only must not
            // fail the check.
            scratch.0[len / 2][1] = 0;
        }
        let pairs = len.div_ceil(2);
        let (key, any_load) = least_key(
            &scratch.0[..pairs],
            &self.key_scales[first / 2..][..pairs],
            &positions[first / 2..][..pairs],
        );
        (any_load < KEY_LOAD_LIMIT).then_some(key)
    }
}

/// A (finite) key as an integer.
#[inline(always)]
fn bits(key: f64) -> u64 {
    (key + TWO_POW_52).to_bits() - TWO_POW_52.to_bits()
}

/// The smaller of two keys, as one `minsd`/`minpd` (no key is NaN: an
/// infinite key scale times a load plus one is infinite, and a load that
/// would make a key NaN fails the check).
#[inline(always)]
fn smaller(a: f64, b: f64) -> f64 {
    if a < b {
        a
    } else {
        b
    }
}

/// `(load + 1) * key_scale + position`: a backend's key, exact for a load
/// below [`KEY_LOAD_LIMIT`].
#[inline(always)]
fn key(load: u64, key_scale: f64, position: f64) -> f64 {
    (f64::from_bits(TWO_POW_52_BITS | load) - TWO_POW_52_LESS_ONE) * key_scale + position
}

/// The least [`key`] of a chunk, and the bitwise or of its loads (the keys
/// are exact if that is below [`KEY_LOAD_LIMIT`]). Two pairs of independent
/// minimums, so that each pair stays in a vector register and no minimum
/// waits on the one before.
#[inline(always)]
fn least_key(loads: &[[u64; 2]], key_scales: &[Pair], positions: &[Pair]) -> (f64, u64) {
    let (mut low, mut high) = ([f64::INFINITY; 2], [f64::INFINITY; 2]);
    let (mut any_low, mut any_high) = ([0; 2], [0; 2]);
    let quads = loads.chunks_exact(2);
    let key_scale_quads = key_scales.chunks_exact(2);
    let position_quads = positions.chunks_exact(2);
    let tail = (quads.remainder().iter())
        .zip(key_scale_quads.remainder())
        .zip(position_quads.remainder());
    for ((loads, key_scales), positions) in quads.zip(key_scale_quads).zip(position_quads) {
        for lane in 0..2 {
            any_low[lane] |= loads[0][lane];
            let key = key(loads[0][lane], key_scales[0].0[lane], positions[0].0[lane]);
            low[lane] = smaller(key, low[lane]);
        }
        for lane in 0..2 {
            any_high[lane] |= loads[1][lane];
            let key = key(loads[1][lane], key_scales[1].0[lane], positions[1].0[lane]);
            high[lane] = smaller(key, high[lane]);
        }
    }
    for ((loads, key_scales), positions) in tail {
        for lane in 0..2 {
            any_low[lane] |= loads[lane];
            let key = key(loads[lane], key_scales.0[lane], positions.0[lane]);
            low[lane] = smaller(key, low[lane]);
        }
    }
    (
        smaller(smaller(low[0], high[0]), smaller(low[1], high[1])),
        any_low[0] | any_low[1] | any_high[0] | any_high[1],
    )
}
