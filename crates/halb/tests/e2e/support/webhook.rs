//! A webhook receiver for halb's alerts: a hyper HTTP/1.1 server on
//! `127.0.0.1:0` in the test process that answers 204 to every request and
//! records each one (when it arrived, method, path, content type, and the
//! body parsed as JSON).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub arrived: Instant,
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    /// The body as JSON (`Value::Null` with `raw` kept when it is not JSON).
    pub json: Value,
    pub raw: String,
}

impl Delivery {
    /// The payload's `event` (`""` when there is none).
    pub fn event(&self) -> &str {
        self.json["event"].as_str().unwrap_or_default()
    }
}

/// A running receiver; dropping it stops it.
pub struct WebhookReceiver {
    pub addr: SocketAddr,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    accept_loop: JoinHandle<()>,
}

impl WebhookReceiver {
    pub async fn start() -> WebhookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind webhook receiver");
        let addr = listener.local_addr().expect("receiver address");
        let deliveries = Arc::new(Mutex::new(Vec::new()));
        let recorded = deliveries.clone();
        let accept_loop = tokio::spawn(async move {
            let mut open = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let recorded = recorded.clone();
                open.spawn(async move {
                    let service = service_fn(move |request| record(recorded.clone(), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while open.try_join_next().is_some() {}
            }
        });
        WebhookReceiver {
            addr,
            deliveries,
            accept_loop,
        }
    }

    /// `http://ADDR{path}`, for `[alerts] webhooks`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything received so far, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until a delivery that arrived at or after `since` satisfies
    /// `wanted`; returns the first such. Fails the test after `limit`,
    /// listing everything received.
    pub async fn wait_for(
        &self,
        since: Instant,
        limit: Duration,
        what: &str,
        wanted: impl Fn(&Delivery) -> bool,
    ) -> Delivery {
        let deadline = Instant::now() + limit;
        loop {
            let found = self
                .deliveries()
                .into_iter()
                .find(|d| d.arrived >= since && wanted(d));
            if let Some(delivery) = found {
                return delivery;
            }
            if Instant::now() > deadline {
                let got: Vec<String> = self.deliveries().iter().map(|d| d.raw.clone()).collect();
                panic!("no webhook delivery {what} within {limit:?}; received: {got:#?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

async fn record(
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let arrived = Instant::now();
    let method = request.method().to_string();
    let path = request.uri().to_string();
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = request
        .into_body()
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let raw = String::from_utf8_lossy(&body).into_owned();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    deliveries
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Delivery {
            arrived,
            method,
            path,
            content_type,
            json,
            raw,
        });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = hyper::StatusCode::NO_CONTENT;
    Ok(response)
}
