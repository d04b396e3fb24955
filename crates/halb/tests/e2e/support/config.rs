//! Renders the common test config: one listener in front of one pool, on
//! fresh loopback ports, with health checks off so that every request a
//! backend counts came from a client.

use std::fmt::Write as _;
use std::net::SocketAddr;

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
    backends: Vec<(SocketAddr, u32)>,
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
            backends: backends.iter().map(|addr| (*addr, 1)).collect(),
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
            backend.1 = *weight;
        }
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
        toml.push_str("\n[pool.health_check]\nkind = \"none\"\n");
        for (address, weight) in &self.backends {
            let _ = write!(
                toml,
                "\n[[pool.backend]]\naddress = \"{address}\"\nweight = {weight}\n"
            );
        }
        toml
    }
}

/// The 1-based line of the first line of `text` containing `needle`.
pub fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in config:\n{text}"))
        + 1
}
