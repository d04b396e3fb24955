//! Ranking a pool by keys: how [`LeastConnections`](super::LeastConnections)
//! scans a pool for the usual weights, two backends per instruction and
//! with no branch per backend.
//!
//! A backend's key is the integer `rank << position_bits | position`: its
//! rank `(in_flight + 1) * scale`, `scale = lcm / weight`, followed by its
//! place in the scan from the pick's start, `(index - start) mod n`. The
//! least key names the least rank and, among equal ranks, the first backend
//! from the start, in one minimum that does not depend on the order in
//! which backends are read.
//!
//! The baseline x86-64 instruction set (SSE2) computes keys two at a time,
//! with `paddq` and `pmuludq` (which multiplies the low 32 bits of each
//! 64-bit lane), but has no 64-bit integer minimum. It has a minimum of two
//! `f64`s, `minpd`, and positive `f64`s order as their bits do; so a key
//! is carried as the `f64` whose bits are those of 2^52 plus the key (a
//! finite positive number for any key below 2^61), and the least of those
//! is the least key. Keys are exact while loads are below
//! [`KEY_LOAD_LIMIT`] and `scale << position_bits` below
//! [`KEY_SCALE_LIMIT`].
//!
//! The loads are read where the [`BackendSet`] keeps them when it offers
//! its counters as one slice ([`BackendSet::in_flight_slice`], as the
//! proxy does): each counter is loaded straight into the key computation.
//! Otherwise they are copied a chunk at a time through
//! [`BackendSet::in_flight_range`] into a per-thread scratch first.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::BackendSet;

/// Backends ranked per chunk, and read per [`BackendSet::in_flight_range`]
/// call when the loads are copied: a pool of up to 128 backends is one
/// chunk.
pub(super) const CHUNK: usize = 128;

/// Keys are exact while every load of a chunk is below this and every
/// `scale << position_bits` below [`KEY_SCALE_LIMIT`]: a key is then below
/// `2^28 * 2^32 = 2^60`. A chunk with a larger load, 268 million requests
/// in flight, makes the pick rank again without keys.
const KEY_LOAD_LIMIT: u64 = 1 << 28;

/// See [`KEY_LOAD_LIMIT`]. Weights whose lcm is below `2^32 / n` are ranked
/// by keys: any weights up to 16 in a pool of up to 4,096 backends, say.
const KEY_SCALE_LIMIT: u64 = 1 << 32;

/// What a backend of weight 0 (or the padding of a pair) adds to its load,
/// and its key scale: its key, at least `2^31 * 2^29`, is then above the
/// key of every backend that can be picked, and below 2^61 while its load
/// is below [`KEY_LOAD_LIMIT`].
const INELIGIBLE_OFFSET: u64 = 1 << 31;

/// See [`INELIGIBLE_OFFSET`].
const INELIGIBLE_KEY_SCALE: u64 = 1 << 29;

/// The least key of a backend that cannot be picked.
const INELIGIBLE_KEY: u64 = INELIGIBLE_OFFSET * INELIGIBLE_KEY_SCALE;

/// The bits of 2^52 as an `f64`: plus a key below 2^61, the bits of a
/// finite positive `f64`, and a larger key gives a larger `f64`.
const TWO_POW_52_BITS: u64 = 0x4330_0000_0000_0000;

/// Two 64-bit lanes aligned as one SSE2 register, so that the compiler can
/// read them as the operand of the instruction that uses them.
#[derive(Clone, Copy, Debug)]
#[repr(align(16))]
struct Pair([u64; 2]);

