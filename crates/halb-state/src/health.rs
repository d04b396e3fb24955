//! The health of one backend as every worker sees it: the verdict of active
//! checks, the operator's state (enabled, draining, disabled), passive
//! ejection and the slow-start ramp. All atomics: the data path reads them
//! on every pick without a lock. Only [`State`](crate::State) changes them.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use halb_metrics::{Counter, Histogram};
use tokio::sync::Notify;

use crate::clock;

/// The verdict of active checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CheckState {
    /// Not checked into service yet: no traffic.
    Pending = 0,
    Up = 1,
    Down = 2,
}

/// What the operator set (admin API, reload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AdminState {
    Enabled = 0,
    /// No new traffic; in-flight work finishes up to the drain timeout.
    Draining = 1,
    /// No new traffic (operator override).
    Disabled = 2,
}

impl AdminState {
    /// The word the API, logs and docs use: the state a backend shows.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Enabled => "enabled",
            AdminState::Draining => "draining",
            AdminState::Disabled => "disabled",
        }
    }
}

/// The one state the status API shows, most significant first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServingState {
    Disabled,
    Draining,
    Down,
    Ejected,
    Up,
}

impl ServingState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServingState::Disabled => "disabled",
            ServingState::Draining => "draining",
            ServingState::Down => "down",
            ServingState::Ejected => "ejected",
            ServingState::Up => "up",
        }
    }
}

/// A backend's health, shared by the checker, the workers and the admin API.
#[derive(Debug)]
pub struct BackendHealth {
    check: AtomicU8,
    admin: AtomicU8,
    /// Failures of real traffic in a row.
    failures_in_row: AtomicU32,
    /// Ejected until this time (clock nanos); 0 = never ejected.
    ejected_until: AtomicU64,
    /// Ejections so far, decayed while the backend behaves.
    ejections: AtomicU32,
    ejections_total: AtomicU64,
    /// When the backend last came back into service (clock nanos); 0 = it
    /// has been serving from the start.
    back_since: AtomicU64,
    /// When draining started (clock nanos).
    drain_started: AtomicU64,
    /// Woken when the operator state changes.
    admin_changed: Notify,
    /// Woken when a peer's verdict asks this node to check now.
    check_now: Notify,
    /// State changes of the active check verdict.
    transitions: AtomicU64,
    /// The last check's outcome, for the status API and logs.
    last_check: Mutex<String>,
    /// Active checks run so far, for metrics.
    pub checks: CheckMetrics,
    /// Closes the open connections when the backend is marked down in a
    /// pool with `on_down = "close"`.
    pub fence: crate::Fence,
}

/// Active checks of one backend, for metrics: kept with its health, so a
/// backend rebuilt at reload keeps its counts.
#[derive(Debug, Default)]
pub struct CheckMetrics {
    pub passed: Counter,
    pub failed: Counter,
    /// How long each check took (a timed-out check: about its timeout).
    pub duration: Histogram,
}

impl CheckMetrics {
    /// Count one check and its duration.
    pub fn record(&self, passed: bool, took: Duration) {
        if passed {
            self.passed.inc();
        } else {
            self.failed.inc();
        }
        self.duration.observe(took);
    }
}

impl BackendHealth {
    /// Asks this backend's active checker to check now (a peer saw its
    /// verdict change): the node confirms with its own checks rather than
    /// taking another node's word.
    pub fn request_check(&self) {
        self.check_now.notify_one();
    }

    /// Returns when a check is asked for.
    pub async fn check_requested(&self) {
        self.check_now.notified().await;
    }

    /// `checked`: the pool runs active checks, so the backend starts pending.
    pub fn new(checked: bool) -> Self {
        BackendHealth {
            check: AtomicU8::new(if checked {
                CheckState::Pending as u8
            } else {
                CheckState::Up as u8
            }),
            admin: AtomicU8::new(AdminState::Enabled as u8),
            failures_in_row: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            ejections_total: AtomicU64::new(0),
            back_since: AtomicU64::new(0),
            drain_started: AtomicU64::new(0),
            admin_changed: Notify::new(),
            check_now: Notify::new(),
            transitions: AtomicU64::new(0),
            last_check: Mutex::new(if checked {
                "not checked yet".to_owned()
            } else {
                "no active checks".to_owned()
            }),
            checks: CheckMetrics::default(),
            fence: crate::Fence::default(),
        }
    }

    pub fn check_state(&self) -> CheckState {
        match self.check.load(Relaxed) {
            1 => CheckState::Up,
            2 => CheckState::Down,
            _ => CheckState::Pending,
        }
    }

