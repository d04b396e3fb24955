//! One monotonic time base for the whole process, so times can live in
//! atomics as nanoseconds and be compared across threads.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the process's time base (never 0 after the first call
/// returns, so 0 can mean "never").
pub fn now() -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    epoch.elapsed().as_nanos() as u64 + 1
}

/// A duration in the same unit as [`now`].
pub fn nanos(duration: Duration) -> u64 {
    duration.as_nanos().min(u64::MAX as u128) as u64
}

/// The `Instant` of a time from [`now`], for timers.
pub fn instant(nanos: u64) -> Instant {
    *EPOCH.get_or_init(Instant::now) + Duration::from_nanos(nanos.saturating_sub(1))
}
