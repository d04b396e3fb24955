//! halb's runtime state: what the node knows of every backend, changed in
//! one place.
//!
//! - [`BackendHealth`]: one backend's state in atomics (check verdict,
//!   operator state, ejection, slow-start ramp), read by the data path on
//!   every pick without a lock.
//! - [`State`]: the one writer. Checks, outlier detection, the admin API
//!   and config changes each apply a typed [`Change`] through it; it keeps
//!   the pools' membership, logs each change, and publishes it.
//! - [`Event`]: the stream of applied changes, with wall-clock times, that
//!   alerts, VRRP tracking, the dashboard and peers subscribe to.

pub mod clock;
mod event;
mod fence;
mod health;
mod state;
mod sticky;

pub use event::{clock_to_unix_ms, unix_ms, Event, Origin};
pub use fence::{Fence, FenceWatch};
pub use health::{AdminState, BackendHealth, CheckMetrics, CheckState, ServingState};
pub use state::{Applied, Change, MemberSpec, State, Unknown};
pub use sticky::{Found, StickyEntry, StickyTable};

#[cfg(test)]
mod tests;
