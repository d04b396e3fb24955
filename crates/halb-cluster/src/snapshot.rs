//! What a node knows of the keys under `<prefix>/`: the shared config
//! document and the dynamic backends, as of one etcd revision. A full read
//! makes one; watch events move it on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::etcd::wire::{Event, EventKind, KeyValue};

/// The key of the shared config, under the prefix.
pub const CONFIG_KEY: &str = "config";
/// Dynamic backends: `pools/<pool>/backends/<address>`.
pub const POOLS_DIR: &str = "pools/";
/// The node registry: `nodes/<node>`.
pub const NODES_DIR: &str = "nodes/";
/// Operator actions kept for the fleet: `admin/<pool>/<address>` holds an
/// [`AdminRecord`] for each backend drained or disabled through an API.
pub const ADMIN_DIR: &str = "admin/";

/// The value of an `admin/<pool>/<address>` key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminRecord {
    /// `draining` or `disabled` (an enabled backend has no key).
    pub state: String,
    /// The node whose API took the action.
    pub node: String,
    pub at_ms: u64,
}

/// A revision on trial (`halb config push --canary`): a [`Canary`] as JSON.
pub const CANARY_KEY: &str = "canary";

/// `<prefix>/canary`: the named nodes run `config` instead of
/// `<prefix>/config` until the push promotes or rolls it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    pub nodes: Vec<String>,
    /// The shared config document on trial.
    pub config: String,
    /// The revision of `<prefix>/config` it would replace.
    pub base_revision: i64,
}

/// One key's value and the revision that last wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub value: String,
    pub mod_revision: i64,
}

/// The shared config and the dynamic backends as of `revision`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The store's revision this view is current to.
    pub revision: i64,
    /// `<prefix>/config`; `None` when the key does not exist.
    pub config: Option<Entry>,
    /// `pools/<pool>/backends/<address>` (relative to the prefix) → value.
    pub backends: BTreeMap<String, Entry>,
    /// `<prefix>/canary`, if a push has a revision on trial.
    #[serde(default)]
    pub canary: Option<Entry>,
    /// `admin/<pool>/<address>` (relative to the prefix) → value.
    #[serde(default)]
    pub admin: BTreeMap<String, Entry>,
}

impl Snapshot {
    /// The view of a full read of `<prefix>/` at `revision`.
    pub fn from_range(prefix: &str, revision: i64, kvs: &[KeyValue]) -> Snapshot {
        let mut snapshot = Snapshot {
            revision,
            ..Snapshot::default()
        };
        for kv in kvs {
            snapshot.put(prefix, kv);
        }
        snapshot
    }

    /// Apply watch events; whether the shared config or a backend changed
    /// (node registry writes do not count).
    pub fn apply(&mut self, prefix: &str, events: &[Event]) -> bool {
        let mut changed = false;
        for event in events {
            changed |= match event.kind {
                EventKind::Put => self.put(prefix, &event.kv),
                EventKind::Delete => self.delete(prefix, &event.kv),
            };
            self.revision = self.revision.max(event.kv.mod_revision);
        }
        changed
    }

    fn put(&mut self, prefix: &str, kv: &KeyValue) -> bool {
        let Some(key) = relative(prefix, &kv.key) else {
            return false;
        };
        let entry = Entry {
            value: String::from_utf8_lossy(&kv.value).into_owned(),
            mod_revision: kv.mod_revision,
        };
        if key == CONFIG_KEY {
            self.config = Some(entry);
            true
        } else if key.starts_with(POOLS_DIR) {
            self.backends.insert(key.to_owned(), entry);
            true
        } else if key == CANARY_KEY {
            self.canary = Some(entry);
            true
        } else if key.starts_with(ADMIN_DIR) {
            self.admin.insert(key.to_owned(), entry);
            true
        } else {
            false
        }
    }

    fn delete(&mut self, prefix: &str, kv: &KeyValue) -> bool {
        let Some(key) = relative(prefix, &kv.key) else {
            return false;
        };
        if key == CONFIG_KEY {
            self.config = None;
            true
        } else if key.starts_with(POOLS_DIR) {
            self.backends.remove(key).is_some()
        } else if key == CANARY_KEY {
            self.canary.take().is_some()
        } else if key.starts_with(ADMIN_DIR) {
            self.admin.remove(key).is_some()
        } else {
            false
        }
    }

    /// What `node` runs: this view with the canary's document in place of
    /// `<prefix>/config` when the canary names the node (its revision is
    /// the canary key's), and without the canary in any case. A canary
    /// value that is not a [`Canary`] names no node.
    pub fn for_node(&self, node: &str) -> Snapshot {
        let mut view = self.clone();
        view.canary = None;
        let trial = self
            .canary()
            .filter(|(canary, _)| canary.nodes.iter().any(|n| n == node));
        if let Some((canary, mod_revision)) = trial {
            view.config = Some(Entry {
                value: canary.config,
                mod_revision,
            });
        }
        view
    }

    /// The canary on trial, if the key holds one.
    pub fn canary(&self) -> Option<(Canary, i64)> {
        let entry = self.canary.as_ref()?;
        let canary = serde_json::from_str(&entry.value).ok()?;
        Some((canary, entry.mod_revision))
    }

