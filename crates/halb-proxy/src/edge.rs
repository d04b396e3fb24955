//! What a client connection goes through before HTTP or TCP proxying
//! sees it: the PROXY header when the listener expects one (the client
//! address halb uses from then on), and the per-client-address connection
//! limits of `[listener.limits]`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use halb_config::Protocol;
use tokio::net::TcpStream;

use crate::admission::RateLimitedLog;
use crate::client_limits::{admit_connection, Admit, ClientSlot};
use crate::listener::ListenerContext;

/// Refused PROXY headers and clients over their limits, logged at most
/// once a second each for the whole process.
static PROXY_REFUSED: RateLimitedLog = RateLimitedLog::new();
static OVER_LIMIT: RateLimitedLog = RateLimitedLog::new();

/// The answer to an HTTP client over its connection limit.
const TOO_MANY: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain\r\n\
content-length: 18\r\nconnection: close\r\n\r\ntoo many requests\n";

/// Take a new connection from `peer`: its client address (from the PROXY
/// header if the listener expects one) and its per-address slot, or
/// `None` when it is refused (it is then closed).
pub(crate) async fn open(
    stream: &TcpStream,
    peer: SocketAddr,
    listener: &ListenerContext,
) -> Option<(SocketAddr, Option<ClientSlot>)> {
    let config = listener.config.load();
    let mut client = peer;
    if config.connection.proxy_protocol {
        // Boxed, as the refusal below: a connection's task would otherwise
        // carry the header's buffer for its whole life.
        let header = Box::pin(crate::proxy_protocol::read(
            stream,
            config.request_head_timeout,
        ));
        match header.await {
            Ok(header) => client = header.source.unwrap_or(peer),
            Err(error) => {
                listener.admission.refused.fetch_add(1, Ordering::Relaxed);
                if let Some(count) = PROXY_REFUSED.hit() {
                    tracing::warn!(
                        listener = %config.name,
                        %peer,
                        %error,
                        count,
                        "connection refused: the listener expects a PROXY header \
                         (count: refusals in the last second)"
                    );
                }
                return None;
            }
        }
    }
    let limits = &config.connection.limits;
    let counts_rate = listener.protocol == Protocol::Tcp;
    match admit_connection(&listener.admission, client.ip(), limits, counts_rate) {
        Admit::Yes(slot) => Some((client, slot)),
        Admit::TooMany => {
            listener.admission.refused.fetch_add(1, Ordering::Relaxed);
            if let Some(count) = OVER_LIMIT.hit() {
                tracing::warn!(
                    listener = %config.name,
                    %client,
                    count,
                    "connection refused: client over its [listener.limits] \
                     (count: refusals in the last second)"
                );
            }
            if listener.protocol == Protocol::Http {
                Box::pin(refuse_http(stream)).await;
            }
            None
        }
    }
}

/// Answer 429 and close, reading what the client sends for a moment so
/// that it sees the answer rather than a reset.
async fn refuse_http(stream: &TcpStream) {
    let _ = stream.try_write(TOO_MANY);
    let _ = rustix::net::shutdown(stream, rustix::net::Shutdown::Write);
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        loop {
            if stream.readable().await.is_err() {
                return;
            }
            match stream.try_read(&mut sink) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
}
