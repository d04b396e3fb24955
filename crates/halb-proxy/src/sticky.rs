//! Session affinity (`[pool.sticky]`): which backend a request prefers, and
//! what its answer teaches.
//!
//! - `cookie`: halb names the backend in a cookie whose value is an HMAC of
//!   the backend's address under the fleet's secret: a client cannot name a
//!   backend it was not given, every node with the secret honours every
//!   node's cookies, and nothing is stored.
//! - `table`: a stick table in the node's state, keyed by the client's
//!   address, a header or a cookie, shared with the peers.
//!
//! When the preferred backend cannot take the request, the client moves to
//! the backend that ranks highest for its key by rendezvous hashing among
//! those usable: every node with the same view moves it to the same one.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use halb_balance::{hash_bytes, hash_bytes_with_seed};
use halb_config::{HashKey, Sticky, StickyKind};
use halb_state::{unix_ms, State, StickyTable};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::state::BackendState;

/// A pool's affinity, built with its snapshot.
pub(crate) enum Affinity {
    Cookie {
        name: String,
        /// Each backend's cookie value, in pool order.
        tokens: Vec<String>,
    },
    Table {
        key: HashKey,
        table: Arc<StickyTable>,
        state: Arc<State>,
    },
}

/// What affinity asks of one request's first try.
#[derive(Debug, Default)]
pub(crate) struct Preference {
    /// The backend it is tied to, by index in the pool.
    pub(crate) wanted: Option<usize>,
    /// The session key (stick tables), hashed for rendezvous.
    pub(crate) key_hash: Option<u64>,
    /// The session key as the table holds it.
    pub(crate) key: Option<String>,
    /// It named a backend that is not (or no longer) in the pool.
    pub(crate) stale: bool,
    /// The table's entry is due a refresh on the peers.
    pub(crate) refresh: bool,
}

/// A per-process key when no secret is configured: cookies then hold on
/// this node only (until it restarts).
fn process_key() -> &'static [u8; 32] {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        if let Ok(bytes) = std::fs::read("/proc/sys/kernel/random/uuid")
            .and_then(|a| std::fs::read("/proc/sys/kernel/random/uuid").map(|b| [a, b].concat()))
        {
            let mut mac = Hmac::<Sha256>::new_from_slice(&bytes).expect("any key length");
            mac.update(b"halb cookie key");
            key.copy_from_slice(&mac.finalize().into_bytes());
        }
        key
    })
}

