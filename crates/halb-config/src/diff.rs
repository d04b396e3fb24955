//! What changed between two configs, as typed changes: the running node
//! applies each to exactly what it names, so that adding, removing or
//! re-weighting one backend touches that backend only, and a pool whose
//! config did not change is not touched at all.

use std::net::SocketAddr;

use crate::{Backend, Config, Pool};

/// One difference between a running config and the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    ListenerAdded(String),
    ListenerRemoved(String),
    /// Same name, other settings (address, protocol, pool, timeouts).
    ListenerChanged(String),
    PoolAdded(String),
    PoolRemoved(String),
    /// Pool settings other than its backends changed; `keys` names them
    /// as the config file does (`algorithm`, `health_check`, ...).
    PoolChanged {
        pool: String,
        keys: Vec<&'static str>,
    },
    BackendAdded {
        pool: String,
        backend: SocketAddr,
    },
    BackendRemoved {
        pool: String,
        backend: SocketAddr,
    },
    /// `keys` names what changed (`weight`, `backup`, `priority`, `zone`).
    BackendChanged {
        pool: String,
        backend: SocketAddr,
        keys: Vec<&'static str>,
    },
    /// A node-local section changed: `runtime`, `admin`, `log`,
    /// `access_log`, `alerts`, `cluster` or `chaos`.
    Section(&'static str),
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::ListenerAdded(name) => write!(f, "listener {name} added"),
            Change::ListenerRemoved(name) => write!(f, "listener {name} removed"),
            Change::ListenerChanged(name) => write!(f, "listener {name} changed"),
            Change::PoolAdded(name) => write!(f, "pool {name} added"),
            Change::PoolRemoved(name) => write!(f, "pool {name} removed"),
            Change::PoolChanged { pool, keys } => {
                write!(f, "pool {pool}: {} changed", keys.join(", "))
            }
            Change::BackendAdded { pool, backend } => write!(f, "pool {pool}: {backend} added"),
            Change::BackendRemoved { pool, backend } => {
                write!(f, "pool {pool}: {backend} removed")
            }
            Change::BackendChanged {
                pool,
                backend,
                keys,
            } => write!(f, "pool {pool}: {backend} {} changed", keys.join(", ")),
            Change::Section(name) => write!(f, "[{name}] changed"),
        }
    }
}

/// Every change that takes `old` to `new`: listeners, then pools (each
/// pool's settings, then its backends), then node-local sections.
pub fn diff(old: &Config, new: &Config) -> Vec<Change> {
    let mut changes = Vec::new();
    for listener in &new.listeners {
        match old.listeners.iter().find(|l| l.name == listener.name) {
            None => changes.push(Change::ListenerAdded(listener.name.clone())),
            Some(running) if running != listener => {
                changes.push(Change::ListenerChanged(listener.name.clone()))
            }
            Some(_) => {}
        }
    }
    for running in &old.listeners {
        if !new.listeners.iter().any(|l| l.name == running.name) {
            changes.push(Change::ListenerRemoved(running.name.clone()));
        }
    }
    for pool in &new.pools {
        match old.pool(&pool.name) {
            None => changes.push(Change::PoolAdded(pool.name.clone())),
            Some(running) => pool_changes(running, pool, &mut changes),
        }
    }
    for running in &old.pools {
        if new.pool(&running.name).is_none() {
            changes.push(Change::PoolRemoved(running.name.clone()));
        }
    }
    let sections = [
        ("runtime", old.runtime != new.runtime),
        ("admin", old.admin != new.admin),
        ("log", old.log != new.log),
        ("access_log", old.access_log != new.access_log),
        ("alerts", old.alerts != new.alerts),
        ("vrrp", old.vrrp != new.vrrp),
        ("cluster", old.cluster != new.cluster),
        ("chaos", old.chaos != new.chaos),
    ];
    for (name, changed) in sections {
        if changed {
            changes.push(Change::Section(name));
        }
    }
    changes
}

