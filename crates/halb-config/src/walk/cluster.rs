//! Reading `[cluster]`, `[cluster.etcd]` and `[cluster.peers]`.

use super::{Table, Walker};
use crate::raw::{RawCluster, RawEtcd, RawPeers};

const CLUSTER_KEYS: &[&str] = &["node", "state_dir", "etcd", "peers"];
const ETCD_KEYS: &[&str] = &["endpoints", "prefix"];
const PEERS_KEYS: &[&str] = &["bind", "peers", "secret"];

impl Walker {
    pub(super) fn cluster(&mut self, table: &Table<'_>) -> RawCluster {
        self.reject_unknown_keys(table, CLUSTER_KEYS);
        RawCluster {
            at: table.at.clone(),
            node: self.string(table, "node"),
            state_dir: self.string(table, "state_dir"),
            etcd: self.table(table, "etcd").map(|t| self.etcd(t)),
            peers: self.table(table, "peers").map(|t| self.peers(t)),
        }
    }

    fn peers(&mut self, table: &Table<'_>) -> RawPeers {
        self.reject_unknown_keys(table, PEERS_KEYS);
        RawPeers {
            at: table.at.clone(),
            bind: self.string(table, "bind"),
            peers: self.string_array(table, "peers"),
            secret: self.string(table, "secret"),
        }
    }

    fn etcd(&mut self, table: &Table<'_>) -> RawEtcd {
        self.reject_unknown_keys(table, ETCD_KEYS);
        RawEtcd {
            at: table.at.clone(),
            endpoints: self.string_array(table, "endpoints"),
            prefix: self.string(table, "prefix"),
        }
    }
}
