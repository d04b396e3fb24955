//! Backend health for halb: what the data path needs to know, on every
//! pick and without a lock, about whether a backend should get traffic.
//!
//! - [`BackendHealth`]: one backend's state in atomics: the active-check
//!   verdict, the operator state (drain, disable), passive ejection, and the
//!   slow-start ramp.
//! - [`Checkers`]: the active checks (TCP connect or HTTP), with rise/fall
//!   ([`RiseFall`]) and jitter.
//! - [`OutlierDetector`]: passive detection from real traffic.
//! - [`RetryBudget`]: how many retries a pool may spend.

mod backend;
mod checker;
pub mod clock;
mod events;
mod outlier;
mod probe;
mod retry_budget;
mod rise_fall;

pub use backend::{AdminState, BackendHealth, CheckMetrics, CheckState, ServingState};
pub use checker::Checkers;
pub use events::{no_events, EventSink, HealthEvent};
pub use outlier::OutlierDetector;
pub use probe::{probe, CheckFailure};
pub use retry_budget::RetryBudget;
pub use rise_fall::{RiseFall, Verdict};
