//! Operator actions kept in etcd (`[cluster.etcd]`): a drain or disable
//! through any node's API is written to `<prefix>/admin/<pool>/<address>`
//! (an enable deletes the key), and every node applies the keys it sees, at
//! start and as they change. So the fleet agrees on them, and they survive
//! a restart of every node.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use halb_cluster::{AdminRecord, Client, Snapshot, ADMIN_DIR};
use halb_state::{AdminState, Change, Event, Origin, State};

/// The operator states last applied from the store, to see what a new
/// snapshot removed.
#[derive(Debug, Default)]
pub struct Applied(BTreeMap<(String, SocketAddr), String>);

fn word_state(word: &str) -> Option<AdminState> {
    match word {
        "draining" => Some(AdminState::Draining),
        "disabled" => Some(AdminState::Disabled),
        "enabled" => Some(AdminState::Enabled),
        _ => None,
    }
}

impl Applied {
    /// Applies the snapshot's operator states; a backend whose key went is
    /// enabled again. Applied as from a peer: not written back, not sent on.
    pub fn apply(&mut self, snapshot: &Snapshot, state: &State) {
        let now: BTreeMap<(String, SocketAddr), String> = snapshot
            .admin_states()
            .into_iter()
            .map(|(pool, backend, word)| ((pool, backend), word))
            .collect();
        for ((pool, backend), word) in &now {
            let Some(wanted) = word_state(word) else {
                tracing::warn!(%pool, %backend, state = %word, "unknown operator state in etcd; ignored");
                continue;
            };
            let current = state.health(pool, *backend).map(|h| h.admin_state());
            if current.is_ok_and(|c| c != wanted) {
                let _ = state.apply(pool, *backend, Origin::Peer, Change::Admin(wanted));
            }
        }
        for (pool, backend) in self.0.keys().filter(|k| !now.contains_key(*k)) {
            let _ = state.apply(
                pool,
                *backend,
                Origin::Peer,
                Change::Admin(AdminState::Enabled),
            );
        }
        self.0 = now;
    }
}

/// Writes this node's operator actions to etcd as they happen.
pub fn spawn_writer(client: Arc<Client>, prefix: String, node: String, state: Arc<State>) {
    let mut events = state.subscribe();
    tokio::spawn(async move {
        loop {
            let event = match events.recv().await {
                Ok(event) => event,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            let Event::Admin {
                pool,
                backend,
                to,
                origin: Origin::Operator,
                at_ms,
                ..
            } = event
            else {
                continue;
            };
            let key = format!("{prefix}/{ADMIN_DIR}{pool}/{backend}");
            let written = if to == AdminState::Enabled {
                client.delete(&key).await.map(drop)
            } else {
                let record = AdminRecord {
                    state: to.as_str().to_owned(),
                    node: node.clone(),
                    at_ms,
                };
                let value = serde_json::to_vec(&record).expect("a record serializes");
                client.put(&key, &value, 0).await.map(drop)
            };
            match written {
                Ok(()) => tracing::info!(%key, state = to.as_str(), "operator action kept in etcd"),
                Err(error) => {
                    tracing::warn!(%key, %error, "cannot keep the operator action in etcd; it holds on this node (and its peers) only")
                }
            }
        }
    });
}
