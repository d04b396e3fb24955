//! Real backends, served from the test process on `127.0.0.1:0`: hyper
//! HTTP/1.1 servers with one behaviour each, and raw TCP servers. Each counts
//! what reaches it and can be killed (listener and every open connection
//! closed at once, as SIGKILL would) and restarted on the same port.
//!
//! Every HTTP backend also understands two paths of its own, whatever its
//! behaviour: [`CHECK_PATH`] answers halb's health checks as the backend's
//! [`Health`] says (and is counted apart from real requests), and
//! `/sleep/{ms}` waits that long before answering as usual.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::body::RepeatBody;
use super::free_addr;
use super::websocket_key::websocket_accept;

type ResponseBody = BoxBody<Bytes, std::io::Error>;

/// Serves one accepted connection.
type Handler = Arc<dyn Fn(TcpStream) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The path halb's health checks should ask for (`path = CHECK_PATH`).
pub const CHECK_PATH: &str = "/health-check";

/// How a backend answers health checks on [`CHECK_PATH`].
#[derive(Debug, Clone, Copy)]
pub enum Health {
    /// 200.
    Passing,
    /// 503.
    Failing,
    /// Passing and failing in turn, each for `every`, starting with passing
    /// at `since`.
    Flapping { since: Instant, every: Duration },
}

impl Health {
    fn status(self) -> u16 {
        let passing = match self {
            Health::Passing => true,
            Health::Failing => false,
            Health::Flapping { since, every } => {
                (since.elapsed().as_nanos() / every.as_nanos().max(1)) % 2 == 0
            }
        };
        if passing {
            200
        } else {
            503
        }
    }
}

/// What the test can change on a running backend, and what it records.
struct Controls {
    health: Mutex<Health>,
    /// 0: answer as the behaviour says; otherwise answer this status.
    forced_status: AtomicU16,
    checks: AtomicUsize,
    /// When each real (non-check) request arrived.
    arrivals: Mutex<Vec<Instant>>,
}

impl Controls {
    fn new() -> Self {
        Controls {
            health: Mutex::new(Health::Passing),
            forced_status: AtomicU16::new(0),
            checks: AtomicUsize::new(0),
            arrivals: Mutex::new(Vec::new()),
        }
    }
}

/// A running backend. Dropping it stops it.
pub struct Backend {
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    /// Connections accepted and not yet closed by either side.
    open: Arc<AtomicUsize>,
    controls: Arc<Controls>,
    handler: Handler,
    /// `None` once stopped.
    accept_loop: Option<JoinHandle<()>>,
}

impl Backend {
    /// HTTP requests that reached it, health checks not included (TCP
    /// backends: see [`Backend::connections`]).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// TCP connections it accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// TCP connections open now (accepted, and not yet closed by halb or
    /// by the backend).
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Health checks (requests for [`CHECK_PATH`]) that reached it.
    pub fn checks(&self) -> usize {
        self.controls.checks.load(Ordering::SeqCst)
    }

    /// When each real request arrived, in order.
    pub fn arrivals(&self) -> Vec<Instant> {
        lock(&self.controls.arrivals).clone()
    }

    /// How health checks are answered from now on.
    pub fn set_health(&self, health: Health) {
        *lock(&self.controls.health) = health;
    }

    /// Answer every real request with `status` from now on (`None`: as the
    /// behaviour says).
    pub fn force_status(&self, status: Option<u16>) {
        self.controls
            .forced_status
            .store(status.unwrap_or(0), Ordering::SeqCst);
    }

    /// Kills the backend: closes the listener and every open connection.
    /// Connections are refused when this returns.
    pub async fn stop(&mut self) {
        if let Some(accept_loop) = self.accept_loop.take() {
            accept_loop.abort();
            let _ = accept_loop.await;
        }
    }

