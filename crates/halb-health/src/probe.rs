//! One active check of one backend: a TCP connect, or an HTTP request whose
//! status (and optionally body) must match. Each failure says why. For a
//! pool with `[pool.tls]`, both make the TLS handshake first (so a
//! certificate that does not verify marks the backend down), and the HTTP
//! request goes over it.

use std::net::SocketAddr;

use bytes::Bytes;
use halb_config::{HealthCheck, HealthCheckKind};
use halb_tls::{BackendTls, TlsClientStream};
use http::{header, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How much of a check response's body is searched for `expect_body`.
const BODY_LIMIT: usize = 64 * 1024;

/// Why a check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckFailure {
    Refused(String),
    Timeout,
    Status(u16),
    BodyMismatch,
    Protocol(String),
    /// A database refused the check's credentials.
    Auth(String),
    /// A database answered with another role than the pool wants.
    Role {
        have: &'static str,
        want: halb_config::Role,
    },
    /// The check cannot run as configured (a `password_env` not set).
    Setup(String),
    /// The TLS handshake failed (the certificate did not verify, say).
    Tls(String),
}

impl std::fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckFailure::Refused(e) => write!(f, "connect failed: {e}"),
            CheckFailure::Timeout => write!(f, "timeout"),
            CheckFailure::Status(status) => write!(f, "status {status}"),
            CheckFailure::BodyMismatch => write!(f, "body mismatch"),
            CheckFailure::Protocol(e) => write!(f, "bad response: {e}"),
            CheckFailure::Auth(e) => write!(f, "authentication failed: {e}"),
            CheckFailure::Role { have, want } => {
                write!(f, "role is {have}, want {}", want.as_str())
            }
            CheckFailure::Setup(e) => f.write_str(e),
            CheckFailure::Tls(e) => write!(f, "TLS handshake: {e}"),
        }
    }
}

/// Run one check against `backend` (or its check port) within the check's timeout.
/// With `tls`, the connection is TLS (`[pool.tls]`).
pub async fn probe(
    check: &HealthCheck,
    backend: SocketAddr,
    tls: Option<&BackendTls>,
) -> Result<(), CheckFailure> {
    let target = match check.port {
        Some(port) => SocketAddr::new(backend.ip(), port),
        None => backend,
    };
    match tokio::time::timeout(check.timeout, probe_inner(check, target, backend, tls)).await {
        Ok(result) => result,
        Err(_) => Err(CheckFailure::Timeout),
    }
}

async fn probe_inner(
    check: &HealthCheck,
    target: SocketAddr,
    backend: SocketAddr,
    tls: Option<&BackendTls>,
) -> Result<(), CheckFailure> {
    // A database check logs in over a connection its client crate is
    // handed or opens (MySQL's cannot take one that is open already).
    if check.kind.is_database() {
        return crate::db::check(check, target).await;
    }
    let stream = TcpStream::connect(target)
        .await
        .map_err(|e| CheckFailure::Refused(e.kind().to_string()))?;
    let _ = stream.set_nodelay(true);
    if let (Some(tls), HealthCheckKind::Tcp | HealthCheckKind::Http) = (tls, check.kind) {
        let session = tls
            .session(target)
            .map_err(|e| CheckFailure::Tls(e.to_string()))?;
        let stream = TlsClientStream::connect(stream, session)
            .await
            .map_err(|e| CheckFailure::Tls(e.to_string()))?;
        return match check.kind {
            HealthCheckKind::Http => http_check(check, stream, backend).await,
            _ => Ok(()),
        };
    }
    match check.kind {
        HealthCheckKind::Http => http_check(check, stream, backend).await,
        // The connect was the check; database checks returned above.
        _ => Ok(()),
    }
}

async fn http_check<IO>(
    check: &HealthCheck,
    stream: IO,
    backend: SocketAddr,
) -> Result<(), CheckFailure>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| CheckFailure::Protocol(e.to_string()))?;
    let connection = tokio::spawn(connection);
    let host = check.host.clone().unwrap_or_else(|| backend.to_string());
    let method = Method::from_bytes(check.method.as_bytes()).unwrap_or(Method::GET);
    let request = Request::builder()
        .method(method.clone())
        .uri(check.path.as_str())
        .header(
            header::HOST,
            HeaderValue::try_from(host).map_err(|e| CheckFailure::Protocol(e.to_string()))?,
        )
        .header(header::USER_AGENT, "halb-health-check")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| CheckFailure::Protocol(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| CheckFailure::Protocol(e.to_string()))?;
    let status = response.status().as_u16();
    let (low, high) = check.expect_status;
    let result = if !(low..=high).contains(&status) {
        Err(CheckFailure::Status(status))
    } else if let Some(expected) = &check.expect_body {
        let mut body = response.into_body();
        let mut seen = Vec::new();
        let mut found = false;
        while seen.len() < BODY_LIMIT {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        seen.extend_from_slice(data);
                        if contains(&seen, expected.as_bytes()) {
                            found = true;
                            break;
                        }
                    }
                }
                Some(Err(e)) => return Err(CheckFailure::Protocol(e.to_string())),
                None => break,
            }
        }
        if found {
            Ok(())
        } else {
            Err(CheckFailure::BodyMismatch)
        }
    } else {
        Ok(())
    };
    connection.abort();
    result
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// A check's duration as people read it: `6.8ms`, `42ms`, `1.2s`.
pub(crate) fn round_duration(took: std::time::Duration) -> String {
    let ms = took.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1}ms")
    } else if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{:.1}s", ms / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::round_duration;
    use std::time::Duration;

    #[test]
    fn durations_are_rounded_for_people() {
        assert_eq!(round_duration(Duration::from_micros(6829)), "6.8ms");
        assert_eq!(round_duration(Duration::from_micros(42_400)), "42ms");
        assert_eq!(round_duration(Duration::from_millis(1240)), "1.2s");
        assert_eq!(round_duration(Duration::from_micros(40)), "0.0ms");
    }
}
