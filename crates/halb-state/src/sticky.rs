//! Stick tables: which backend each session key (a client address, a
//! header, a cookie) is tied to, per pool. Bounded (least recently used
//! dropped first), idle entries forgotten after the ttl, and every entry a
//! node learns published for its peers, which apply it last-writer-wins.
//!
//! The data path looks an entry up per request, so the table is split in
//! shards, each behind its own short-held mutex.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

const SHARDS: usize = 16;

/// One entry as it travels between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StickyEntry {
    pub pool: String,
    pub key: String,
    pub backend: SocketAddr,
    /// When the entry was learned (or moved), ms since the Unix epoch: the
    /// later one wins.
    pub at_ms: u64,
    /// The node that learned it.
    pub node: String,
}

struct Slot {
    backend: SocketAddr,
    /// Learned or moved (wall clock, ms): last writer wins.
    changed_ms: u64,
    node: Arc<str>,
    /// Last looked up or learned (wall clock, ms): the ttl runs from it.
    used_ms: u64,
    /// Last published to the peers, so an entry in use is refreshed on
    /// them before their copy expires.
    sent_ms: u64,
    seq: u64,
}

#[derive(Default)]
struct Shard {
    map: HashMap<String, Slot>,
    /// Use order: oldest first.
    order: BTreeMap<u64, String>,
    seq: u64,
}

impl Shard {
    fn touch(&mut self, key: &str, now_ms: u64) {
        self.seq += 1;
        let seq = self.seq;
        if let Some(slot) = self.map.get_mut(key) {
            // The key's text moves from its old place in the use order to
            // the new one: no allocation per lookup.
            let text = self
                .order
                .remove(&slot.seq)
                .unwrap_or_else(|| key.to_owned());
            slot.seq = seq;
            slot.used_ms = now_ms;
            self.order.insert(seq, text);
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some(slot) = self.map.remove(key) {
            self.order.remove(&slot.seq);
        }
    }

    fn insert(&mut self, key: String, slot: Slot) {
        self.remove(&key);
        self.seq += 1;
        let seq = self.seq;
        self.order.insert(seq, key.clone());
        self.map.insert(key, Slot { seq, ..slot });
    }

    /// Drops expired entries and, past `limit`, the least recently used.
    fn trim(&mut self, limit: usize, now_ms: u64, ttl_ms: u64) -> u64 {
        let mut dropped = 0;
        while let Some((&seq, key)) = self.order.first_key_value() {
            let expired = self
                .map
                .get(key)
                .is_none_or(|s| now_ms.saturating_sub(s.used_ms) > ttl_ms);
            if !expired && self.map.len() <= limit {
                break;
            }
            let key = key.clone();
            self.order.remove(&seq);
            self.map.remove(&key);
            dropped += 1;
        }
        dropped
    }
}

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub backend: SocketAddr,
    /// The entry is in use here and its peers' copies are due a refresh.
    pub refresh: bool,
}

