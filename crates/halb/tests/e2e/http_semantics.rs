//! What an HTTP proxy must do to headers and connections: hop-by-hop headers
//! stay on their hop, forwarding headers are added, Host is kept, and
//! connections are kept alive (and closed when idle or too slow).

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::support::backends::{echo_headers, named};
use crate::support::client::{collect, empty_body, read_response};
use crate::support::{within, BalancerConfig, Halb, HttpClient, Reply};

/// The header values the echo backend received, by lower-case name.
fn received(reply: &Reply) -> serde_json::Map<String, Value> {
    assert_eq!(reply.status, 200, "{}", reply.text());
    match serde_json::from_slice(&reply.body) {
        Ok(Value::Object(headers)) => headers,
        _ => panic!("echo backend answered {}", reply.text()),
    }
}

/// All values of one received header, in order.
fn values(headers: &serde_json::Map<String, Value>, name: &str) -> Vec<String> {
    headers
        .get(name)
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a `Connection` header value names `token`.
fn names_token(connection: &str, token: &str) -> bool {
    connection
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_request_headers_are_not_forwarded() {
    let echo = echo_headers().await;
    let config = BalancerConfig::http(&[echo.addr]);
    let _halb = Halb::start(&config.to_toml()).await;

    let mut client = HttpClient::connect(config.listen).await;
    let seen = received(
        &client
            .get(
                "/",
                &[
                    ("connection", "keep-alive, x-client-hop"),
                    ("x-client-hop", "must-not-reach-the-backend"),
                    ("keep-alive", "timeout=5"),
                    ("proxy-connection", "keep-alive"),
                    ("te", "trailers"),
                    ("trailer", "x-checksum"),
                    ("x-end-to-end", "kept"),
                ],
            )
            .await,
    );

    for hop in [
        "x-client-hop",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
    ] {
        assert!(
            !seen.contains_key(hop),
            "the backend received hop-by-hop {hop}: {seen:?}"
        );
    }
    for connection in values(&seen, "connection") {
        assert!(
            !names_token(&connection, "x-client-hop"),
            "the client's Connection header was forwarded: {connection}"
        );
    }
    assert_eq!(
        values(&seen, "x-end-to-end"),
        ["kept"],
        "end-to-end headers must pass"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_header_without_an_upgrade_is_not_forwarded() {
    let echo = echo_headers().await;
    let config = BalancerConfig::http(&[echo.addr]);
    let _halb = Halb::start(&config.to_toml()).await;

    // `Connection` does not name `upgrade`, so this is no upgrade request.
    let seen = received(
        &HttpClient::connect(config.listen)
            .await
            .get("/", &[("upgrade", "websocket")])
            .await,
    );
    assert!(
        !seen.contains_key("upgrade"),
        "the backend received Upgrade: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_response_headers_are_not_returned() {
    let echo = echo_headers().await;
    let config = BalancerConfig::http(&[echo.addr]);
    let _halb = Halb::start(&config.to_toml()).await;

    let reply = HttpClient::connect(config.listen).await.get("/", &[]).await;

    assert_eq!(reply.status, 200);
    for hop in ["keep-alive", "x-backend-hop", "proxy-connection"] {
        assert!(
            !reply.headers.contains_key(hop),
            "the client received hop-by-hop {hop}: {:?}",
            reply.headers
        );
    }
    for connection in reply.headers.get_all("connection") {
        let connection = connection.to_str().unwrap_or("");
        assert!(
            !names_token(connection, "x-backend-hop"),
            "the backend's Connection header was returned: {connection}"
        );
    }
    assert_eq!(
        reply.headers.get("x-backend-normal").map(|v| v.as_bytes()),
        Some(&b"kept"[..]),
        "end-to-end response headers must pass: {:?}",
        reply.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_added_and_host_is_kept() {
    let echo = echo_headers().await;
    let config = BalancerConfig::http(&[echo.addr]);
    let _halb = Halb::start(&config.to_toml()).await;
    let mut client = HttpClient::connect(config.listen).await;

    let request = hyper::Request::get("/where")
        .header("host", "shop.example:8443")
        .body(empty_body())
        .expect("request");
    let seen = received(&client.exchange(request).await);

    assert_eq!(
        values(&seen, "host"),
        ["shop.example:8443"],
        "Host must be kept"
    );
    assert_eq!(values(&seen, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(values(&seen, "x-forwarded-proto"), ["http"]);
    let forwarded = values(&seen, "forwarded").join(", ").to_ascii_lowercase();
    assert!(
        forwarded.contains("for=127.0.0.1"),
        "Forwarded: {forwarded:?}"
    );
    assert!(forwarded.contains("proto=http"), "Forwarded: {forwarded:?}");

    // The client is no trusted proxy (`trusted_proxies` is empty): what it
    // claims is replaced, never appended to.
    let seen = received(&client.get("/", &[("x-forwarded-for", "203.0.113.7")]).await);
    assert_eq!(
        values(&seen, "x-forwarded-for"),
        ["127.0.0.1"],
        "an untrusted client's X-Forwarded-For must be replaced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_reuses_client_and_backend_connections() {
    let a = named("a").await;
    let config = BalancerConfig::http(&[a.addr]);
    let _halb = Halb::start(&config.to_toml()).await;

    let mut client = HttpClient::connect(config.listen).await;
    for i in 0..100 {
        let request = client
            .request("GET", "/")
            .body(empty_body())
            .expect("request");
        let response = client
            .try_send(request)
            .await
            .unwrap_or_else(|e| panic!("request {i} on the kept-alive connection failed: {e:?}"));
        let reply = collect(response).await;
        assert_eq!(
            (reply.status, reply.text()),
            (200, "a".to_owned()),
            "request {i}"
        );
    }

    assert_eq!(a.requests(), 100);
    assert!(
        a.connections() <= 4,
        "halb opened {} backend connections for 100 sequential requests",
        a.connections()
    );
}

/// Reads until halb closes the connection (EOF or a reset); how long that
/// took, and what came before the close.
async fn time_until_closed(stream: &mut BufReader<TcpStream>) -> (Duration, String) {
    let started = Instant::now();
    let mut got = Vec::new();
    let _ = within(
        Duration::from_secs(15),
        "halb closing the connection",
        stream.read_to_end(&mut got),
    )
    .await;
    (
        started.elapsed(),
        String::from_utf8_lossy(&got).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_request_head_is_cut_off() {
    let a = named("a").await;
    let config = BalancerConfig::http(&[a.addr]).listener_key("request_head_timeout", "\"500ms\"");
    let _halb = Halb::start(&config.to_toml()).await;

    let mut stream = BufReader::new(TcpStream::connect(config.listen).await.expect("connect"));
    stream
        .get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: slow.example\r\n")
        .await
        .expect("write a partial head");
    let (took, answer) = time_until_closed(&mut stream).await;

    assert!(
        took < Duration::from_secs(5),
        "closed after {took:?}; request_head_timeout is 500ms"
    );
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n")
            && answer
                .to_ascii_lowercase()
                .contains("connection: close\r\n"),
        "{answer:?}"
    );
    assert!(
        took >= Duration::from_millis(400),
        "closed after only {took:?}"
    );
    assert_eq!(a.requests(), 0);
}

/// A client gets one response, then sends nothing: halb closes the
/// connection `idle_ms` after the response, quietly.
async fn idle_connection_closes_after(idle_ms: u64) {
    let a = named("a").await;
    let idle = format!("\"{idle_ms}ms\"");
    let config = BalancerConfig::http(&[a.addr]).listener_key("idle_timeout", &idle);
    let _halb = Halb::start(&config.to_toml()).await;

    let mut stream = BufReader::new(TcpStream::connect(config.listen).await.expect("connect"));
    stream
        .get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: idle.example\r\n\r\n")
        .await
        .expect("write request");
    let reply = within(
        Duration::from_secs(10),
        "response",
        read_response(&mut stream),
    )
    .await
    .expect("a response");
    assert_eq!((reply.status, reply.text()), (200, "a".to_owned()));
    let (took, after) = time_until_closed(&mut stream).await;

    assert!(
        took < Duration::from_secs(5),
        "closed after {took:?}; idle_timeout is {idle_ms}ms"
    );
    // An idle keep-alive connection closes quietly: a 408 there could be
    // taken for the answer to a request the client is just sending.
    assert_eq!(after, "", "bytes before the idle close");
    assert!(
        took >= Duration::from_millis(idle_ms * 4 / 5),
        "closed after only {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_client_connection_is_closed_after_idle_timeout() {
    idle_connection_closes_after(500).await;
}

/// Shorter than the grace a connection stays busy after a response (20 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_idle_timeout_closes_a_connection_that_was_just_busy() {
    idle_connection_closes_after(10).await;
}
