//! The life of one HTTP request: validate, pick a backend, send, retry on
//! another backend when that is safe, and stream the answer back.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt as _;

use super::exchange::{Exchange, Progress};
use super::headers::{encode_request, ClientAddress};
use super::response_body::ResponseBody;
use crate::error::{ProxyError, Side};
use crate::fault::Injected;
use crate::http::client::{self, BackendBody, BackendConnection, RequestBody, ResponseHead, Sent};
use crate::http::codec::fields::{Fields, Known};
use crate::http::server::{self, BackendUpgrade, ClientBody, ClientRequest, Service};
use crate::http::upstream::UpstreamPool;
use crate::listener::ListenerContext;
use crate::state::{InFlight, PoolState, Tried};

/// Everything a request handler needs, for one client connection.
pub(crate) struct Handler {
    pub(crate) listener: Arc<ListenerContext>,
    /// The listener's settings when the connection opened.
    pub(crate) config: Arc<halb_config::Listener>,
    pub(crate) upstream: Rc<UpstreamPool>,
    pub(crate) peer: SocketAddr,
    /// The forwarding headers for this client, made at the connection's
    /// first request.
    pub(crate) client: std::cell::OnceCell<ClientAddress>,
    /// A fault asked for the client connection to be reset.
    pub(crate) reset: std::cell::Cell<bool>,
    /// The client came over TLS (`X-Forwarded-Proto: https`).
    pub(crate) https: bool,
}

/// The reply the proxy gives: a backend's, or its own.
pub(crate) type Reply = server::Reply<ResponseBody>;

/// The request as it goes to backends: its head encoded once, so that a
/// retry sends the same bytes.
struct Outbound {
    head: Bytes,
    body: RequestBody,
    /// The body is re-framed as chunked (the client sent it chunked).
    chunked: bool,
    method: Method,
}

/// How one try on one backend failed.
struct FailedAttempt {
    error: ProxyError,
    /// Nothing of the request reached the backend: it may go to another.
    unsent: bool,
}

impl Service for Handler {
    type Body = ResponseBody;

    fn limits(&self) -> &halb_config::Listener {
        &self.config
    }

    fn peer(&self) -> SocketAddr {
        self.peer
    }

    fn idle_group(&self) -> usize {
        self.listener.admission.key()
    }

    async fn handle(&self, request: ClientRequest) -> (Reply, Option<BackendUpgrade>) {
        self.handle(request).await
    }

    fn refuse(&self, error: &ProxyError) -> Reply {
        let route = self.listener.routes.load().default.clone();
        // Nothing of the request can be trusted: log it as `- *`.
        let method = Method::from_bytes(b"-").unwrap_or_default();
        let target = Uri::from_static("*");
        let exchange = Exchange::start(route, self.peer, &method, &target);
        error_response(error, exchange)
    }

    fn wants_reset(&self) -> bool {
        self.reset.get()
    }

    fn http2_metrics(&self) -> &crate::http::Http2Metrics {
        &self.listener.metrics.http2
    }
}

impl Handler {
    /// Forward one request; the response for the client, and the backend's
    /// side of the tunnel when it switched protocols.
    pub(crate) async fn handle(&self, request: ClientRequest) -> (Reply, Option<BackendUpgrade>) {
        let route =
            super::select::route(&self.listener.routes.load(), &request.uri, &request.fields);
        let mut exchange = Exchange::start(route, self.peer, &request.method, &request.uri);
        let limits = &self.config.connection.limits;
        if !crate::client_limits::allow_request(&self.listener.admission, self.peer.ip(), limits) {
            return (error_response(&ProxyError::TooManyRequests, exchange), None);
        }
        let (route, progress) = exchange.route_and_progress();
        match self.forward(request, &route.pool, progress).await {
            Ok(Forwarded::Response(status, fields, body, throttle)) => {
                exchange.answered(status, true);
                let body = ResponseBody::upstream(body, exchange).throttled(throttle);
                let reply = Reply {
                    status,
                    fields,
                    close: false,
                    body,
                };
                (reply, None)
            }
            Ok(Forwarded::Upgraded(status, fields, upgrade)) => {
                exchange.answered(status, true);
                let body = ResponseBody::full(Bytes::new(), exchange);
                let reply = Reply {
                    status,
                    fields,
                    close: false,
                    body,
                };
                (reply, Some(upgrade))
            }
            Err(_) if self.reset.get() => {
                // Reset by a fault: no answer to count, the client saw none.
                let body = ResponseBody::full(Bytes::new(), exchange);
                let reply = Reply {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    fields: Fields::from_pairs(&[]),
                    close: true,
                    body,
                };
                (reply, None)
            }
            Err(error) => {
                tracing::debug!(listener = %self.config.name, side = ?error.side(), %error, "request failed");
                (error_response(&error, exchange), None)
            }
        }
    }

