//! Load-balancing algorithms for halb. Each algorithm is a pure
//! implementation of [`Balancer`]: no I/O, no locks, only atomics. The data
//! path builds one balancer per pool snapshot (from the backends' weights and
//! identities) and asks it to [`Balancer::pick`] a backend index for each
//! request or connection.
//!
//! What changes per request (which backends are usable right now, how many
//! requests each has in flight, latency) is read through [`BackendSet`], so a
//! balancer never owns live state it would have to lock.
//!
//! | config name            | type                  |
//! |------------------------|-----------------------|
//! | `round_robin`          | [`RoundRobin`]        |
//! | `weighted_round_robin` | [`SmoothWeighted`]    |
//! | `least_connections`    | [`LeastConnections`]  |
//! | `random_two_choices`   | [`TwoChoices`]        |
//! | `peak_ewma`            | [`PeakEwmaBalancer`] (reads [`PeakEwma`] estimates) |
//! | `maglev`               | [`Maglev`] (keys from [`hash_bytes`]) |
//!
//! [`spread`] comes before the pick: which priority level, and which zone
//! of it, a request may go to.
//!
//! Shared rules: constructors take the backends in pool order and a pick
//! returns an index into that order; a pick only returns a backend for which
//! [`BackendSet::usable`] is true, and `None` when there is none; a backend
//! of weight 0 is never picked.

use std::sync::atomic::AtomicU64;

mod cursor;
mod hash;
mod least_connections;
mod maglev;
mod peak_ewma;
mod round_robin;
mod sample;
mod smooth_weighted;
pub mod spread;
mod two_choices;

#[cfg(test)]
mod invariants;
#[cfg(test)]
mod test_support;

pub use hash::{hash_bytes, hash_bytes_with_seed};
pub use least_connections::LeastConnections;
pub use maglev::Maglev;
pub use peak_ewma::{PeakEwma, PeakEwmaBalancer};
pub use round_robin::RoundRobin;
pub use smooth_weighted::SmoothWeighted;
pub use two_choices::TwoChoices;

/// What a balancer may read of a pool's backends at pick time. Indices are
/// `0..len()` in the order the balancer was built with.
pub trait BackendSet {
    /// Number of backends; equals the number the balancer was built with.
    fn len(&self) -> usize;
    /// Whether the pool has no backends at all.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether the backend may receive this request: healthy, not drained,
    /// and not already tried by this request. Balancers may ask only about
    /// the backends they would pick (least connections asks about a backend
    /// only when its load beats the best so far, and once per pick).
    fn usable(&self, index: usize) -> bool;
    /// Requests (HTTP) or connections (TCP) in flight on the backend.
    fn in_flight(&self, index: usize) -> u64;
    /// Peak-EWMA latency estimate in nanoseconds (only `peak_ewma` reads it).
    fn latency_ns(&self, index: usize) -> f64 {
        let _ = index;
        0.0
    }
    /// Writes the in-flight counts of backends `first..first + out.len()`
    /// into `out`, whether or not they are usable.
    ///
    /// Balancers that read the whole pool (least connections) read it in
    /// chunks through this method when the set has no
    /// [`in_flight_slice`](BackendSet::in_flight_slice): one dynamic call per
    /// chunk instead of one per backend, because this default body is
    /// compiled for each implementing type and so calls `in_flight`
    /// statically. Implementors may override it to read a run of backends
    /// without a bounds check each.
    fn in_flight_range(&self, first: usize, out: &mut [u64]) {
        for (index, load) in (first..).zip(out.iter_mut()) {
            *load = self.in_flight(index);
        }
    }
    /// The in-flight counts of the backends, exactly `len()` of them in
    /// order, when the set keeps them in one array of counters (as the
    /// proxy does); `None` when it does not.
    ///
    /// Least connections then ranks the counters where they are: no copy,
    /// and no dynamic call per backend or per chunk.
    fn in_flight_slice(&self) -> Option<&[AtomicU64]> {
        None
    }
}

/// Picks one backend for a request or connection.
pub trait Balancer: Send + Sync {
    /// Pick the index of a usable backend, or `None` when none is usable.
    /// `key` is the request's hash key ([`hash_bytes`] of the client IP,
    /// header, cookie or path) for hashing balancers; others ignore it.
    fn pick(&self, backends: &dyn BackendSet, key: Option<u64>) -> Option<usize>;
}

/// Greatest common divisor, for reducing weights (`gcd(0, w) == w`).
pub(crate) fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
