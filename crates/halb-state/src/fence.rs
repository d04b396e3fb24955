//! A backend's fence: raised when the backend is marked down in a pool with
//! `on_down = "close"`, it ends every open connection to the backend at
//! once, so that no client keeps talking to a demoted database primary
//! (HAProxy's `on-marked-down shutdown-sessions`).

use halb_metrics::Counter;
use tokio::sync::watch;

/// See the module docs. Each connection takes a [`FenceWatch`] when it
/// picks the backend, and ends when the fence is raised after that.
#[derive(Debug)]
pub struct Fence {
    raised: watch::Sender<u64>,
    /// Connections closed because the fence was raised, for metrics.
    pub closed: Counter,
}

impl Default for Fence {
    fn default() -> Self {
        Fence {
            raised: watch::Sender::new(0),
            closed: Counter::default(),
        }
    }
}

impl Fence {
    /// Close every connection that watches the fence now.
    pub fn raise(&self) {
        self.raised.send_modify(|times| *times += 1);
    }

    /// Times the fence was raised.
    pub fn times_raised(&self) -> u64 {
        *self.raised.borrow()
    }

    /// A watch that fires at the next raise (not at earlier ones).
    pub fn watch(&self) -> FenceWatch {
        FenceWatch(self.raised.subscribe())
    }
}

/// One connection's view of its backend's fence.
#[derive(Debug)]
pub struct FenceWatch(watch::Receiver<u64>);

impl FenceWatch {
    /// Resolves when the fence is raised after the watch was taken.
    pub async fn raised(&mut self) {
        if self.0.changed().await.is_err() {
            // The fence is gone with its backend: nothing will raise it.
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_watch_fires_at_a_raise_after_it_was_taken_only() {
        let fence = Fence::default();
        fence.raise();
        let mut watch = fence.watch();
        let early = tokio::time::timeout(Duration::from_millis(20), watch.raised()).await;
        assert!(early.is_err(), "an earlier raise does not count");
        fence.raise();
        tokio::time::timeout(Duration::from_secs(1), watch.raised())
            .await
            .expect("the raise after the watch fires it");
        assert_eq!(fence.times_raised(), 2);
    }
}
