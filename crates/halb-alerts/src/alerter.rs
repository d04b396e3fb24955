//! The [`Alerter`]: a non-blocking `send` in front of a fan-out task and one
//! delivery worker per webhook.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::alert::Alert;
use crate::delivery;
use crate::webhook::Webhook;

/// Alerts waiting for the fan-out task; past this, [`Alerter::send`] drops.
pub const QUEUE_CAPACITY: usize = 1024;
/// Alerts waiting for one webhook; past this, that webhook misses alerts
/// (the others still get them).
pub const WEBHOOK_QUEUE_CAPACITY: usize = 256;

/// Sends alerts to the configured webhooks without ever making the caller
/// wait. Cheap to clone: every clone feeds the same queue and counters.
///
/// The background tasks end once every clone is dropped and the queued
/// alerts have been delivered or given up.
#[derive(Debug, Clone)]
pub struct Alerter {
    /// `None` when no webhook is configured: `send` does nothing.
    queue: Option<mpsc::Sender<Stamped>>,
    counters: Arc<Counters>,
}

/// What became of the alerts so far, for metrics. Each (alert, webhook)
/// pair counts once in `delivered` or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AlertStats {
    /// Accepted by a webhook (2xx).
    pub delivered: u64,
    /// Given up on: every attempt failed, or the webhook refused it (4xx).
    pub failed: u64,
    /// Never attempted because a queue was full: once per alert when the
    /// main queue was full, once per webhook whose own queue was full.
    pub dropped: u64,
}

/// An alert and the moment it was sent: the payload says when it
/// happened, not when it was finally delivered.
#[derive(Debug)]
struct Stamped {
    alert: Alert,
    time: SystemTime,
}

/// One alert's JSON, shared by every webhook's worker.
#[derive(Debug, Clone)]
struct Outgoing {
    event: &'static str,
    body: Bytes,
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    /// Unix second of the last "dropped" warning: a flood of alerts must
    /// not become a flood of log lines.
    last_drop_warning: AtomicU64,
}

impl Counters {
    fn record_drop(&self, event: &str, queue: &str) {
        let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let last = self.last_drop_warning.load(Ordering::Relaxed);
        if now > last
            && self
                .last_drop_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(event, queue, dropped, "alert queue full: alert dropped");
        }
    }
}

/// How each webhook worker delivers.
#[derive(Debug, Clone, Copy)]
struct Policy {
    timeout: Duration,
    max_attempts: u32,
}

impl Alerter {
    /// Starts alerting to `config.webhooks`. A webhook whose URL does not
    /// parse is skipped with an error log; with no usable webhook the
    /// Alerter is a no-op and starts nothing.
    ///
    /// # Panics
    ///
    /// With at least one usable webhook, when called outside a Tokio
    /// runtime: the delivery tasks are spawned here.
    pub fn new(config: &halb_config::Alerts) -> Alerter {
        Self::start(config, Arc::new(Counters::default()))
    }

    /// An Alerter that sends nothing, for when alerts are not configured.
    pub fn disabled() -> Alerter {
        Alerter {
            queue: None,
            counters: Arc::new(Counters::default()),
        }
    }

    /// A new Alerter for a reloaded `[alerts]` config that keeps counting
    /// where this one is, so metrics stay monotonic across reloads. This
    /// one (and its clones) keeps delivering what it already queued.
    ///
    /// # Panics
    ///
    /// As [`Alerter::new`].
    pub fn reconfigured(&self, config: &halb_config::Alerts) -> Alerter {
        Self::start(config, Arc::clone(&self.counters))
    }

