//! `[pool.sticky]`: session affinity, by a signed cookie (stateless) or by a
//! stick table replicated to the peers.

use std::time::Duration;

use crate::HashKey;

/// The default of `ttl`: an idle entry is forgotten after it.
pub const DEFAULT_STICKY_TTL: Duration = Duration::from_secs(30 * 60);
/// The default of `size`: entries kept per pool before the least recently
/// used go.
pub const DEFAULT_STICKY_SIZE: usize = 1_000_000;
/// The default of `cookie`.
pub const DEFAULT_STICKY_COOKIE: &str = "HALB";

/// `[pool.sticky]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sticky {
    pub kind: StickyKind,
    /// `secret`: signs the cookies; default: `[cluster.peers] secret`, so
    /// that every node of a fleet honours every node's cookies.
    pub secret: Option<String>,
}

/// How a client is tied to its backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyKind {
    /// halb sets cookie `name` naming the backend, signed; nothing is stored.
    Cookie { name: String },
    /// A stick table: `key` → backend, idle entries dropped after `ttl`,
    /// at most `size` entries (least recently used dropped first).
    Table {
        key: HashKey,
        ttl: Duration,
        size: usize,
    },
}