    async fn forward(
        &self,
        request: ClientRequest,
        pool: &PoolState,
        progress: &mut Progress,
    ) -> Result<Forwarded, ProxyError> {
        let key = super::hash_key::request_key(pool, &request, self.peer);
        let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
        let preference = pool.affinity.as_ref().map(|affinity| {
            affinity.prefer(
                &pool.backends,
                self.peer.ip(),
                |name| request.fields.get_named(name).map(text),
                |name| super::hash_key::cookie_value(&request.fields, name).map(text),
            )
        });
        let ClientRequest {
            method,
            uri,
            version,
            mut fields,
            upgrade,
            body,
        } = request;
        let host = super::select::authority_host(&uri).map(str::as_bytes);
        if version != Version::HTTP_11 && host.is_none() && !fields.contains(Known::Host) {
            return Err(ProxyError::BadRequest("a Host header is required\n"));
        }
        fields.drop_connection_named();
        let body = self.read_first_frame(body).await?;
        let chunked = !matches!(body, RequestBody::Empty) && !fields.contains(Known::ContentLength);
        let client = self.client.get_or_init(|| {
            let trusted = &self.config.connection.trusted_proxies;
            ClientAddress::of(self.peer.ip(), trusted, self.https)
        });
        let target = origin_form(&uri);
        let head = encode_request(&method, target, host, &fields, client, upgrade, chunked);
        drop(fields);
        let mut request = Outbound {
            head,
            body,
            chunked,
            method,
        };
        // Sent once, a request may go again to another backend only if
        // repeating it is harmless and there is no body to replay.
        let resendable =
            is_idempotent(&request.method) && matches!(request.body, RequestBody::Empty);

        pool.retry_budget.on_request();
        let mut tried = Tried::default();
        let mut last_error = ProxyError::NoBackend;
        let mut sent = false;
        let mut throttle = None;
        for attempt in 0..=pool.config.retries {
            if sent && !resendable {
                break;
            }
            // Only a request that can be sent (again) takes a backend's turn
            // and, for a retry, the retry budget.
            let next = match (&preference, attempt) {
                (Some(preference), _) => pool.try_sticky(key, preference, &mut tried, attempt),
                _ => pool.next_try(key, &mut tried, attempt),
            };
            let Some((index, backend)) = next else {
                break;
            };
            progress.backend = Some(index);
            progress.retries = attempt;
            if attempt == 0 {
                let faults = &self.listener.faults;
                match crate::fault::before_forward(faults, &pool.config.name, backend.address).await
                {
                    Injected::Proceed => {}
                    Injected::Throttle(rate) => throttle = Some(rate),
                    Injected::Answer(status) => {
                        progress.backend = None;
                        let status =
                            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                        return Err(ProxyError::Injected(status));
                    }
                    Injected::Reset => {
                        progress.backend = None;
                        self.reset.set(true);
                        return Err(ProxyError::Injected(StatusCode::SERVICE_UNAVAILABLE));
                    }
                }
            }
            let in_flight = backend.begin();
            match self.attempt(pool, &in_flight, &mut request).await {
                Ok((head, connection, sent, took)) => {
                    progress.backend_time = Some(took);
                    let failed = pool.outlier.counts_status(head.status.as_u16());
                    if failed {
                        in_flight.fail();
                    }
                    pool.record_outcome(backend, failed);
                    let ResponseHead {
                        status,
                        mut fields,
                        framing,
                        keep_alive,
                    } = head;
                    if status == StatusCode::SWITCHING_PROTOCOLS {
                        if !upgrade {
                            return Err(ProxyError::Upstream(client::BackendError::Malformed(
                                "101 Switching Protocols to a request that asked for no upgrade",
                            )));
                        }
                        let (stream, early, descriptor) = connection.into_tunnel();
                        let upgrade = BackendUpgrade {
                            stream,
                            early,
                            in_flight,
                            descriptor,
                        };
                        return Ok(Forwarded::Upgraded(status, fields, upgrade));
                    }
                    fields.drop_connection_named();
                    if let (Some(preference), Some(affinity), false) =
                        (&preference, &pool.affinity, failed)
                    {
                        if let Some(cookie) = affinity.served(preference, index, backend.address) {
                            fields = fields.with_field("set-cookie", &cookie);
                        }
                    }
                    let (complete, upload) = match sent {
                        Sent::Whole => (true, None),
                        Sent::Cut => (false, None),
                        Sent::Ongoing(upload) => (true, Some(upload)),
                    };
                    let reuse = (keep_alive && complete).then(|| self.upstream.clone());
                    let body = BackendBody::new(
                        connection,
                        framing,
                        reuse,
                        upload,
                        pool.config.timeout,
                        in_flight,
                    );
                    return Ok(Forwarded::Response(status, fields, body, throttle));
                }
                Err(failed) => {
                    if failed.error.side() == Side::Downstream {
                        // The client's body failed: not the backend's fault.
                        return Err(failed.error);
                    }
                    in_flight.fail();
                    // Out of descriptors is halb's trouble, not the backend's.
                    let ours = matches!(&failed.error,
                        ProxyError::Connect(e) if crate::admission::out_of_descriptors(e));
                    if !ours {
                        pool.record_outcome(backend, true);
                    }
                    tracing::debug!(backend = %backend.address, error = %failed.error, "attempt failed");
                    sent |= !failed.unsent;
                    last_error = failed.error;
                }
            }
        }
        Err(last_error)
    }

