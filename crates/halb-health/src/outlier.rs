//! Passive outlier detection: real traffic as the health signal. A backend
//! whose requests fail `consecutive_failures` times in a row is ejected for
//! `base_ejection × its ejection count` (at most `max_ejection`), and no
//! more than `max_ejection_percent` of a pool is ejected at once (at least
//! one backend may always be ejected, as in Envoy).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use halb_config::OutlierDetection;

use halb_state::{Applied, BackendHealth, Change, Origin, State};

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

    /// Record a failure on `backend` of `pool`, ejecting it through
    /// `state` when it has failed too often in a row and the pool can
    /// spare it.
    pub fn on_failure(
        &self,
        state: &State,
        pool: &str,
        backend: &BackendHealth,
        address: SocketAddr,
    ) {
        let threshold = self.config.consecutive_failures;
        if threshold == 0 || backend.record_failure() < threshold {
            return;
        }
        let eject = Change::Eject {
            failures: threshold,
            base: self.config.base_ejection,
            max: self.config.max_ejection,
            max_percent: self.config.max_ejection_percent,
        };
        if let Ok(Applied::Ejected(_)) = state.apply(pool, address, Origin::Outlier, eject) {
            self.latest_ejection_end
                .fetch_max(backend.ejected_until(), Relaxed);
        }
    }

    /// This detector with another config, knowing the ejections it knew.
    pub fn reconfigured(&self, config: OutlierDetection) -> OutlierDetector {
        OutlierDetector {
            config,
            latest_ejection_end: AtomicU64::new(self.latest_ejection_end.load(Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;
    use halb_state::MemberSpec;
    use std::sync::Arc;
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

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// A state with pool "app" of `n` unchecked backends on ports 1..=n.
    fn pool(n: u16) -> (Arc<State>, Vec<Arc<BackendHealth>>) {
        let state = State::new();
        let members: Vec<MemberSpec> = (1..=n)
            .map(|port| MemberSpec {
                address: addr(port),
                weight: 1,
                checked: false,
            })
            .collect();
        let healths = state.set_members("app", &members);
        (state, healths)
    }

    #[test]
    fn ejects_after_consecutive_failures_only() {
        let (state, pool) = pool(4);
        let detector = detector(3, 50);
        let fail = || detector.on_failure(&state, "app", &pool[0], addr(1));
        fail();
        fail();
        pool[0].record_success();
        fail();
        fail();
        assert!(!pool[0].is_ejected(clock::now()), "a success broke the run");
        fail();
        assert!(pool[0].is_ejected(clock::now()));
        assert!(detector.any_ejected(clock::now()));
    }

    #[test]
    fn max_ejection_percent_caps_ejections() {
        let (state, pool) = pool(4);
        let detector = detector(1, 50);
        for (i, backend) in pool.iter().enumerate() {
            detector.on_failure(&state, "app", backend, addr(i as u16 + 1));
        }
        let now = clock::now();
        assert_eq!(pool.iter().filter(|b| b.is_ejected(now)).count(), 2);
    }

    #[test]
    fn at_least_one_backend_may_be_ejected_and_zero_disables() {
        let (state, pool) = pool(3);
        let detector = detector(1, 10);
        for (i, backend) in pool.iter().enumerate() {
            detector.on_failure(&state, "app", backend, addr(i as u16 + 1));
        }
        assert_eq!(
            pool.iter().filter(|b| b.is_ejected(clock::now())).count(),
            1
        );
        let off = super::tests::detector(0, 100);
        for _ in 0..100 {
            off.on_failure(&state, "app", &pool[1], addr(2));
        }
        assert!(!pool[1].is_ejected(clock::now()));
    }
}
