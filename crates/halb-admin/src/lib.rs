//! halb's admin endpoint: `GET /healthz`, the status API, Prometheus
//! `GET /metrics` and the dashboard at `GET /`. It runs off the data path (on the main runtime) and reads the
//! same lock-free snapshots the workers use.

mod control;
mod dashboard;
mod edge_metrics;
mod faults;
mod level_metrics;
mod metrics;
mod status;

use std::convert::Infallible;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use halb_health::AdminState;
use halb_proxy::Topology;
use halb_state::{Change, Origin, State};

pub use control::{
    Command, Commands, ConfigInfo, ConfigStatus, ReloadOutcome, SourceInfo, SourceReport,
};
pub use metrics::MetricSources;
pub use status::Status;

/// What the admin endpoint serves from.
pub struct Admin {
    topology: Arc<ArcSwap<Topology>>,
    /// Where operator actions are applied.
    state: Arc<State>,
    token: Option<String>,
    config: Arc<ConfigInfo>,
    commands: Commands,
    metrics: MetricSources,
}

impl Admin {
    pub fn new(
        topology: Arc<ArcSwap<Topology>>,
        state: Arc<State>,
        token: Option<String>,
        config: Arc<ConfigInfo>,
        commands: Commands,
        metrics: MetricSources,
    ) -> Arc<Self> {
        Arc::new(Admin {
            topology,
            state,
            token,
            config,
            commands,
            metrics,
        })
    }

