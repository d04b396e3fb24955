//! A node's running config from its own file and what etcd holds: the
//! shared document (`<prefix>/config`), validated like a file, with the
//! dynamic backends (`<prefix>/pools/<pool>/backends/<address>`) added to
//! their pools. A bad document refuses the whole revision; a bad backend
//! key is left out and named, the rest applies.

use std::net::SocketAddr;

use halb_config::{Backend, Config, Shared, MAX_BACKEND_WEIGHT, MAX_PRIORITY};
use serde::Deserialize;

use crate::snapshot::{text_hash, Snapshot, CONFIG_KEY, POOLS_DIR};
use crate::Identity;

/// A config made from etcd, ready to apply.
#[derive(Debug, Clone)]
pub struct Composed {
    pub config: Config,
    pub identity: Identity,
    /// Backend keys left out, each with why.
    pub ignored: Vec<String>,
}

/// A revision that cannot be applied, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub identity: Identity,
    pub errors: Vec<String>,
}

/// Composes configs, remembering the last parse of the document so that a
/// backend change does not parse it again.
#[derive(Debug)]
pub struct Composer {
    prefix: String,
    /// The document's revision and text, and what parsing it gave.
    parsed: Option<(i64, String, Result<Shared, Vec<String>>)>,
}

/// A dynamic backend's value: empty, or
/// `{"weight":N,"backup":bool,"priority":N,"zone":"a"}` (each optional).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendValue {
    #[serde(default = "default_weight")]
    weight: u32,
    #[serde(default)]
    backup: bool,
    #[serde(default)]
    priority: Option<u8>,
    #[serde(default)]
    zone: Option<String>,
}

fn default_weight() -> u32 {
    1
}

impl Composer {
    pub fn new(prefix: &str) -> Composer {
        Composer {
            prefix: prefix.to_owned(),
            parsed: None,
        }
    }

    /// The config `local` (a node's own file) runs with what `snapshot`
    /// holds, or why it cannot.
    pub fn compose(&mut self, local: &Config, snapshot: &Snapshot) -> Result<Composed, Refused> {
        let identity = identity(snapshot);
        let refuse = |errors| Refused {
            identity: identity.clone(),
            errors,
        };
        let shared = self.shared(snapshot).map_err(refuse)?;
        let mut config = local.with_shared(shared);
        if let Some(admin) = &config.admin {
            let clashes: Vec<String> = (config.listeners.iter().enumerate())
                .filter(|(_, l)| l.bind.port() != 0 && l.bind == admin.bind)
                .map(|(i, l)| {
                    format!(
                        "{}/{CONFIG_KEY}: listener[{i}].bind: address {} is this node's admin.bind",
                        self.prefix, l.bind
                    )
                })
                .collect();
            if !clashes.is_empty() {
                return Err(refuse(clashes));
            }
        }
        // The pools this node's `[vrrp]` tracks must be in the shared
        // config: a node cannot watch the health of a pool it lacks.
        let untracked: Vec<String> = (config.vrrp.iter())
            .flat_map(|vrrp| &vrrp.instances)
            .flat_map(|instance| {
                (instance.track_pools.iter())
                    .filter(|pool| !config.pools.iter().any(|p| &p.name == *pool))
                    .map(|pool| {
                        format!(
                            "{}/{CONFIG_KEY}: has no pool {pool:?}, which this node's \
                             vrrp instance {:?} tracks (track_pools)",
                            self.prefix, instance.name
                        )
                    })
            })
            .collect();
        if !untracked.is_empty() {
            return Err(refuse(untracked));
        }
        let ignored = add_backends(&mut config, snapshot);
        Ok(Composed {
            config,
            identity,
            ignored,
        })
    }

    /// The shared sections of the document, parsed once per revision.
    fn shared(&mut self, snapshot: &Snapshot) -> Result<Shared, Vec<String>> {
        let key = format!("{}/{CONFIG_KEY}", self.prefix);
        let Some(document) = &snapshot.config else {
            return Err(vec![format!(
                "{key} does not exist (deleted, or never stored with `halb config push`)"
            )]);
        };
        let cached = self.parsed.as_ref().filter(|(revision, text, _)| {
            *revision == document.mod_revision && *text == document.value
        });
        if let Some((_, _, parsed)) = cached {
            return parsed.clone();
        }
        let parsed = if document.value.trim().is_empty() {
            Err(vec![format!("{key} is empty")])
        } else {
            halb_config::parse_shared(&document.value).map_err(|errors| {
                (errors.0.iter())
                    .map(|e| format!("{key} (revision {}): {e}", document.mod_revision))
                    .collect()
            })
        };
        self.parsed = Some((
            document.mod_revision,
            document.value.clone(),
            parsed.clone(),
        ));
        parsed
    }
}

