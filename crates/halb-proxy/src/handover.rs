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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    use crate::Proxy;

    /// A backend that echoes what it reads (TCP) or answers every request
    /// head with a keep-alive 200 (HTTP).
    async fn backend(http: bool) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buffer).await {
                        if n == 0 {
                            return;
                        }
                        let reply: &[u8] = if http {
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                        } else {
                            &buffer[..n]
                        };
                        if stream.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        address
    }

    fn start(protocol: &str, backend: std::net::SocketAddr) -> Proxy {
        let config = halb_config::parse(&format!(
            "[runtime]\nworkers = 2\n\
             [[listener]]\nname = \"vip\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\
             protocol = \"{protocol}\"\n[[pool]]\nname = \"app\"\n\
             [[pool.backend]]\naddress = \"{backend}\"\n"
        ))
        .unwrap();
        Proxy::start(&config, halb_state::State::new(), None).unwrap()
    }

    async fn shut(proxy: Proxy) {
        tokio::task::spawn_blocking(move || proxy.shutdown(Duration::ZERO))
            .await
            .unwrap();
    }

    /// A held listener answers no new SYN (the client's connect times out;
    /// a refusal would fail at once), while a connection it accepted
    /// before keeps working: the filter is on the listening socket only.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_held_listener_drops_new_syns_and_open_connections_keep_working() {
        let proxy = start("tcp", backend(false).await);
        let bound = proxy.topology().load().listeners[0].bound;
        let mut open = TcpStream::connect(bound).await.unwrap();
        let mut echoed = [0u8; 4];
        open.write_all(b"ping").await.unwrap();
        open.read_exact(&mut echoed).await.unwrap();

        // A TCP connection is not told to finish: the bound ends the wait.
        let still_open = proxy.hand_over(|_| true, Duration::from_millis(300)).await;
        assert_eq!(still_open, 1);
        open.write_all(b"pong").await.unwrap();
        open.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"pong");
        let attempt =
            tokio::time::timeout(Duration::from_millis(700), TcpStream::connect(bound)).await;
        assert!(attempt.is_err(), "a new client was answered: {attempt:?}");
        shut(proxy).await;
    }

    /// Idle keep-alive HTTP connections close at once (the client sees the
    /// end of the stream), so the wait ends well within its bound; the
    /// listeners `serves_vip` leaves out keep accepting.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn idle_keep_alive_connections_close_and_other_listeners_keep_accepting() {
        let http = backend(true).await;
        let proxy = start("http", http);
        let bound = proxy.topology().load().listeners[0].bound;
        let mut idle = TcpStream::connect(bound).await.unwrap();
        idle.write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
            .await
            .unwrap();
        let mut reply = [0u8; 1024];
        let n = idle.read(&mut reply).await.unwrap();
        assert!(reply[..n].starts_with(b"HTTP/1.1 200"));

        // Not a listener of the virtual IPs: nothing changes.
        let untouched = proxy.hand_over(|_| false, Duration::from_secs(1)).await;
        assert_eq!(untouched, 0);
        TcpStream::connect(bound).await.unwrap();

        let started = std::time::Instant::now();
        let still_open = proxy.hand_over(|_| true, Duration::from_secs(2)).await;
        assert_eq!(still_open, 0);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        let end = tokio::time::timeout(Duration::from_secs(1), idle.read(&mut reply)).await;
        assert!(matches!(end, Ok(Ok(0))), "{end:?}");
        shut(proxy).await;
    }
}