    /// Read the first frame of a request body before any backend is chosen:
    /// a body that is malformed from its first byte never reaches a backend,
    /// and a client slow to send its body holds no backend connection.
    async fn read_first_frame(&self, mut body: ClientBody) -> Result<RequestBody, ProxyError> {
        if body.is_end_stream() {
            return Ok(RequestBody::Empty);
        }
        let idle = self.config.idle_timeout;
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => Err(ProxyError::ClientTimeout),
            Ok(None) => Ok(RequestBody::Empty),
            Ok(Some(Err(error))) => Err(error.into()),
            Ok(Some(Ok(frame))) => Ok(RequestBody::Client {
                first: Some(frame),
                rest: body,
            }),
        }
    }

    /// One try on one backend: a pooled connection (or, if that turns out to
    /// have been closed by the backend while idle, a new one), the request,
    /// then the response head, which must come within the pool's timeout of
    /// the request's end (or of the last progress of a stalled upload).
    async fn attempt(
        &self,
        pool: &PoolState,
        in_flight: &InFlight,
        request: &mut Outbound,
    ) -> Result<(ResponseHead, BackendConnection, Sent, Duration), FailedAttempt> {
        let backend = in_flight.backend();
        let config = &pool.config;
        let mut fresh_only = false;
        let loaded = pool.tls.as_ref().map(|slot| slot.load_full());
        let tls = match loaded.as_deref() {
            None => None,
            Some(Ok(tls)) => Some(tls),
            Some(Err(problem)) => {
                return Err(FailedAttempt {
                    error: ProxyError::Connect(std::io::Error::other(problem.to_string())),
                    unsent: true,
                })
            }
        };
        loop {
            let connection = if fresh_only {
                UpstreamPool::connect(backend.address, config.connect_timeout, tls)
                    .await
                    .map(|connection| (connection, false))
            } else {
                self.upstream
                    .get(backend.address, config.connect_timeout, tls)
                    .await
            };
            let (mut connection, reused) = match connection {
                Ok(connection) => connection,
                Err(error) => {
                    return Err(FailedAttempt {
                        error,
                        unsent: true,
                    })
                }
            };
            let untouched = request.body.is_untouched();
            let started = std::time::Instant::now();
            let exchanged = connection
                .exchange(
                    &request.head,
                    &mut request.body,
                    request.chunked,
                    &request.method,
                    config.timeout,
                )
                .await;
            match exchanged {
                Ok((head, sent)) => {
                    let took = started.elapsed();
                    backend.latency.observe(took);
                    backend.response_time.observe(took);
                    return Ok((head, connection, sent, took));
                }
                Err(failure) => {
                    // A pooled connection the backend had closed while it
                    // was idle: not the backend's failure. Try a new one
                    // if the request can go again.
                    let stale = reused && failure.nothing_received;
                    let again = untouched
                        && request.body.is_untouched()
                        && (is_idempotent(&request.method) || !failure.written);
                    if stale && again {
                        fresh_only = true;
                        continue;
                    }
                    return Err(FailedAttempt {
                        error: failure.error,
                        unsent: !failure.written && request.body.is_untouched(),
                    });
                }
            }
        }
    }
}

enum Forwarded {
    /// With the bandwidth (bytes per second) a fault allows, if any.
    Response(StatusCode, Fields, BackendBody, Option<u64>),
    Upgraded(StatusCode, Fields, BackendUpgrade),
}

/// RFC 9110 §9.2.2: a request the client may repeat without harm.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Backends get the origin form (`/path?query`) even when a client sent the
/// absolute form.
fn origin_form(uri: &Uri) -> &[u8] {
    uri.path_and_query()
        .map_or(&b"/"[..], |path| path.as_str().as_bytes())
}

/// halb's own answer to a request it could not forward.
pub(crate) fn error_response(error: &ProxyError, mut exchange: Exchange) -> Reply {
    let status = error.status();
    exchange.answered(status, false);
    const TEXT: (&str, &str) = ("content-type", "text/plain; charset=utf-8");
    let fields = if status == StatusCode::METHOD_NOT_ALLOWED {
        // RFC 9110 §15.5.6: a 405 says what is allowed; any method but CONNECT.
        Fields::from_pairs(&[
            TEXT,
            (
                "allow",
                "GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH",
            ),
        ])
    } else {
        Fields::from_pairs(&[TEXT])
    };
    Reply {
        status,
        fields,
        close: status.is_client_error(),
        body: ResponseBody::full(
            Bytes::from_static(error.client_message().as_bytes()),
            exchange,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_get_the_origin_form() {
        for (target, origin) in [
            ("/a/b?c=d", "/a/b?c=d"),
            ("http://example/a?b", "/a?b"),
            ("http://example", "/"),
            ("*", "*"),
        ] {
            let uri: Uri = target.parse().unwrap();
            assert_eq!(origin_form(&uri), origin.as_bytes(), "{target}");
        }
    }
}
