//! Wiring of `[cluster.peers]`: the node's name and the fleet secret go into
//! the runtime state before the pools are built (sticky cookies are signed
//! with the secret), then the peer links start.

use std::sync::Arc;

use anyhow::Context;
use halb_config::Config;
use halb_state::State;

/// This node's name: `[cluster] node`, else the host name.
pub fn node_name(config: &Config) -> String {
    config
        .cluster
        .as_ref()
        .and_then(|c| c.node.clone())
        .unwrap_or_else(crate::cluster::host_name)
}

/// Names the node and hands the fleet secret to the state; call before the
/// proxy builds its pools.
pub fn prepare(config: &Config, state: &State) {
    state.set_node(&node_name(config));
    let secret = config
        .cluster
        .as_ref()
        .and_then(|c| c.peers.as_ref())
        .map(|p| p.secret.as_str());
    state.set_fleet_secret(secret);
    let cookies_without_secret = secret.is_none()
        && config.pools.iter().any(|p| {
            p.sticky.as_ref().is_some_and(|s| {
                matches!(s.kind, halb_config::StickyKind::Cookie { .. }) && s.secret.is_none()
            })
        });
    if cookies_without_secret {
        tracing::warn!(
            "sticky cookies are signed with a key of this process only: other nodes (and this \
             one after a restart) will not honour them; set [cluster.peers] secret or \
             [pool.sticky] secret"
        );
    }
}

/// Starts the peer links when `[cluster.peers]` is set.
pub async fn start(
    config: &Config,
    state: &Arc<State>,
) -> anyhow::Result<Option<Arc<halb_cluster::Peers>>> {
    let Some(peers) = config.cluster.as_ref().and_then(|c| c.peers.as_ref()) else {
        return Ok(None);
    };
    let links = halb_cluster::Peers::start(peers, &node_name(config), state.clone())
        .await
        .with_context(|| format!("[cluster.peers] cannot listen on {}", peers.bind))?;
    Ok(Some(links))
}

/// How often the registry is read for peers.
const DISCOVER_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// With `[cluster.etcd]`: this node's peer address goes in its registry
/// record, and the other nodes' records give the peers to dial (those that
/// leave the registry are dropped; the configured ones stay).
pub fn discover(
    cluster: &mut crate::cluster::ClusterNode,
    config: &Config,
    peers: &Arc<halb_cluster::Peers>,
) {
    let Some(bind) = config
        .cluster
        .as_ref()
        .and_then(|c| c.peers.as_ref())
        .map(|p| p.bind)
    else {
        return;
    };
    if bind.ip().is_unspecified() {
        tracing::warn!(%bind, "[cluster.peers] bind is a wildcard address: other nodes cannot find this one in etcd; bind a specific address");
        cluster.advertise_peer(None);
    } else {
        cluster.advertise_peer(Some(bind.to_string()));
    }
    let (client, prefix, node) = cluster.discovery();
    let peers = peers.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(DISCOVER_EVERY);
        loop {
            tick.tick().await;
            match halb_cluster::nodes(&client, &prefix).await {
                Ok(records) => {
                    let found: Vec<String> = records
                        .into_iter()
                        .filter(|r| r.node != node)
                        .filter_map(|r| r.peer)
                        .collect();
                    peers.discovered(&found);
                }
                Err(error) => {
                    tracing::debug!(%error, "peer discovery: etcd unreachable; links kept")
                }
            }
        }
    });
}
