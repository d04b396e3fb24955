//! Malformed requests and request-smuggling attempts: halb answers 400 (or
//! 431 for an oversized head) and the backend never sees them.

use std::time::Duration;

use crate::support::backends::{named, Backend};
use crate::support::client::{get_once, raw_exchange};
use crate::support::{BalancerConfig, Halb};

/// Sends each of `requests` on its own connection and checks that halb
/// answers `expected` and that nothing reached the backend; then checks
/// that a good request does reach it (so the counter is known to work).
async fn assert_rejected(expected: u16, requests: &[&[u8]]) {
    let backend: Backend = named("a").await;
    let config = BalancerConfig::http(&[backend.addr]);
    let _halb = Halb::start(&config.to_toml()).await;

    for request in requests {
        let shown = String::from_utf8_lossy(&request[..request.len().min(200)]).into_owned();
        let response = raw_exchange(config.listen, request)
            .await
            .unwrap_or_else(|e| panic!("no HTTP answer to {shown:?}: {e}"));
        assert_eq!(
            response.status,
            expected,
            "answer to {shown:?}: {}",
            response.text()
        );
        // Anything forwarded would arrive about now; give it time to land.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(backend.requests(), 0, "{shown:?} reached the backend");
    }

    let reply = get_once(config.listen, "/").await;
    assert_eq!(reply.status, 200, "a good request after the bad ones");
    assert_eq!(backend.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_chunked_encoding_is_rejected() {
    assert_rejected(
        400,
        &[b"POST /submit HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_different_content_lengths_are_rejected() {
    assert_rejected(
        400,
        &[b"POST /submit HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_content_length_is_rejected() {
    assert_rejected(
        400,
        &[b"POST /submit HTTP/1.1\r\nHost: x\r\nContent-Length: 4x\r\n\r\nabcd"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_chunked_body_is_rejected() {
    assert_rejected(
        400,
        &[b"POST /submit HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_header_gets_431() {
    let mut request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Huge: ".to_vec();
    request.extend_from_slice(&vec![b'h'; 100 * 1024]);
    request.extend_from_slice(b"\r\n\r\n");
    assert_rejected(431, &[&request]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_line_is_rejected() {
    assert_rejected(
        400,
        &[
            b"GET / HTTP/1.1 trailing-junk\r\nHost: x\r\n\r\n",
            b"HELLO\r\n\r\n",
            b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
        ],
    )
    .await;
}
