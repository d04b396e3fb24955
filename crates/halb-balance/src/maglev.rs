//! `maglev`: consistent hashing with Google's Maglev lookup table
//! (Eisenbud et al., NSDI 2016), with Envoy's weighted turn-taking.
//!
//! Each backend derives a permutation of the table's slots from two hashes
//! of its identity; backends take turns claiming their next free preferred
//! slot until the table is full. A key maps to `table[key % size]`. Because
//! each backend's preferences depend only on its own identity, adding or
//! removing one backend changes few slots owned by the others, so most keys
//! keep their backend across pool changes, and every process that builds
//! the table from the same backends gets the same one.

use crate::cursor::Cursor;
use crate::{hash_bytes_with_seed, BackendSet, Balancer};

/// Seeds of the two identity hashes (table offset and skip). Part of the
/// table's definition: changing one remaps every key in every deployment.
const OFFSET_SEED: u64 = 0;
const SKIP_SEED: u64 = u64::from_be_bytes(*b"maglev-s");

/// Marks a slot nobody has claimed yet during construction.
const EMPTY: u32 = u32::MAX;

/// How many table slots a pick walks looking for a usable backend before
/// it falls back to a scan in pool order. Bounds the cost of a pick when
/// most backends are down.
const WALK_LIMIT: usize = 64;

/// Consistent hashing: the same key goes to the same backend, as long as
/// that backend is usable, and pool changes move few keys. Used for sticky
/// sessions without shared state (`hash_key` = client IP, header, cookie or
/// path, hashed with [`hash_bytes`](crate::hash_bytes)).
///
/// - The table depends only on the backends' identities (the data path
///   passes each backend's address, e.g. `"127.0.0.1:9001"`), their weights
///   and the table size: two processes, or two halb nodes, build the same
///   table and so agree on every key.
/// - Weights: a backend of weight `w` claims a slot on a fraction
///   `w / max weight` of the turns, so its share of the table (and of keys)
///   is proportional to its weight; weight 0 claims none.
/// - Equal weights give every backend the same number of slots to within
///   one; the paper's tables are within 1 % of even for a table 100 times
///   the pool.
/// - An unusable backend's keys walk forward through the table to the next
///   usable slot: deterministic, spread over the others by their shares,
///   and no other key moves; its keys come back when it does.
/// - A pick with no key steps through the table slot by slot with a shared
///   cursor: a weighted round robin in scrambled order, exact per table
///   cycle.
#[derive(Debug)]
pub struct Maglev {
    /// The backend index owning each slot.
    table: Box<[u32]>,
    /// Backends with a nonzero weight, in pool order, for the fallback scan.
    members: Box<[u32]>,
    cursor: Cursor,
}

impl Maglev {
    /// The paper's smaller table size: a prime, over 100 slots per backend
    /// for pools of up to 655 backends. 256 KiB per pool.
    pub const DEFAULT_TABLE_SIZE: usize = 65537;

    /// Builds the table for backends identified by `ids` with `weights`
    /// (pool order). `table_size` must be prime for every backend's
    /// permutation to visit every slot, so it is rounded up to the next
    /// prime; use at least 100 slots per backend for shares within 1 %.
    /// Cost: about `table_size * ln(table_size)` steps, a few milliseconds
    /// at the default size, paid once per pool snapshot.
    ///
    /// # Panics
    ///
    /// If `ids` and `weights` differ in length, or a pool has 2^32 - 1
    /// backends or more.
    pub fn new(ids: &[&str], weights: &[u32], table_size: usize) -> Self {
        assert_eq!(ids.len(), weights.len(), "one weight per backend id");
        assert!(ids.len() < EMPTY as usize, "fewer than 2^32 - 1 backends");
        let size = next_prime(table_size.max(2));
        let members: Vec<u32> = (0..ids.len())
            .filter(|&i| weights[i] > 0)
            .map(|i| i as u32)
            .collect();
        let table = if members.is_empty() {
            Vec::new()
        } else {
            populate(ids, weights, &members, size)
        };
        Self {
            table: table.into(),
            members: members.into(),
            cursor: Cursor::default(),
        }
    }