    pub fn admin_state(&self) -> AdminState {
        match self.admin.load(Relaxed) {
            1 => AdminState::Draining,
            2 => AdminState::Disabled,
            _ => AdminState::Enabled,
        }
    }

    /// Enabled and checked up: may get traffic unless ejected.
    #[inline]
    pub fn is_in_service(&self) -> bool {
        self.admin.load(Relaxed) == AdminState::Enabled as u8
            && self.check.load(Relaxed) == CheckState::Up as u8
    }

    #[inline]
    pub fn is_ejected(&self, now: u64) -> bool {
        self.ejected_until.load(Relaxed) > now
    }

    pub fn ejected_until(&self) -> u64 {
        self.ejected_until.load(Relaxed)
    }

    /// The share of its weight the backend gets now under slow start, in
    /// `0.05..=1.0`.
    #[inline]
    pub fn ramp(&self, now: u64, window: u64) -> f64 {
        let since = self.back_since.load(Relaxed);
        if since == 0 || window == 0 || now >= since + window {
            return 1.0;
        }
        let elapsed = now.saturating_sub(since) as f64 / window as f64;
        elapsed.clamp(0.05, 1.0)
    }

    /// When the backend came back into service (0 = serving from the start).
    pub fn back_since(&self) -> u64 {
        self.back_since.load(Relaxed)
    }

    pub fn serving_state(&self, now: u64) -> ServingState {
        match self.admin_state() {
            AdminState::Disabled => return ServingState::Disabled,
            AdminState::Draining => return ServingState::Draining,
            AdminState::Enabled => {}
        }
        if self.check_state() != CheckState::Up {
            ServingState::Down
        } else if self.is_ejected(now) {
            ServingState::Ejected
        } else {
            ServingState::Up
        }
    }

    /// Set the active check verdict; returns true when it changed.
    pub(crate) fn set_check_state(&self, state: CheckState, detail: String) -> bool {
        *self.last_check.lock().unwrap_or_else(|e| e.into_inner()) = detail;
        let previous = self.check.swap(state as u8, Relaxed);
        if previous == state as u8 {
            return false;
        }
        self.transitions.fetch_add(1, Relaxed);
        if state == CheckState::Up {
            let now = clock::now();
            self.back_since.store(now, Relaxed);
            // A backend that was down and passes its checks again is judged
            // afresh: an ejection earned while it was dying (often before
            // the checks noticed) must not keep it out after it recovered
            // (as Envoy's successful_active_health_check_uneject_host).
            self.failures_in_row.store(0, Relaxed);
            if self.ejected_until.load(Relaxed) > now {
                self.ejected_until.store(now, Relaxed);
            }
        }
        true
    }

    /// Record the latest check's outcome without a state change.
    pub(crate) fn note_check(&self, detail: String) {
        *self.last_check.lock().unwrap_or_else(|e| e.into_inner()) = detail;
    }

