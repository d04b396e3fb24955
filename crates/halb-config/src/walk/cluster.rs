//! Reading `[cluster]` and `[cluster.etcd]`.

use super::{Table, Walker};
use crate::raw::{RawCluster, RawEtcd};

const CLUSTER_KEYS: &[&str] = &["node", "state_dir", "etcd"];
const ETCD_KEYS: &[&str] = &["endpoints", "prefix"];

impl Walker {
    pub(super) fn cluster(&mut self, table: &Table<'_>) -> RawCluster {
        self.reject_unknown_keys(table, CLUSTER_KEYS);
        RawCluster {
            at: table.at.clone(),
            node: self.string(table, "node"),
            state_dir: self.string(table, "state_dir"),
            etcd: self.table(table, "etcd").map(|t| self.etcd(t)),
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
