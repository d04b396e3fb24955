//! The etcd config source: one task keeps a [`Snapshot`] of `<prefix>/`
//! current (a full read, then a watch from the next revision), and
//! publishes it once a burst of changes has settled, so that many
//! backend changes in a moment become one apply.
//!
//! etcd is never on the data path: while it is down, slow or partitioned
//! the node serves what it last applied. The watch reconnects with backoff
//! (to the next member when one fails) and resumes from the last revision
//! seen; after a compaction it reads everything again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::etcd::{Client, EtcdError};
use crate::snapshot::Snapshot;

/// After a change, how long to wait for more before publishing: a burst
/// of registrations becomes one apply.
pub const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// How often a watch's member is asked a (linearizable) question: a
/// member that stopped answering, or lost its quorum, is left for another.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(3);

/// The store's health, as the status API and metrics show it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreStatus {
    /// A watch is established and the member answers.
    pub connected: bool,
    /// The member watched (or last tried).
    pub endpoint: String,
    /// The store revision the node's view is current to.
    pub revision: i64,
    /// Why the last attempt failed (empty while connected).
    pub last_error: String,
    /// Watches established so far (1 + reconnections).
    pub watches: u64,
    /// Full reads of the prefix (1 + one per compaction seen).
    pub full_reads: u64,
    /// Unix time (seconds) of the last answer from etcd.
    pub last_contact: u64,
}

/// Shared between the watcher task and whoever reports on it.
#[derive(Debug, Default)]
pub struct StoreHealth(Mutex<StoreStatus>);

impl StoreHealth {
    pub fn status(&self) -> StoreStatus {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut StoreStatus)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn contact(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.update(|s| s.last_contact = now);
    }

    fn failed(&self, error: &EtcdError) {
        self.update(|s| {
            s.connected = false;
            s.last_error = error.to_string();
        });
    }
}

/// The etcd source of one node: the latest published snapshot.
pub struct EtcdSource {
    snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    health: Arc<StoreHealth>,
    task: tokio::task::JoinHandle<()>,
}

impl EtcdSource {
    /// Start following `<prefix>/` on `client`'s cluster.
    pub fn start(client: Arc<Client>, prefix: &str) -> EtcdSource {
        let (publish, snapshots) = watch::channel(None);
        let health = Arc::new(StoreHealth::default());
        let watcher = Watcher {
            client,
            prefix: prefix.to_owned(),
            dir: format!("{prefix}/"),
            publish,
            health: health.clone(),
        };
        EtcdSource {
            snapshots,
            health,
            task: tokio::spawn(watcher.run()),
        }
    }

    /// The first snapshot read from etcd, if one comes within `within`.
    pub async fn first(&mut self, within: Duration) -> Option<Arc<Snapshot>> {
        let first = tokio::time::timeout(within, self.snapshots.wait_for(Option::is_some));
        let snapshot = first.await.ok()?.ok()?.clone();
        snapshot
    }

    /// The next snapshot published (cancel-safe: nothing is lost when the
    /// wait is dropped).
    pub async fn changed(&mut self) -> Arc<Snapshot> {
        loop {
            if self.snapshots.changed().await.is_err() {
                // The watcher never ends while the source lives.
                std::future::pending::<()>().await;
            }
            if let Some(snapshot) = self.snapshots.borrow_and_update().clone() {
                return snapshot;
            }
        }
    }

    pub fn health(&self) -> Arc<StoreHealth> {
        self.health.clone()
    }
}

impl Drop for EtcdSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Watcher {
    client: Arc<Client>,
    prefix: String,
    /// `<prefix>/`: what is read and watched.
    dir: String,
    publish: watch::Sender<Option<Arc<Snapshot>>>,
    health: Arc<StoreHealth>,
}

/// Why a watch ended.
enum Ended {
    /// The revision to resume from was compacted away: read everything.
    Compacted(i64),
    Failed(EtcdError),
}

