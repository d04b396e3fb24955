//! The life of one HTTP request: validate, pick a backend, send, retry on
//! another backend when that is safe, and stream the answer back.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt as _;

use super::body::{RequestBody, ResponseBody};
use super::client::{self, BackendBody, BackendConnection, ResponseHead};
use super::exchange::{Exchange, Progress};
use super::headers::{add_forwarding, is_upgrade_request, strip_hop_by_hop, ClientAddress};
use super::server::ClientBody;
use super::upstream::UpstreamPool;
use crate::error::{ProxyError, Side};
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
    /// first request (boxed: an idle connection's future stays small).
    pub(crate) client: std::cell::OnceCell<Box<ClientAddress>>,
}

/// A backend that answered `101 Switching Protocols`: its connection (and
/// any bytes it sent past the head), and its in-flight slot, held while the
/// tunnel lives.
pub(crate) struct BackendUpgrade {
    pub(crate) stream: tokio::net::TcpStream,
    pub(crate) early: bytes::BytesMut,
    pub(crate) in_flight: InFlight,
}

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

impl Handler {
    /// Forward one request; the response for the client, and the backend's
    /// side of the tunnel when it switched protocols.
    pub(crate) async fn handle(
        &self,
        request: Request<ClientBody>,
    ) -> (Response<ResponseBody>, Option<BackendUpgrade>) {
        let route = self.listener.route.load_full();
        let mut exchange = Exchange::start(route, self.peer, request.method(), request.uri());
        let (route, progress) = exchange.route_and_progress();
        match self.forward(request, &route.pool, progress).await {
            Ok(Forwarded::Response(parts, body)) => {
                exchange.answered(parts.status, true);
                let response = Response::from_parts(parts, ResponseBody::upstream(body, exchange));
                (response, None)
            }
            Ok(Forwarded::Upgraded(parts, upgrade)) => {
                exchange.answered(parts.status, true);
                let body = ResponseBody::full(Bytes::new(), exchange);
                (Response::from_parts(parts, body), Some(upgrade))
            }
            Err(error) => {
                tracing::debug!(listener = %self.config.name, side = ?error.side(), %error, "request failed");
                (error_response(&error, exchange), None)
            }
        }
    }

    async fn forward(
        &self,
        request: Request<ClientBody>,
        pool: &PoolState,
        progress: &mut Progress,
    ) -> Result<Forwarded, ProxyError> {
        let upgrade = is_upgrade_request(request.headers());
        let key = super::hash_key::request_key(pool, &request, self.peer);

        let (mut parts, body) = request.into_parts();
        strip_hop_by_hop(&mut parts.headers, upgrade);
        let client = self
            .client
            .get_or_init(|| Box::new(ClientAddress::new(self.peer.ip())));
        add_forwarding(&mut parts.headers, client);
        if parts.version != Version::HTTP_11 && !parts.headers.contains_key(header::HOST) {
            return Err(ProxyError::BadRequest("a Host header is required\n"));
        }
        parts.uri = origin_form(&parts.uri);

        let body = self.read_first_frame(body).await?;
        let chunked = !matches!(body, RequestBody::Empty)
            && !parts.headers.contains_key(header::CONTENT_LENGTH);
        let mut request = Outbound {
            head: client::encode_request(&parts, chunked),
            body,
            chunked,
            method: parts.method,
        };
        // Sent once, a request may go again to another backend only if
        // repeating it is harmless and there is no body to replay.
        let resendable =
            is_idempotent(&request.method) && matches!(request.body, RequestBody::Empty);

        pool.retry_budget.on_request();
        let mut tried = Tried::default();
        let mut last_error = ProxyError::NoBackend;
        let mut sent = false;
        for attempt in 0..=pool.config.retries {
            if sent && !resendable {
                break;
            }
            // Only a request that can be sent (again) takes a backend's turn
            // and, for a retry, the retry budget.
            let Some((index, backend)) = pool.next_try(key, &mut tried, attempt) else {
                break;
            };
            progress.backend = Some(index);
            progress.retries = attempt;
            let in_flight = backend.begin();
            match self.attempt(pool, &in_flight, &mut request).await {
                Ok((head, connection, complete, took)) => {
                    progress.backend_time = Some(took);
                    let failed = pool.outlier.counts_status(head.parts.status.as_u16());
                    if failed {
                        in_flight.fail();
                    }
                    pool.record_outcome(backend, failed);
                    let ResponseHead {
                        mut parts,
                        framing,
                        keep_alive,
                    } = head;
                    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
                        if !upgrade {
                            return Err(ProxyError::Upstream(client::BackendError::Malformed(
                                "101 Switching Protocols to a request that asked for no upgrade",
                            )));
                        }
                        let (stream, early) = connection.into_tunnel();
                        let upgrade = BackendUpgrade {
                            stream,
                            early,
                            in_flight,
                        };
                        return Ok(Forwarded::Upgraded(parts, upgrade));
                    }
                    strip_hop_by_hop(&mut parts.headers, false);
                    let reuse = (keep_alive && complete).then(|| self.upstream.clone());
                    let body = BackendBody::new(
                        connection,
                        framing,
                        reuse,
                        pool.config.timeout,
                        in_flight,
                    );
                    return Ok(Forwarded::Response(parts, body));
                }
                Err(failed) => {
                    if failed.error.side() == Side::Downstream {
                        // The client's body failed: not the backend's fault.
                        return Err(failed.error);
                    }
                    in_flight.fail();
                    pool.record_outcome(backend, true);
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
    /// then the response head, all within the pool's timeout.
    async fn attempt(
        &self,
        pool: &PoolState,
        in_flight: &InFlight,
        request: &mut Outbound,
    ) -> Result<(ResponseHead, BackendConnection, bool, Duration), FailedAttempt> {
        let backend = in_flight.backend();
        let config = &pool.config;
        let mut fresh_only = false;
        loop {
            let connection = if fresh_only {
                UpstreamPool::connect(backend.address, config.connect_timeout)
                    .await
                    .map(|connection| (connection, false))
            } else {
                self.upstream
                    .get(backend.address, config.connect_timeout)
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
            let exchanged = connection.exchange(
                &request.head,
                &mut request.body,
                request.chunked,
                &request.method,
                config.timeout,
            );
            match tokio::time::timeout(config.timeout, exchanged).await {
                Err(_) => {
                    return Err(FailedAttempt {
                        error: ProxyError::ResponseTimeout,
                        unsent: false,
                    })
                }
                Ok(Ok((head, complete))) => {
                    let took = started.elapsed();
                    backend.latency.observe(took);
                    backend.response_time.observe(took);
                    return Ok((head, connection, complete, took));
                }
                Ok(Err(failure)) => {
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
    Response(http::response::Parts, BackendBody),
    Upgraded(http::response::Parts, BackendUpgrade),
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
fn origin_form(uri: &Uri) -> Uri {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return uri.clone();
    }
    uri.path_and_query()
        .map(|pq| Uri::from(pq.clone()))
        .unwrap_or_else(|| Uri::from_static("/"))
}

/// halb's own answer to a request it could not forward.
pub(crate) fn error_response(error: &ProxyError, mut exchange: Exchange) -> Response<ResponseBody> {
    exchange.answered(error.status(), false);
    let mut response = Response::new(ResponseBody::full(
        Bytes::from_static(error.client_message().as_bytes()),
        exchange,
    ));
    *response.status_mut() = error.status();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if error.status().is_client_error() {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
