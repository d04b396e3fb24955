//! The active checker: one task per backend that probes it every interval
//! (with ±10% jitter, and a random first delay so a pool's checks do not fire
//! together) and moves its verdict through the rise/fall state machine.
//!
//! One exception to `rise`: when no backend of the pool is in service, the
//! first passing check brings a backend that was down back up at once (a
//! new backend still needs `rise` passes). Any backend beats none,
//! and waiting for `rise` would prolong a total outage.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use halb_config::{HealthCheck, HealthCheckKind};
use halb_state::{BackendHealth, Change, CheckState, Origin, State};
use tokio::task::JoinHandle;

use crate::probe::probe;
use crate::rise_fall::{RiseFall, Verdict};
use halb_tls::SharedBackendTls;

/// The active check of one backend; dropping it stops the check. A pool
/// has one per backend, so a backend that joins or leaves starts or stops
/// its own check and no other.
#[derive(Debug)]
pub struct Checker {
    task: JoinHandle<()>,
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Checker {
    /// Start checking `address` of `pool`; verdicts go through `state`.
    /// Must run inside a tokio runtime. `None` when the pool's check kind
    /// is `none`.
    pub fn start(
        pool: Arc<str>,
        check: &HealthCheck,
        address: SocketAddr,
        health: Arc<BackendHealth>,
        state: Arc<State>,
        tls: Option<SharedBackendTls>,
    ) -> Option<Checker> {
        if check.kind == HealthCheckKind::None {
            return None;
        }
        let task = tokio::spawn(check_loop(pool, check.clone(), address, health, state, tls));
        Some(Checker { task })
    }
}

/// Between the checks that confirm a peer's verdict.
const HINTED_SPACING: Duration = Duration::from_millis(50);

/// A delay of `interval` ± 10%.
fn jittered(interval: Duration) -> Duration {
    let spread = interval.as_secs_f64() * 0.1;
    Duration::from_secs_f64(
        (interval.as_secs_f64() + (fastrand::f64() * 2.0 - 1.0) * spread).max(0.0),
    )
}

async fn check_loop(
    pool: Arc<str>,
    check: HealthCheck,
    address: SocketAddr,
    health: Arc<BackendHealth>,
    state: Arc<State>,
    tls: Option<SharedBackendTls>,
) {
    let start = match health.check_state() {
        CheckState::Up => Verdict::Up,
        CheckState::Down | CheckState::Pending => Verdict::Down,
    };
    let mut rise_fall = RiseFall::new(start, check.rise, check.fall);
    let mut confirming = 0u32;
    // Spread the first checks of a pool over a tenth of the interval.
    tokio::time::sleep(check.interval.mul_f64(fastrand::f64() * 0.1)).await;
    loop {
        let started = std::time::Instant::now();
        let loaded = tls.as_ref().map(|slot| slot.load_full());
        let result = match loaded.as_deref() {
            Some(Err(problem)) => Err(crate::CheckFailure::Tls(problem.to_string())),
            Some(Ok(tls)) => probe(&check, address, Some(tls)).await,
            None => probe(&check, address, None).await,
        };
        let took = started.elapsed();
        health.checks.record(result.is_ok(), took);
        let detail = match &result {
            Ok(()) => format!("passed in {}", crate::probe::round_duration(took)),
            Err(failure) => format!("failed: {failure}"),
        };
        let mut change = rise_fall.record(result.is_ok());
        if change.is_none()
            && result.is_ok()
            && health.check_state() == CheckState::Down
            && !state.pool_in_service(&pool)
        {
            rise_fall.force_up();
            change = Some(Verdict::Up);
        }
        let change = match change {
            Some(verdict) => Change::Verdict {
                up: verdict == Verdict::Up,
                detail,
            },
            None => Change::CheckNoted { detail },
        };
        if state.apply(&pool, address, Origin::Check, change).is_err() {
            // The backend left its pool; this check is about to stop.
            return;
        }
        // After a peer's hint, check again quickly until rise/fall has had
        // its say; otherwise at the interval, or at once on a hint.
        let wait = if confirming > 0 {
            confirming -= 1;
            HINTED_SPACING.min(check.interval)
        } else {
            jittered(check.interval).saturating_sub(took)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = health.check_requested() => {
                confirming = check.rise.max(check.fall);
            }
        }
    }
}
