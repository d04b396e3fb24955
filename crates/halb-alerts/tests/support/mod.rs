//! A real HTTP webhook receiver on 127.0.0.1 for the alert tests: it
//! records every request it gets and answers as told.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// How the receiver answers.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// 200 to everything.
    Ok,
    /// 500 to the first `n` requests, then 200.
    FailFirst(usize),
    /// This status to everything.
    Status(u16),
    /// Reads the request, then never answers.
    Hang,
}

/// One request as the receiver saw it.
#[derive(Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub host: String,
    pub content_type: String,
    pub json: serde_json::Value,
}

/// A running receiver; it stops with the test's runtime.
pub struct Receiver {
    pub addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<Received>,
    hits: Arc<AtomicUsize>,
}

impl Receiver {
    pub async fn start(answer: Answer) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, requests) = mpsc::unbounded_channel();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                let counter = Arc::clone(&counter);
                let service = service_fn(move |request: Request<Incoming>| {
                    let tx = tx.clone();
                    let counter = Arc::clone(&counter);
                    async move {
                        let seen = counter.fetch_add(1, Ordering::SeqCst);
                        let received = read(request).await;
                        let _ = tx.send(received);
                        let status = match answer {
                            Answer::Ok => 200,
                            Answer::FailFirst(n) if seen < n => 500,
                            Answer::FailFirst(_) => 200,
                            Answer::Status(status) => status,
                            Answer::Hang => std::future::pending().await,
                        };
                        let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                        *response.status_mut() = StatusCode::from_u16(status).unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver {
            addr,
            requests,
            hits,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next request, or a panic if none arrives `within`.
    pub async fn next(&mut self, within: Duration) -> Received {
        tokio::time::timeout(within, self.requests.recv())
            .await
            .expect("webhook receiver got no request in time")
            .expect("receiver stopped")
    }

    /// How many requests arrived so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn read(request: Request<Incoming>) -> Received {
    let header = |name: http::HeaderName| {
        request
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let host = header(http::header::HOST);
    let content_type = header(http::header::CONTENT_TYPE);
    let method = request.method().to_string();
    let path = request.uri().to_string();
    let body = request.into_body().collect().await.unwrap().to_bytes();
    Received {
        method,
        path,
        host,
        content_type,
        json: serde_json::from_slice(&body).expect("webhook body is JSON"),
    }
}

/// A 127.0.0.1 port where nothing listens: connections are refused. The
/// socket is bound but never listens, so that no other test's receiver can
/// take the port while the returned socket lives.
pub fn refused_port() -> (SocketAddr, tokio::net::TcpSocket) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    (socket.local_addr().unwrap(), socket)
}

/// Waits until `condition` holds, or panics after `within`.
pub async fn eventually(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
