//! A steady load on halb: several keep-alive clients sending `GET` in a loop
//! until told to stop, recording every outcome (a transport error is an
//! outcome too, not a panic) with the time it was sent.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::client::empty_body;
use super::HttpClient;

/// A request gets this long before it counts as failed.
const REQUEST_LIMIT: Duration = Duration::from_secs(10);

/// What became of one request.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub sent: Instant,
    /// Status and body, or why no response came.
    pub result: Result<(u16, String), String>,
}

impl Outcome {
    pub fn is_ok(&self) -> bool {
        matches!(self.result, Ok((200, _)))
    }

    /// The body of a 200 answer (the backend's name, for named backends).
    pub fn body(&self) -> Option<&str> {
        match &self.result {
            Ok((200, body)) => Some(body),
            _ => None,
        }
    }
}

/// Clients sending `GET path` in a loop.
pub struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<Vec<Outcome>>>,
}

impl Load {
    /// `clients` keep-alive clients, each sending `GET path`, waiting for
    /// the whole answer, then pausing `pause` (so the load stays steady
    /// without eating the machine).
    pub fn start(listen: SocketAddr, path: &str, clients: usize, pause: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..clients)
            .map(|_| tokio::spawn(client_loop(listen, path.to_owned(), pause, stop.clone())))
            .collect();
        Load { stop, clients }
    }

    /// `clients` clients, each sending `GET path` on a new connection every
    /// time (connect, one request, close), then pausing `pause`. A refused
    /// or reset connection is an outcome too.
    pub fn start_new_connections(
        listen: SocketAddr,
        path: &str,
        clients: usize,
        pause: Duration,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..clients)
            .map(|_| {
                tokio::spawn(new_connection_loop(
                    listen,
                    path.to_owned(),
                    pause,
                    stop.clone(),
                ))
            })
            .collect();
        Load { stop, clients }
    }

    /// Stops the clients; every outcome, in the order sent.
    pub async fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::SeqCst);
        let mut outcomes = Vec::new();
        for client in self.clients {
            outcomes.extend(client.await.expect("load client"));
        }
        outcomes.sort_by_key(|outcome| outcome.sent);
        outcomes
    }
}

async fn client_loop(
    listen: SocketAddr,
    path: String,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let mut client = HttpClient::connect(listen).await;
    while !stop.load(Ordering::SeqCst) {
        let sent = Instant::now();
        let (result, reconnect) = one_get(&mut client, &path).await;
        outcomes.push(Outcome { sent, result });
        if reconnect {
            client = HttpClient::connect(listen).await;
        }
        tokio::time::sleep(pause).await;
    }
    outcomes
}

async fn new_connection_loop(
    listen: SocketAddr,
    path: String,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let sent = Instant::now();
        let result = match tokio::time::timeout(REQUEST_LIMIT, TcpStream::connect(listen)).await {
            Ok(Ok(stream)) => match HttpClient::handshake(stream, listen).await {
                Ok(mut client) => one_get(&mut client, &path).await.0,
                Err(e) => Err(format!("handshake: {e}")),
            },
            Ok(Err(e)) => Err(format!("connect: {e}")),
            Err(_) => Err(format!("connect: no answer within {REQUEST_LIMIT:?}")),
        };
        outcomes.push(Outcome { sent, result });
        tokio::time::sleep(pause).await;
    }
    outcomes
}

/// One `GET`; also says whether the connection must be replaced.
async fn one_get(client: &mut HttpClient, path: &str) -> (Result<(u16, String), String>, bool) {
    let request = client
        .request("GET", path)
        .body(empty_body())
        .expect("request");
    let exchange = async {
        let response = client
            .try_send(request)
            .await
            .map_err(|e| format!("no response: {e}"))?;
        let status = response.status().as_u16();
        let closing = response
            .headers()
            .get("connection")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("status {status}, then the body failed: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, String::from_utf8_lossy(&body).into_owned(), closing))
    };
    match tokio::time::timeout(REQUEST_LIMIT, exchange).await {
        Ok(Ok((status, body, closing))) => (Ok((status, body)), closing),
        Ok(Err(e)) => (Err(e), true),
        Err(_) => (Err(format!("no answer within {REQUEST_LIMIT:?}")), true),
    }
}

/// The outcomes that are not a 200, for a failure message.
pub fn failed(outcomes: &[Outcome]) -> Vec<&Outcome> {
    outcomes.iter().filter(|o| !o.is_ok()).collect()
}

/// Fails the test, naming the first few, if any request did not get a 200.
#[track_caller]
pub fn assert_none_failed(outcomes: &[Outcome]) {
    let failures = failed(outcomes);
    assert!(
        failures.is_empty(),
        "{} of {} requests failed; first: {:?}",
        failures.len(),
        outcomes.len(),
        &failures[..failures.len().min(5)]
    );
}

/// The share of the 200 answers sent in `[from, to)` whose body is `name`,
/// and how many answers that share is of.
pub fn share(outcomes: &[Outcome], name: &str, from: Instant, to: Instant) -> (f64, usize) {
    let answers: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.sent >= from && o.sent < to)
        .filter_map(Outcome::body)
        .collect();
    let hits = answers.iter().filter(|body| **body == name).count();
    (hits as f64 / answers.len().max(1) as f64, answers.len())
}