    /// Serves again on the same address, with the same behaviour and
    /// counters (as a restarted process would). Stops it first if needed.
    pub async fn restart(&mut self) {
        self.stop().await;
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                // The port may linger for a moment after the kill.
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("rebind backend {}: {e}", self.addr),
            }
        };
        self.accept_loop = Some(accept_loop(
            listener,
            (self.connections.clone(), self.open.clone()),
            self.handler.clone(),
        ));
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(accept_loop) = &self.accept_loop {
            accept_loop.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The addresses of `backends`, in order.
pub fn addrs(backends: &[&Backend]) -> Vec<SocketAddr> {
    backends.iter().map(|b| b.addr).collect()
}

/// An address where nothing listens: connecting is refused.
pub fn refused() -> SocketAddr {
    free_addr()
}

#[derive(Clone)]
enum Behaviour {
    /// 200 with the name as body.
    Named(Arc<str>),
    /// 200 with the name as body, after a delay.
    Delayed(Arc<str>, Duration),
    /// 200 with the request headers as JSON; sends hop-by-hop headers back.
    EchoHeaders,
    /// Never answers.
    Hang,
    /// Reads the whole body and answers with its length in bytes.
    UploadCounter,
    /// Streams this many bytes.
    Download(u64),
    /// Accepts a WebSocket upgrade, then echoes raw bytes.
    WebSocketEcho,
}

/// Answers 200 with body = `name`.
pub async fn named(name: &str) -> Backend {
    serve_http(Behaviour::Named(name.into())).await
}

/// As [`named`], listening on `addr` (another loopback address, say).
pub async fn named_at(name: &str, addr: SocketAddr) -> Backend {
    serve_http_at(Behaviour::Named(name.into()), addr).await
}

/// Answers 200 with body = `name` after `delay`.
pub async fn delayed(name: &str, delay: Duration) -> Backend {
    serve_http(Behaviour::Delayed(name.into(), delay)).await
}

/// Answers with a JSON object mapping each received header name (lower
/// case) to the list of its values, in order. Its response also carries
/// hop-by-hop headers (`Keep-Alive`, `Connection: x-backend-hop`,
/// `X-Backend-Hop`, `Proxy-Connection`) and an end-to-end `X-Backend-Normal`.
pub async fn echo_headers() -> Backend {
    serve_http(Behaviour::EchoHeaders).await
}

/// Accepts requests (and counts them) but never answers.
pub async fn hang() -> Backend {
    serve_http(Behaviour::Hang).await
}

/// Reads the whole request body and answers with its length in bytes.
pub async fn upload_counter() -> Backend {
    serve_http(Behaviour::UploadCounter).await
}

/// Answers every request with `bytes` bytes, generated as they are sent.
pub async fn download(bytes: u64) -> Backend {
    serve_http(Behaviour::Download(bytes)).await
}

/// Answers a WebSocket handshake with 101 and the right accept key, then
/// echoes every byte back unchanged (frames included, mask and all).
pub async fn websocket_echo() -> Backend {
    serve_http(Behaviour::WebSocketEcho).await
}

async fn serve_http(behaviour: Behaviour) -> Backend {
    serve_http_at(behaviour, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

async fn serve_http_at(behaviour: Behaviour, addr: SocketAddr) -> Backend {
    let requests = Arc::new(AtomicUsize::new(0));
    let controls = Arc::new(Controls::new());
    let counter = requests.clone();
    let shared = controls.clone();
    let handler: Handler = Arc::new(move |stream| {
        let behaviour = behaviour.clone();
        let requests = counter.clone();
        let controls = shared.clone();
        Box::pin(async move {
            let service = service_fn(move |request| {
                answer(
                    behaviour.clone(),
                    requests.clone(),
                    controls.clone(),
                    request,
                )
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        })
    });
    serve_tcp_at(requests, controls, handler, addr).await
}

/// The part common to every HTTP behaviour: health checks, counting,
/// `/sleep/{ms}` and a forced status.
async fn answer(
    behaviour: Behaviour,
    requests: Arc<AtomicUsize>,
    controls: Arc<Controls>,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let path = request.uri().path();
    if path == CHECK_PATH {
        controls.checks.fetch_add(1, Ordering::SeqCst);
        let status = lock(&controls.health).status();
        return Ok(text(status, "health\n"));
    }
    lock(&controls.arrivals).push(Instant::now());
    requests.fetch_add(1, Ordering::SeqCst);
    let sleep = path
        .strip_prefix("/sleep/")
        .and_then(|ms| ms.parse::<u64>().ok());
    if let Some(ms) = sleep {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    match controls.forced_status.load(Ordering::SeqCst) {
        0 => respond(behaviour, request).await,
        status => Ok(text(status, "forced status\n")),
    }
}

/// Accepts connections on a fresh loopback port and runs `handle` on each.
/// `requests` is the backend's request counter (the handler bumps it).
async fn serve_tcp(
    requests: Arc<AtomicUsize>,
    controls: Arc<Controls>,
    handler: Handler,
) -> Backend {
    serve_tcp_at(
        requests,
        controls,
        handler,
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
}

async fn serve_tcp_at(
    requests: Arc<AtomicUsize>,
    controls: Arc<Controls>,
    handler: Handler,
    addr: SocketAddr,
) -> Backend {
    let listener = TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("bind backend on {addr}: {e}"));
    let addr = listener.local_addr().expect("backend address");
    let connections = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let counters = (connections.clone(), open.clone());
    Backend {
        addr,
        requests,
        accept_loop: Some(accept_loop(listener, counters, handler.clone())),
        connections,
        open,
        controls,
        handler,
    }
}

/// Counts a connection as open until its handler ends (or is aborted).
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept_loop(
    listener: TcpListener,
    (accepted, open_now): (Arc<AtomicUsize>, Arc<AtomicUsize>),
    handler: Handler,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Owned here so that aborting the loop also closes every connection.
        let mut open = JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            accepted.fetch_add(1, Ordering::SeqCst);
            open_now.fetch_add(1, Ordering::SeqCst);
            let guard = OpenGuard(open_now.clone());
            let serve = handler(stream);
            open.spawn(async move {
                serve.await;
                drop(guard);
            });
            while open.try_join_next().is_some() {}
        }
    })
}

fn text(status: u16, body: impl Into<Bytes>) -> Response<ResponseBody> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(
            Full::new(body.into())
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("response")
}

async fn respond(
    behaviour: Behaviour,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    Ok(match behaviour {
        Behaviour::Named(name) => text(200, name.to_string()),
        Behaviour::Delayed(name, delay) => {
            tokio::time::sleep(delay).await;
            text(200, name.to_string())
        }
        Behaviour::EchoHeaders => echo_headers_response(&request),
        Behaviour::Hang => std::future::pending().await,
        Behaviour::UploadCounter => {
            match super::body::count_body_bytes(request.into_body()).await {
                Ok(bytes) => text(200, bytes.to_string()),
                Err(e) => text(400, format!("body error: {e}")),
            }
        }
        Behaviour::Download(bytes) => Response::new(RepeatBody::sized(bytes).boxed()),
        Behaviour::WebSocketEcho => websocket_upgrade(request),
    })
}

fn echo_headers_response(request: &Request<Incoming>) -> Response<ResponseBody> {
    let mut seen = serde_json::Map::new();
    for (name, value) in request.headers() {
        let values = seen
            .entry(name.as_str().to_owned())
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let serde_json::Value::Array(values) = values {
            values.push(
                String::from_utf8_lossy(value.as_bytes())
                    .into_owned()
                    .into(),
            );
        }
    }
    let mut response = text(200, serde_json::Value::Object(seen).to_string());
    let headers = response.headers_mut();
    headers.insert("content-type", "application/json".parse().expect("value"));
    headers.insert("keep-alive", "timeout=5, max=100".parse().expect("value"));
    headers.insert("connection", "x-backend-hop".parse().expect("value"));
    headers.insert(
        "x-backend-hop",
        "must-not-reach-the-client".parse().expect("value"),
    );
    headers.insert("proxy-connection", "keep-alive".parse().expect("value"));
    headers.insert("x-backend-normal", "kept".parse().expect("value"));
    response
}

fn websocket_upgrade(request: Request<Incoming>) -> Response<ResponseBody> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    let is_upgrade = header("upgrade") == "websocket"
        && header("connection")
            .split(',')
            .any(|t| t.trim() == "upgrade")
        && header("sec-websocket-version") == "13";
    let Some(key) = request
        .headers()
        .get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
    else {
        return text(400, "no Sec-WebSocket-Key");
    };
    if !is_upgrade {
        return text(400, "not a WebSocket upgrade");
    }
    let accept = websocket_accept(key);
    tokio::spawn(async move {
        if let Ok(upgraded) = hyper::upgrade::on(request).await {
            let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
            let _ = writer.shutdown().await;
        }
    });
    Response::builder()
        .status(101)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", accept)
        .body(
            Full::new(Bytes::new())
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("response")
}

/// A raw TCP backend running `handle` on each connection it accepts.
pub async fn serve_raw<F, Fut>(handle: F) -> Backend
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let controls = Arc::new(Controls::new());
    let handler: Handler = Arc::new(move |stream| Box::pin(handle(stream)));
    serve_tcp(Arc::new(AtomicUsize::new(0)), controls, handler).await
}

/// Echoes every byte back; closes its write side when the client does.
pub async fn tcp_echo() -> Backend {
    serve_raw(|mut stream| async move {
        let (mut reader, mut writer) = stream.split();
        let _ = tokio::io::copy(&mut reader, &mut writer).await;
        let _ = writer.shutdown().await;
    })
    .await
}

/// Reads until the client half-closes, then answers `got N bytes` and closes.
pub async fn tcp_half_close() -> Backend {
    serve_raw(|mut stream| async move {
        let mut total = 0usize;
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(_) => return,
            }
        }
        let _ = stream
            .write_all(format!("got {total} bytes").as_bytes())
            .await;
        let _ = stream.shutdown().await;
    })
    .await
}

/// Writes its name and closes: shows which backend a TCP connection reached.
pub async fn tcp_named(name: &str) -> Backend {
    let name: Arc<str> = name.into();
    serve_raw(move |mut stream| {
        let name = name.clone();
        async move {
            let _ = stream.write_all(name.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    })
    .await
}