/// One pool's stick table.
pub struct StickyTable {
    pool: Arc<str>,
    node: Arc<str>,
    ttl_ms: u64,
    shard_limit: usize,
    shards: Vec<Mutex<Shard>>,
    hasher: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for StickyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StickyTable")
            .field("pool", &self.pool)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl StickyTable {
    /// A table for `pool` on node `node`: entries idle for `ttl_ms` are
    /// forgotten, and at most about `size` are kept.
    pub fn new(pool: &str, node: &str, ttl_ms: u64, size: usize) -> StickyTable {
        StickyTable {
            pool: pool.into(),
            node: node.into(),
            ttl_ms,
            shard_limit: size.div_ceil(SHARDS).max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: Default::default(),
        }
    }

    /// Whether the table was made with these settings.
    pub fn has_settings(&self, ttl_ms: u64, size: usize) -> bool {
        self.ttl_ms == ttl_ms && self.shard_limit == size.div_ceil(SHARDS).max(1)
    }

    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[self.hasher.hash_one(key) as usize % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The backend `key` is tied to, if the entry is live; the lookup
    /// counts as use.
    pub fn get(&self, key: &str, now_ms: u64) -> Option<Found> {
        let mut shard = self.shard(key);
        let slot = shard.map.get_mut(key)?;
        if now_ms.saturating_sub(slot.used_ms) > self.ttl_ms {
            shard.remove(key);
            return None;
        }
        let backend = slot.backend;
        let refresh = now_ms.saturating_sub(slot.sent_ms) > self.ttl_ms / 4;
        if refresh {
            slot.sent_ms = now_ms;
        }
        shard.touch(key, now_ms);
        Some(Found { backend, refresh })
    }

    /// Ties `key` to `backend` here; returns the entry to publish when it
    /// is new or moved.
    pub fn learn(&self, key: &str, backend: SocketAddr, now_ms: u64) -> Option<StickyEntry> {
        let mut shard = self.shard(key);
        if let Some(slot) = shard.map.get(key) {
            if slot.backend == backend {
                shard.touch(key, now_ms);
                return None;
            }
        }
        shard.insert(
            key.to_owned(),
            Slot {
                backend,
                changed_ms: now_ms,
                node: self.node.clone(),
                used_ms: now_ms,
                sent_ms: now_ms,
                seq: 0,
            },
        );
        let limit = self.shard_limit;
        shard.trim(limit, now_ms, self.ttl_ms);
        Some(self.entry(key, backend, now_ms, &self.node))
    }

    fn entry(&self, key: &str, backend: SocketAddr, at_ms: u64, node: &str) -> StickyEntry {
        StickyEntry {
            pool: self.pool.to_string(),
            key: key.to_owned(),
            backend,
            at_ms,
            node: node.to_owned(),
        }
    }

    /// The entry for `key` as peers should have it.
    pub fn entry_of(&self, key: &str) -> Option<StickyEntry> {
        let shard = self.shard(key);
        let slot = shard.map.get(key)?;
        Some(self.entry(key, slot.backend, slot.changed_ms, &slot.node))
    }

    /// Applies an entry a peer learned: it wins unless this node's entry
    /// for the key changed later (ties: the greater node name wins, the
    /// same on every node). Returns whether it was applied.
    pub fn apply(&self, entry: &StickyEntry, now_ms: u64) -> bool {
        let mut shard = self.shard(&entry.key);
        if let Some(slot) = shard.map.get(&entry.key) {
            let mine = (slot.changed_ms, &*slot.node);
            if mine >= (entry.at_ms, entry.node.as_str()) {
                if slot.backend == entry.backend {
                    shard.touch(&entry.key, now_ms);
                }
                return false;
            }
        }
        shard.insert(
            entry.key.clone(),
            Slot {
                backend: entry.backend,
                changed_ms: entry.at_ms,
                node: entry.node.as_str().into(),
                used_ms: now_ms,
                sent_ms: now_ms,
                seq: 0,
            },
        );
        let limit = self.shard_limit;
        shard.trim(limit, now_ms, self.ttl_ms);
        true
    }

    /// Every live entry, for a peer's full resync.
    pub fn entries(&self, now_ms: u64) -> Vec<StickyEntry> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            shard.trim(self.shard_limit, now_ms, self.ttl_ms);
            out.extend(
                shard
                    .map
                    .iter()
                    .map(|(k, s)| self.entry(k, s.backend, s.changed_ms, &s.node)),
            );
        }
        out
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).map.len())
            .sum()
    }

    /// Whether the table holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn learns_looks_up_and_expires() {
        let t = StickyTable::new("app", "lb1", 1000, 100);
        assert!(t.learn("u1", addr(1), 10_000).is_some());
        assert!(
            t.learn("u1", addr(1), 10_001).is_none(),
            "unchanged: nothing to send"
        );
        assert_eq!(t.get("u1", 10_500).map(|f| f.backend), Some(addr(1)));
        // Used at 10 500: still live at 11 400, gone after 11 500.
        assert!(t.get("u1", 11_400).is_some());
        assert!(t.get("u1", 12_500).is_none());
        assert!(t.is_empty());
    }

    #[test]
    fn the_least_recently_used_go_first() {
        let t = StickyTable::new("app", "lb1", 60_000, SHARDS);
        for i in 0..(SHARDS * 40) {
            t.learn(&format!("k{i}"), addr(1), 1000 + i as u64);
        }
        assert!(t.len() <= SHARDS, "{} entries", t.len());
        assert!(t.get(&format!("k{}", SHARDS * 40 - 1), 5000).is_some());
    }

    #[test]
    fn the_later_entry_wins_on_every_node() {
        let a = StickyTable::new("app", "lb1", 60_000, 100);
        let b = StickyTable::new("app", "lb2", 60_000, 100);
        let from_a = a.learn("u", addr(1), 1000).unwrap();
        let from_b = b.learn("u", addr(2), 1001).unwrap();
        assert!(a.apply(&from_b, 1002), "b's is later");
        assert!(!b.apply(&from_a, 1002), "a's is older");
        assert_eq!(a.get("u", 1003).unwrap().backend, addr(2));
        assert_eq!(b.get("u", 1003).unwrap().backend, addr(2));
        assert_eq!(a.entries(1003).len(), 1);
    }
}
