//! Priority levels and zones: which part of a pool a request may go to
//! before a balancer picks inside it.
//!
//! The semantics are Envoy's priority levels and zone-aware routing, with
//! the overprovisioning factor written as a percentage (`overflow`): a
//! group of backends (a level, or the local zone of a level) whose healthy
//! weight is at least `overflow` % of its configured weight counts as whole
//! and takes all the traffic offered to it; below that it takes the share
//! `healthy / (total × overflow %)`, and the surplus moves on: to the next
//! level, or to the other zones of the same level.
//!
//! Shares are computed once per change of health ([`Plan::new`]), in
//! integer parts of [`SCALE`]; a request then costs one ticket from a shared
//! counter and a few comparisons ([`Plan::choose`]). The draws are a
//! two-dimensional Kronecker sequence over the tickets, so over any run of
//! `n` requests each level and zone gets its share to within a few requests,
//! deterministically (no randomness); a request with a hash key draws from
//! its key instead, so the same key lands in the same group while the
//! shares stay the same.

use crate::cursor::Cursor;

/// Shares are integers in parts of `SCALE` (2^20, about one in a million).
pub const SCALE: u32 = 1 << 20;
const BITS: u32 = 20;

/// Healthy and configured weight of a group of backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capacity {
    /// Weight of the backends that may take traffic now.
    pub healthy: u64,
    /// Weight of every backend of the group (weight 0 ones add nothing).
    pub total: u64,
}

impl Capacity {
    /// The group's health as Envoy counts it, in parts of [`SCALE`]:
    /// `healthy / total` scaled up by `100 / overflow` and capped at whole.
    /// `overflow` is a percentage in `1..=100`.
    pub fn health(&self, overflow: u32) -> u32 {
        if self.total == 0 || self.healthy == 0 {
            return 0;
        }
        let overflow = u128::from(overflow.clamp(1, 100));
        let scaled = u128::from(self.healthy) * 100 * u128::from(SCALE)
            / (u128::from(self.total) * overflow);
        scaled.min(u128::from(SCALE)) as u32
    }

    /// Whether the group has at least `overflow` % of its weight healthy.
    pub fn is_whole(&self, overflow: u32) -> bool {
        self.health(overflow) == SCALE
    }
}

/// The share of traffic each level takes (levels in priority order), in
/// parts of [`SCALE`]. The first level takes its health; each next level
/// takes its health out of what is left, until nothing is. When the health
/// of all the levels adds up to less than whole, the shares are scaled up
/// in proportion so that they add up to [`SCALE`] (Envoy's normalised
/// total health). All zeros when no level has a healthy backend.
pub fn level_shares(levels: &[Capacity], overflow: u32) -> Vec<u32> {
    let health: Vec<u64> = levels
        .iter()
        .map(|l| u64::from(l.health(overflow)))
        .collect();
    let sum: u64 = health.iter().sum();
    if sum == 0 {
        return vec![0; levels.len()];
    }
    let budget = u64::from(SCALE);
    let scaled: Vec<u64> = if sum >= budget {
        health
    } else {
        health.iter().map(|h| h * budget / sum).collect()
    };
    let mut left = budget;
    let mut shares: Vec<u32> = scaled
        .iter()
        .map(|&h| {
            let share = h.min(left);
            left -= share;
            share as u32
        })
        .collect();
    // Rounding of the scaled shares: the rest goes to the first level
    // that serves, so that the shares add up to exactly SCALE.
    if left > 0 {
        if let Some(first) = shares.iter_mut().find(|s| **s > 0) {
            *first += left as u32;
        }
    }
    shares
}

/// The share of a level's traffic that stays in the local zone, in parts
/// of [`SCALE`]: all of it while the local zone is whole (or no other zone
/// has a healthy backend), none when the level has no healthy local
/// backend, else the local zone's health; the rest goes to the other zones
/// of the level, in proportion to what the balancer gives each of them.
pub fn local_share(local: Capacity, remote: Capacity, overflow: u32) -> u32 {
    if local.healthy == 0 {
        return 0;
    }
    if remote.healthy == 0 {
        return SCALE;
    }
    local.health(overflow)
}

