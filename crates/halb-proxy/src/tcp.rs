//! TCP proxying: a backend picked per connection, bytes relayed both ways
//! with zero-copy `splice` ([`crate::relay`]), and a half-close on one side
//! passed on to the other.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use halb_access_log::{AccessRecord, Exchange};
use halb_config::Algorithm;
use tokio::net::TcpStream;

use crate::fault::Injected;
use crate::http::ip_key;
use crate::listener::ListenerContext;
use crate::relay::{relay, Relayed};
use crate::route::Route;
use crate::state::Tried;

/// Serve one client connection: connect to a backend (another one if the
/// connect fails, up to the pool's retries) and relay until both sides close.
pub(crate) async fn serve(client: TcpStream, peer: SocketAddr, listener: Arc<ListenerContext>) {
    let started = Instant::now();
    let route = listener.routes.load().default.clone();
    let pool = &route.pool;
    let relayed = Relayed::default();
    let key = (pool.config.algorithm == Algorithm::Maglev).then(|| ip_key(peer.ip()));
    pool.retry_budget.on_request();
    let mut tried = Tried::default();
    // The backend tried last, the attempts beyond the first, and the time
    // to connect to the backend that took the connection.
    let (mut backend_index, mut retries, mut connect_time) = (None, 0, None);
    let mut throttle = None;
    // A stick table on the client's address holds in TCP too.
    let preference = pool
        .affinity
        .as_ref()
        .map(|affinity| affinity.prefer(&pool.backends, peer.ip(), |_| None, |_| None));
    for attempt in 0..=pool.config.retries {
        let next = match (&preference, attempt) {
            (Some(preference), _) => pool.try_sticky(key, preference, &mut tried, attempt),
            _ => pool.next_try(key, &mut tried, attempt),
        };
        let Some((index, backend)) = next else {
            break;
        };
        if attempt == 0 {
            let faults = &listener.faults;
            match crate::fault::before_forward(faults, &pool.config.name, backend.address).await {
                Injected::Proceed => {}
                Injected::Throttle(rate) => throttle = Some(rate),
                Injected::Answer(_) | Injected::Reset => {
                    crate::fault::reset_on_close(&client);
                    break;
                }
            }
        }
        (backend_index, retries) = (Some(index), attempt);
        let in_flight = backend.begin();
        // Taken before the connect: a mark-down from now on closes it.
        let mut fence = backend.health.fence.watch();
        let connecting = Instant::now();
        let connect = TcpStream::connect(backend.address);
        match tokio::time::timeout(pool.config.connect_timeout, connect).await {
            Ok(Ok(upstream)) => {
                let _descriptor = crate::admission::BackendDescriptor::count();
                connect_time = Some(connecting.elapsed());
                route.backends[index].connections.inc();
                pool.record_outcome(backend, false);
                if let (Some(preference), Some(affinity)) = (&preference, &pool.affinity) {
                    affinity.served(preference, index, backend.address);
                }
                let _ = upstream.set_nodelay(true);
                if let Some(version) = pool.config.send_proxy {
                    if let Err(e) = send_proxy_header(&client, &upstream, peer, version).await {
                        tracing::debug!(backend = %backend.address, error = %e, "sending the PROXY header failed");
                        drop(in_flight);
                        break;
                    }
                }
                let relay = async {
                    match throttle {
                        None => relay(&client, &upstream, &relayed).await,
                        Some(rate) => {
                            crate::fault::throttled_relay(&client, &upstream, rate, &relayed).await
                        }
                    }
                };
                tokio::select! {
                    copied = relay => {
                        if let Err(e) = copied {
                            tracing::debug!(%peer, backend = %backend.address, error = %e, "tcp relay ended");
                        }
                    }
                    _ = backend.health.drain_expired(pool.config.drain_timeout) => {
                        tracing::info!(%peer, backend = %backend.address, "drain timeout reached; closing connection");
                    }
                    _ = fence.raised() => {
                        backend.health.fence.closed.inc();
                        tracing::info!(%peer, backend = %backend.address, "backend marked down; connection closed (on_down = \"close\")");
                    }
                }
                drop(in_flight);
                break;
            }
            Ok(Err(e)) => {
                // Out of descriptors is halb's trouble, not the backend's.
                if !crate::admission::out_of_descriptors(&e) {
                    pool.record_outcome(backend, true);
                }
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
    if connect_time.is_none() {
        route.local.connections.inc();
        tracing::debug!(%peer, listener = %listener.name(), "no backend reachable; closing");
    }
    log_connection(
        &route,
        peer,
        started.elapsed(),
        backend_index,
        retries,
        connect_time,
        relayed.to_client.get(),
    );
}

/// Tell the backend who the client is: a PROXY header from `peer` (the
/// client as halb knows it) to the address the client reached.
async fn send_proxy_header(
    client: &TcpStream,
    upstream: &TcpStream,
    peer: SocketAddr,
    version: halb_config::SendProxy,
) -> std::io::Result<()> {
    let destination = client.local_addr()?;
    let header = crate::proxy_protocol::encode(version, peer, destination);
    let mut parts = [bytes::Bytes::from(header)];
    let mut written = false;
    crate::sock::write_all(upstream, &mut parts, Duration::from_secs(5), &mut written).await
}

fn log_connection(
    route: &Route,
    client: SocketAddr,
    duration: Duration,
    backend: Option<usize>,
    retries: u32,
    connect_time: Option<Duration>,
    bytes: u64,
) {
    let Some(sink) = &route.access_log else {
        return;
    };
    let now = SystemTime::now();
    sink.send(AccessRecord {
        time: now.checked_sub(duration).unwrap_or(now),
        client,
        listener: route.listener.clone(),
        pool: route.pool_name.clone(),
        backend: backend.map(|index| route.pool.backends[index].address),
        exchange: Exchange::Tcp,
        bytes,
        duration,
        backend_duration: connect_time,
        retries,
    });
}