impl Watcher {
    async fn run(self) {
        let mut backoff = Backoff::default();
        let mut view: Option<Snapshot> = None;
        loop {
            let snapshot = match view.take() {
                Some(snapshot) => snapshot,
                None => match self.read_all().await {
                    Ok(snapshot) => snapshot,
                    Err(e) => {
                        self.health.failed(&e);
                        tracing::warn!(error = %e, "etcd: cannot read the shared config; serving what runs");
                        backoff.wait().await;
                        continue;
                    }
                },
            };
            let started = Instant::now();
            let (snapshot, ended) = self.follow(snapshot).await;
            match ended {
                Ended::Compacted(compacted) => {
                    tracing::warn!(
                        compacted,
                        resume = snapshot.revision + 1,
                        "etcd: the watch's revision was compacted; reading everything again"
                    );
                    view = None;
                }
                Ended::Failed(e) => {
                    self.health.failed(&e);
                    tracing::warn!(error = %e, "etcd: watch lost; reconnecting (serving what runs)");
                    view = Some(snapshot);
                    if started.elapsed() > BACKOFF_MAX * 2 {
                        backoff.reset();
                    }
                    backoff.wait().await;
                }
            }
        }
    }

    /// Read every key under the prefix and publish that view at once.
    async fn read_all(&self) -> Result<Snapshot, EtcdError> {
        let range = self.client.range_prefix(&self.dir).await?;
        let snapshot = Snapshot::from_range(&self.prefix, range.revision, &range.kvs);
        self.health.contact();
        self.health.update(|s| {
            s.full_reads += 1;
            s.revision = snapshot.revision;
            s.endpoint = self.client.endpoint().to_string();
        });
        self.publish.send_replace(Some(Arc::new(snapshot.clone())));
        Ok(snapshot)
    }

    /// Watch from the view's next revision until the watch fails; the view
    /// as far as it got.
    async fn follow(&self, mut snapshot: Snapshot) -> (Snapshot, Ended) {
        let mut stream = match self
            .client
            .watch_prefix(&self.dir, snapshot.revision + 1)
            .await
        {
            Ok(stream) => stream,
            Err(e) => return (snapshot, Ended::Failed(e)),
        };
        let member = stream.endpoint().to_owned();
        self.health.contact();
        self.health.update(|s| {
            s.connected = true;
            s.endpoint = member.clone();
            s.last_error.clear();
            s.watches += 1;
        });
        tracing::info!(endpoint = %member, from = snapshot.revision + 1, "etcd: watching");
        let mut publish_at: Option<Instant> = None;
        let mut probe = tokio::time::interval_at(Instant::now() + PROBE_INTERVAL, PROBE_INTERVAL);
        loop {
            let deadline = publish_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                message = stream.next() => {
                    let message = match message {
                        Ok(message) => message,
                        Err(e) => {
                            self.flush(&snapshot, &mut publish_at);
                            return (snapshot, Ended::Failed(e));
                        }
                    };
                    self.health.contact();
                    if message.compact_revision > 0 {
                        self.flush(&snapshot, &mut publish_at);
                        return (snapshot, Ended::Compacted(message.compact_revision));
                    }
                    if message.canceled {
                        self.flush(&snapshot, &mut publish_at);
                        let reason = format!("{member}: watch cancelled: {}", message.cancel_reason);
                        return (snapshot, Ended::Failed(EtcdError::Unreachable(reason)));
                    }
                    if message.events.is_empty() {
                        if !message.created {
                            // A progress notice: everything up to here was sent.
                            snapshot.revision = snapshot.revision.max(message.header.revision);
                        }
                    } else if snapshot.apply(&self.prefix, &message.events) && publish_at.is_none() {
                        publish_at = Some(Instant::now() + BATCH_WINDOW);
                    }
                    self.health.update(|s| s.revision = snapshot.revision);
                }
                _ = tokio::time::sleep_until(deadline), if publish_at.is_some() => {
                    self.flush(&snapshot, &mut publish_at);
                }
                _ = probe.tick() => {
                    if let Err(e) = self.client.probe(&member, &self.dir).await {
                        self.flush(&snapshot, &mut publish_at);
                        return (snapshot, Ended::Failed(e));
                    }
                    self.health.contact();
                }
            }
        }
    }

    /// Publish the view if changes are waiting.
    fn flush(&self, snapshot: &Snapshot, publish_at: &mut Option<Instant>) {
        if publish_at.take().is_some() {
            self.publish.send_replace(Some(Arc::new(snapshot.clone())));
        }
    }
}

/// Exponential backoff with jitter, 100 ms to 3 s.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: BACKOFF_FIRST,
        }
    }
}

impl Backoff {
    async fn wait(&mut self) {
        let jitter = 0.8 + fastrand::f64() * 0.4;
        tokio::time::sleep(self.next.mul_f64(jitter)).await;
        self.next = (self.next * 2).min(BACKOFF_MAX);
    }

    fn reset(&mut self) {
        self.next = BACKOFF_FIRST;
    }
}