/// Where a request goes inside the pool: a level, and whether it must stay
/// in the local zone, leave it, or may go anywhere in the level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// Index into the levels the [`Plan`] was made with.
    pub level: usize,
    pub locality: Locality,
}

/// Which backends of a level a request may go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locality {
    /// Any backend of the level (no zones in play).
    Any,
    /// Only the level's backends in the node's zone.
    Local,
    /// Only the level's backends in other zones (or without a zone).
    Remote,
}

/// One level's capacities as a [`Plan`] needs them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LevelCapacity {
    /// Backends in the node's zone (all zeros when the node has no zone).
    pub local: Capacity,
    /// The level's other backends.
    pub remote: Capacity,
}

impl LevelCapacity {
    /// The whole level.
    pub fn all(&self) -> Capacity {
        Capacity {
            healthy: self.local.healthy + self.remote.healthy,
            total: self.local.total + self.remote.total,
        }
    }
}

/// The shares of one pool's levels and zones for its current health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Per level: the running sum of the level shares up to and including
    /// it, and the local share inside it (`None`: zones not in play).
    levels: Vec<(u32, Option<u32>)>,
    shares: Vec<u32>,
}

impl Plan {
    /// The plan for levels with these capacities (in priority order).
    /// `zoned`: the node has a zone, so the levels' local shares apply.
    pub fn new(levels: &[LevelCapacity], overflow: u32, zoned: bool) -> Plan {
        let all: Vec<Capacity> = levels.iter().map(LevelCapacity::all).collect();
        let shares = level_shares(&all, overflow);
        let mut sum = 0u32;
        let levels = (levels.iter().zip(&shares))
            .map(|(level, &share)| {
                sum += share;
                let local = (zoned && level.local.total > 0 && level.remote.total > 0)
                    .then(|| local_share(level.local, level.remote, overflow));
                (sum, local)
            })
            .collect();
        Plan { levels, shares }
    }

    /// Each level's share of the traffic, in parts of [`SCALE`].
    pub fn level_shares(&self) -> &[u32] {
        &self.shares
    }

    /// Each level's local-zone share (`None` where zones are not in play).
    pub fn local_shares(&self) -> impl Iterator<Item = Option<u32>> + '_ {
        self.levels.iter().map(|(_, local)| *local)
    }

    /// Where a request with draws `(level, zone)` (each in `0..SCALE`)
    /// goes; `None` when no level has a healthy backend.
    #[inline]
    pub fn choose(&self, draw: Draw) -> Option<Choice> {
        let level = self.levels.iter().position(|(sum, _)| draw.level < *sum)?;
        let locality = match self.levels[level].1 {
            None => Locality::Any,
            Some(local) if draw.zone < local => Locality::Local,
            Some(_) => Locality::Remote,
        };
        Some(Choice { level, locality })
    }
}

/// Two numbers in `0..SCALE`: one places a request among the levels, the
/// other among the zones of its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draw {
    pub level: u32,
    pub zone: u32,
}

/// 2^64 / golden ratio and 2^64 × (√2 − 1): the two irrational steps of the
/// Kronecker sequence, each well spread on its own and together.
const STEP_LEVEL: u64 = 0x9E37_79B9_7F4A_7C15;
const STEP_ZONE: u64 = 0x6A09_E667_F3BC_C909;

/// The draws of a pool's requests: a ticket counter shared by every worker.
#[derive(Debug, Default)]
pub struct Draws {
    ticket: Cursor,
}

impl Draws {
    /// The next request's draws: from its hash key when it has one (the
    /// same key, the same draws), else from the next ticket.
    #[inline]
    pub fn next(&self, key: Option<u64>) -> Draw {
        let (level, zone) = match key {
            Some(key) => (key, key.rotate_left(32).wrapping_mul(STEP_ZONE)),
            None => {
                let ticket = self.ticket.ticket() as u64;
                (
                    ticket.wrapping_mul(STEP_LEVEL),
                    ticket.wrapping_mul(STEP_ZONE),
                )
            }
        };
        Draw {
            level: (level >> (64 - BITS)) as u32,
            zone: (zone >> (64 - BITS)) as u32,
        }
    }
}

#[cfg(test)]
mod tests;
