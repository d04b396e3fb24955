//! A VRRP master's leaving: before its virtual IPs move, its listeners on
//! them take no new connection (without refusing one) and the open ones
//! finish. A connection still open when a client's ARP entry moves to the
//! next master would reach that node, which does not know it and resets it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::Proxy;

/// After holding new connections, how long handshakes already under way
/// get to complete and send their first request before the open
/// connections are told to finish (a connection told to finish before its
/// first request closes without one).
const HANDSHAKES_SETTLE: Duration = Duration::from_millis(50);
/// How often the open connections are counted.
const COUNT_EVERY: Duration = Duration::from_millis(10);

impl Proxy {
    /// Readies the listeners that `serves_vip` picks (by bound address)
    /// for their virtual IPs to leave this node: new clients' SYNs are
    /// dropped, so that they resend them (after 1 s) to the next master;
    /// open connections finish the request they are on and close, idle
    /// ones at once. Returns, within `limit`, the number of connections
    /// still open (0 when all have finished).
    pub async fn hand_over(&self, serves_vip: impl Fn(SocketAddr) -> bool, limit: Duration) -> u64 {
        let started = Instant::now();
        let topology = self.topology.load_full();
        let listeners: Vec<_> = topology
            .listeners
            .iter()
            .filter(|listener| serves_vip(listener.bound))
            .collect();
        if listeners.is_empty() {
            return 0;
        }
        for listener in &listeners {
            if let Err(error) = listener.hold_new_connections() {
                tracing::warn!(listener = %listener.name(), %error, "cannot hold new connections: new clients may be reset when the virtual IP moves");
            }
        }
        tokio::time::sleep(HANDSHAKES_SETTLE.min(limit)).await;
        for listener in &listeners {
            listener.finish_connections();
        }
        let deadline = started + limit;
        loop {
            let open: u64 = listeners.iter().map(|l| l.open_connections()).sum();
            if open == 0 || Instant::now() >= deadline {
                return open;
            }
            tokio::time::sleep(COUNT_EVERY).await;
        }
    }
}
