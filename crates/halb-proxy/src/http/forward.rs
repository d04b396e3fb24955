//! The life of one HTTP request: validate, pick a backend, send, retry on
//! another backend when that is safe, and stream the answer back.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

use super::body::{RequestBody, ResponseBody, UpstreamBody};
use super::exchange::{Exchange, Progress};
use super::headers::{add_forwarding, is_upgrade_request, strip_hop_by_hop, ClientAddress};
use super::server::{BodyError, ClientBody};
use super::upstream::{PooledSender, UpstreamPool};
use crate::error::ProxyError;
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

/// A backend that answered `101 Switching Protocols`: its connection, once
/// hyper hands it over, and its in-flight slot, held while the tunnel lives.
pub(crate) struct BackendUpgrade {
    pub(crate) upgrade: hyper::upgrade::OnUpgrade,
    pub(crate) in_flight: InFlight,
}

/// What an attempt on one backend gave back when it failed: the error, and
/// the request if it was never sent (so it can go to another backend).
struct FailedAttempt {
    error: ProxyError,
    request: Option<Request<RequestBody>>,
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
            Ok(Forwarded::Response(response, in_flight, sender)) => {
                exchange.answered(response.status(), true);
                let (parts, body) = response.into_parts();
                let body = UpstreamBody::new(body, sender, in_flight);
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
        // halb answered any `Expect: 100-continue` itself by reading the body.
        parts.headers.remove(header::EXPECT);
        let client = self
            .client
            .get_or_init(|| Box::new(ClientAddress::new(self.peer.ip())));
        add_forwarding(&mut parts.headers, client);
        if parts.version != Version::HTTP_11 {
            parts.version = Version::HTTP_11;
            if !parts.headers.contains_key(header::HOST) {
                return Err(ProxyError::BadRequest("a Host header is required\n"));
            }
        }
        parts.uri = origin_form(&parts.uri);

        let body = self.read_first_frame(body).await?;
        // A retry goes to a backend not tried yet: with one backend there
        // is none, and the copy would be wasted.
        let replay = (pool.config.retries > 0
            && pool.backends.len() > 1
            && is_idempotent(&parts.method)
            && matches!(body, RequestBody::Empty))
        .then(|| RequestHead::copy(&parts));
        let mut request = Some(Request::from_parts(parts, body));

        pool.retry_budget.on_request();
        let mut tried = Tried::default();
        let mut last_error = ProxyError::NoBackend;
        for attempt in 0..=pool.config.retries {
            // Only a request that can be sent (again) takes a backend's turn
            // and, for a retry, the retry budget.
            let next = match request.take() {
                Some(request) => request,
                None => match &replay {
                    Some(head) => head.rebuild(),
                    None => break,
                },
            };
            let Some((index, backend)) = pool.next_try(key, &mut tried, attempt) else {
                break;
            };
            progress.backend = Some(index);
            progress.retries = attempt;
            let in_flight = backend.begin();
            match self.attempt(pool, &in_flight, next).await {
                Ok((mut response, sender, took)) => {
                    progress.backend_time = Some(took);
                    let failed = pool.outlier.counts_status(response.status().as_u16());
                    if failed {
                        in_flight.fail();
                    }
                    pool.record_outcome(backend, failed);
                    if response.status() == StatusCode::SWITCHING_PROTOCOLS && upgrade {
                        let upgrade = hyper::upgrade::on(&mut response);
                        let (parts, _) = response.into_parts();
                        let upgrade = BackendUpgrade { upgrade, in_flight };
                        return Ok(Forwarded::Upgraded(parts, upgrade));
                    }
                    strip_hop_by_hop(response.headers_mut(), false);
                    return Ok(Forwarded::Response(response, in_flight, sender));
                }
                Err(failed) => {
                    in_flight.fail();
                    pool.record_outcome(backend, true);
                    tracing::debug!(backend = %backend.address, error = %failed.error, "attempt failed");
                    request = failed.request;
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
            Ok(Some(Err(BodyError::Timeout))) => Err(ProxyError::ClientTimeout),
            Ok(Some(Err(_))) => Err(ProxyError::BadRequest("malformed request body\n")),
            Ok(Some(Ok(frame))) => Ok(RequestBody::Client {
                first: Some(frame),
                rest: body,
            }),
        }
    }

    /// One try on one backend: a pooled connection (or, if that turns out to
    /// be stale before the request was written, a new one), then the
    /// response head within the pool's timeout.
    async fn attempt(
        &self,
        pool: &PoolState,
        in_flight: &InFlight,
        mut request: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, PooledSender, Duration), FailedAttempt> {
        let backend = in_flight.backend();
        let config = &pool.config;
        let mut fresh_only = false;
        loop {
            let connection = if fresh_only {
                self.upstream
                    .connect(backend.address, config.connect_timeout)
                    .await
            } else {
                self.upstream
                    .get(backend.address, config.connect_timeout)
                    .await
            };
            let mut sender = match connection {
                Ok(sender) => sender,
                Err(error) => {
                    return Err(FailedAttempt {
                        error,
                        request: Some(request),
                    })
                }
            };
            let started = std::time::Instant::now();
            let sent = sender.sender.try_send_request(request);
            match tokio::time::timeout(config.timeout, sent).await {
                Err(_) => {
                    return Err(FailedAttempt {
                        error: ProxyError::ResponseTimeout,
                        request: None,
                    })
                }
                Ok(Ok(response)) => {
                    let took = started.elapsed();
                    backend.latency.observe(took);
                    backend.response_time.observe(took);
                    return Ok((response, sender, took));
                }
                Ok(Err(mut failed)) => {
                    let unsent = failed.take_message();
                    match unsent {
                        // A pooled connection closed under us before the
                        // request went out: not the backend's failure.
                        Some(unsent) if sender.reused => {
                            request = unsent;
                            fresh_only = true;
                        }
                        unsent => {
                            return Err(FailedAttempt {
                                error: ProxyError::Upstream(failed.into_error()),
                                request: unsent,
                            })
                        }
                    }
                }
            }
        }
    }
}

enum Forwarded {
    Response(Response<Incoming>, InFlight, PooledSender),
    Upgraded(http::response::Parts, BackendUpgrade),
}

/// The parts of a request head needed to send it again.
struct RequestHead {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl RequestHead {
    fn copy(parts: &http::request::Parts) -> Self {
        RequestHead {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
        }
    }

    fn rebuild(&self) -> Request<RequestBody> {
        let mut request = Request::new(RequestBody::Empty);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
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