    /// Number of slots in the table (a prime), or 0 when no backend has a
    /// nonzero weight.
    pub fn table_size(&self) -> usize {
        self.table.len()
    }

    /// The first usable backend from `slot` on, walking the table, then in
    /// pool order from the slot's owner.
    fn walk_from(&self, slot: usize, backends: &dyn BackendSet) -> Option<usize> {
        let len = backends.len();
        let usable = |i: u32| (i as usize) < len && backends.usable(i as usize);
        let (before, after) = self.table.split_at(slot);
        if let Some(i) = after
            .iter()
            .chain(before)
            .take(WALK_LIMIT)
            .copied()
            .find(|&i| usable(i))
        {
            return Some(i as usize);
        }
        let owner = self.members.partition_point(|&i| i <= self.table[slot]);
        let (before, after) = self.members.split_at(owner);
        after
            .iter()
            .chain(before)
            .copied()
            .find(|&i| usable(i))
            .map(|i| i as usize)
    }

    #[cfg(test)]
    pub(crate) fn table(&self) -> &[u32] {
        &self.table
    }
}

impl Balancer for Maglev {
    fn pick(&self, backends: &dyn BackendSet, key: Option<u64>) -> Option<usize> {
        let size = self.table.len();
        if size == 0 {
            return None;
        }
        let slot = match key {
            Some(key) => (key % size as u64) as usize,
            None => self.cursor.next(size),
        };
        self.walk_from(slot, backends)
    }
}

/// One backend's walk through its permutation of the slots.
struct Preference {
    index: u32,
    weight: u64,
    /// The next slot this backend prefers.
    slot: usize,
    skip: usize,
    /// Turns are skipped until `turn * weight` reaches this.
    target: u64,
}

/// Fills a `size`-slot table (size prime) by the paper's turn-taking, with
/// Envoy's weighting: on turn `t` a backend claims its next free preferred
/// slot only if `t * weight >= target`, and each claim raises its target by
/// the largest weight, so it claims on `weight / max weight` of the turns.
fn populate(ids: &[&str], weights: &[u32], members: &[u32], size: usize) -> Vec<u32> {
    let mut preferences: Vec<Preference> = members
        .iter()
        .map(|&index| {
            let id = ids[index as usize].as_bytes();
            let offset = hash_bytes_with_seed(id, OFFSET_SEED) % size as u64;
            let skip = hash_bytes_with_seed(id, SKIP_SEED) % (size as u64 - 1) + 1;
            Preference {
                index,
                weight: u64::from(weights[index as usize]),
                slot: offset as usize,
                skip: skip as usize,
                target: 0,
            }
        })
        .collect();
    let max_weight = preferences.iter().map(|p| p.weight).max().unwrap_or(1);
    let mut table = vec![EMPTY; size];
    let mut filled = 0;
    for turn in 1u64.. {
        for preference in &mut preferences {
            if turn * preference.weight < preference.target {
                continue;
            }
            preference.target += max_weight;
            // The skip is nonzero and the size prime, so the walk visits
            // every slot and finds a free one while any is left.
            while table[preference.slot] != EMPTY {
                preference.advance(size);
            }
            table[preference.slot] = preference.index;
            preference.advance(size);
            filled += 1;
            if filled == size {
                return table;
            }
        }
    }
    unreachable!("every turn claims at least the heaviest backend's slot")
}

impl Preference {
    fn advance(&mut self, size: usize) {
        self.slot += self.skip;
        if self.slot >= size {
            self.slot -= size;
        }
    }
}

/// The smallest prime `>= n` (`n >= 2`), by trial division: table sizes
/// are small and this runs once per pool snapshot.
fn next_prime(n: usize) -> usize {
    (n..)
        .find(|&k| is_prime(k))
        .expect("a prime above any table size")
}

fn is_prime(n: usize) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d > 0)
}

#[cfg(test)]
mod tests;