    fn start(config: &halb_config::Alerts, counters: Arc<Counters>) -> Alerter {
        let webhooks: Vec<Webhook> = config
            .webhooks
            .iter()
            .filter_map(|url| match Webhook::parse(url) {
                Ok(webhook) => Some(webhook),
                Err(error) => {
                    tracing::error!(%error, "alert webhook skipped");
                    None
                }
            })
            .collect();
        if webhooks.is_empty() {
            return Alerter {
                queue: None,
                counters,
            };
        }
        let policy = Policy {
            timeout: config.timeout,
            max_attempts: config.max_attempts.max(1),
        };
        let workers = webhooks
            .into_iter()
            .map(|webhook| {
                let (tx, rx) = mpsc::channel(WEBHOOK_QUEUE_CAPACITY);
                tokio::spawn(deliver_to_webhook(
                    webhook.clone(),
                    rx,
                    policy,
                    Arc::clone(&counters),
                ));
                (webhook, tx)
            })
            .collect();
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(fan_out(rx, workers, node_name(), Arc::clone(&counters)));
        Alerter {
            queue: Some(tx),
            counters,
        }
    }

    /// Queues `alert` for every webhook and returns at once. It never
    /// waits and never fails: when the queue is full the alert is dropped,
    /// counted and (at most once a second) logged.
    pub fn send(&self, alert: Alert) {
        let Some(queue) = &self.queue else {
            return;
        };
        let stamped = Stamped {
            alert,
            time: SystemTime::now(),
        };
        if let Err(e) = queue.try_send(stamped) {
            let queue_name = match e {
                mpsc::error::TrySendError::Full(_) => "main",
                // Only if the runtime that ran the fan-out task has shut down.
                mpsc::error::TrySendError::Closed(_) => "closed",
            };
            self.counters
                .record_drop(e.into_inner().alert.event(), queue_name);
        }
    }

    /// Whether any webhook is configured.
    pub fn is_enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// What became of the alerts so far (shared across clones and
    /// [`Alerter::reconfigured`] successors).
    pub fn stats(&self) -> AlertStats {
        AlertStats {
            delivered: self.counters.delivered.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
        }
    }
}

impl Default for Alerter {
    fn default() -> Self {
        Alerter::disabled()
    }
}

/// Serializes each alert once and hands it to every webhook's worker
/// without waiting for any of them.
async fn fan_out(
    mut queue: mpsc::Receiver<Stamped>,
    workers: Vec<(Webhook, mpsc::Sender<Outgoing>)>,
    node: String,
    counters: Arc<Counters>,
) {
    while let Some(Stamped { alert, time }) = queue.recv().await {
        let outgoing = Outgoing {
            event: alert.event(),
            body: Bytes::from(alert.to_json(time, &node)),
        };
        tracing::debug!(event = outgoing.event, "alert queued for webhooks");
        for (webhook, worker) in &workers {
            if worker.try_send(outgoing.clone()).is_err() {
                counters.record_drop(outgoing.event, webhook.name());
            }
        }
    }
}

/// Delivers one webhook's alerts in order, each with retries, so a receiver
/// sees a backend's "down" before its "up".
async fn deliver_to_webhook(
    webhook: Webhook,
    mut queue: mpsc::Receiver<Outgoing>,
    policy: Policy,
    counters: Arc<Counters>,
) {
    while let Some(outgoing) = queue.recv().await {
        let mut attempt = 1;
        let result = loop {
            match delivery::post(&webhook, outgoing.body.clone(), policy.timeout).await {
                Ok(()) => break Ok(()),
                Err(e) if e.is_retryable() && attempt < policy.max_attempts => {
                    let wait = delivery::backoff(attempt);
                    tracing::debug!(
                        %webhook, event = outgoing.event, attempt, error = %e, ?wait,
                        "alert delivery failed, will retry"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => break Err(e),
            }
        };
        match result {
            Ok(()) => {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%webhook, event = outgoing.event, attempt, "alert delivered");
            }
            Err(e) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    %webhook, event = outgoing.event, attempts = attempt, error = %e,
                    "alert not delivered, giving up"
                );
            }
        }
    }
}

/// This node's name for the payload: the kernel's hostname, or "unknown".
fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}