/// The cookie value naming `backend`: 16 hex digits of an HMAC-SHA256.
fn token(secret: &[u8], pool: &str, backend: SocketAddr) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(b"halb sticky v1\0");
    mac.update(pool.as_bytes());
    mac.update(b"\0");
    mac.update(backend.to_string().as_bytes());
    let bytes = mac.finalize().into_bytes();
    bytes[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl Affinity {
    /// The affinity `sticky` asks for over `backends`.
    pub(crate) fn build(
        pool: &str,
        sticky: &Sticky,
        backends: &[Arc<BackendState>],
        state: &Arc<State>,
    ) -> Affinity {
        match &sticky.kind {
            StickyKind::Cookie { name } => {
                let fleet = state.fleet_secret();
                let secret: &[u8] = match (&sticky.secret, &fleet) {
                    (Some(s), _) => s.as_bytes(),
                    (None, Some(s)) => s.as_bytes(),
                    (None, None) => process_key(),
                };
                Affinity::Cookie {
                    name: name.clone(),
                    tokens: backends
                        .iter()
                        .map(|b| token(secret, pool, b.address))
                        .collect(),
                }
            }
            StickyKind::Table { key, ttl, size } => Affinity::Table {
                key: key.clone(),
                table: state.sticky_table(pool, ttl.as_millis() as u64, *size),
                state: state.clone(),
            },
        }
    }

    /// Entries in the stick table (`None` for cookies: nothing is stored).
    pub(crate) fn entries(&self) -> Option<usize> {
        match self {
            Affinity::Cookie { .. } => None,
            Affinity::Table { table, .. } => Some(table.len()),
        }
    }

    /// The preference of a request, given how to read its headers.
    pub(crate) fn prefer(
        &self,
        backends: &[Arc<BackendState>],
        client: IpAddr,
        header: impl Fn(&str) -> Option<String>,
        cookie: impl Fn(&str) -> Option<String>,
    ) -> Preference {
        match self {
            Affinity::Cookie { name, tokens } => {
                let Some(value) = cookie(name) else {
                    return Preference::default();
                };
                let wanted = tokens.iter().position(|t| *t == value);
                Preference {
                    wanted,
                    key_hash: Some(hash_bytes(value.as_bytes())),
                    key: None,
                    stale: wanted.is_none(),
                    refresh: false,
                }
            }
            Affinity::Table { key, table, .. } => {
                let text = match key {
                    HashKey::ClientIp | HashKey::Path => Some(client_key(client)),
                    HashKey::Header(name) => header(name),
                    HashKey::Cookie(name) => cookie(name),
                };
                let Some(text) = text else {
                    return Preference::default();
                };
                let found = table.get(&text, unix_ms());
                let wanted =
                    found.and_then(|f| backends.iter().position(|b| b.address == f.backend));
                Preference {
                    wanted,
                    key_hash: Some(hash_bytes(text.as_bytes())),
                    stale: found.is_some() && wanted.is_none(),
                    refresh: found.is_some_and(|f| f.refresh),
                    key: Some(text),
                }
            }
        }
    }

    /// After `backend` answered the request: the table learns it (and the
    /// peers hear of it); for cookies, the `Set-Cookie` value when the
    /// client's cookie did not already name it.
    pub(crate) fn served(
        &self,
        preference: &Preference,
        index: usize,
        backend: SocketAddr,
    ) -> Option<String> {
        match self {
            Affinity::Cookie { name, tokens } => (preference.wanted != Some(index))
                .then(|| format!("{name}={}; Path=/; HttpOnly; SameSite=Lax", tokens[index])),
            Affinity::Table { table, state, .. } => {
                let key = preference.key.as_deref()?;
                match table.learn(key, backend, unix_ms()) {
                    Some(entry) => state.publish_sticky(entry),
                    None if preference.refresh => {
                        if let Some(entry) = table.entry_of(key) {
                            state.publish_sticky(entry);
                        }
                    }
                    None => {}
                }
                None
            }
        }
    }
}

/// A client address as a table key (IPv4-mapped IPv6 as IPv4).
pub(crate) fn client_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        v4 => v4.to_string(),
    }
}

/// The rendezvous score of `backend` for a key: the highest wins.
pub(crate) fn score(key_hash: u64, backend: SocketAddr) -> u64 {
    // The address's bytes and port on the stack, the key as the seed.
    let mut bytes = [0u8; 18];
    let len = match backend.ip() {
        IpAddr::V4(v4) => {
            bytes[..4].copy_from_slice(&v4.octets());
            4
        }
        IpAddr::V6(v6) => {
            bytes[..16].copy_from_slice(&v6.octets());
            16
        }
    };
    bytes[len..len + 2].copy_from_slice(&backend.port().to_be_bytes());
    hash_bytes_with_seed(&bytes[..len + 2], key_hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_differ_by_backend_pool_and_secret_and_do_not_show_the_address() {
        let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let t = token(b"0123456789abcdef", "app", a);
        assert_eq!(t.len(), 16);
        assert_eq!(
            t,
            token(b"0123456789abcdef", "app", a),
            "the same on every node"
        );
        assert_ne!(t, token(b"0123456789abcdef", "app", b));
        assert_ne!(t, token(b"0123456789abcdef", "web", a));
        assert_ne!(t, token(b"fedcba9876543210", "app", a));
        assert!(!t.contains("10.0.0.1"));
    }

    #[test]
    fn rendezvous_moves_only_the_keys_of_the_lost_backend() {
        let backends: Vec<SocketAddr> = (1..=4)
            .map(|i| format!("10.0.0.{i}:80").parse().unwrap())
            .collect();
        let best =
            |key: u64, set: &[SocketAddr]| *set.iter().max_by_key(|b| score(key, **b)).unwrap();
        let mut moved = 0;
        for key in 0..1000u64 {
            let before = best(key, &backends);
            let after = best(key, &backends[1..]);
            if before != backends[0] {
                assert_eq!(before, after, "key {key} moved without cause");
            } else {
                moved += 1;
            }
        }
        assert!(
            (150..350).contains(&moved),
            "{moved} of 1000 were on the lost backend"
        );
    }
}
