//! Host-name backends made concrete: a [`Config`] whose pools name backends
//! by host name becomes, given what the names resolved to, a config with one
//! backend per address. The proxy only ever sees addresses; a name whose
//! answer changes is then an ordinary diff (backends added and drained).

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};

use crate::{Backend, Config};

/// What each `(host, port)` resolved to, last time it could be resolved.
pub type Answers = HashMap<(String, u16), Vec<IpAddr>>;

impl Config {
    /// Every `(host, port)` a backend names, each once.
    pub fn backend_names(&self) -> BTreeSet<(String, u16)> {
        self.pools
            .iter()
            .flat_map(|pool| &pool.named_backends)
            .map(|named| (named.host.clone(), named.port))
            .collect()
    }

    /// This config with every host-name backend replaced by one backend per
    /// address its name resolved to (a name without an answer yet gives
    /// none). An address already in the pool, written as an IP address or
    /// reached through an earlier name, keeps its first settings.
    pub fn with_resolved(&self, answers: &Answers) -> Config {
        let mut config = self.clone();
        for pool in &mut config.pools {
            for named in &pool.named_backends {
                let Some(addresses) = answers.get(&(named.host.clone(), named.port)) else {
                    continue;
                };
                let mut addresses = addresses.clone();
                addresses.sort();
                addresses.dedup();
                for ip in addresses {
                    let address = SocketAddr::new(ip, named.port);
                    if pool.backends.iter().any(|b| b.address == address) {
                        continue;
                    }
                    pool.backends.push(Backend {
                        address,
                        weight: named.weight,
                        backup: named.backup,
                        priority: named.priority,
                        zone: named.zone.clone(),
                    });
                }
            }
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "app"

[[pool]]
name = "app"

[[pool.backend]]
address = "127.0.0.9:8080"

[[pool.backend]]
address = "App.Internal:8080"
weight = 3

[[pool.backend]]
address = "spare.internal.:8080"
backup = true
"#;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn names_are_kept_apart_from_addresses() {
        let config = crate::parse(CONFIG).expect("valid");
        let pool = &config.pools[0];
        assert_eq!(pool.backends.len(), 1);
        assert_eq!(pool.named_backends.len(), 2);
        assert_eq!(pool.named_backends[0].host, "app.internal");
        assert_eq!(pool.named_backends[1].host, "spare.internal");
        assert_eq!(
            config.backend_names().into_iter().collect::<Vec<_>>(),
            [
                ("app.internal".to_owned(), 8080),
                ("spare.internal".to_owned(), 8080)
            ]
        );
    }

    #[test]
    fn every_address_of_a_name_is_a_backend_with_its_settings() {
        let config = crate::parse(CONFIG).expect("valid");
        let answers: Answers = [
            (
                ("app.internal".to_owned(), 8080),
                vec![
                    ip("127.0.0.3"),
                    ip("127.0.0.2"),
                    ip("127.0.0.9"),
                    ip("127.0.0.2"),
                ],
            ),
            (("spare.internal".to_owned(), 8080), vec![ip("127.0.0.4")]),
        ]
        .into();
        let resolved = config.with_resolved(&answers);
        let backends: Vec<(String, u32, bool)> = resolved.pools[0]
            .backends
            .iter()
            .map(|b| (b.address.to_string(), b.weight, b.backup))
            .collect();
        assert_eq!(
            backends,
            [
                ("127.0.0.9:8080".to_owned(), 1, false),
                ("127.0.0.2:8080".to_owned(), 3, false),
                ("127.0.0.3:8080".to_owned(), 3, false),
                ("127.0.0.4:8080".to_owned(), 1, true),
            ],
            "sorted, deduplicated, the address written as an IP keeps its own settings"
        );
        // No answer yet: only the IP backends.
        assert_eq!(
            config.with_resolved(&Answers::new()).pools[0]
                .backends
                .len(),
            1
        );
    }
}
