//! The key a hashing balancer (Maglev) uses for a request.

use std::net::{IpAddr, SocketAddr};

use crate::http::codec::fields::{Fields, Known};
use crate::http::server::ClientRequest;
use crate::state::PoolState;
use halb_balance::hash_bytes;
use halb_config::{Algorithm, HashKey};

/// The request's hash key, or `None` when the pool does not hash or the
/// request lacks the header or cookie named.
pub(crate) fn request_key(
    pool: &PoolState,
    request: &ClientRequest,
    peer: SocketAddr,
) -> Option<u64> {
    if pool.config.algorithm != Algorithm::Maglev {
        return None;
    }
    match &pool.config.hash_key {
        HashKey::ClientIp => Some(ip_key(peer.ip())),
        HashKey::Path => Some(hash_bytes(request.uri.path().as_bytes())),
        HashKey::Header(name) => request.fields.get_named(name).map(hash_bytes),
        HashKey::Cookie(name) => cookie_value(&request.fields, name).map(hash_bytes),
    }
}

/// The value of the request's cookie `name`, if it has one.
pub(crate) fn cookie_value<'a>(fields: &'a Fields, name: &str) -> Option<&'a [u8]> {
    fields
        .values(Known::Cookie)
        .flat_map(|value| value.split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let at = pair.iter().position(|b| *b == b'=')?;
            (&pair[..at] == name.as_bytes()).then(|| &pair[at + 1..])
        })
}

/// The hash of a client address, shared by HTTP and TCP listeners.
pub(crate) fn ip_key(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => hash_bytes(&v4.octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => hash_bytes(&v4.octets()),
            None => hash_bytes(&v6.octets()),
        },
    }
}