/// What a pick needs to rank a pool of `n` backends by keys.
#[derive(Debug)]
pub(super) struct Keys {
    /// What each backend adds to its load before the multiplication, two
    /// at a time (the last pair padded): 1, or [`INELIGIBLE_OFFSET`] for
    /// weight 0 and the padding.
    offsets: Box<[Pair]>,
    /// `scale << position_bits` of each backend, or
    /// [`INELIGIBLE_KEY_SCALE`], like `offsets`.
    key_scales: Box<[Pair]>,
    /// The bits of 2^52 plus `j mod n`, for `j` in `0..2n + 2`, two at a
    /// time from an even `j` (`[0]`) and from an odd one (`[1]`): from
    /// `n - start`, the position of each backend in the scan from `start`,
    /// in pool order and aligned.
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

/// A backend's in-flight count as a pick reads it: from the set's own
/// counter, or from a copy of it.
trait Load {
    fn get(&self) -> u64;
}

impl Load for AtomicU64 {
    #[inline(always)]
    fn get(&self) -> u64 {
        self.load(Relaxed)
    }
}

impl Load for u64 {
    #[inline(always)]
    fn get(&self) -> u64 {
        *self
    }
}

/// Loads of one chunk, copied.
struct Scratch([u64; CHUNK]);

thread_local! {
    /// A chunk of loads per thread, so that a pick does not zero 1 KiB of
    /// stack first (no safe Rust leaves an array uninitialized).
    static SCRATCH: RefCell<Scratch> = const { RefCell::new(Scratch([0; CHUNK])) };
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
        let eligible = |index: usize| scales.get(index).is_some_and(|&scale| scale > 0);
        let offset = |index: usize| match eligible(index) {
            true => 1,
            false => INELIGIBLE_OFFSET,
        };
        let key_scale = |index: usize| match eligible(index) {
            true => scales[index] << position_bits,
            false => INELIGIBLE_KEY_SCALE,
        };
        let by_pairs = |lane: &dyn Fn(usize) -> u64| {
            (0..n.div_ceil(2))
                .map(|pair| Pair([lane(2 * pair), lane(2 * pair + 1)]))
                .collect()
        };
        let position = |j: usize| TWO_POW_52_BITS + (j % n.max(1)) as u64;
        Some(Keys {
            offsets: by_pairs(&offset),
            key_scales: by_pairs(&key_scale),
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
    /// `start`, reading the loads in place when `loads` holds the counters
    /// of all `n`.
    #[inline]
    pub(super) fn pick(
        &self,
        backends: &dyn BackendSet,
        loads: Option<&[AtomicU64]>,
        start: usize,
    ) -> KeyPick {
        let n = self.len();
        let offset = n - start;
        let positions = &self.positions[offset % 2][offset / 2..];
        let least = match loads {
            Some(loads) if loads.len() == n => self.least_key_of_pool(start, |first, len| {
                self.least_key(&loads[first..][..len], first, positions)
            }),
            _ => self.least_key_copied(backends, start, positions),
        };
        let Some(key) = least else {
            return KeyPick::Rescan { unusable: None };
        };
        if bits(key) >= INELIGIBLE_KEY {
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

    /// The least key of the pool, its loads copied chunk by chunk into a
    /// per-thread scratch.
    #[inline(never)]
    fn least_key_copied(
        &self,
        backends: &dyn BackendSet,
        start: usize,
        positions: &[Pair],
    ) -> Option<f64> {
        SCRATCH.with(|scratch| {
            let (mut borrowed, mut fresh);
            let scratch = match scratch.try_borrow_mut() {
                Ok(scratch) => {
                    borrowed = scratch;
                    &mut *borrowed
                }
                // A pick further up the stack is using it (a BackendSet
                // that picks).
                Err(_) => {
                    fresh = Scratch([0; CHUNK]);
                    &mut fresh
                }
            };
            self.least_key_of_pool(start, |first, len| {
                let loads = &mut scratch.0[..len];
                backends.in_flight_range(first, loads);
                self.least_key(loads, first, positions)
            })
        })
    }

    /// The number of backends the keys were made for.
    #[inline(always)]
    fn len(&self) -> usize {
        self.positions[0].len() - 1
    }

    /// A key's position: the backend's place in the scan from the start.
    #[inline(always)]
    fn position(&self, key: f64) -> usize {
        (bits(key) & ((1 << self.position_bits) - 1)) as usize
    }

    /// The least key of the pool, from the least keys of its chunks
    /// (`chunk_key(first, len)`, `None` if a load is too large for exact
    /// keys): one chunk for a pool of up to [`CHUNK`] backends.
    #[inline(always)]
    fn least_key_of_pool(
        &self,
        start: usize,
        chunk_key: impl FnMut(usize, usize) -> Option<f64>,
    ) -> Option<f64> {
        let n = self.len();
        if n <= CHUNK {
            let mut chunk_key = chunk_key;
            chunk_key(0, n)
        } else {
            self.least_key_by_chunks(start, chunk_key)
        }
    }

    /// The least key of a pool of several chunks, read from the chunk
    /// holding `start`, or `None` if a load is too large for exact keys.
    /// Stops at a backend of the least rank possible that comes, from the
    /// start, before every backend not yet read (the next chunk's first
    /// one comes first of those).
    #[inline(never)]
    fn least_key_by_chunks(
        &self,
        start: usize,
        mut chunk_key: impl FnMut(usize, usize) -> Option<f64>,
    ) -> Option<f64> {
        let n = self.len();
        let chunks = n.div_ceil(CHUNK);
        let first_chunk = start / CHUNK;
        let mut least = f64::INFINITY;
        for chunk in (first_chunk..chunks).chain(0..first_chunk) {
            let first = chunk * CHUNK;
            let len = (n - first).min(CHUNK);
            least = smaller(least, chunk_key(first, len)?);
            let next = match first + CHUNK {
                next if next >= n => n - start,
                next if next >= start => next - start,
                next => next + n - start,
            };
            if bits(least) < INELIGIBLE_KEY
                && bits(least) >> self.position_bits <= self.floor
                && self.position(least) < next
            {
                break;
            }
        }
        Some(least)
    }

    /// The least key of backends `first..first + loads.len()` (`first`
    /// even) from `positions` (the keys' positions for the pick's start),
    /// or `None` if a load is too large for exact keys.
    #[inline(always)]
    fn least_key(&self, loads: &[impl Load], first: usize, positions: &[Pair]) -> Option<f64> {
        let pairs = loads.len().div_ceil(2);
        let (key, any_load) = least_key(
            loads,
            &self.offsets[first / 2..][..pairs],
            &self.key_scales[first / 2..][..pairs],
            &positions[first / 2..][..pairs],
        );
        (any_load < KEY_LOAD_LIMIT).then_some(key)
    }
}

/// A key as an integer.
#[inline(always)]
fn bits(key: f64) -> u64 {
    key.to_bits().wrapping_sub(TWO_POW_52_BITS)
}

/// The smaller of two keys, as one `minsd`/`minpd` (no key is NaN while
/// its load is below [`KEY_LOAD_LIMIT`], and a chunk with a larger one is
/// not ranked by keys). A running minimum goes first: the instruction then
/// writes it in place.
#[inline(always)]
fn smaller(a: f64, b: f64) -> f64 {
    if a < b {
        a
    } else {
        b
    }
}

/// A backend's key as an `f64`, from its load, offset, key scale and
/// position (with the bits of 2^52): exact for a load below
/// [`KEY_LOAD_LIMIT`]. Both factors are taken below 2^32, one `pmuludq`.
#[inline(always)]
fn key(load: u64, offset: u64, key_scale: u64, position: u64) -> f64 {
    const LOW: u64 = 0xFFFF_FFFF;
    let rank = (load.wrapping_add(offset) & LOW) * (key_scale & LOW);
    f64::from_bits(rank.wrapping_add(position))
}

/// The least [`key`] of a chunk, and the bitwise or of its loads (the keys
/// are exact if that is below [`KEY_LOAD_LIMIT`]). `offsets`, `key_scales`
/// and `positions` hold a pair for each two loads, the last one padded if
/// the count is odd. Two pairs of independent minimums, so that each pair
/// stays in a vector register and no minimum waits on the one before;
/// each load goes into its key where it is read.
#[inline(always)]
fn least_key(
    loads: &[impl Load],
    offsets: &[Pair],
    key_scales: &[Pair],
    positions: &[Pair],
) -> (f64, u64) {
    let (mut low, mut high) = ([f64::INFINITY; 2], [f64::INFINITY; 2]);
    let mut any_load = 0;
    let quads = loads.chunks_exact(4);
    let rest = quads.remainder();
    let done = 2 * quads.len();
    let pair_quads = offsets
        .chunks_exact(2)
        .zip(key_scales.chunks_exact(2))
        .zip(positions.chunks_exact(2));
    for (loads, ((offsets, key_scales), positions)) in quads.zip(pair_quads) {
        let loads = [
            [loads[0].get(), loads[1].get()],
            [loads[2].get(), loads[3].get()],
        ];
        any_load |= loads[0][0] | loads[0][1] | loads[1][0] | loads[1][1];
        // Whole pairs, read as aligned operands.
        let [low_offsets, high_offsets] = [offsets[0].0, offsets[1].0];
        let [low_scales, high_scales] = [key_scales[0].0, key_scales[1].0];
        let [low_positions, high_positions] = [positions[0].0, positions[1].0];
        for lane in 0..2 {
            let key = key(
                loads[0][lane],
                low_offsets[lane],
                low_scales[lane],
                low_positions[lane],
            );
            low[lane] = smaller(low[lane], key);
        }
        for lane in 0..2 {
            let key = key(
                loads[1][lane],
                high_offsets[lane],
                high_scales[lane],
                high_positions[lane],
            );
            high[lane] = smaller(high[lane], key);
        }
    }
    // One to three loads left: a pair, whose second lane may be padding
    // (load 0), and perhaps one more.
    let (offsets, key_scales, positions) =
        (&offsets[done..], &key_scales[done..], &positions[done..]);
    if let [first, rest @ ..] = rest {
        let loads = [first.get(), rest.first().map_or(0, Load::get)];
        any_load |= loads[0] | loads[1];
        for lane in 0..2 {
            let key = key(
                loads[lane],
                offsets[0].0[lane],
                key_scales[0].0[lane],
                positions[0].0[lane],
            );
            low[lane] = smaller(low[lane], key);
        }
        if let [_, third] = rest {
            let load = third.get();
            any_load |= load;
            let key = key(load, offsets[1].0[0], key_scales[1].0[0], positions[1].0[0]);
            high[0] = smaller(high[0], key);
        }
    }
    (
        smaller(smaller(low[0], high[0]), smaller(low[1], high[1])),
        any_load,
    )
}
