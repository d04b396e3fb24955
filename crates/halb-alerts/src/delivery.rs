//! One webhook delivery attempt over HTTP/1.1 — resolve, connect (and for
//! `https://`, the TLS handshake, verified against the system CA bundle or
//! `SSL_CERT_FILE`), POST, read the status — and the backoff between
//! attempts.

use std::hash::BuildHasher;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::webhook::Webhook;

/// The first retry waits about this long; each later one twice as long.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// No retry waits longer than this.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Why one delivery attempt failed, and whether trying again may help.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeliveryError {
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("{0} resolves to no address")]
    NoAddress(String),
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("HTTP error: {0}")]
    Http(#[from] hyper::Error),
    #[error("webhook answered {0}")]
    Status(http::StatusCode),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl DeliveryError {
    /// Whether a later attempt may succeed. A 4xx answer says the request
    /// itself is wrong (bad path, rejected token), which retrying cannot
    /// fix, except for 408 and 429, which ask the client to come back.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            DeliveryError::Status(status) if status.is_client_error() => matches!(
                *status,
                http::StatusCode::REQUEST_TIMEOUT | http::StatusCode::TOO_MANY_REQUESTS
            ),
            _ => true,
        }
    }
}

/// POSTs `body` as JSON to `webhook` within `timeout`; any 2xx answer is success.
pub(crate) async fn post(
    webhook: &Webhook,
    body: Bytes,
    timeout: Duration,
) -> Result<(), DeliveryError> {
    match tokio::time::timeout(timeout, post_inner(webhook, body)).await {
        Ok(result) => result,
        Err(_) => Err(DeliveryError::Timeout(timeout)),
    }
}

async fn post_inner(webhook: &Webhook, body: Bytes) -> Result<(), DeliveryError> {
    let stream = connect(webhook).await?;
    let _ = stream.set_nodelay(true);
    match webhook.tls_name() {
        None => exchange(webhook, TokioIo::new(stream), body).await,
        Some(name) => {
            let stream = tls_handshake(stream, name).await?;
            exchange(webhook, TokioIo::new(stream), body).await
        }
    }
}

/// The TLS session to an `https://` webhook named `name`: the system CA
/// bundle (or `SSL_CERT_FILE`) must vouch for a certificate naming it.
/// Read at each attempt: alerts are rare, and a renewed bundle applies.
async fn tls_handshake(
    stream: TcpStream,
    name: &str,
) -> Result<halb_tls::TlsClientStream, DeliveryError> {
    let settings = halb_config::PoolTls {
        ca: None,
        sni: Some(name.to_owned()),
        verify: true,
        client_cert: None,
    };
    let tls =
        halb_tls::BackendTls::load(&settings).map_err(|e| DeliveryError::Tls(e.to_string()))?;
    let peer = stream.peer_addr().map_err(DeliveryError::Connect)?;
    let session = tls
        .session(peer)
        .map_err(|e| DeliveryError::Tls(e.to_string()))?;
    halb_tls::TlsClientStream::connect(stream, session)
        .await
        .map_err(|e| DeliveryError::Tls(e.to_string()))
}

async fn exchange<IO>(webhook: &Webhook, io: IO, body: Bytes) -> Result<(), DeliveryError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    // Aborted when this attempt ends, even by timeout, so a receiver that
    // never answers cannot keep a connection task alive.
    let _connection = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let request = Request::builder()
        .method(Method::POST)
        .uri(webhook.path())
        .header(header::HOST, webhook.host_header())
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::USER_AGENT,
            concat!("halb-alerts/", env!("CARGO_PKG_VERSION")),
        )
        .header(header::CONNECTION, "close")
        .body(Full::new(body))
        .expect("method, path and headers were validated when the URL was parsed");
    let response = sender.send_request(request).await?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(DeliveryError::Status(status))
    }
}

/// Connects to the first of the host's addresses that accepts.
async fn connect(webhook: &Webhook) -> Result<TcpStream, DeliveryError> {
    let addresses = tokio::net::lookup_host(webhook.authority())
        .await
        .map_err(|source| DeliveryError::Resolve {
            host: webhook.authority().to_owned(),
            source,
        })?;
    let mut last_error = None;
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last_error = Some(e),
        }
    }
    Err(match last_error {
        Some(e) => DeliveryError::Connect(e),
        None => DeliveryError::NoAddress(webhook.authority().to_owned()),
    })
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long to wait before retry number `retry` (1 = the first retry):
/// 200 ms, 400 ms, 800 ms … up to 10 s, each within ±25 % so that many
/// nodes alerting at once do not retry in lockstep.
pub(crate) fn backoff(retry: u32) -> Duration {
    let doublings = retry.saturating_sub(1).min(16);
    let nominal = FIRST_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF);
    nominal
        .mul_f64(0.75 + 0.5 * random_fraction())
        .min(MAX_BACKOFF)
}

/// A fraction in [0, 1), good enough for jitter: std's randomly keyed hasher.
fn random_fraction() -> f64 {
    let bits = std::collections::hash_map::RandomState::new().hash_one(0u8);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        for _ in 0..200 {
            let ms = |retry| backoff(retry).as_millis();
            assert!((150..=250).contains(&ms(1)), "{}", ms(1));
            assert!((300..=500).contains(&ms(2)), "{}", ms(2));
            assert!((600..=1000).contains(&ms(3)), "{}", ms(3));
            assert!((7_500..=10_000).contains(&ms(7)), "{}", ms(7));
            assert!(ms(8) <= 10_000 && ms(8) >= 7_500);
            assert!(ms(u32::MAX) <= 10_000);
        }
    }

    #[test]
    fn jitter_varies() {
        let first = backoff(1);
        assert!((0..50).any(|_| backoff(1) != first));
    }

    #[test]
    fn client_errors_are_final_except_timeout_and_rate_limit() {
        let status = |code| DeliveryError::Status(http::StatusCode::from_u16(code).unwrap());
        assert!(!status(400).is_retryable());
        assert!(!status(404).is_retryable());
        assert!(status(408).is_retryable());
        assert!(status(429).is_retryable());
        assert!(status(500).is_retryable());
        assert!(status(503).is_retryable());
        assert!(DeliveryError::Timeout(Duration::from_secs(1)).is_retryable());
    }
}
