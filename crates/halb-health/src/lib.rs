//! Backend health for halb: what the data path needs to know, on every
//! pick and without a lock, about whether a backend should get traffic.
//!
//! - [`Checker`]: one backend's active check (TCP connect or HTTP), with
//!   rise/fall ([`RiseFall`]) and jitter; its verdicts are changes applied
//!   through [`halb_state::State`], where each backend's health lives.
//!   Database checks (`postgres`, `redis`) log in with the real client
//!   protocol and pass only while the server has the pool's `role`.
//! - [`OutlierDetector`]: passive detection from real traffic.
//! - [`RetryBudget`]: how many retries a pool may spend.

mod checker;
mod db;
mod outlier;
mod probe;
mod retry_budget;
mod rise_fall;

pub use checker::Checker;
pub use halb_state::clock;
pub use halb_state::{AdminState, BackendHealth, CheckMetrics, CheckState, ServingState};
pub use outlier::OutlierDetector;
pub use probe::{probe, CheckFailure};
pub use retry_budget::RetryBudget;
pub use rise_fall::{RiseFall, Verdict};