    /// The kept operator actions: (pool, backend, state word). Keys or
    /// values that do not parse are skipped.
    pub fn admin_states(&self) -> Vec<(String, std::net::SocketAddr, String)> {
        self.admin
            .iter()
            .filter_map(|(key, entry)| {
                let (pool, address) = key.strip_prefix(ADMIN_DIR)?.split_once('/')?;
                let record: AdminRecord = serde_json::from_str(&entry.value).ok()?;
                Some((pool.to_owned(), address.parse().ok()?, record.state))
            })
            .collect()
    }

    /// The revision of the shared config document (0: none).
    pub fn config_revision(&self) -> i64 {
        self.config.as_ref().map_or(0, |c| c.mod_revision)
    }

    /// A short identity of the dynamic backend keys and their values: two
    /// nodes with the same one see the same backends.
    pub fn backends_hash(&self) -> String {
        let mut hash = Fnv::new();
        for (key, entry) in &self.backends {
            hash.write(key.as_bytes());
            hash.write(b"\0");
            hash.write(entry.value.as_bytes());
            hash.write(b"\0");
        }
        hash.hex()
    }
}

/// `key` without `<prefix>/`, if it is under it.
fn relative<'a>(prefix: &str, key: &'a [u8]) -> Option<&'a str> {
    let key = std::str::from_utf8(key).ok()?;
    key.strip_prefix(prefix)?.strip_prefix('/')
}

/// FNV-1a, 64 bits: short, stable identities of texts (not a defence
/// against anyone).
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Fnv {
    pub fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// 16 hex digits.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

impl Default for Fnv {
    fn default() -> Self {
        Fnv::new()
    }
}

/// The identity of a text: its FNV-1a hash in hex.
pub fn text_hash(text: &str) -> String {
    let mut hash = Fnv::new();
    hash.write(text.as_bytes());
    hash.hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, revision: i64) -> KeyValue {
        KeyValue {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            mod_revision: revision,
            ..KeyValue::default()
        }
    }

    #[test]
    fn a_canary_document_is_seen_by_the_nodes_it_names_only() {
        let canary = r#"{"nodes":["lb1"],"config":"new","base_revision":2}"#;
        let snapshot = Snapshot::from_range(
            "/halb",
            9,
            &[kv("/halb/config", "old", 2), kv("/halb/canary", canary, 9)],
        );
        let (trial, revision) = snapshot.canary().unwrap();
        assert_eq!((trial.nodes, revision), (vec!["lb1".to_owned()], 9));
        let lb1 = snapshot.for_node("lb1");
        assert_eq!(lb1.config.as_ref().map(|c| c.value.as_str()), Some("new"));
        assert_eq!(lb1.config_revision(), 9);
        assert_eq!(lb1.canary, None);
        let lb2 = snapshot.for_node("lb2");
        assert_eq!(lb2.config.as_ref().map(|c| c.value.as_str()), Some("old"));
        assert_eq!(lb2.config_revision(), 2);
        // A value that is not a canary names nobody.
        let broken = Snapshot::from_range(
            "/halb",
            9,
            &[kv("/halb/config", "old", 2), kv("/halb/canary", "{", 9)],
        );
        assert_eq!(broken.for_node("lb1").config_revision(), 2);
    }

    #[test]
    fn events_move_the_view_on() {
        let mut snapshot = Snapshot::from_range(
            "/halb",
            5,
            &[
                kv("/halb/config", "x", 2),
                kv("/halb/pools/app/backends/127.0.0.1:1", "", 3),
                kv("/halb/nodes/lb1", "{}", 5),
                kv("/halbx/config", "other", 4),
            ],
        );
        assert_eq!(snapshot.config_revision(), 2);
        assert_eq!(snapshot.backends.len(), 1);
        let before = snapshot.backends_hash();
        let node_put = Event {
            kind: EventKind::Put,
            kv: kv("/halb/nodes/lb2", "{}", 6),
        };
        assert!(
            !snapshot.apply("/halb", &[node_put]),
            "the registry is not config"
        );
        assert_eq!(snapshot.revision, 6);
        let delete = Event {
            kind: EventKind::Delete,
            kv: kv("/halb/pools/app/backends/127.0.0.1:1", "", 7),
        };
        assert!(snapshot.apply("/halb", &[delete]));
        assert_ne!(snapshot.backends_hash(), before);
        let gone = Event {
            kind: EventKind::Delete,
            kv: kv("/halb/config", "", 8),
        };
        assert!(snapshot.apply("/halb", &[gone]));
        assert_eq!(snapshot.config, None);
        assert_eq!(snapshot.revision, 8);
    }
}

#[cfg(test)]
mod admin_tests {
    use super::*;

    #[test]
    fn kept_operator_actions_are_read_and_bad_ones_skipped() {
        let mut s = Snapshot::default();
        let entry = |v: &str| Entry {
            value: v.to_owned(),
            mod_revision: 1,
        };
        s.admin.insert(
            "admin/app/127.0.0.1:9001".into(),
            entry(r#"{"state":"draining","node":"lb1","at_ms":5}"#),
        );
        s.admin.insert(
            "admin/app/nonsense".into(),
            entry(r#"{"state":"disabled","node":"lb1","at_ms":5}"#),
        );
        s.admin
            .insert("admin/app/127.0.0.1:9002".into(), entry("not json"));
        assert_eq!(
            s.admin_states(),
            [(
                "app".to_owned(),
                "127.0.0.1:9001".parse().unwrap(),
                "draining".to_owned()
            )]
        );
    }
}
