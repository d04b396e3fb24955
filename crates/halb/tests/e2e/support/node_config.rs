//! Renders configs with several listeners and pools, an admin token,
//! `[runtime]` and `[alerts]` keys: what the reload, shutdown, admin and
//! alert tests need beyond [`super::BalancerConfig`]'s one listener and one
//! pool. Pools have no health checks unless a test adds them.

use std::fmt::Write as _;
use std::net::SocketAddr;

use super::backends::CHECK_PATH;
use super::free_addr;

/// A whole node: admin endpoint, listeners, pools.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Where halb's admin API will answer.
    pub admin: SocketAddr,
    token: Option<String>,
    /// `[chaos] allow = true` when set.
    chaos: bool,
    runtime_keys: Vec<(String, String)>,
    alerts_keys: Vec<(String, String)>,
    listeners: Vec<ListenerEntry>,
    pools: Vec<PoolEntry>,
    /// Sections written as they are (`[cluster]`, `[cluster.peers]`...).
    sections: String,
}

#[derive(Debug, Clone)]
struct ListenerEntry {
    name: String,
    bind: SocketAddr,
    protocol: &'static str,
    pool: String,
}

#[derive(Debug, Clone)]
struct PoolEntry {
    name: String,
    keys: Vec<(String, String)>,
    health_check_keys: Vec<(String, String)>,
    sticky_keys: Vec<(String, String)>,
    backends: Vec<SocketAddr>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeConfig {
    /// Two workers, an admin endpoint on a fresh loopback port, nothing else.
    pub fn new() -> Self {
        NodeConfig {
            admin: free_addr(),
            token: None,
            chaos: false,
            runtime_keys: vec![("workers".into(), "2".into())],
            alerts_keys: Vec::new(),
            listeners: Vec::new(),
            pools: Vec::new(),
            sections: String::new(),
        }
    }

    /// Adds `text` (whole sections, such as `[cluster.peers]` and its keys)
    /// to the config as it is.
    pub fn section(mut self, text: &str) -> Self {
        self.sections.push('\n');
        self.sections.push_str(text);
        self
    }

    /// `[pool.sticky]` of `pool` with these keys (values as TOML).
    pub fn sticky(mut self, pool: &str, keys: &[(&str, &str)]) -> Self {
        self.pool_mut(pool)
            .sticky_keys
            .extend(keys.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    /// Sets `[admin] bind`.
    pub fn admin_bind(mut self, bind: SocketAddr) -> Self {
        self.admin = bind;
        self
    }

    /// Sets `[admin] token`.
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    /// Sets `[chaos] allow = true`: the faults API works.
    pub fn chaos_allowed(mut self) -> Self {
        self.chaos = true;
        self
    }

    /// Adds `key = value` to `[runtime]`; `value` is TOML.
    pub fn runtime_key(mut self, key: &str, value: &str) -> Self {
        self.runtime_keys.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Adds `key = value` to `[alerts]`; `value` is TOML.
    pub fn alerts_key(mut self, key: &str, value: &str) -> Self {
        self.alerts_keys.push((key.to_owned(), value.to_owned()));
        self
    }

    /// `[alerts] webhooks = [urls...]`.
    pub fn webhooks(self, urls: &[String]) -> Self {
        let list: Vec<String> = urls.iter().map(|url| format!("{url:?}")).collect();
        self.alerts_key("webhooks", &format!("[{}]", list.join(", ")))
    }

    /// An HTTP listener `name` on `bind`, sending to `pool`.
    pub fn listener(self, name: &str, bind: SocketAddr, pool: &str) -> Self {
        self.listener_of("http", name, bind, pool)
    }

    /// A TCP listener `name` on `bind`, sending to `pool`.
    pub fn tcp_listener(self, name: &str, bind: SocketAddr, pool: &str) -> Self {
        self.listener_of("tcp", name, bind, pool)
    }

    fn listener_of(
        mut self,
        protocol: &'static str,
        name: &str,
        bind: SocketAddr,
        pool: &str,
    ) -> Self {
        self.listeners.push(ListenerEntry {
            name: name.to_owned(),
            bind,
            protocol,
            pool: pool.to_owned(),
        });
        self
    }

    /// A `round_robin` pool `name` over `backends` (weight 1).
    pub fn pool(mut self, name: &str, backends: &[SocketAddr]) -> Self {
        self.pools.push(PoolEntry {
            name: name.to_owned(),
            keys: Vec::new(),
            health_check_keys: Vec::new(),
            sticky_keys: Vec::new(),
            backends: backends.to_vec(),
        });
        self
    }

    /// Adds `key = value` to the `[[pool]]` table of `pool`; `value` is TOML.
    pub fn pool_key(mut self, pool: &str, key: &str, value: &str) -> Self {
        self.pool_mut(pool)
            .keys
            .push((key.to_owned(), value.to_owned()));
        self
    }

    /// HTTP checks of [`CHECK_PATH`] on `pool` with these timings
    /// (durations as `"100ms"`).
    pub fn http_checks(
        mut self,
        pool: &str,
        interval: &str,
        timeout: &str,
        rise: u32,
        fall: u32,
    ) -> Self {
        let keys = &mut self.pool_mut(pool).health_check_keys;
        for (key, value) in [
            ("kind", "\"http\"".to_owned()),
            ("path", format!("\"{CHECK_PATH}\"")),
            ("interval", format!("\"{interval}\"")),
            ("timeout", format!("\"{timeout}\"")),
            ("rise", rise.to_string()),
            ("fall", fall.to_string()),
        ] {
            keys.push((key.to_owned(), value));
        }
        self
    }

    /// TCP-connect checks on `pool` with these timings.
    pub fn tcp_checks(
        mut self,
        pool: &str,
        interval: &str,
        timeout: &str,
        rise: u32,
        fall: u32,
    ) -> Self {
        let keys = &mut self.pool_mut(pool).health_check_keys;
        for (key, value) in [
            ("kind", "\"tcp\"".to_owned()),
            ("interval", format!("\"{interval}\"")),
            ("timeout", format!("\"{timeout}\"")),
            ("rise", rise.to_string()),
            ("fall", fall.to_string()),
        ] {
            keys.push((key.to_owned(), value));
        }
        self
    }

    fn pool_mut(&mut self, name: &str) -> &mut PoolEntry {
        self.pools
            .iter_mut()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no pool {name:?} in the test config"))
    }

    pub fn to_toml(&self) -> String {
        let mut toml = String::from("[runtime]\n");
        push_keys(&mut toml, &self.runtime_keys);
        let _ = write!(toml, "\n[admin]\nbind = \"{}\"\n", self.admin);
        if let Some(token) = &self.token {
            let _ = writeln!(toml, "token = {token:?}");
        }
        if self.chaos {
            toml.push_str("\n[chaos]\nallow = true\n");
        }
        toml.push_str(&self.sections);
        if !self.alerts_keys.is_empty() {
            toml.push_str("\n[alerts]\n");
            push_keys(&mut toml, &self.alerts_keys);
        }
        for listener in &self.listeners {
            let _ = write!(
                toml,
                "\n[[listener]]\nname = \"{}\"\nbind = \"{}\"\nprotocol = \"{}\"\npool = \"{}\"\n",
                listener.name, listener.bind, listener.protocol, listener.pool
            );
        }
        for pool in &self.pools {
            let _ = write!(toml, "\n[[pool]]\nname = \"{}\"\n", pool.name);
            if !pool.keys.iter().any(|(key, _)| key == "algorithm") {
                toml.push_str("algorithm = \"round_robin\"\n");
            }
            push_keys(&mut toml, &pool.keys);
            if !pool.health_check_keys.is_empty() {
                toml.push_str("\n[pool.health_check]\n");
                push_keys(&mut toml, &pool.health_check_keys);
            }
            if !pool.sticky_keys.is_empty() {
                toml.push_str("\n[pool.sticky]\n");
                push_keys(&mut toml, &pool.sticky_keys);
            }
            for backend in &pool.backends {
                let _ = write!(toml, "\n[[pool.backend]]\naddress = \"{backend}\"\n");
            }
        }
        toml
    }
}

fn push_keys(toml: &mut String, keys: &[(String, String)]) {
    for (key, value) in keys {
        let _ = writeln!(toml, "{key} = {value}");
    }
}
