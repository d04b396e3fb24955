//! Graceful shutdown (issue 4): SIGTERM or SIGINT stop accepting at once,
//! let in-flight requests finish (up to `runtime.drain_timeout`) and exit 0;
//! a second signal exits at once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::support::backends::{hang, named, Backend};
use crate::support::client::{read_response, wait_until_refused, RawResponse};
use crate::support::node_config::NodeConfig;
use crate::support::{exclusive, free_addr, Halb};

/// `GET path` on a new connection, in the background: the response (or
/// why none came) and when it arrived.
fn request_in_background(
    addr: SocketAddr,
    path: &str,
) -> JoinHandle<(std::io::Result<RawResponse>, Instant)> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    tokio::spawn(async move {
        let answer = async {
            let mut stream = TcpStream::connect(addr).await?;
            stream.write_all(request.as_bytes()).await?;
            read_response(&mut BufReader::new(stream)).await
        };
        let result = match tokio::time::timeout(Duration::from_secs(60), answer).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer within 60s",
            )),
        };
        (result, Instant::now())
    })
}

/// Waits until `backend` has seen `n` requests (so they are in flight).
async fn wait_for_requests(backend: &Backend, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while backend.requests() < n {
        assert!(
            Instant::now() < deadline,
            "the backend saw {} of {n} requests",
            backend.requests()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A keep-alive client connection that has had one answer and now idles.
async fn idle_keep_alive_connection(addr: SocketAddr) -> BufReader<TcpStream> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut reader = BufReader::new(stream);
    let response = read_response(&mut reader).await.expect("response");
    assert_eq!(response.status, 200, "{}", response.text());
    reader
}

/// A slow request in flight when `signal` arrives finishes with 200; new
/// connections are refused meanwhile; an idle keep-alive connection does not
/// hold the exit up; halb exits 0 soon after the last response.
async fn drains_in_flight_work_then_exits_0(signal: &str) {
    let _machine = exclusive().await;
    let slow = named("slow").await;
    let front = free_addr();
    let config = NodeConfig::new()
        .listener("front", front, "app")
        .pool("app", &[slow.addr]);
    let mut halb = Halb::start(&config.to_toml()).await;

    let mut idle = idle_keep_alive_connection(front).await;
    let in_flight = request_in_background(front, "/sleep/1500");
    wait_for_requests(&slow, 2).await;

    let signalled = Instant::now();
    halb.signal(signal);
    let refused_after = wait_until_refused(front, Duration::from_secs(1)).await;
    assert!(
        !in_flight.is_finished(),
        "the slow request ended before the listener stopped accepting \
         ({refused_after:?} after SIG{signal})"
    );
    assert!(!halb.has_exited(), "halb exited with a request in flight");

    let (response, answered) = in_flight.await.expect("request task");
    let response = response.unwrap_or_else(|e| {
        panic!(
            "the in-flight request failed after SIG{signal}: {e}\n{}",
            halb.logs()
        )
    });
    assert_eq!((response.status, response.text().as_str()), (200, "slow"));

    // halb closes the idle connection rather than waiting on it.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "the idle keep-alive connection after SIG{signal}: {closed:?}"
    );

    let status = halb
        .wait_for_exit(Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("halb still runs 10 s after SIG{signal}\n{}", halb.logs()));
    let exited = Instant::now();
    assert_eq!(
        status.code(),
        Some(0),
        "exit after SIG{signal}\n{}",
        halb.logs()
    );
    assert!(
        exited.duration_since(answered) < Duration::from_secs(3),
        "halb exited {:?} after its last response (drain timeout is 30 s: it \
         waited for nothing)",
        exited.duration_since(answered)
    );
    assert!(
        answered.duration_since(signalled) < Duration::from_secs(5),
        "the slow request took {:?} after the signal",
        answered.duration_since(signalled)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_work_then_exits_0() {
    drains_in_flight_work_then_exits_0("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_drains_in_flight_work_then_exits_0() {
    drains_in_flight_work_then_exits_0("INT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let _machine = exclusive().await;
    let silent = hang().await;
    let front = free_addr();
    let config = NodeConfig::new()
        .listener("front", front, "app")
        .pool("app", &[silent.addr])
        .pool_key("app", "timeout", "\"60s\"");
    let mut halb = Halb::start(&config.to_toml()).await;

    let hanging = request_in_background(front, "/");
    wait_for_requests(&silent, 1).await;

    halb.signal("TERM");
    wait_until_refused(front, Duration::from_secs(1)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !halb.has_exited(),
        "halb exited on the first signal with a request in flight (drain is 30 s)"
    );

    let second = Instant::now();
    halb.signal("INT");
    let status = halb
        .wait_for_exit(Duration::from_secs(10))
        .await
        .unwrap_or_else(|| {
            panic!(
                "halb still runs 10 s after a second signal\n{}",
                halb.logs()
            )
        });
    let took = second.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "exit took {took:?} after the second signal"
    );
    assert!(!status.success(), "exit after a second signal: {status}");
    assert_eq!(
        status.code(),
        Some(1),
        "exit after a second signal: {status}"
    );

    let (result, _) = hanging.await.expect("request task");
    assert!(
        result.is_err(),
        "the hanging request got an answer: {:?}",
        result.map(|r| r.status)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_timeout_bounds_a_graceful_shutdown() {
    let _machine = exclusive().await;
    let silent = hang().await;
    let front = free_addr();
    let config = NodeConfig::new()
        .runtime_key("drain_timeout", "\"1s\"")
        .listener("front", front, "app")
        .pool("app", &[silent.addr])
        .pool_key("app", "timeout", "\"60s\"");
    let mut halb = Halb::start(&config.to_toml()).await;

    let hanging = request_in_background(front, "/");
    wait_for_requests(&silent, 1).await;

    let signalled = Instant::now();
    halb.signal("TERM");
    let status = halb
        .wait_for_exit(Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("halb still runs 15 s after SIGTERM\n{}", halb.logs()));
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "halb exited {took:?} after SIGTERM, before the 1 s drain timeout"
    );
    assert!(
        took < Duration::from_secs(5),
        "halb exited {took:?} after SIGTERM; drain timeout is 1 s"
    );
    assert_eq!(status.code(), Some(0), "{}", halb.logs());
    let (result, _) = hanging.await.expect("request task");
    assert!(result.is_err(), "the hanging request got an answer");
}
