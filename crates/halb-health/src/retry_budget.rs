//! A retry budget: retries may be at most a share of the recent requests,
//! plus a small allowance per second, so a sick pool is not flooded with
//! retries (as Finagle's and linkerd's budgets). Counted over the last 10
//! one-second buckets, lock-free.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use halb_config::RetryBudget as RetryBudgetConfig;

use crate::clock;

const WINDOW_SECONDS: u64 = 10;
const SECOND: u64 = 1_000_000_000;

#[derive(Debug, Default)]
struct Bucket {
    /// The second this bucket counts (clock seconds + 1; 0 = unused).
    second: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// One pool's retry budget.
#[derive(Debug)]
pub struct RetryBudget {
    percent: u64,
    min_per_second: u64,
    buckets: [Bucket; WINDOW_SECONDS as usize],
    /// Retries refused because the budget was spent.
    denied: AtomicU64,
    /// Retries made.
    spent: AtomicU64,
}

impl RetryBudget {
    pub fn new(config: &RetryBudgetConfig) -> Self {
        RetryBudget {
            percent: config.percent as u64,
            min_per_second: config.min_per_second as u64,
            buckets: Default::default(),
            denied: AtomicU64::new(0),
            spent: AtomicU64::new(0),
        }
    }

    fn bucket(&self, now: u64) -> &Bucket {
        let second = now / SECOND + 1;
        let bucket = &self.buckets[(second % WINDOW_SECONDS) as usize];
        let seen = bucket.second.load(Relaxed);
        if seen != second
            && bucket
                .second
                .compare_exchange(seen, second, Relaxed, Relaxed)
                .is_ok()
        {
            bucket.requests.store(0, Relaxed);
            bucket.retries.store(0, Relaxed);
        }
        bucket
    }

    /// Count a request (its first try).
    #[inline]
    pub fn on_request(&self) {
        self.bucket(clock::now()).requests.fetch_add(1, Relaxed);
    }

    /// Ask to retry; counts the retry when allowed.
    pub fn try_retry(&self) -> bool {
        let now = clock::now();
        let current = now / SECOND + 1;
        let (mut requests, mut retries) = (0, 0);
        for bucket in &self.buckets {
            let second = bucket.second.load(Relaxed);
            if second + WINDOW_SECONDS > current && second <= current {
                requests += bucket.requests.load(Relaxed);
                retries += bucket.retries.load(Relaxed);
            }
        }
        let allowed = requests * self.percent / 100 + self.min_per_second * WINDOW_SECONDS;
        if retries >= allowed {
            self.denied.fetch_add(1, Relaxed);
            return false;
        }
        self.bucket(now).retries.fetch_add(1, Relaxed);
        self.spent.fetch_add(1, Relaxed);
        true
    }

    /// Retries made so far.
    pub fn spent(&self) -> u64 {
        self.spent.load(Relaxed)
    }

    /// Retries refused by the budget so far.
    pub fn denied(&self) -> u64 {
        self.denied.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_bounded_by_the_share_plus_the_allowance() {
        let budget = RetryBudget::new(&RetryBudgetConfig {
            percent: 20,
            min_per_second: 1,
        });
        for _ in 0..1000 {
            budget.on_request();
        }
        let granted = (0..1000).filter(|_| budget.try_retry()).count();
        // 20% of 1000 plus 1/s over the 10 s window.
        assert_eq!(granted, 210);
        assert_eq!(budget.denied(), 790);
        assert_eq!(budget.spent(), 210);
    }

    #[test]
    fn zero_budget_refuses_every_retry() {
        let budget = RetryBudget::new(&RetryBudgetConfig {
            percent: 0,
            min_per_second: 0,
        });
        budget.on_request();
        assert!(!budget.try_retry());
    }
}
