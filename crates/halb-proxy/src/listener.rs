//! Listeners: one socket per worker bound with SO_REUSEPORT, so the kernel
//! spreads new connections over workers and no accept lock is shared.

use std::io;
use std::net::SocketAddr;

use arc_swap::ArcSwap;
use tokio::net::TcpSocket;

use crate::state::PoolState;

/// A listener's config and the pool it routes to (swappable at reload).
#[derive(Debug)]
pub struct ListenerContext {
    pub config: halb_config::Listener,
    /// The address actually bound (differs from the config when its port is 0).
    pub bound: SocketAddr,
    pub pool: ArcSwap<PoolState>,
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
