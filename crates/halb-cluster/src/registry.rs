//! The node registry: each node keeps `<prefix>/nodes/<node>` on a lease
//! with what it has applied, and `halb cluster status` compares every
//! node's record with what etcd holds now.

use serde::{Deserialize, Serialize};

use crate::compose::identity;
use crate::etcd::{Client, EtcdError};
use crate::snapshot::{Snapshot, NODES_DIR};
use crate::Identity;

/// What a node tells the fleet about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node: String,
    /// halb's version.
    pub version: String,
    /// The admin endpoint, `ip:port`, if the node has one.
    pub admin: Option<String>,
    /// Where the running shared config came from: `etcd`, or
    /// `last-known-good` (etcd was unreachable at start).
    pub source: String,
    /// The revision of `<prefix>/config` applied.
    pub config_revision: i64,
    /// Hash of the document applied, and of the dynamic backends.
    pub document: String,
    pub backends: String,
    /// Why the latest revision seen was refused (empty: applied).
    pub errors: Vec<String>,
    /// The node's VRRP instances and their states (`[vrrp]`).
    #[serde(default)]
    pub vrrp: Vec<VrrpRecord>,
    /// Where the node's peer links listen (`[cluster.peers] bind`), so that
    /// the other nodes can find it.
    #[serde(default)]
    pub peer: Option<String>,
    /// The node's peer links and whether each is up.
    #[serde(default)]
    pub peers: Vec<PeerRecord>,
}

/// One peer link of a node, as the fleet sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    pub address: String,
    /// The peer's node name, once it said it.
    pub node: Option<String>,
    /// Authenticated both ways.
    pub connected: bool,
}

/// One VRRP instance of a node, as the fleet sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpRecord {
    pub name: String,
    /// `init`, `backup`, `master` or `fault`.
    pub state: String,
}

impl NodeRecord {
    /// The record of a node that applied (or refused) `identity`.
    pub fn set_applied(&mut self, applied: &Identity) {
        if let Identity::Etcd {
            config_revision,
            document,
            backends,
            ..
        } = applied
        {
            self.config_revision = *config_revision;
            self.document = document.clone();
            self.backends = backends.clone();
        }
    }
}

/// The registry key of `node`.
pub fn node_key(prefix: &str, node: &str) -> String {
    format!("{prefix}/{NODES_DIR}{node}")
}

/// Every node record in the registry (unreadable ones are skipped).
pub async fn nodes(client: &Client, prefix: &str) -> Result<Vec<NodeRecord>, EtcdError> {
    let range = client
        .range_prefix(&format!("{prefix}/{NODES_DIR}"))
        .await?;
    Ok(range
        .kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect())
}

/// One node as `halb cluster status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    #[serde(flatten)]
    pub record: NodeRecord,
    /// It runs what etcd holds now, with nothing refused.
    pub converged: bool,
}

/// The fleet as etcd sees it now.
#[derive(Debug, Clone, Serialize)]
pub struct FleetStatus {
    pub revision: i64,
    pub config_revision: i64,
    pub backends: usize,
    pub nodes: Vec<NodeStatus>,
    /// Registry entries that are not node records.
    pub unreadable: Vec<String>,
    /// A revision on trial (`halb config push --canary`), if any.
    pub canary: Option<CanaryStatus>,
}

/// The canary on trial: its revision and the nodes that run it.
#[derive(Debug, Clone, Serialize)]
pub struct CanaryStatus {
    pub revision: i64,
    pub nodes: Vec<String>,
}

/// Read the registry and the shared config, and compare.
pub async fn fleet_status(client: &Client, prefix: &str) -> Result<FleetStatus, EtcdError> {
    let range = client.range_prefix(&format!("{prefix}/")).await?;
    let snapshot = Snapshot::from_range(prefix, range.revision, &range.kvs);
    let Identity::Etcd {
        config_revision,
        document,
        backends,
        ..
    } = identity(&snapshot)
    else {
        unreachable!("an etcd snapshot has an etcd identity");
    };
    let nodes_dir = format!("{prefix}/{NODES_DIR}");
    let mut nodes = Vec::new();
    let mut unreadable = Vec::new();
    for kv in &range.kvs {
        let key = String::from_utf8_lossy(&kv.key);
        if !key.starts_with(&nodes_dir) {
            continue;
        }
        match serde_json::from_slice::<NodeRecord>(&kv.value) {
            Ok(record) => {
                let converged = record.errors.is_empty()
                    && record.config_revision == config_revision
                    && record.document == document
                    && record.backends == backends;
                nodes.push(NodeStatus { record, converged });
            }
            Err(e) => unreadable.push(format!("{key}: {e}")),
        }
    }
    Ok(FleetStatus {
        revision: range.revision,
        config_revision,
        backends: snapshot.backends.len(),
        nodes,
        unreadable,
        canary: snapshot.canary().map(|(canary, revision)| CanaryStatus {
            revision,
            nodes: canary.nodes,
        }),
    })
}
