//! The key a hashing balancer (Maglev) uses for a request.

use std::net::{IpAddr, SocketAddr};

use halb_balance::hash_bytes;
use halb_config::{Algorithm, HashKey};
use http::{header, Request};

use crate::state::PoolState;

/// The request's hash key, or `None` when the pool does not hash or the
/// request lacks the header or cookie named.
pub(crate) fn request_key<B>(
    pool: &PoolState,
    request: &Request<B>,
    peer: SocketAddr,
) -> Option<u64> {
    if pool.config.algorithm != Algorithm::Maglev {
        return None;
    }
    match &pool.config.hash_key {
        HashKey::ClientIp => Some(ip_key(peer.ip())),
        HashKey::Path => Some(hash_bytes(request.uri().path().as_bytes())),
        HashKey::Header(name) => request
            .headers()
            .get(name.as_str())
            .map(|v| hash_bytes(v.as_bytes())),
        HashKey::Cookie(name) => request
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                (k == name).then(|| hash_bytes(v.as_bytes()))
            }),
    }
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
