//! Draining through the admin API (issue 3, check 6): a drained backend gets
//! no new requests or connections, its in-flight requests finish, `enable`
//! brings it back, and a long TCP connection to it is closed at the pool's
//! `drain_timeout`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::backends::{addrs, named, tcp_echo, Backend};
use crate::support::client::{answers_on_new_connections, get_once};
use crate::support::status::{backend_entry, number};
use crate::support::{exclusive, within, BalancerConfig, Halb};

const LIMIT: Duration = Duration::from_secs(30);

/// `POST /api/v1/pools/app/backends/{address}/{action}`: status and JSON body.
async fn act(halb: &Halb, address: &str, action: &str) -> (u16, Value) {
    let path = format!("/api/v1/pools/app/backends/{address}/{action}");
    let response = halb.admin_request("POST", &path).await;
    let body = serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("POST {path}: not JSON ({e}): {}", response.text()));
    (response.status, body)
}

/// Waits until one of `backends` has seen a request; returns its index.
async fn which_got_one(backends: &[&Backend]) -> usize {
    within(LIMIT, "a backend to get the slow request", async {
        loop {
            if let Some(i) = backends.iter().position(|b| b.requests() > 0) {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_backend_finishes_its_slow_request_and_gets_nothing_new() {
    let (a, b) = (named("a").await, named("b").await);
    let config = BalancerConfig::http(&addrs(&[&a, &b]));
    let halb = Halb::start(&config.to_toml()).await;

    let listen = config.listen;
    let slow = tokio::spawn(async move {
        let started = Instant::now();
        let reply = get_once(listen, "/sleep/2000").await;
        (reply.status, reply.text(), started.elapsed())
    });
    let backends = [&a, &b];
    let drained = which_got_one(&backends).await;
    let (target, other) = (backends[drained], backends[1 - drained]);

    let (code, answer) = act(&halb, &target.addr.to_string(), "drain").await;
    assert_eq!(code, 200, "{answer:#}");
    assert_eq!(answer["state"], "draining", "{answer:#}");
    assert_eq!(answer["address"], target.addr.to_string(), "{answer:#}");

    let answers = answers_on_new_connections(config.listen, 40).await;
    let status_during = halb.status_json().await;
    let (slow_status, slow_body, slow_took) = slow.await.expect("slow request");
    let status_after = halb.status_json().await;
    let during_entry = backend_entry(&status_during, target.addr);

    assert_eq!(
        target.requests(),
        1,
        "the drained backend got new requests: {answers:?}"
    );
    assert_eq!(other.requests(), 40, "{answers:?}");
    assert_eq!(during_entry["state"], "draining", "{during_entry:#}");
    assert_eq!(
        number(during_entry, "in_flight"),
        1,
        "the slow request is in flight while draining: {during_entry:#}"
    );
    let target_name = if drained == 0 { "a" } else { "b" };
    assert_eq!(
        (slow_status, slow_body.as_str()),
        (200, target_name),
        "the in-flight request finishes on the drained backend"
    );
    assert!(slow_took >= Duration::from_secs(2), "{slow_took:?}");
    assert_eq!(
        number(backend_entry(&status_after, target.addr), "in_flight"),
        0
    );

    let (code, answer) = act(&halb, &target.addr.to_string(), "enable").await;
    assert_eq!(
        (code, &answer["state"]),
        (200, &Value::from("up")),
        "{answer:#}"
    );
    answers_on_new_connections(config.listen, 20).await;
    assert_eq!(
        target.requests(),
        11,
        "enabled again, it gets its round-robin half of 20 GETs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_stops_traffic_and_unknown_targets_get_404() {
    let (a, b) = (named("a").await, named("b").await);
    let config = BalancerConfig::http(&addrs(&[&a, &b]));
    let halb = Halb::start(&config.to_toml()).await;
    let a_address = a.addr.to_string();

    let (code, answer) = act(&halb, &a_address, "disable").await;
    assert_eq!(
        (code, &answer["state"]),
        (200, &Value::from("disabled")),
        "{answer:#}"
    );
    answers_on_new_connections(config.listen, 10).await;
    assert_eq!((a.requests(), b.requests()), (0, 10));
    let (code, answer) = act(&halb, &a_address, "enable").await;
    assert_eq!(
        (code, &answer["state"]),
        (200, &Value::from("up")),
        "{answer:#}"
    );
    answers_on_new_connections(config.listen, 10).await;
    assert_eq!((a.requests(), b.requests()), (5, 15));

    for path in [
        format!("/api/v1/pools/nope/backends/{a_address}/drain"),
        "/api/v1/pools/app/backends/127.0.0.1:1/drain".to_owned(),
        format!("/api/v1/pools/app/backends/{a_address}/explode"),
    ] {
        let response = halb.admin_request("POST", &path).await;
        assert_eq!(response.status, 404, "POST {path}: {}", response.text());
        let body: Value = serde_json::from_slice(&response.body)
            .unwrap_or_else(|e| panic!("POST {path}: not JSON ({e}): {}", response.text()));
        assert!(body["error"].is_string(), "POST {path}: {body:#}");
    }
    let path = format!("/api/v1/pools/app/backends/{a_address}/drain");
    let response = halb.admin_request("GET", &path).await;
    assert_eq!(response.status, 405, "GET {path}: {}", response.text());
    let status = halb.status_json().await;
    assert_eq!(
        backend_entry(&status, a.addr)["state"],
        "up",
        "a refused action changed nothing"
    );
}

/// Sends `message` and reads its echo.
async fn echo(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.write_all(message).await?;
    let mut echoed = vec![0; message.len()];
    stream.read_exact(&mut echoed).await?;
    Ok(echoed)
}

/// Opens a TCP connection through halb and checks it echoes.
async fn echoing_connection(listen: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(listen).await.expect("connect");
    let echoed = within(LIMIT, "an echo", echo(&mut stream, b"hello"))
        .await
        .expect("echo");
    assert_eq!(echoed, b"hello");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_tcp_connection_to_a_drained_backend_closes_at_the_drain_timeout() {
    let _alone = exclusive().await;
    let (x, y) = (tcp_echo().await, tcp_echo().await);
    let drain_timeout = Duration::from_millis(500);
    let config = BalancerConfig::tcp(&addrs(&[&x, &y])).pool_key("drain_timeout", "\"500ms\"");
    let halb = Halb::start(&config.to_toml()).await;

    let mut on_target = echoing_connection(config.listen).await;
    let target = if x.connections() == 1 { &x } else { &y };
    let mut elsewhere = echoing_connection(config.listen).await;
    assert_eq!(
        (x.connections(), y.connections()),
        (1, 1),
        "round robin puts the two connections on two backends"
    );

    let drained_at = Instant::now();
    let (code, answer) = act(&halb, &target.addr.to_string(), "drain").await;
    assert_eq!(
        (code, &answer["state"]),
        (200, &Value::from("draining")),
        "{answer:#}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let still = within(
        LIMIT,
        "an echo while draining",
        echo(&mut on_target, b"still"),
    )
    .await
    .expect("the connection works before the drain timeout");
    let fresh = echoing_connection(config.listen).await;

    let mut rest = Vec::new();
    let end = within(
        LIMIT,
        "the drained connection to close",
        on_target.read_to_end(&mut rest),
    )
    .await;
    let closed_after = drained_at.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let elsewhere_echo = within(LIMIT, "an echo elsewhere", echo(&mut elsewhere, b"alive")).await;

    assert_eq!(still, b"still");
    assert!(
        end.is_err() || rest.is_empty(),
        "the closed connection carried unexpected bytes: {rest:?}"
    );
    assert!(
        closed_after >= drain_timeout,
        "closed {closed_after:?} after the drain, before drain_timeout {drain_timeout:?}"
    );
    // +300 ms of slack for a busy machine.
    assert!(
        closed_after <= drain_timeout + Duration::from_millis(300),
        "closed {closed_after:?} after the drain; drain_timeout = {drain_timeout:?}"
    );
    assert_eq!(
        target.connections(),
        1,
        "a new connection went to the drained backend"
    );
    drop(fresh);
    assert_eq!(
        elsewhere_echo.expect("a connection to a backend not drained stays open"),
        b"alive"
    );
}
