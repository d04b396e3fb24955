//! Connections to backends. Each worker keeps its own pool of idle
//! keep-alive connections per backend address, so checking one out takes no
//! lock shared with other workers.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use halb_tls::{BackendTls, TlsClientStream};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::client::{BackendConnection, BackendStream};
use crate::error::ProxyError;

/// Idle connections kept per backend per worker.
const MAX_IDLE_PER_BACKEND: usize = 256;
/// An idle backend connection is not reused after this long: many servers
/// close idle keep-alive connections after a few seconds (Node.js: 5 s), and
/// reusing one that the backend is closing would fail the request.
const IDLE_REUSE_LIMIT: Duration = Duration::from_secs(4);

/// Idle connections by backend address and TLS settings.
type IdleMap = HashMap<(SocketAddr, u64), Vec<IdleConnection>, BuildHasherDefault<AddressHasher>>;

/// One worker's idle backend connections.
#[derive(Debug, Default)]
pub(crate) struct UpstreamPool {
    /// By backend address and TLS settings ([`BackendConnection::tls_id`]).
    idle: RefCell<IdleMap>,
}

/// Hashes backend addresses with one multiply per word instead of SipHash:
/// the keys come from the config, not from clients, so there is no
/// flooding to resist.
#[derive(Debug, Default, Clone, Copy)]
struct AddressHasher(u64);

impl AddressHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for AddressHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Debug)]
struct IdleConnection {
    connection: BackendConnection,
    since: Instant,
}

impl UpstreamPool {
    /// An idle connection to `address`, most recently used first (and
    /// `true`), or a new one (and `false`).
    pub(crate) async fn get(
        &self,
        address: SocketAddr,
        connect_timeout: Duration,
        tls: Option<&BackendTls>,
    ) -> Result<(BackendConnection, bool), ProxyError> {
        if let Some(connection) = self.checkout((address, tls.map_or(0, |tls| tls.id))) {
            return Ok((connection, true));
        }
        Ok((Self::connect(address, connect_timeout, tls).await?, false))
    }

    /// A new connection to `address`, never one from the pool; with `tls`,
    /// the TLS handshake is made (within `connect_timeout` too).
    pub(crate) async fn connect(
        address: SocketAddr,
        connect_timeout: Duration,
        tls: Option<&BackendTls>,
    ) -> Result<BackendConnection, ProxyError> {
        let connecting = async {
            let stream = TcpStream::connect(address)
                .await
                .map_err(ProxyError::Connect)?;
            let _ = stream.set_nodelay(true);
            let Some(tls) = tls else {
                return Ok(BackendConnection::new(
                    BackendStream::Plain(stream),
                    address,
                    0,
                ));
            };
            let session = tls
                .session(address)
                .map_err(|e| ProxyError::Connect(io::Error::other(e)))?;
            let stream = TlsClientStream::connect(stream, session)
                .await
                .map_err(|e| ProxyError::Connect(tls_failure(e)))?;
            Ok(BackendConnection::new(
                BackendStream::Tls(Box::new(stream)),
                address,
                tls.id,
            ))
        };
        match tokio::time::timeout(connect_timeout, connecting).await {
            Err(_) => Err(ProxyError::ConnectTimeout),
            Ok(result) => result,
        }
    }

    /// Keep a connection whose last response is complete for a next request.
    pub(crate) fn release(&self, connection: BackendConnection) {
        let mut idle = self.idle.borrow_mut();
        let list = idle
            .entry((connection.address, connection.tls_id))
            .or_default();
        if list.len() >= MAX_IDLE_PER_BACKEND {
            list.remove(0);
        }
        list.push(IdleConnection {
            connection,
            since: Instant::now(),
        });
    }

    /// Close the idle connections to `backends` (they left every pool).
    pub(crate) fn forget(&self, backends: &[SocketAddr]) {
        self.idle
            .borrow_mut()
            .retain(|(address, _), _| !backends.contains(address));
    }

    fn checkout(&self, key: (SocketAddr, u64)) -> Option<BackendConnection> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&key)?;
        let now = Instant::now();
        while let Some(entry) = list.pop() {
            if now.duration_since(entry.since) <= IDLE_REUSE_LIMIT && entry.connection.is_quiet() {
                return Some(entry.connection);
            }
            if now.duration_since(entry.since) > IDLE_REUSE_LIMIT {
                // Older ones have waited longer still.
                list.clear();
            }
        }
        None
    }
}

/// A failed TLS handshake, worded for the backend's state and the logs:
/// "TLS handshake: invalid peer certificate: ..." names what did not verify.
fn tls_failure(error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("TLS handshake: {error}"))
}