    /// Serve admin requests on `listener` until `shutdown` turns true.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let stopped = async move {
            let _ = shutdown.wait_for(|stopping| *stopping).await;
        };
        tokio::pin!(stopped);
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of descriptors, maybe for a while: log once a
                        // second at most, and wait longer than for a blip.
                        static FAILED: halb_proxy::RateLimitedLog = halb_proxy::RateLimitedLog::new();
                        if let Some(count) = FAILED.hit() {
                            tracing::warn!(error = %e, count, "admin accept failed (count: times in the last second)");
                        }
                        let pause = if halb_proxy::out_of_descriptors(&e) { 50 } else { 10 };
                        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                        continue;
                    }
                },
                _ = &mut stopped => return,
            };
            let admin = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let admin = admin.clone();
                    async move { Ok::<_, Infallible>(admin.route(request).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn route(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path();
        let fault_id = match path.strip_prefix("/api/v1/faults") {
            Some("") => Some(String::new()),
            Some(rest) => rest.strip_prefix('/').map(str::to_owned),
            None => None,
        };
        if let Some(id) = fault_id {
            if let Some(refused) = self.refuse_without_token(&request) {
                return refused;
            }
            let method = request.method().clone();
            let topology = self.topology.load_full();
            let faults = self.metrics.faults.as_ref();
            return faults::serve(faults, &topology, &method, &id, request.into_body()).await;
        }
        if request.uri().path() == "/api/v1/reload" {
            if let Some(refused) = self.refuse_without_token(&request) {
                return refused;
            }
            if request.method() != Method::POST {
                return error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
            }
            return self.reload().await;
        }
        if let Some(rest) = request.uri().path().strip_prefix("/api/v1/pools/") {
            if let Some(target) = rest.strip_suffix("/weight") {
                if let Some(refused) = self.refuse_without_token(&request) {
                    return refused;
                }
                if request.method() != Method::POST {
                    return error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
                }
                let target = target.to_owned();
                return self.set_weight(&target, request.into_body()).await;
            }
        }
        self.route_sync(request)
    }

    /// `POST /api/v1/pools/{pool}/backends/{address}/weight` with
    /// `{"weight": N}`: 200 with the backend's status, 400 for a bad body,
    /// 404 for an unknown pool or backend.
    async fn set_weight(&self, target: &str, body: Incoming) -> Response<Full<Bytes>> {
        let Some((pool, address)) = target.split_once("/backends/") else {
            return error(
                StatusCode::NOT_FOUND,
                "expected /api/v1/pools/{pool}/backends/{address}/weight",
            );
        };
        let Ok(backend) = address.parse::<std::net::SocketAddr>() else {
            return error(
                StatusCode::NOT_FOUND,
                &format!("pool {pool:?} has no backend {address:?}"),
            );
        };
        let weight = match read_json::<WeightBody>(body).await {
            Ok(body) if body.weight <= MAX_WEIGHT => body.weight as u32,
            Ok(body) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "weight: expected an integer from 0 to {MAX_WEIGHT}, got {}",
                        body.weight
                    ),
                )
            }
            Err(message) => return error(StatusCode::BAD_REQUEST, &message),
        };
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let command = Command::SetWeight {
            pool: pool.to_owned(),
            backend,
            weight,
            reply,
        };
        if self.commands.send(command).await.is_err() {
            return error(StatusCode::SERVICE_UNAVAILABLE, "the node is stopping");
        }
        match outcome.await {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return error(StatusCode::NOT_FOUND, &message),
            Err(_) => return error(StatusCode::SERVICE_UNAVAILABLE, "the node is stopping"),
        }
        let topology = self.topology.load();
        let found = (topology.pools.iter())
            .find(|p| p.config.name == pool)
            .and_then(|p| p.backends.iter().find(|b| b.address == backend));
        match found {
            Some(backend) => json(
                StatusCode::OK,
                &status::backend_status(backend, halb_health::clock::now()),
            ),
            None => error(StatusCode::NOT_FOUND, "the backend was removed meanwhile"),
        }
    }

    /// 401 unless the request carries the configured token (if any).
    fn refuse_without_token<B>(&self, request: &Request<B>) -> Option<Response<Full<Bytes>>> {
        match &self.token {
            Some(token) if !bearer_matches(request, token) => Some(error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token",
            )),
            _ => None,
        }
    }

    /// `POST /api/v1/reload`: 200 with what changed, or 400 with every error
    /// (the running config stays).
    async fn reload(&self) -> Response<Full<Bytes>> {
        let (reply, outcome) = tokio::sync::oneshot::channel();
        if self.commands.send(Command::Reload { reply }).await.is_err() {
            return error(StatusCode::SERVICE_UNAVAILABLE, "the node is stopping");
        }
        match outcome.await {
            Ok(outcome @ ReloadOutcome::Applied { .. }) => json(StatusCode::OK, &outcome),
            Ok(outcome @ ReloadOutcome::Rejected { .. }) => json(StatusCode::BAD_REQUEST, &outcome),
            Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the node is stopping"),
        }
    }

    fn route_sync(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path();
        if path == "/healthz" {
            return text(StatusCode::OK, "ok\n");
        }
        // The dashboard's files hold no data: served without the token; the
        // page's own API calls carry it (see dashboard.rs).
        if request.method() == Method::GET {
            if let Some(file) = dashboard::asset(path) {
                return file;
            }
        }
        if let Some(token) = &self.token {
            if !bearer_matches(&request, token) {
                return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
            }
        }
        match (request.method(), path) {
            (&Method::GET, "/api/v1/status") => {
                let mut status = Status::of(&self.topology.load(), &self.config);
                if let Some(peers) = &self.metrics.peers {
                    status.peers = peers.status();
                }
                if let Some(vrrp) = &self.metrics.vrrp {
                    status.vrrp = vrrp.snapshot();
                }
                if let Some(faults) = &self.metrics.faults {
                    status.faults = faults::list(faults)["faults"].take();
                }
                json(StatusCode::OK, &status)
            }
            (_, "/api/v1/status") => error(StatusCode::METHOD_NOT_ALLOWED, "use GET"),
            (&Method::GET, "/metrics") => {
                let text = metrics::render(&self.topology.load(), &self.config, &self.metrics);
                let mut response = Response::new(Full::new(Bytes::from(text)));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(halb_metrics::CONTENT_TYPE),
                );
                response
            }
            (_, "/metrics") => error(StatusCode::METHOD_NOT_ALLOWED, "use GET"),
            (method, path) => match path.strip_prefix("/api/v1/pools/") {
                Some(rest) if method == Method::POST => self.backend_action(rest),
                Some(_) => error(StatusCode::METHOD_NOT_ALLOWED, "use POST"),
                None => error(StatusCode::NOT_FOUND, "no such admin endpoint"),
            },
        }
    }

    /// `POST /api/v1/pools/{pool}/backends/{address}/{drain|disable|enable}`
    fn backend_action(&self, rest: &str) -> Response<Full<Bytes>> {
        let parts: Vec<&str> = rest.split('/').collect();
        let [pool_name, "backends", address, action] = parts.as_slice() else {
            return error(
                StatusCode::NOT_FOUND,
                "expected /api/v1/pools/{pool}/backends/{address}/{drain|disable|enable}",
            );
        };
        let state = match *action {
            "drain" => AdminState::Draining,
            "disable" => AdminState::Disabled,
            "enable" => AdminState::Enabled,
            other => {
                return error(
                    StatusCode::NOT_FOUND,
                    &format!("unknown action {other:?}; expected drain, disable or enable"),
                )
            }
        };
        let topology = self.topology.load();
        let Some(pool) = topology.pools.iter().find(|p| p.config.name == *pool_name) else {
            return error(
                StatusCode::NOT_FOUND,
                &format!("no pool named {pool_name:?}"),
            );
        };
        let Some(backend) = pool
            .backends
            .iter()
            .find(|b| b.address.to_string() == *address)
        else {
            return error(
                StatusCode::NOT_FOUND,
                &format!("pool {pool_name:?} has no backend {address:?}"),
            );
        };
        let change = Change::Admin(state);
        if let Err(unknown) =
            (self.state).apply(pool_name, backend.address, Origin::Operator, change)
        {
            // Removed by a reload since the lookup above.
            return error(StatusCode::NOT_FOUND, &unknown.to_string());
        }
        json(
            StatusCode::OK,
            &status::backend_status(backend, halb_health::clock::now()),
        )
    }
}

/// The largest weight a backend may have, as in the config.
const MAX_WEIGHT: u64 = 1000;
/// The largest request body the API reads.
const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightBody {
    weight: u64,
}

/// A JSON request body, or a message naming what is wrong with it.
async fn read_json<T: serde::de::DeserializeOwned>(body: Incoming) -> Result<T, String> {
    use http_body_util::BodyExt as _;
    let bytes = http_body_util::Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("cannot read the request body: {e}"))?
        .to_bytes();
    if bytes.is_empty() {
        return Err("expected a JSON body such as {\"weight\": 5}".to_owned());
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("bad JSON body: {e}"))
}

fn bearer_matches<B>(request: &Request<B>, token: &str) -> bool {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return false;
    };
    // Auth schemes are case-insensitive (RFC 9110 §11.1).
    let value = value.as_bytes();
    if value.len() < 7 || !value[..7].eq_ignore_ascii_case(b"bearer ") {
        return false;
    }
    let given = &value[7..];
    // Compare in constant time for equal lengths.
    given.len() == token.len()
        && given
            .iter()
            .zip(token.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": message }))
}
