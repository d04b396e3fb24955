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
    pool.retry_budget.on_request();
    let mut tried = Tried::default();
    for attempt in 0..=pool.config.retries {
        let Some((index, backend)) = pool.pick(key, &tried) else {
            break;
        };
        if attempt > 0 && !pool.retry_budget.try_retry() {
            tracing::debug!(pool = %pool.config.name, "retry budget spent; not retrying");
            break;
        }
        tried.insert(index);
        let in_flight = backend.begin();
        let connect = TcpStream::connect(backend.address);
        match tokio::time::timeout(pool.config.connect_timeout, connect).await {
            Ok(Ok(mut upstream)) => {
                pool.record_outcome(backend, false);
                let _ = upstream.set_nodelay(true);
                let relay = tokio::io::copy_bidirectional_with_sizes(
                    &mut client,
                    &mut upstream,
                    BUFFER,
                    BUFFER,
                );
                tokio::select! {
                    copied = relay => {
                        if let Err(e) = copied {
                            tracing::debug!(%peer, backend = %backend.address, error = %e, "tcp relay ended");
                        }
                    }
                    _ = backend.health.drain_expired(pool.config.drain_timeout) => {
                        tracing::info!(%peer, backend = %backend.address, "drain timeout reached; closing connection");
                    }
                }
                return;
            }
            Ok(Err(e)) => {
                pool.record_outcome(backend, true);
                in_flight.fail();
                tracing::debug!(backend = %backend.address, error = %e, "tcp connect failed");
            }
            Err(_) => {
                pool.record_outcome(backend, true);
                in_flight.fail();
                tracing::debug!(backend = %backend.address, "tcp connect timed out");
            }
        }
    }
    tracing::debug!(%peer, listener = %listener.name, "no backend reachable; closing");
}
