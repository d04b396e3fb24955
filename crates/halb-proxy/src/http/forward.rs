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
use hyper_util::rt::TokioIo;

use super::body::{RequestBody, ResponseBody, UpstreamBody};
use super::client_io::{ActiveRequest, ConnectionState};
use super::exchange::{Exchange, Progress};
use super::headers::{add_forwarding, is_upgrade_request, strip_hop_by_hop};
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
    pub(crate) connection: Arc<ConnectionState>,
    pub(crate) peer: SocketAddr,
}

/// What an attempt on one backend gave back when it failed: the error, and
/// the request if it was never sent (so it can go to another backend).
struct FailedAttempt {
    error: ProxyError,
    request: Option<Request<RequestBody>>,
}

impl Handler {
    pub(crate) async fn handle(&self, request: Request<Incoming>) -> Response<ResponseBody> {
        let active = self.connection.activate();
        let route = self.listener.route.load_full();
        let mut exchange = Exchange::start(route, self.peer, &request);
        if self.connection.next_request_is_ambiguous() {
            return error_response(
                &ProxyError::BadRequest(
                    "a request must not carry both Content-Length and Transfer-Encoding\n",
                ),
                exchange,
                active,
            );
        }
        let (route, progress) = exchange.route_and_progress();
        match self.forward(request, &route.pool, progress).await {
            Ok(Forwarded::Response(response, in_flight, sender)) => {
                exchange.answered(response.status(), true);
                let (parts, body) = response.into_parts();
                let body = UpstreamBody::new(body, sender, in_flight);
                Response::from_parts(parts, ResponseBody::upstream(body, exchange, active))
            }
            Ok(Forwarded::Upgraded(parts)) => {
                exchange.answered(parts.status, true);
                Response::from_parts(parts, ResponseBody::full(Bytes::new(), exchange, active))
            }
            Err(error) => {
                tracing::debug!(listener = %self.config.name, %error, "request failed");
                error_response(&error, exchange, active)
            }
        }
    }

    async fn forward(
        &self,
        mut request: Request<Incoming>,
        pool: &PoolState,
        progress: &mut Progress,
    ) -> Result<Forwarded, ProxyError> {
        let upgrade = is_upgrade_request(request.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        let key = super::hash_key::request_key(pool, &request, self.peer);

        let (mut parts, body) = request.into_parts();
        strip_hop_by_hop(&mut parts.headers, upgrade);
        // halb answered any `Expect: 100-continue` itself by reading the body.
        parts.headers.remove(header::EXPECT);
        add_forwarding(&mut parts.headers, self.peer.ip());
        if parts.version != Version::HTTP_11 {
            parts.version = Version::HTTP_11;
            if !parts.headers.contains_key(header::HOST) {
                return Err(ProxyError::BadRequest("a Host header is required\n"));
            }
        }
        parts.uri = origin_form(&parts.uri);

        let body = self.read_first_frame(body).await?;
        let replay = (pool.config.retries > 0
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
                    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                        if let Some(client_upgrade) = client_upgrade {
                            let backend_upgrade = hyper::upgrade::on(&mut response);
                            tokio::task::spawn_local(tunnel(
                                client_upgrade,
                                backend_upgrade,
                                in_flight,
                            ));
                            let (parts, _) = response.into_parts();
                            return Ok(Forwarded::Upgraded(parts));
                        }
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
    async fn read_first_frame(&self, mut body: Incoming) -> Result<RequestBody, ProxyError> {
        if body.is_end_stream() {
            return Ok(RequestBody::Empty);
        }
        let idle = self.config.idle_timeout;
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => Err(ProxyError::ClientTimeout),
            Ok(None) => Ok(RequestBody::Empty),
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
    Upgraded(http::response::Parts),
}

/// Join the client and backend connections after `101 Switching Protocols`.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    backend: hyper::upgrade::OnUpgrade,
    in_flight: InFlight,
) {
    let (client, backend) = match tokio::try_join!(client, backend) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut backend = TokioIo::new(backend);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
    drop(in_flight);
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

fn error_response(
    error: &ProxyError,
    mut exchange: Exchange,
    active: ActiveRequest,
) -> Response<ResponseBody> {
    exchange.answered(error.status(), false);
    let mut response = Response::new(ResponseBody::full(
        Bytes::from_static(error.client_message().as_bytes()),
        exchange,
        active,
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