    pub fn last_check(&self) -> String {
        self.last_check
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn transitions(&self) -> u64 {
        self.transitions.load(Relaxed)
    }

    /// Set the operator state; returns the previous one.
    pub(crate) fn set_admin_state(&self, state: AdminState) -> AdminState {
        let previous = self.admin.swap(state as u8, Relaxed);
        if state == AdminState::Draining && previous != AdminState::Draining as u8 {
            self.drain_started.store(clock::now(), Relaxed);
        }
        if state == AdminState::Enabled && previous != AdminState::Enabled as u8 {
            self.back_since.store(clock::now(), Relaxed);
        }
        self.admin_changed.notify_waiters();
        match previous {
            1 => AdminState::Draining,
            2 => AdminState::Disabled,
            _ => AdminState::Enabled,
        }
    }

    /// Resolves when the backend has been draining (or disabled after
    /// draining) for `timeout`: long connections to it should close then.
    pub async fn drain_expired(&self, timeout: Duration) {
        loop {
            let changed = self.admin_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.admin_state() == AdminState::Draining {
                let deadline = self.drain_started.load(Relaxed) + clock::nanos(timeout);
                tokio::select! {
                    _ = tokio::time::sleep_until(clock::instant(deadline).into()) => {
                        if self.admin_state() == AdminState::Draining {
                            return;
                        }
                    }
                    _ = &mut changed => {}
                }
            } else {
                changed.await;
            }
        }
    }

    /// A request or connection succeeded on this backend.
    #[inline]
    pub fn record_success(&self) {
        if self.failures_in_row.load(Relaxed) != 0 {
            self.failures_in_row.store(0, Relaxed);
        }
    }

    /// A request or connection failed; returns the failures in a row.
    #[inline]
    pub fn record_failure(&self) -> u32 {
        self.failures_in_row.fetch_add(1, Relaxed) + 1
    }

    /// Eject until `now + base × count` (count decayed by the time since the
    /// last ejection ended, at most `max`). Returns the ejection's length, or
    /// `None` when another thread ejected it first.
    pub(crate) fn eject(&self, now: u64, base: Duration, max: Duration) -> Option<Duration> {
        let previous_until = self.ejected_until.load(Relaxed);
        if previous_until > now {
            return None;
        }
        let base_nanos = clock::nanos(base).max(1);
        let decay = if previous_until == 0 {
            0
        } else {
            ((now - previous_until) / base_nanos) as u32
        };
        let count = self.ejections.load(Relaxed).saturating_sub(decay) + 1;
        let length = base.saturating_mul(count).min(max);
        let until = now + clock::nanos(length);
        if self
            .ejected_until
            .compare_exchange(previous_until, until, Relaxed, Relaxed)
            .is_err()
        {
            return None;
        }
        self.ejections.store(count, Relaxed);
        self.ejections_total.fetch_add(1, Relaxed);
        self.failures_in_row.store(0, Relaxed);
        // Ramp up again from when the ejection ends.
        self.back_since.store(until, Relaxed);
        Some(length)
    }

    pub fn ejections_total(&self) -> u64 {
        self.ejections_total.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checked_backend_starts_pending_and_out_of_service() {
        let health = BackendHealth::new(true);
        assert_eq!(health.check_state(), CheckState::Pending);
        assert!(!health.is_in_service());
        assert_eq!(health.serving_state(clock::now()), ServingState::Down);
        assert!(health.set_check_state(CheckState::Up, "ok".into()));
        assert!(health.is_in_service());
        assert!(!health.set_check_state(CheckState::Up, "ok".into()));
    }

    #[test]
    fn coming_back_up_lifts_an_ejection() {
        let health = BackendHealth::new(true);
        health.set_check_state(CheckState::Up, "ok".into());
        let now = clock::now();
        health.eject(now, Duration::from_secs(30), Duration::from_secs(300));
        health.set_check_state(CheckState::Down, "refused".into());
        assert!(health.is_ejected(clock::now()));
        health.set_check_state(CheckState::Up, "ok".into());
        assert!(!health.is_ejected(clock::now()));
        assert_eq!(health.serving_state(clock::now()), ServingState::Up);
    }

    #[test]
    fn operator_state_wins_over_health() {
        let health = BackendHealth::new(false);
        health.set_admin_state(AdminState::Draining);
        assert_eq!(health.serving_state(clock::now()), ServingState::Draining);
        assert!(!health.is_in_service());
        health.set_admin_state(AdminState::Disabled);
        assert_eq!(health.serving_state(clock::now()), ServingState::Disabled);
        health.set_admin_state(AdminState::Enabled);
        assert!(health.is_in_service());
    }

    #[test]
    fn ejections_grow_with_the_count_and_are_capped() {
        let health = BackendHealth::new(false);
        let base = Duration::from_secs(10);
        let max = Duration::from_secs(25);
        let now = clock::now();
        assert_eq!(health.eject(now, base, max), Some(base));
        assert!(health.is_ejected(now + 1));
        assert_eq!(health.eject(now + 1, base, max), None, "already ejected");
        let after = health.ejected_until();
        // Right after the first ejection ends: the second lasts twice as long.
        assert_eq!(health.eject(after, base, max), Some(base * 2));
        let after = health.ejected_until();
        assert_eq!(health.eject(after, base, max), Some(max));
        // Long good behaviour decays the count back to one.
        let later = health.ejected_until() + clock::nanos(base * 10);
        assert_eq!(health.eject(later, base, max), Some(base));
    }

    #[test]
    fn slow_start_ramps_from_five_percent() {
        let health = BackendHealth::new(true);
        let window = clock::nanos(Duration::from_secs(10));
        assert_eq!(
            health.ramp(clock::now(), window),
            1.0,
            "serving from the start"
        );
        health.set_check_state(CheckState::Up, "ok".into());
        let since = health.back_since();
        assert_eq!(health.ramp(since, window), 0.05);
        assert!((health.ramp(since + window / 2, window) - 0.5).abs() < 1e-9);
        assert_eq!(health.ramp(since + window, window), 1.0);
    }
}
