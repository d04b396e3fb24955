//! Validation of `[cluster]` and `[cluster.etcd]`, and the rules that split
//! sections between a node's own file and the fleet's shared config.

use std::path::PathBuf;

use super::checker::socket_addr;
use super::checker::{non_empty, Checker};
use crate::raw::{Header, RawCluster, RawConfig, RawEtcd, RawPeers, Slot};
use crate::{
    check_etcd_prefix, check_node_name, Cluster, Etcd, EtcdEndpoint, Peers, DEFAULT_ETCD_PREFIX,
    DEFAULT_STATE_DIR, MIN_PEER_SECRET,
};

/// What a node's own file may hold when `[cluster.etcd]` is set.
const NODE_LOCAL: &str = "[runtime], [admin], [cluster], [vrrp], [log], [access_log], [chaos]";

pub(super) fn cluster(c: &mut Checker, raw: RawCluster) -> Option<Cluster> {
    let at = &raw.at;
    let node = match raw.node {
        Slot::Missing => Some(None),
        Slot::Invalid => None,
        Slot::Set(field) => c
            .check(at.path_of("node"), field, |s| {
                check_node_name(&s).map(|_| s)
            })
            .map(|f| Some(f.value)),
    };
    let state_dir = c.optional(
        at,
        "state_dir",
        raw.state_dir,
        PathBuf::from(DEFAULT_STATE_DIR),
        |s| {
            let s = non_empty(s)?;
            if s.starts_with('/') {
                Ok(PathBuf::from(s))
            } else {
                Err(format!(
                    "expected an absolute path such as \"/var/lib/halb\", got {s:?}"
                ))
            }
        },
    );
    let etcd = match raw.etcd {
        Slot::Missing => Some(None),
        Slot::Invalid => None,
        Slot::Set(field) => etcd(c, field.value).map(Some),
    };
    let peers = match raw.peers {
        Slot::Missing => Some(None),
        Slot::Invalid => None,
        Slot::Set(field) => peers(c, field.value).map(Some),
    };
    Some(Cluster {
        node: node?,
        state_dir: state_dir?.value,
        etcd: etcd?,
        peers: peers?,
    })
}

fn peers(c: &mut Checker, raw: RawPeers) -> Option<Peers> {
    let at = &raw.at;
    let bind = c.required(at, "bind", raw.bind, socket_addr);
    let secret = c.required(at, "secret", raw.secret, |s| {
        if s.chars().count() < MIN_PEER_SECRET {
            Err(format!(
                "the secret must be at least {MIN_PEER_SECRET} characters: it authenticates \
                 the peer links and signs sticky cookies"
            ))
        } else {
            Ok(s)
        }
    });
    let list = match raw.peers {
        Slot::Invalid => None,
        Slot::Missing => Some(Vec::new()),
        Slot::Set(field) => {
            let path = at.path_of("peers");
            let mut valid = Some(Vec::new());
            let mut seen: Vec<String> = Vec::new();
            for (i, slot) in field.value.into_iter().enumerate() {
                let Slot::Set(peer) = slot else {
                    valid = None;
                    continue;
                };
                let element = format!("{path}[{i}]");
                let ok = peer
                    .value
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
                if !ok {
                    c.error(
                        element,
                        peer.line,
                        format!(
                            "expected a peer's host:port such as \"198.18.0.12:7400\", got {:?}",
                            peer.value
                        ),
                    );
                    valid = None;
                } else if seen.contains(&peer.value) {
                    c.error(element, peer.line, format!("duplicate peer {}", peer.value));
                    valid = None;
                } else {
                    seen.push(peer.value.clone());
                    if let Some(v) = valid.as_mut() {
                        v.push(peer.value);
                    }
                }
            }
            valid
        }
    };
    if let (Some(bind), Some(list)) = (&bind, &list) {
        if list.contains(&bind.value.to_string()) {
            c.error(
                at.path_of("peers"),
                bind.line,
                format!("{} is this node's own bind address", bind.value),
            );
            return None;
        }
    }
    Some(Peers {
        bind: bind?.value,
        peers: list?,
        secret: secret?.value,
    })
}

