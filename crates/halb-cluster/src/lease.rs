//! A key kept alive on a lease: written with a lease of `ttl`, renewed
//! every third of it, written again on a new lease when etcd lost the old
//! one (it was down longer than the TTL). When the process dies the
//! renewals stop and etcd deletes the key after the TTL; a graceful stop
//! revokes the lease, which deletes the key at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::etcd::Client;

/// A key kept on a lease while this lives (see the module doc).
pub struct KeptKey {
    task: tokio::task::JoinHandle<()>,
    lease: watch::Receiver<i64>,
    client: Arc<Client>,
}

impl KeptKey {
    /// Keep `key` holding the latest `value`; while `value` is `None`
    /// renewals stop and the key expires.
    pub fn start(
        client: Arc<Client>,
        key: String,
        value: watch::Receiver<Option<Vec<u8>>>,
        ttl: Duration,
    ) -> KeptKey {
        let (lease_tx, lease) = watch::channel(0);
        let keeper = Keeper {
            client: client.clone(),
            key,
            value,
            ttl_seconds: ttl.as_secs().max(1) as i64,
            lease: lease_tx,
        };
        KeptKey {
            task: tokio::spawn(keeper.run()),
            lease,
            client,
        }
    }

    /// The lease the key is on now (0: none yet, or not renewed).
    pub fn lease(&self) -> i64 {
        *self.lease.borrow()
    }

    /// Wait until the key is written on a lease.
    pub async fn written(&mut self) {
        let _ = self.lease.wait_for(|lease| *lease != 0).await;
    }

    /// Stop renewing and revoke the lease: the key goes at once.
    pub async fn stop(self) {
        self.task.abort();
        let lease = self.lease();
        if lease != 0 {
            if let Err(e) = self.client.revoke(lease).await {
                tracing::warn!(error = %e, "cannot revoke the lease; the key expires by itself");
            }
        }
    }
}

impl Drop for KeptKey {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Keeper {
    client: Arc<Client>,
    key: String,
    value: watch::Receiver<Option<Vec<u8>>>,
    ttl_seconds: i64,
    lease: watch::Sender<i64>,
}

impl Keeper {
    async fn run(mut self) {
        let retry = Duration::from_millis(500);
        loop {
            let value = match self.value.wait_for(Option::is_some).await {
                Ok(value) => value.clone().unwrap_or_default(),
                Err(_) => return,
            };
            let lease = match self.client.grant(self.ttl_seconds).await {
                Ok(lease) => lease,
                Err(e) => {
                    tracing::warn!(key = %self.key, error = %e, "etcd: cannot grant a lease; retrying");
                    tokio::time::sleep(retry).await;
                    continue;
                }
            };
            if let Err(e) = self.client.put(&self.key, &value, lease).await {
                tracing::warn!(key = %self.key, error = %e, "etcd: cannot write the key; retrying");
                let _ = self.client.revoke(lease).await;
                tokio::time::sleep(retry).await;
                continue;
            }
            tracing::debug!(key = %self.key, lease, "etcd: key written on a lease");
            self.lease.send_replace(lease);
            self.renew(lease).await;
            self.lease.send_replace(0);
        }
    }

    /// Renew `lease` until it is lost or the value goes to `None`; a new
    /// value is written on the same lease.
    async fn renew(&mut self, lease: i64) {
        let every = Duration::from_millis((self.ttl_seconds as u64 * 1000) / 3)
            .max(Duration::from_millis(300));
        let mut tick = tokio::time::interval_at(Instant::now() + every, every);
        loop {
            tokio::select! {
                _ = tick.tick() => match self.client.keep_alive(lease).await {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        tracing::warn!(key = %self.key, "etcd: the lease expired; writing the key again");
                        return;
                    }
                    Err(e) => tracing::warn!(key = %self.key, error = %e, "etcd: cannot renew the lease; retrying"),
                },
                changed = self.value.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let value = self.value.borrow_and_update().clone();
                    let Some(value) = value else {
                        tracing::info!(key = %self.key, "no longer renewing: the key expires after its TTL");
                        return;
                    };
                    if let Err(e) = self.client.put(&self.key, &value, lease).await {
                        tracing::warn!(key = %self.key, error = %e, "etcd: cannot update the key");
                    }
                }
            }
        }
    }
}