/// The identity of what `snapshot` holds.
pub fn identity(snapshot: &Snapshot) -> Identity {
    let document = snapshot.config.as_ref().map_or("", |c| c.value.as_str());
    Identity::Etcd {
        config_revision: snapshot.config_revision(),
        backends: snapshot.backends_hash(),
        document: text_hash(document),
        revision: snapshot.revision,
    }
}

/// Add each dynamic backend to its pool; the keys that cannot be, with why.
fn add_backends(config: &mut Config, snapshot: &Snapshot) -> Vec<String> {
    let mut ignored = Vec::new();
    for (key, entry) in &snapshot.backends {
        let backend = match parse_backend(key, &entry.value) {
            Ok(backend) => backend,
            Err(why) => {
                ignored.push(format!("{key}: {why}"));
                continue;
            }
        };
        let (pool_name, backend) = backend;
        let Some(pool) = config.pools.iter_mut().find(|p| p.name == pool_name) else {
            ignored.push(format!(
                "{key}: the shared config has no pool {pool_name:?}"
            ));
            continue;
        };
        if pool.backends.iter().any(|b| b.address == backend.address) {
            ignored.push(format!(
                "{key}: {} is already a backend of pool {pool_name:?}",
                backend.address
            ));
            continue;
        }
        pool.backends.push(backend);
    }
    ignored
}

