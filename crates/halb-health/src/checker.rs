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
use tokio::task::JoinHandle;

use crate::backend::{BackendHealth, CheckState};
use crate::events::{EventSink, HealthEvent};
use crate::probe::probe;
use crate::rise_fall::{RiseFall, Verdict};

/// The check tasks of one pool; dropping it stops them.
#[derive(Debug, Default)]
pub struct Checkers {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Checkers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Checkers {
    /// Start checking every backend of a pool. Must run inside a tokio
    /// runtime. Nothing starts when the pool's check kind is `none`.
    pub fn start(
        pool: &str,
        check: &HealthCheck,
        backends: impl IntoIterator<Item = (SocketAddr, Arc<BackendHealth>)>,
        events: EventSink,
    ) -> Checkers {
        if check.kind == HealthCheckKind::None {
            return Checkers::default();
        }
        let backends: Vec<(SocketAddr, Arc<BackendHealth>)> = backends.into_iter().collect();
        let everyone: Arc<[Arc<BackendHealth>]> =
            backends.iter().map(|(_, health)| health.clone()).collect();
        let tasks = backends
            .into_iter()
            .map(|(address, health)| {
                tokio::spawn(check_loop(
                    pool.to_owned(),
                    check.clone(),
                    address,
                    health,
                    everyone.clone(),
                    events.clone(),
                ))
            })
            .collect();
        Checkers { tasks }
    }
}

/// A delay of `interval` ± 10%.
fn jittered(interval: Duration) -> Duration {
    let spread = interval.as_secs_f64() * 0.1;
    Duration::from_secs_f64(
        (interval.as_secs_f64() + (fastrand::f64() * 2.0 - 1.0) * spread).max(0.0),
    )
}

async fn check_loop(
    pool: String,
    check: HealthCheck,
    address: SocketAddr,
    health: Arc<BackendHealth>,
    pool_members: Arc<[Arc<BackendHealth>]>,
    events: EventSink,
) {
    let start = match health.check_state() {
        CheckState::Up => Verdict::Up,
        CheckState::Down | CheckState::Pending => Verdict::Down,
    };
    let mut state = RiseFall::new(start, check.rise, check.fall);
    // Spread the first checks of a pool over a tenth of the interval.
    tokio::time::sleep(check.interval.mul_f64(fastrand::f64() * 0.1)).await;
    loop {
        let started = std::time::Instant::now();
        let result = probe(&check, address).await;
        let took = started.elapsed();
        health.checks.record(result.is_ok(), took);
        let detail = match &result {
            Ok(()) => format!("passed in {took:?}"),
            Err(failure) => format!("failed: {failure}"),
        };
        let mut change = state.record(result.is_ok());
        if change.is_none()
            && result.is_ok()
            && health.check_state() == CheckState::Down
            && !pool_members.iter().any(|member| member.is_in_service())
        {
            state.force_up();
            change = Some(Verdict::Up);
        }
        match change {
            Some(Verdict::Up) => {
                let pool_was_empty = !pool_members.iter().any(|m| m.is_in_service());
                health.set_check_state(CheckState::Up, detail.clone());
                tracing::info!(%pool, backend = %address, check = %detail, "backend is up");
                events(HealthEvent::BackendUp {
                    pool: pool.clone(),
                    backend: address,
                });
                if pool_was_empty && health.is_in_service() {
                    tracing::info!(%pool, "pool has a usable backend again");
                    events(HealthEvent::PoolAvailable { pool: pool.clone() });
                }
            }
            Some(Verdict::Down) => {
                let was_in_service = health.is_in_service();
                health.set_check_state(CheckState::Down, detail.clone());
                tracing::warn!(%pool, backend = %address, check = %detail, "backend is down");
                events(HealthEvent::BackendDown {
                    pool: pool.clone(),
                    backend: address,
                    reason: detail.trim_start_matches("failed: ").to_owned(),
                });
                if was_in_service && !pool_members.iter().any(|m| m.is_in_service()) {
                    tracing::error!(%pool, "pool has no usable backend");
                    events(HealthEvent::PoolUnavailable { pool: pool.clone() });
                }
            }
            None => health.note_check(detail),
        }
        tokio::time::sleep(jittered(check.interval).saturating_sub(took)).await;
    }
}
