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