/// `pools/<pool>/backends/<address>` and its value → the pool and backend.
pub fn parse_backend(key: &str, value: &str) -> Result<(String, Backend), String> {
    let shape = "expected pools/<pool>/backends/<ip:port>";
    let rest = key.strip_prefix(POOLS_DIR).ok_or(shape)?;
    let (pool, address) = rest.rsplit_once("/backends/").ok_or(shape)?;
    if pool.is_empty() || pool.contains('/') {
        return Err(shape.to_owned());
    }
    let address: SocketAddr = address
        .parse()
        .map_err(|_| format!("{address:?} is not an ip:port address"))?;
    if address.port() == 0 {
        return Err("port 0 is not a usable backend port".to_owned());
    }
    let value = if value.trim().is_empty() {
        BackendValue {
            weight: default_weight(),
            backup: false,
            priority: None,
            zone: None,
        }
    } else {
        serde_json::from_str::<BackendValue>(value).map_err(|e| {
            format!(
                "the value must be empty or {{\"weight\":N,\"backup\":bool,\"priority\":N,\"zone\":\"name\"}}: {e}"
            )
        })?
    };
    if value.weight > MAX_BACKEND_WEIGHT {
        return Err(format!(
            "weight must be from 0 to {MAX_BACKEND_WEIGHT}, got {}",
            value.weight
        ));
    }
    if let Some(priority) = value.priority {
        if priority > MAX_PRIORITY {
            return Err(format!(
                "priority must be from 0 to {MAX_PRIORITY}, got {priority}"
            ));
        }
        if value.backup {
            return Err(
                "a backup is the last level, after every priority: set \"backup\" or \"priority\", not both"
                    .to_owned(),
            );
        }
    }
    if let Some(zone) = &value.zone {
        halb_config::check_zone_name(zone)?;
    }
    Ok((
        pool.to_owned(),
        Backend {
            address,
            weight: value.weight,
            backup: value.backup,
            priority: value.priority.unwrap_or(0),
            zone: value.zone,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Entry;

    const LOCAL: &str = "[admin]\nbind = \"127.0.0.1:9900\"\n[cluster.etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\n";
    const SHARED: &str = "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:8080\"\npool = \"app\"\n[[pool]]\nname = \"app\"\n[[pool.backend]]\naddress = \"127.0.0.1:9001\"\n";

    fn entry(value: &str, revision: i64) -> Entry {
        Entry {
            value: value.to_owned(),
            mod_revision: revision,
        }
    }

    fn snapshot(document: Option<&str>, backends: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            revision: 10,
            config: document.map(|d| entry(d, 4)),
            backends: backends
                .iter()
                .map(|(k, v)| (k.to_string(), entry(v, 5)))
                .collect(),
            canary: None,
            admin: Default::default(),
        }
    }

    #[test]
    fn a_shared_config_without_a_tracked_pool_is_refused() {
        let local = halb_config::parse(&format!(
            "{LOCAL}[vrrp]\ninterface = \"lo\"\n[[vrrp.instance]]\nname = \"v\"\nvrid = 1\n\
             priority = 100\nvirtual_ips = [\"198.18.0.100/24\"]\ntrack_pools = [\"db\"]\n"
        ))
        .unwrap();
        let mut composer = Composer::new("/halb");
        let refused = composer
            .compose(&local, &snapshot(Some(SHARED), &[]))
            .unwrap_err();
        assert_eq!(refused.errors.len(), 1, "{:?}", refused.errors);
        assert!(
            refused.errors[0]
                .contains("has no pool \"db\", which this node's vrrp instance \"v\" tracks"),
            "{:?}",
            refused.errors
        );
        let tracked = SHARED.replace("\"app\"", "\"db\"");
        assert!(composer
            .compose(&local, &snapshot(Some(&tracked), &[]))
            .is_ok());
    }

    #[test]
    fn dynamic_backends_join_their_pools() {
        let local = halb_config::parse(LOCAL).unwrap();
        let mut composer = Composer::new("/halb");
        let composed = composer
            .compose(
                &local,
                &snapshot(
                    Some(SHARED),
                    &[
                        ("pools/app/backends/127.0.0.1:9002", ""),
                        (
                            "pools/app/backends/127.0.0.1:9003",
                            r#"{"weight":5,"backup":true}"#,
                        ),
                        ("pools/app/backends/127.0.0.1:9001", ""),
                        ("pools/nope/backends/127.0.0.1:9004", ""),
                        ("pools/app/backends/localhost:1", ""),
                        ("pools/app/backends/127.0.0.1:9005", r#"{"weigth":5}"#),
                    ],
                ),
            )
            .unwrap();
        let backends: Vec<(String, u32, bool)> = composed.config.pools[0]
            .backends
            .iter()
            .map(|b| (b.address.to_string(), b.weight, b.backup))
            .collect();
        assert_eq!(
            backends,
            [
                ("127.0.0.1:9001".to_owned(), 1, false),
                ("127.0.0.1:9002".to_owned(), 1, false),
                ("127.0.0.1:9003".to_owned(), 5, true),
            ]
        );
        assert_eq!(composed.ignored.len(), 4, "{:#?}", composed.ignored);
        assert!(composed
            .ignored
            .iter()
            .any(|i| i.contains("already a backend")));
        assert!(composed
            .ignored
            .iter()
            .any(|i| i.contains("no pool \"nope\"")));
        assert!(composed
            .ignored
            .iter()
            .any(|i| i.contains("unknown field `weigth`")));
        assert_eq!(
            composed.config.admin, local.admin,
            "node-local sections stay"
        );
        assert_eq!(composed.identity.revision(), "4");
    }

    #[test]
    fn dynamic_backends_carry_a_priority_and_a_zone() {
        let key = "pools/app/backends/127.0.0.1:9001";
        let (_, backend) = parse_backend(key, r#"{"priority":2,"zone":"b"}"#).unwrap();
        assert_eq!((backend.priority, backend.zone.as_deref()), (2, Some("b")));
        let (_, plain) = parse_backend(key, "").unwrap();
        assert_eq!((plain.priority, plain.zone), (0, None));
        let refused = |value: &str| parse_backend(key, value).unwrap_err();
        assert!(refused(r#"{"priority":10}"#).contains("from 0 to 9"));
        assert!(refused(r#"{"priority":1,"backup":true}"#).contains("not both"));
        assert!(refused(r#"{"zone":"a b"}"#).contains("zone"));
    }

    #[test]
    fn missing_empty_and_bad_documents_are_refused() {
        let local = halb_config::parse(LOCAL).unwrap();
        let mut composer = Composer::new("/halb");
        let refused = |composer: &mut Composer, document| {
            composer
                .compose(&local, &snapshot(document, &[]))
                .unwrap_err()
                .errors
        };
        assert!(refused(&mut composer, None)[0].contains("/halb/config does not exist"));
        assert_eq!(
            refused(&mut composer, Some(" \n")),
            ["/halb/config is empty"]
        );
        let errors = refused(&mut composer, Some("[[listener]]\nname = 1\n"));
        assert!(
            errors.iter().any(|e| e.starts_with(
                "/halb/config (revision 4): listener[0].name (line 2): expected a string"
            )),
            "{errors:?}"
        );
        let errors = refused(
            &mut composer,
            Some(&SHARED.replace("127.0.0.1:8080", "127.0.0.1:9900")),
        );
        assert!(errors[0].contains("admin.bind"), "{errors:?}");
    }
}
