//! Passive outlier detection: real traffic as the health signal. A backend
//! whose requests fail `consecutive_failures` times in a row is ejected for
//! `base_ejection × its ejection count` (at most `max_ejection`), and no
//! more than `max_ejection_percent` of a pool is ejected at once (at least
//! one backend may always be ejected, as in Envoy).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use halb_config::OutlierDetection;

use crate::backend::BackendHealth;
use crate::clock;

/// One pool's outlier detector.
#[derive(Debug)]
pub struct OutlierDetector {
    config: OutlierDetection,
    /// The latest end of any ejection in the pool: when it is past, no
    /// backend is ejected and pickers skip the ejection bookkeeping.
    latest_ejection_end: AtomicU64,
}

impl OutlierDetector {
    pub fn new(config: OutlierDetection) -> Self {
        OutlierDetector {
            config,
            latest_ejection_end: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &OutlierDetection {
        &self.config
    }

    /// Whether a backend of the pool may be ejected at `now`.
    #[inline]
    pub fn any_ejected(&self, now: u64) -> bool {
        self.latest_ejection_end.load(Relaxed) > now
    }

    /// Whether a response with this status counts as a failure.
    #[inline]
    pub fn counts_status(&self, status: u16) -> bool {
        self.config.count_5xx && status >= 500
    }

    /// Record a failure on `backend` (one of `pool`), ejecting it when it
    /// has failed too often in a row and the pool can spare it.
    pub fn on_failure<'a>(
        &self,
        backend: &BackendHealth,
        address: SocketAddr,
        pool: impl Iterator<Item = &'a BackendHealth>,
    ) {
        let threshold = self.config.consecutive_failures;
        if threshold == 0 || backend.record_failure() < threshold {
            return;
        }
        let now = clock::now();
        let (mut total, mut ejected) = (0usize, 0usize);
        for other in pool {
            total += 1;
            if other.is_ejected(now) {
                ejected += 1;
            }
        }
        let percent = self.config.max_ejection_percent as usize;
        let allowed = if percent == 0 {
            0
        } else {
            (total * percent / 100).max(1)
        };
        if ejected >= allowed {
            tracing::warn!(
                backend = %address,
                ejected,
                allowed,
                "backend keeps failing but max_ejection_percent is reached; not ejected"
            );
            return;
        }
        let Some(length) = backend.eject(now, self.config.base_ejection, self.config.max_ejection)
        else {
            return;
        };
        self.latest_ejection_end
            .fetch_max(backend.ejected_until(), Relaxed);
        tracing::warn!(
            backend = %address,
            failures = threshold,
            ejection = ?length,
            "backend ejected by outlier detection"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    pub(super) fn detector(threshold: u32, percent: u32) -> OutlierDetector {
        OutlierDetector::new(OutlierDetection {
            consecutive_failures: threshold,
            base_ejection: Duration::from_secs(30),
            max_ejection_percent: percent,
            max_ejection: Duration::from_secs(300),
            count_5xx: true,
        })
    }

    fn addr() -> SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }

    #[test]
    fn ejects_after_consecutive_failures_only() {
        let pool: Vec<BackendHealth> = (0..4).map(|_| BackendHealth::new(false)).collect();
        let detector = detector(3, 50);
        detector.on_failure(&pool[0], addr(), pool.iter());
        detector.on_failure(&pool[0], addr(), pool.iter());
        pool[0].record_success();
        detector.on_failure(&pool[0], addr(), pool.iter());
        detector.on_failure(&pool[0], addr(), pool.iter());
        assert!(!pool[0].is_ejected(clock::now()), "a success broke the run");
        detector.on_failure(&pool[0], addr(), pool.iter());
        assert!(pool[0].is_ejected(clock::now()));
        assert!(detector.any_ejected(clock::now()));
    }

    #[test]
    fn max_ejection_percent_caps_ejections() {
        let pool: Vec<BackendHealth> = (0..4).map(|_| BackendHealth::new(false)).collect();
        let detector = detector(1, 50);
        for backend in &pool {
            detector.on_failure(backend, addr(), pool.iter());
        }
        let now = clock::now();
        assert_eq!(pool.iter().filter(|b| b.is_ejected(now)).count(), 2);
    }

    #[test]
    fn at_least_one_backend_may_be_ejected_and_zero_disables() {
        let pool: Vec<BackendHealth> = (0..3).map(|_| BackendHealth::new(false)).collect();
        let detector = detector(1, 10);
        for backend in &pool {
            detector.on_failure(backend, addr(), pool.iter());
        }
        assert_eq!(
            pool.iter().filter(|b| b.is_ejected(clock::now())).count(),
            1
        );
        let off = super::tests::detector(0, 100);
        let lone = BackendHealth::new(false);
        for _ in 0..100 {
            off.on_failure(&lone, addr(), std::iter::once(&lone));
        }
        assert!(!lone.is_ejected(clock::now()));
    }
}
