//! Renders the common test config: one listener in front of one pool, on
//! fresh loopback ports. Health checks are off unless a test turns them on;
//! the checks then ask for [`CHECK_PATH`], which backends count apart, so
//! every request a backend counts still came from a client.

use std::fmt::Write as _;
use std::net::SocketAddr;

use super::backends::CHECK_PATH;
use super::free_addr;

/// One listener → one pool → the given backends, plus an admin listener.
#[derive(Debug, Clone)]
pub struct BalancerConfig {
    /// Where halb's listener will accept clients.
    pub listen: SocketAddr,
    /// Where halb's admin API will answer.
    pub admin: SocketAddr,
    protocol: &'static str,
    algorithm: &'static str,
    listener_keys: Vec<(String, String)>,
    pool_keys: Vec<(String, String)>,
    /// `[pool.health_check]`; empty = `kind = "none"`.
    health_check_keys: Vec<(String, String)>,
    outlier_keys: Vec<(String, String)>,
    retry_budget_keys: Vec<(String, String)>,
    backends: Vec<BackendEntry>,
}

#[derive(Debug, Clone)]
struct BackendEntry {
    address: SocketAddr,
    weight: u32,
    backup: bool,
}

impl BalancerConfig {
    /// An HTTP listener balancing `round_robin` over `backends` (weight 1).
    pub fn http(backends: &[SocketAddr]) -> Self {
        Self::new("http", backends)
    }

    /// A TCP listener balancing `round_robin` over `backends` (weight 1).
    pub fn tcp(backends: &[SocketAddr]) -> Self {
        Self::new("tcp", backends)
    }

    fn new(protocol: &'static str, backends: &[SocketAddr]) -> Self {
        BalancerConfig {
            listen: free_addr(),
            admin: free_addr(),
            protocol,
            algorithm: "round_robin",
            listener_keys: Vec::new(),
            pool_keys: Vec::new(),
            health_check_keys: Vec::new(),
            outlier_keys: Vec::new(),
            retry_budget_keys: Vec::new(),
            backends: backends
                .iter()
                .map(|address| BackendEntry {
                    address: *address,
                    weight: 1,
                    backup: false,
                })
                .collect(),
        }
    }

    pub fn algorithm(mut self, algorithm: &'static str) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// Adds `key = value` to the `[[listener]]` table; `value` is TOML.
    pub fn listener_key(mut self, key: &str, value: &str) -> Self {
        self.listener_keys.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Adds `key = value` to the `[[pool]]` table; `value` is TOML.
    pub fn pool_key(mut self, key: &str, value: &str) -> Self {
        self.pool_keys.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Sets the backends' weights, in order.
    pub fn weights(mut self, weights: &[u32]) -> Self {
        assert_eq!(weights.len(), self.backends.len(), "one weight per backend");
        for (backend, weight) in self.backends.iter_mut().zip(weights) {
            backend.weight = *weight;
        }
        self
    }

    /// Adds `backups` (weight 1, `backup = true`) after the other backends.
    pub fn backups(mut self, backups: &[SocketAddr]) -> Self {
        self.backends
            .extend(backups.iter().map(|address| BackendEntry {
                address: *address,
                weight: 1,
                backup: true,
            }));
        self
    }

    /// Adds `key = value` to `[pool.health_check]`; `value` is TOML.
    pub fn health_check_key(mut self, key: &str, value: &str) -> Self {
        self.health_check_keys
            .push((key.to_owned(), value.to_owned()));
        self
    }

    /// HTTP checks of [`CHECK_PATH`] with these timings (durations as
    /// `"100ms"`).
    pub fn http_checks(self, interval: &str, timeout: &str, rise: u32, fall: u32) -> Self {
        self.health_check_key("kind", "\"http\"")
            .health_check_key("path", &format!("\"{CHECK_PATH}\""))
            .health_check_key("interval", &format!("\"{interval}\""))
            .health_check_key("timeout", &format!("\"{timeout}\""))
            .health_check_key("rise", &rise.to_string())
            .health_check_key("fall", &fall.to_string())
    }

    /// Adds `key = value` to `[pool.outlier_detection]`; `value` is TOML.
    pub fn outlier_key(mut self, key: &str, value: &str) -> Self {
        self.outlier_keys.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Adds `key = value` to `[pool.retry_budget]`; `value` is TOML.
    pub fn retry_budget_key(mut self, key: &str, value: &str) -> Self {
        self.retry_budget_keys
            .push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn to_toml(&self) -> String {
        let mut toml = format!(
            "[runtime]\nworkers = 2\n\n[admin]\nbind = \"{}\"\n\n\
             [[listener]]\nname = \"front\"\nbind = \"{}\"\nprotocol = \"{}\"\npool = \"app\"\n",
            self.admin, self.listen, self.protocol
        );
        for (key, value) in &self.listener_keys {
            let _ = writeln!(toml, "{key} = {value}");
        }
        let _ = write!(
            toml,
            "\n[[pool]]\nname = \"app\"\nalgorithm = \"{}\"\n",
            self.algorithm
        );
        for (key, value) in &self.pool_keys {
            let _ = writeln!(toml, "{key} = {value}");
        }
        toml.push_str("\n[pool.health_check]\n");
        if self.health_check_keys.is_empty() {
            toml.push_str("kind = \"none\"\n");
        }
        push_keys(&mut toml, &self.health_check_keys);
        if !self.outlier_keys.is_empty() {
            toml.push_str("\n[pool.outlier_detection]\n");
            push_keys(&mut toml, &self.outlier_keys);
        }
        if !self.retry_budget_keys.is_empty() {
            toml.push_str("\n[pool.retry_budget]\n");
            push_keys(&mut toml, &self.retry_budget_keys);
        }
        for backend in &self.backends {
            let _ = write!(
                toml,
                "\n[[pool.backend]]\naddress = \"{}\"\nweight = {}\n",
                backend.address, backend.weight
            );
            if backend.backup {
                toml.push_str("backup = true\n");
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

/// The 1-based line of the first line of `text` containing `needle`.
pub fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in config:\n{text}"))
        + 1
}
