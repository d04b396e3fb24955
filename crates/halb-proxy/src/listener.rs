//! Listeners: one socket per worker bound with SO_REUSEPORT, so the kernel
//! spreads new connections over workers and no accept lock is shared.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use halb_config::{Listener, Protocol};
use tokio::net::TcpSocket;
use tokio::sync::watch;

use crate::state::PoolState;

/// A listener: its settings and the pool it routes to, both swappable at
/// reload, and the signal that closes it.
#[derive(Debug)]
pub struct ListenerContext {
    pub name: String,
    pub protocol: Protocol,
    /// The address actually bound (differs from the config when its port is 0).
    pub bound: SocketAddr,
    /// Read once per connection.
    pub config: ArcSwap<Listener>,
    /// Read once per request (HTTP) or connection (TCP).
    pub pool: ArcSwap<PoolState>,
    closing: watch::Sender<bool>,
}

impl ListenerContext {
    pub(crate) fn new(config: Listener, bound: SocketAddr, pool: Arc<PoolState>) -> Self {
        ListenerContext {
            name: config.name.clone(),
            protocol: config.protocol,
            bound,
            config: ArcSwap::from_pointee(config),
            pool: ArcSwap::new(pool),
            closing: watch::Sender::new(false),
        }
    }

    /// Stop accepting; open connections finish their work and close.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Turns true when the listener closes.
    pub(crate) fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }
}

/// Bind `count` sockets to `address` with SO_REUSEPORT. When the port is 0,
/// the first socket picks one and the others share it.
pub(crate) fn bind_reuseport(
    address: SocketAddr,
    count: usize,
) -> io::Result<(SocketAddr, Vec<std::net::TcpListener>)> {
    let mut sockets = Vec::with_capacity(count);
    let mut bound = address;
    for _ in 0..count.max(1) {
        let socket = if bound.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.set_nodelay(true)?;
        socket.bind(bound)?;
        let listener = socket.listen(4096)?;
        bound = listener.local_addr()?;
        sockets.push(listener.into_std()?);
    }
    Ok((bound, sockets))
}