fn etcd(c: &mut Checker, raw: RawEtcd) -> Option<Etcd> {
    let at = &raw.at;
    let endpoints = match raw.endpoints {
        Slot::Invalid => None,
        Slot::Missing => {
            c.error(
                at.path_of("endpoints"),
                at.line,
                "missing required key `endpoints` (such as [\"http://127.0.0.1:2379\"])",
            );
            None
        }
        Slot::Set(field) if field.value.is_empty() => {
            c.error(
                at.path_of("endpoints"),
                field.line,
                "no endpoints; name at least one etcd member such as \"http://127.0.0.1:2379\"",
            );
            None
        }
        Slot::Set(field) => endpoints(c, at, field.value),
    };
    let prefix = c.optional(
        at,
        "prefix",
        raw.prefix,
        DEFAULT_ETCD_PREFIX.to_owned(),
        |s| check_etcd_prefix(&s).map(|_| s),
    );
    Some(Etcd {
        endpoints: endpoints?,
        prefix: prefix?.value,
    })
}

fn endpoints(c: &mut Checker, at: &Header, raw: Vec<Slot<String>>) -> Option<Vec<EtcdEndpoint>> {
    let path = at.path_of("endpoints");
    let mut valid = Some(Vec::new());
    for (i, slot) in raw.into_iter().enumerate() {
        let Slot::Set(field) = slot else {
            valid = None;
            continue;
        };
        let element = format!("{path}[{i}]");
        match EtcdEndpoint::parse(&field.value) {
            Ok(endpoint) => {
                let seen = valid.as_ref().is_some_and(|v| v.contains(&endpoint));
                if seen {
                    c.error(
                        element,
                        field.line,
                        format!("duplicate endpoint {endpoint}"),
                    );
                    valid = None;
                } else if let Some(v) = valid.as_mut() {
                    v.push(endpoint);
                }
            }
            Err(message) => {
                c.error(element, field.line, message);
                valid = None;
            }
        }
    }
    valid
}

/// Whether a node's file sets `[cluster.etcd]`: then its listeners, pools
/// and alerts come from etcd.
pub(super) fn shared_from_etcd(raw: &RawConfig) -> bool {
    matches!(&raw.cluster, Slot::Set(cluster) if !matches!(cluster.value.etcd, Slot::Missing))
}

/// In a node's file with `[cluster.etcd]`: a shared section is an error
/// saying where it belongs.
pub(super) fn reject_shared_sections(c: &mut Checker, raw: &RawConfig) {
    let present = [
        ("listener", "[[listener]]", slot_line(&raw.listeners)),
        ("pool", "[[pool]]", slot_line(&raw.pools)),
        ("alerts", "[alerts]", slot_line(&raw.alerts)),
    ];
    for (key, section, line) in present {
        if let Some(line) = line {
            c.error(
                raw.root.path_of(key),
                line,
                format!(
                    "{section} is shared: with [cluster.etcd] set it comes from etcd \
                     (<prefix>/config), and this file holds only node-local sections \
                     ({NODE_LOCAL}); move it into the shared config and store that with \
                     `halb config push`"
                ),
            );
        }
    }
}

/// In the shared config: a node-local section is an error saying where it
/// belongs.
pub(super) fn reject_node_local_sections(c: &mut Checker, raw: &RawConfig) {
    let runtime_set = raw.runtime.at.line.is_some()
        || !matches!(raw.runtime.workers, Slot::Missing)
        || !matches!(raw.runtime.drain_timeout, Slot::Missing)
        || !matches!(raw.runtime.resolve_interval, Slot::Missing);
    let present = [
        ("runtime", runtime_set.then_some(raw.runtime.at.line)),
        ("admin", slot_line(&raw.admin)),
        ("log", slot_line(&raw.log)),
        ("access_log", slot_line(&raw.access_log)),
        ("cluster", slot_line(&raw.cluster)),
        ("vrrp", slot_line(&raw.vrrp)),
        ("chaos", slot_line(&raw.chaos)),
    ];
    for (key, line) in present {
        if let Some(line) = line {
            c.error(
                raw.root.path_of(key),
                line,
                format!(
                    "[{key}] is node-local: it belongs in each node's own file, not in the \
                     shared config (which holds only [[listener]], [[pool]] and [alerts])"
                ),
            );
        }
    }
}

/// `Some(line)` when the section is in the file (valid or not).
fn slot_line<T>(slot: &Slot<T>) -> Option<Option<usize>> {
    match slot {
        Slot::Missing => None,
        Slot::Invalid => Some(None),
        Slot::Set(field) => Some(field.line),
    }
}