fn pool_changes(old: &Pool, new: &Pool, changes: &mut Vec<Change>) {
    let settings: &[(&'static str, bool)] = &[
        ("algorithm", old.algorithm != new.algorithm),
        ("hash_key", old.hash_key != new.hash_key),
        ("retries", old.retries != new.retries),
        (
            "connect_timeout",
            old.connect_timeout != new.connect_timeout,
        ),
        ("timeout", old.timeout != new.timeout),
        ("health_check", old.health_check != new.health_check),
        ("on_down", old.on_down != new.on_down),
        (
            "outlier_detection",
            old.outlier_detection != new.outlier_detection,
        ),
        ("retry_budget", old.retry_budget != new.retry_budget),
        ("drain_timeout", old.drain_timeout != new.drain_timeout),
        ("slow_start", old.slow_start != new.slow_start),
        ("sticky", old.sticky != new.sticky),
        ("send_proxy", old.send_proxy != new.send_proxy),
        ("tls", old.tls != new.tls),
        (
            "panic_threshold",
            old.panic_threshold != new.panic_threshold,
        ),
        ("overflow", old.overflow != new.overflow),
    ];
    let keys: Vec<&'static str> = settings
        .iter()
        .filter(|(_, changed)| *changed)
        .map(|(key, _)| *key)
        .collect();
    if !keys.is_empty() {
        changes.push(Change::PoolChanged {
            pool: new.name.clone(),
            keys,
        });
    }
    let pool = || new.name.clone();
    for backend in &new.backends {
        match old.backends.iter().find(|b| b.address == backend.address) {
            None => changes.push(Change::BackendAdded {
                pool: pool(),
                backend: backend.address,
            }),
            Some(running) => {
                let keys = backend_keys(running, backend);
                if !keys.is_empty() {
                    changes.push(Change::BackendChanged {
                        pool: pool(),
                        backend: backend.address,
                        keys,
                    });
                }
            }
        }
    }
    for running in &old.backends {
        if !new.backends.iter().any(|b| b.address == running.address) {
            changes.push(Change::BackendRemoved {
                pool: pool(),
                backend: running.address,
            });
        }
    }
}

fn backend_keys(old: &Backend, new: &Backend) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if old.weight != new.weight {
        keys.push("weight");
    }
    if old.backup != new.backup {
        keys.push("backup");
    }
    if old.priority != new.priority {
        keys.push("priority");
    }
    if old.zone != new.zone {
        keys.push("zone");
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pools: &str) -> Config {
        let text = format!(
            "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n{pools}"
        );
        crate::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn app(backends: &[(u16, u32)], extra: &str) -> String {
        let mut text = format!("[[pool]]\nname = \"app\"\n{extra}");
        for (port, weight) in backends {
            text.push_str(&format!(
                "[[pool.backend]]\naddress = \"127.0.0.1:{port}\"\nweight = {weight}\n"
            ));
        }
        text
    }

    fn words(changes: &[Change]) -> Vec<String> {
        changes.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn an_equal_config_changes_nothing() {
        let a = config(&app(&[(1, 1), (2, 1)], ""));
        assert_eq!(diff(&a, &a.clone()), []);
    }

    #[test]
    fn one_backend_added_removed_or_reweighted_is_one_change() {
        let before = config(&app(&[(1, 1), (2, 1)], ""));
        let added = config(&app(&[(1, 1), (2, 1), (3, 1)], ""));
        assert_eq!(
            words(&diff(&before, &added)),
            ["pool app: 127.0.0.1:3 added"]
        );
        let removed = config(&app(&[(2, 1)], ""));
        assert_eq!(
            words(&diff(&before, &removed)),
            ["pool app: 127.0.0.1:1 removed"]
        );
        let reweighted = config(&app(&[(1, 1), (2, 5)], ""));
        assert_eq!(
            words(&diff(&before, &reweighted)),
            ["pool app: 127.0.0.1:2 weight changed"]
        );
        let reordered = config(&app(&[(2, 1), (1, 1)], ""));
        assert_eq!(diff(&before, &reordered), [], "order is not a change");
    }

    #[test]
    fn pool_settings_listeners_and_sections_are_named() {
        let before = config(&app(&[(1, 1)], ""));
        let after = crate::parse(&format!(
            "[alerts]\ntimeout = \"1s\"\n\
             [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\nidle_timeout = \"5s\"\n\
             [[listener]]\nname = \"api\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n{}",
            app(&[(1, 1)], "algorithm = \"maglev\"\ntimeout = \"5s\"\n")
        ))
        .unwrap();
        assert_eq!(
            words(&diff(&before, &after)),
            [
                "listener web changed",
                "listener api added",
                "pool app: algorithm, timeout changed",
                "[alerts] changed"
            ]
        );
    }
}
