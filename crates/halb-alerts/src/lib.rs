//! Alerts for halb: operators' webhooks are told, with a JSON POST, when a
//! backend goes down or comes back, when a pool has no usable backend left
//! or gets one again, and when a config reload is rejected.
//!
//! Alerting must never slow traffic down, so [`Alerter::send`] only stamps
//! the alert and pushes it onto a bounded queue; it never waits and never
//! fails. A background task fans each alert out to one worker per webhook,
//! and each worker delivers in order with its own timeout and retries, so a
//! slow or dead webhook delays only itself.
//!
//! ```text
//! send() ──try_send──▶ [queue 1024] ──▶ fan-out ──▶ [queue per webhook] ──▶ POST, retry with backoff
//! ```
//!
//! - [`Alert`]: what happened, and its [`Severity`].
//! - [`Alerter`]: the sending side; [`AlertStats`] counts what became of
//!   the alerts (delivered, failed, dropped).

mod alert;
mod alerter;
mod delivery;
mod webhook;

pub use alert::{Alert, Severity};
pub use alerter::{AlertStats, Alerter, QUEUE_CAPACITY, WEBHOOK_QUEUE_CAPACITY};
