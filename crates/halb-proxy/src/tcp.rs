//! TCP proxying: a backend picked per connection, bytes copied both ways,
//! and a half-close on one side passed on to the other.

use std::net::SocketAddr;
use std::sync::Arc;

use halb_config::Algorithm;
use tokio::net::TcpStream;

use crate::http::ip_key;
use crate::listener::ListenerContext;
use crate::state::Tried;

/// Copy buffer per direction. Small enough that 10,000 connections stay
/// cheap, large enough for bulk transfers.
const BUFFER: usize = 16 * 1024;

/// Serve one client connection: connect to a backend (another one if the
/// connect fails, up to the pool's retries) and relay until both sides close.
pub(crate) async fn serve(mut client: TcpStream, peer: SocketAddr, listener: Arc<ListenerContext>) {
    let pool = listener.pool.load_full();
    let key = (pool.config.algorithm == Algorithm::Maglev).then(|| ip_key(peer.ip()));
    let mut tried = Tried::default();
    for _attempt in 0..=pool.config.retries {
        let Some((index, backend)) = pool.pick(key, &tried) else {
            break;
        };
        tried.insert(index);
        let in_flight = backend.begin();
        let connect = TcpStream::connect(backend.address);
        match tokio::time::timeout(pool.config.connect_timeout, connect).await {
            Ok(Ok(mut upstream)) => {
                let _ = upstream.set_nodelay(true);
                let copied = tokio::io::copy_bidirectional_with_sizes(
                    &mut client,
                    &mut upstream,
                    BUFFER,
                    BUFFER,
                )
                .await;
                if let Err(e) = copied {
                    tracing::debug!(%peer, backend = %backend.address, error = %e, "tcp relay ended");
                }
                return;
            }
            Ok(Err(e)) => {
                in_flight.fail();
                tracing::debug!(backend = %backend.address, error = %e, "tcp connect failed");
            }
            Err(_) => {
                in_flight.fail();
                tracing::debug!(backend = %backend.address, "tcp connect timed out");
            }
        }
    }
    tracing::debug!(%peer, listener = %listener.config.name, "no backend reachable; closing");
}
