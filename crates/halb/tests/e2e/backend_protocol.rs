//! halb's HTTP/1.1 client, as scripted backends push it: every response
//! framing (chunked with trailers, until the close, HEAD, 204 and 304),
//! interim 1xx heads, keep-alive reuse and pooled connections the backend
//! has closed, answers given before an upload ends, responses that stream
//! while the upload still goes (full duplex), uploads longer than the
//! pool's timeout, request body framing, malformed response heads, and
//! bodies that stall or break off.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::support::client::{
    empty_body, full_body, get_once, raw_exchange, read_response, RawResponse,
};
use crate::support::scripted::{answering, ok, scripted};
use crate::support::{within, BalancerConfig, Halb, HttpClient};

/// Plenty for one exchange on loopback, on a busy machine.
pub(crate) const ANSWER_LIMIT: Duration = Duration::from_secs(5);

/// `len` bytes of a pattern that a shifted or truncated copy cannot match.
pub(crate) fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// `GET path` as raw bytes.
pub(crate) fn raw_get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: backend-protocol.test\r\n\r\n").into_bytes()
}

/// What a raw client saw of one response: the head, every byte after it
/// until halb closed the connection, and how long that took.
pub(crate) struct CutShort {
    pub(crate) head: String,
    pub(crate) after_head: Vec<u8>,
    pub(crate) took: Duration,
}

/// Sends `request` on a new connection and reads until halb closes it (a
/// reset counts as closed). Fails the test after [`ANSWER_LIMIT`].
pub(crate) async fn read_until_closed(addr: SocketAddr, request: &[u8]) -> CutShort {
    let started = Instant::now();
    let mut stream = BufReader::new(TcpStream::connect(addr).await.expect("connect to halb"));
    stream
        .get_mut()
        .write_all(request)
        .await
        .expect("write request");
    within(ANSWER_LIMIT, "halb closing a broken response", async {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match stream.read_line(&mut line).await {
                Ok(0) | Err(_) => panic!("halb closed before the response head ended: {head:?}"),
                Ok(_) if line == "\r\n" => break,
                Ok(_) => head.push_str(&line),
            }
        }
        let mut after_head = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut chunk).await {
            after_head.extend_from_slice(&chunk[..n]);
        }
        CutShort {
            head,
            after_head,
            took: started.elapsed(),
        }
    })
    .await
}

/// Sends `head` and then `body_len` bytes on a new connection while
/// reading the answer, and stops sending once it has come (halb may stop
/// reading the upload). Fails the test after [`ANSWER_LIMIT`].
async fn upload_answered_early(addr: SocketAddr, head: &str, body_len: usize) -> RawResponse {
    upload_while_reading(addr, head, body_len, ANSWER_LIMIT).await
}

/// As [`upload_answered_early`], failing the test after `limit`.
async fn upload_while_reading(
    addr: SocketAddr,
    head: &str,
    body_len: usize,
    limit: Duration,
) -> RawResponse {
    let stream = TcpStream::connect(addr).await.expect("connect to halb");
    let (read_half, mut write_half) = stream.into_split();
    let mut upload = head.as_bytes().to_vec();
    upload.extend(pattern(body_len));
    let writer = tokio::spawn(async move {
        let _ = write_half.write_all(&upload).await;
        // Keep the write side open: a half-close could end the exchange.
        std::future::pending::<()>().await;
    });
    let answer = within(
        limit,
        "halb's answer to an upload",
        read_response(&mut BufReader::new(read_half)),
    )
    .await;
    writer.abort();
    answer.expect("a response")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_response_with_trailers_arrives_whole() {
    let big = pattern(100_000);
    let mut expected = b"hello, world!".to_vec();
    expected.extend_from_slice(&big);
    let (backend, seen) = scripted(move |mut wire| {
        let big = big.clone();
        async move {
            while let Some(request) = wire.read_request().await {
                if request.target != "/chunked" {
                    wire.write(&ok(b"after")).await;
                    continue;
                }
                let mut big_chunk = format!("{:x}\r\n", big.len()).into_bytes();
                big_chunk.extend_from_slice(&big);
                big_chunk.extend_from_slice(b"\r\n");
                // Pieces apart in time, so that halb reads them apart: a
                // chunk, an extension, a chunk split mid-data, trailers.
                let pieces: [&[u8]; 6] = [
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n",
                    b"5\r\nhello\r\n1;note=comma\r\n,\r\n",
                    b"7\r\n wor",
                    b"ld!\r\n",
                    &big_chunk,
                    b"0\r\nX-Checksum: 42\r\n\r\n",
                ];
                for piece in pieces {
                    wire.write(piece).await;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    })
    .await;
    let config = BalancerConfig::http(&[backend.addr]);
    let _halb = Halb::start(&config.to_toml()).await;

    let mut client = HttpClient::connect(config.listen).await;
    let reply = client.get("/chunked", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.body.len(), expected.len());
    assert!(reply.body == expected, "the chunked body arrived altered");

    let after = client.get("/after", &[]).await;
    assert_eq!((after.status, after.text()), (200, "after".to_owned()));
    assert_eq!(seen.count(), 2);
    assert_eq!(
        backend.connections(),
        1,
        "a chunked body read to its trailers leaves the connection reusable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_delimited_by_the_close_arrives_whole() {
    let body = pattern(200_000);
    let sent = body.clone();
    let (backend, _seen) = scripted(move |mut wire| {
        let body = sent.clone();
        async move {
            let Some(request) = wire.read_request().await else {
                return;
            };
            let version = request.target.trim_start_matches('/');
            let head =
                format!("HTTP/{version} 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n");
            wire.write(head.as_bytes()).await;
            for piece in body.chunks(30_000) {
                wire.write(piece).await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            // Dropping the connection ends the body.
        }
    })
    .await;
    let config = BalancerConfig::http(&[backend.addr]);
    let _halb = Halb::start(&config.to_toml()).await;

    let mut client = HttpClient::connect(config.listen).await;
    for version in ["1.1", "1.0", "1.1"] {
        let reply = client.get(&format!("/{version}"), &[]).await;
        assert_eq!(reply.status, 200, "HTTP/{version}: {}", reply.text());
        assert_eq!(reply.body.len(), body.len(), "HTTP/{version}");
        assert!(
            reply.body == body,
            "HTTP/{version}: the body arrived altered"
        );
    }
    assert_eq!(
        backend.connections(),
        3,
        "a connection whose body ended with its close is not reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_response_has_no_body_and_the_connections_go_on() {
    let (backend, seen) = answering(|request| match request.method.as_str() {
        "HEAD" => {
            b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: text/plain\r\n\r\n".to_vec()
        }
        _ => ok(b"after head"),
    })
    .await;
    let config = BalancerConfig::http(&[backend.addr]);
    let _halb = Halb::start(&config.to_toml()).await;

    let mut client = HttpClient::connect(config.listen).await;
    for round in 0..3 {
        let head = client
            .request("HEAD", "/")
            .body(empty_body())
            .expect("request");
        let reply = within(ANSWER_LIMIT, "the HEAD response", client.exchange(head)).await;
        assert_eq!(reply.status, 200, "round {round}");
        assert_eq!(
            reply.headers.get("content-length").map(|v| v.as_bytes()),
            Some(&b"1234"[..]),
            "round {round}: a HEAD response keeps its Content-Length"
        );
        assert!(reply.body.is_empty(), "round {round}: {:?}", reply.body);
        let reply = within(ANSWER_LIMIT, "the GET after HEAD", client.get("/", &[])).await;
        assert_eq!((reply.status, reply.text()), (200, "after head".to_owned()));
    }
    let methods: Vec<String> = seen.all().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["HEAD", "GET", "HEAD", "GET", "HEAD", "GET"]);
    // Had halb waited for 1234 body bytes, each HEAD would cost a connection.
    assert!(
        backend.connections() <= 2,
        "{} backend connections for 6 requests",
        backend.connections()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_content_and_not_modified_have_no_body() {
    let (backend, _seen) = answering(|request| match request.target.as_str() {
        "/no-content" => b"HTTP/1.1 204 No Content\r\nX-Reason: nothing\r\n\r\n".to_vec(),
        // The length is that of the representation, not of this response.
        "/not-modified" => {
            b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 5\r\n\r\n".to_vec()
        }
        _ => ok(b"after"),
    })
    .await;
    let config = BalancerConfig::http(&[backend.addr]);
    let _halb = Halb::start(&config.to_toml()).await;

    let mut client = HttpClient::connect(config.listen).await;
    for _ in 0..2 {
        let reply = within(ANSWER_LIMIT, "204", client.get("/no-content", &[])).await;
        assert_eq!(reply.status, 204);
        assert!(reply.body.is_empty(), "{:?}", reply.body);
        assert_eq!(reply.headers["x-reason"], "nothing");
        let reply = within(ANSWER_LIMIT, "after 204", client.get("/", &[])).await;
        assert_eq!((reply.status, reply.text()), (200, "after".to_owned()));

        let reply = within(ANSWER_LIMIT, "304", client.get("/not-modified", &[])).await;
        assert_eq!(reply.status, 304);
        assert!(reply.body.is_empty(), "{:?}", reply.body);
        assert_eq!(reply.headers["etag"], "\"v1\"");
        let reply = within(ANSWER_LIMIT, "after 304", client.get("/", &[])).await;
        assert_eq!((reply.status, reply.text()), (200, "after".to_owned()));
    }
    assert!(
        backend.connections() <= 2,
        "{} backend connections for 8 requests",
        backend.connections()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_response_head_that_arrives_in_pieces_is_read_whole() {
    // About 12 KiB of head: past the first read's 4 KiB, in uneven pieces.
    let mut head = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n".to_vec();
    for i in 0..60 {
        head.extend_from_slice(format!("X-Header-{i}: {i:0>200}\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\nbody");
    let (backend, _seen) = scripted(move |mut wire| {
        let response = head.clone();
        async move {
            while wire.read_request().await.is_some() {
                let (first, rest) = response.split_at(10);
                wire.write(first).await;
                for piece in rest.chunks(700) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    wire.write(piece).await;
                }
            }
        }
    })
    .await;
    let config = BalancerConfig::http(&[backend.addr]);
    let _halb = Halb::start(&config.to_toml()).await;

    let mut client = HttpClient::connect(config.listen).await;
    for _ in 0..2 {
        let reply = within(ANSWER_LIMIT, "a GET", client.get("/", &[])).await;
        assert_eq!((reply.status, reply.text()), (200, "body".to_owned()));
        for i in 0..60 {
            let name = format!("x-header-{i}");
            assert_eq!(
                reply.headers.get(&name).map(|v| v.as_bytes().to_vec()),
                Some(format!("{i:0>200}").into_bytes()),
                "{name}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_heads_are_dropped_and_the_final_response_passes() {
    let (backend, _seen) = scripted(|mut wire| async move {
        while let Some(request) = wire.read_request().await {
            let interim: &[u8] = match request.target.as_str() {
                "/continue" => b"HTTP/1.1 100 Continue\r\n\r\n",
                _ => b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
            };
            wire.write(interim).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            wire.write(&ok(format!("final for {}", request.target).as_bytes()))
                .await;
        }
    })
    .await;
    let config = BalancerConfig::http(&[backend.addr]);
    let _halb = Halb::start(&config.to_toml()).await;

    for path in ["/continue", "/hints", "/continue"] {
        // Raw, so that an interim head forwarded to the client would show.
        let response = raw_exchange(config.listen, &raw_get(path))
            .await
            .expect("a response");
        assert_eq!(
            (response.status, response.text()),
            (200, format!("final for {path}")),
            "{path}: {:?}",
            response.headers
        );
    }
}

/// A backend that reads an upload's head, says `100 Continue` (in two
/// pieces when `split`), waits a moment, then reads the body and answers
/// with its length.
/// What a backend sends before it has read an upload's body.
#[derive(Clone, Copy)]
enum Early {
    /// `100 Continue`, in one write.
    Continue,
    /// `100 Continue` in two writes 50 ms apart.
    SplitContinue,
    /// The final `200` head (chunked), the body's one chunk after the upload.
    AcceptingHead,
}

/// An 8 MiB upload to a backend that says `early` before reading the body,
/// then reads all of it: the client must get `got 8388608`.
async fn continuing_upload(early: Early) {
    let (backend, _seen) = scripted(move |mut wire| async move {
        let Some(request) = wire.read_head().await else {
            return;
        };
        match early {
            Early::Continue => {
                wire.write(b"HTTP/1.1 100 Continue\r\n\r\n").await;
            }
            Early::SplitContinue => {
                wire.write(b"HTTP/1.1 100 Cont").await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                wire.write(b"inue\r\n\r\n").await;
            }
            Early::AcceptingHead => {
                wire.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .await;
            }
        }
        // halb is sending the body meanwhile, and must keep sending.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let verdict = match wire.read_body(&request).await {
            Ok(body) if body == pattern(body.len()) => format!("got {}", body.len()),
            Ok(_) => "the body arrived altered".to_owned(),
            Err(why) => why.to_string(),
        };
        let answer = match early {
            Early::AcceptingHead => {
                format!("{:x}\r\n{verdict}\r\n0\r\n\r\n", verdict.len()).into_bytes()
            }
            _ => ok(verdict.as_bytes()),
        };
        wire.write(&answer).await;
    })
    .await;
    let config = BalancerConfig::http(&[backend.addr]).pool_key("timeout", "\"2s\"");
    let _halb = Halb::start(&config.to_toml()).await;

    const LEN: usize = 8 << 20;
    let head = format!("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {LEN}\r\n\r\n");
    let response = upload_answered_early(config.listen, &head, LEN).await;
    assert_eq!(
        (response.status, response.text()),
        (200, format!("got {LEN}")),
        "{:?}",
        response.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_continue_during_an_upload_does_not_stop_it() {
    continuing_upload(Early::Continue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_continue_split_in_two_during_an_upload_does_not_stop_it() {
    continuing_upload(Early::SplitContinue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_200_head_during_an_upload_does_not_stop_it() {
    continuing_upload(Early::AcceptingHead).await;
}

/// A backend that streams its response while it reads the upload (an
/// echo): neither direction waits for the other to end. 64 MiB is more
/// than every socket buffer on the way can hold, so a proxy that reads the
/// response only once the upload is sent stalls until its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_streams_while_the_upload_is_still_being_sent() {
    const LEN: usize = 64 << 20;
    let (backend, _seen) = scripted(|mut wire| async move {
        let Some(request) = wire.read_head().await else {
            return;
        };
        wire.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await;
        let length = request
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if let Err(why) = wire.echo_body_chunked(length).await {
            eprintln!("echo backend: {why}");
        }
    })
    .await;
    let config = BalancerConfig::http(&[backend.addr]).pool_key("timeout", "\"2s\"");
    let _halb = Halb::start(&config.to_toml()).await;

    let head = format!("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {LEN}\r\n\r\n");
    let response = upload_while_reading(config.listen, &head, LEN, Duration::from_secs(60)).await;
    assert_eq!(response.status, 200, "{:?}", response.headers);
    assert_eq!(response.body.len(), LEN, "echoed bytes");
    assert!(response.body == pattern(LEN), "the echo came back altered");
}

/// A backend that answers a whole 200 from the head alone and reads none
/// of the upload: the client gets the answer at once, not when (or if) the
/// upload ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_answer_before_the_upload_ends_reaches_the_client_at_once() {
    let answer = String::from_utf8(ok(b"stored")).expect("ascii");
    answered_from_the_head(64 << 20, &answer, Then::Hold, (200, "stored")).await;
}

/// Sends `pieces` of an upload `gap` apart, then reads the answer.
async fn slow_upload(addr: SocketAddr, pieces: usize, gap: Duration) -> (RawResponse, Duration) {
    const PIECE: usize = 10;
    let started = Instant::now();
    let mut stream = BufReader::new(TcpStream::connect(addr).await.expect("connect to halb"));
    let head = format!(
        "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        pieces * PIECE
    );
    stream
        .get_mut()
        .write_all(head.as_bytes())
        .await
        .expect("write head");
    let body = pattern(pieces * PIECE);
    for piece in body.chunks(PIECE) {
        tokio::time::sleep(gap).await;
        stream.get_mut().write_all(piece).await.expect("write body");
    }
    let response = within(
        Duration::from_secs(10),
        "halb's answer to a slow upload",
        read_response(&mut stream),
    )
    .await
    .expect("a response");
    (response, started.elapsed())
}

/// The pool's `timeout` is how long a backend may take to answer once the
/// request is sent, not a cap on the upload: an upload that keeps coming
/// for longer than it passes whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_takes_longer_than_the_pool_timeout_still_passes() {
    let (backend, _seen) = answering(|request| {
        let verdict = match &request.body {
            Ok(body) if *body == pattern(body.len()) => format!("got {}", body.len()),
            Ok(_) => "the body arrived altered".to_owned(),
            Err(why) => why.clone(),
        };
        ok(verdict.as_bytes())
    })
    .await;
    let config = BalancerConfig::http(&[backend.addr]).pool_key("timeout", "\"1s\"");
    let _halb = Halb::start(&config.to_toml()).await;

    let (response, took) = slow_upload(config.listen, 4, Duration::from_millis(600)).await;
    assert_eq!(
        (response.status, response.text()),
        (200, "got 40".to_owned()),
        "after {took:?}: {:?}",
        response.headers
    );
    assert!(took > Duration::from_secs(2), "the upload took {took:?}");
}

/// Once an upload is sent, the backend still has only the pool's timeout
/// to answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_reads_an_upload_and_never_answers_gets_504() {
    let (backend, _seen) = scripted(|mut wire| async move {
        if let Some(request) = wire.read_head().await {
            let _ = wire.read_body(&request).await;
            wire.hold().await;
        }
    })
    .await;
    let config = BalancerConfig::http(&[backend.addr]).pool_key("timeout", "\"1s\"");
    let _halb = Halb::start(&config.to_toml()).await;

    let (response, took) = slow_upload(config.listen, 2, Duration::from_millis(300)).await;
    assert_eq!(response.status, 504, "{:?}", response.headers);
    // 0.6 s of upload, then the 1 s timeout; well short of 10 s.
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "the 504 came after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_serves_sequential_gets_on_one_backend_connection() {
    let (backend, seen) =
        answering(|request| ok(format!("reply to {}", request.target).as_bytes())).await;
    let config = BalancerConfig::http(&[backend.addr]);
    let _halb = Halb::start(&config.to_toml()).await;

    let mut client = HttpClient::connect(config.listen).await;
    for i in 0..20 {
        let path = format!("/item/{i}");
        let reply = within(ANSWER_LIMIT, "a kept-alive GET", client.get(&path, &[])).await;
        assert_eq!(
            (reply.status, reply.text()),
            (200, format!("reply to {path}"))
        );
    }
    assert_eq!(seen.count(), 20);
    assert!(
        backend.connections() <= 2,
        "{} backend connections for 20 sequential GETs",
        backend.connections()
    );
}

/// What a server may send on an idle connection it is about to close.
const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_the_backend_closed_while_idle_are_not_used() {
    // Keep-alive framing, then a close after 50 ms of idleness: each pooled
    // connection is dead by the time the next request comes. Every other
    // connection says `408` before it closes, as many servers do.
    let accepted = Arc::new(AtomicUsize::new(0));
    let (backend, seen) = scripted(move |mut wire| {
        let says_408 = accepted.fetch_add(1, Ordering::SeqCst) % 2 == 1;
        async move {
            let Some(mut request) = wire.read_request().await else {
                return;
            };
            loop {
                let body = format!("{} {}", request.method, request.target);
                if !wire.write(&ok(body.as_bytes())).await {
                    return;
                }
                match wire.read_request_within(Duration::from_millis(50)).await {
                    Some(next) => request = next,
                    None if says_408 => {
                        wire.write(REQUEST_TIMEOUT).await;
                        return;
                    }
                    None => return,
                }
            }
        }
    })
    .await;
    let config = BalancerConfig::http(&[backend.addr]);
    let _halb = Halb::start(&config.to_toml()).await;

    let mut client = HttpClient::connect(config.listen).await;
    let mut failures = Vec::new();
    for i in 0..6 {
        for method in ["GET", "POST"] {
            let path = format!("/{i}");
            let body = if method == "POST" {
                full_body(format!("order {i}"))
            } else {
                empty_body()
            };
            let request = client.request(method, &path).body(body).expect("request");
            let reply = within(ANSWER_LIMIT, "a request", client.exchange(request)).await;
            if (reply.status, reply.text()) != (200, format!("{method} {path}")) {
                failures.push((method, i, reply.status, reply.text()));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert_eq!(seen.count(), 12, "each request reached the backend once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_closes_after_every_response_serves_every_get() {
    let (backend, seen) = scripted(|mut wire| async move {
        if let Some(request) = wire.read_request().await {
            let body = format!("reply to {}", request.target);
            let response = format!(
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            wire.write(response.as_bytes()).await;
        }
    })
    .await;
    let config = BalancerConfig::http(&[backend.addr]);
    let _halb = Halb::start(&config.to_toml()).await;

    // One client connection: the backend's close is its own hop's business.
    let mut client = HttpClient::connect(config.listen).await;
    for i in 0..30 {
        let path = format!("/{i}");
        let reply = within(ANSWER_LIMIT, "a GET", client.get(&path, &[])).await;
        assert_eq!(
            (reply.status, reply.text()),
            (200, format!("reply to {path}"))
        );
        assert_ne!(
            reply.headers.get("connection").map(|v| v.as_bytes()),
            Some(&b"close"[..]),
            "the backend's Connection: close reached the client"
        );
    }
    assert_eq!(seen.count(), 30);
    assert_eq!(
        backend.connections(),
        30,
        "a closed connection is not reused"
    );
}

/// What a backend does after it has answered an upload from its head.
#[derive(Clone, Copy)]
enum Then {
    /// Reads and drops the rest.
    Drain,
    /// Closes at once.
    Close,
    /// Reads nothing more, and keeps the connection open.
    Hold,
}

/// A `len`-byte upload to a backend that sends `answer` as soon as it has
/// the head, then does `then`: the client gets `expected` (not a 502 or a
/// 504) within [`ANSWER_LIMIT`], and the upload reached the backend once.
async fn answered_from_the_head(len: usize, answer: &str, then: Then, expected: (u16, &str)) {
    let answer = answer.to_owned();
    let (backend, seen) = scripted(move |mut wire| {
        let answer = answer.clone();
        async move {
            if wire.read_head().await.is_none() {
                return;
            }
            wire.write(answer.as_bytes()).await;
            match then {
                Then::Drain => wire.drain().await,
                Then::Close => {}
                Then::Hold => wire.hold().await,
            }
        }
    })
    .await;
    let config = BalancerConfig::http(&[backend.addr]);
    let _halb = Halb::start(&config.to_toml()).await;

    let head = format!("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n");
    let response = upload_answered_early(config.listen, &head, len).await;
    assert_eq!(
        (response.status, response.text()),
        (expected.0, expected.1.to_owned()),
        "{:?}",
        response.headers
    );
    let received = seen.all();
    assert_eq!(received.len(), 1, "the upload reached the backend once");
    assert_eq!(
        received[0].header("content-length"),
        Some(len.to_string().as_str())
    );
}

/// An 8 MiB upload answered 413 from the head alone.
async fn early_413(then: Then) {
    let close = match then {
        Then::Close => "Connection: close\r\n",
        _ => "",
    };
    let answer =
        format!("HTTP/1.1 413 Payload Too Large\r\n{close}Content-Length: 9\r\n\r\ntoo large");
    answered_from_the_head(8 << 20, &answer, then, (413, "too large")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_413_from_a_backend_that_drains_reaches_the_client() {
    early_413(Then::Drain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_413_from_a_backend_that_closes_reaches_the_client() {
    early_413(Then::Close).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_with_both_transfer_encoding_and_content_length_gets_502() {
    let (backend, _seen) = answering(|_| {
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
          b\r\nhello world\r\n0\r\n\r\n"
            .to_vec()
    })
    .await;
    let config = BalancerConfig::http(&[backend.addr]);
    let _halb = Halb::start(&config.to_toml()).await;
    let reply = raw_exchange(config.listen, &raw_get("/"))
        .await
        .expect("a response");
    assert_eq!(reply.status, 502, "{:?}", reply.headers);
    assert!(
        !reply.text().contains("hello"),
        "nothing of the backend's message is forwarded: {:?}",
        reply.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_keep_their_framing_and_bytes() {
    let (backend, seen) = answering(|request| match &request.body {
        Ok(body) => ok(format!("{} bytes", body.len()).as_bytes()),
        Err(why) => ok(why.as_bytes()),
    })
    .await;
    let config = BalancerConfig::http(&[backend.addr]);
    let _halb = Halb::start(&config.to_toml()).await;

    let big = pattern(100_000);
    let mut chunked = b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;name=value\r\nhello\r\n1\r\n \r\n"
        .to_vec();
    chunked.extend_from_slice(format!("{:x}\r\n", big.len()).as_bytes());
    chunked.extend_from_slice(&big);
    chunked.extend_from_slice(b"\r\n3\r\nend\r\n0\r\nX-Trailer: t\r\n\r\n");
    let mut decoded = b"hello ".to_vec();
    decoded.extend_from_slice(&big);
    decoded.extend_from_slice(b"end");

    let reply = raw_exchange(config.listen, &chunked)
        .await
        .expect("a response");
    assert_eq!(
        (reply.status, reply.text()),
        (200, format!("{} bytes", decoded.len()))
    );

    let sized = pattern(300_000);
    let mut with_length = format!(
        "POST /sized HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        sized.len()
    )
    .into_bytes();
    with_length.extend_from_slice(&sized);
    let reply = raw_exchange(config.listen, &with_length)
        .await
        .expect("a response");
    assert_eq!(
        (reply.status, reply.text()),
        (200, format!("{} bytes", sized.len()))
    );

    let received = seen.all();
    assert_eq!(received.len(), 2);
    let (chunked, sized_request) = (&received[0], &received[1]);
    assert_eq!(chunked.header("transfer-encoding"), Some("chunked"));
    assert_eq!(chunked.header("content-length"), None);
    assert!(
        chunked.body.as_ref().is_ok_and(|body| *body == decoded),
        "the chunked upload arrived altered: {:?}",
        chunked.body.as_ref().map(Vec::len)
    );
    let length = sized.len().to_string();
    assert_eq!(
        sized_request.header("content-length"),
        Some(length.as_str())
    );
    assert_eq!(sized_request.header("transfer-encoding"), None);
    assert!(
        sized_request.body.as_ref().is_ok_and(|body| *body == sized),
        "the sized upload arrived altered: {:?}",
        sized_request.body.as_ref().map(Vec::len)
    );
}

/// A backend that answers with `response` and then keeps the connection
/// open: halb must judge the head by itself, not by the connection's end.
async fn assert_bad_gateway(response: Vec<u8>) {
    let (backend, seen) = scripted(move |mut wire| {
        let response = response.clone();
        async move {
            if wire.read_request().await.is_some() {
                wire.write(&response).await;
                wire.hold().await;
            }
        }
    })
    .await;
    let config = BalancerConfig::http(&[backend.addr]);
    let _halb = Halb::start(&config.to_toml()).await;

    let reply = within(
        ANSWER_LIMIT,
        "halb's answer to a malformed response",
        raw_exchange(config.listen, &raw_get("/")),
    )
    .await
    .expect("a response");
    assert_eq!(reply.status, 502, "{:?} {}", reply.headers, reply.text());
    assert!(
        !reply.text().contains("backend says"),
        "the malformed response reached the client: {}",
        reply.text()
    );
    assert_eq!(seen.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_status_line_gets_502() {
    assert_bad_gateway(b"HTTP/1.1 OK maybe\r\nContent-Length: 12\r\n\r\nbackend says".to_vec())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_content_lengths_get_502() {
    assert_bad_gateway(
        b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Length: 13\r\n\r\nbackend says!"
            .to_vec(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_head_over_64_kib_gets_502() {
    let mut head = b"HTTP/1.1 200 OK\r\nX-Huge: ".to_vec();
    head.extend_from_slice(&[b'a'; 70 * 1024]);
    head.extend_from_slice(b"\r\nContent-Length: 12\r\n\r\nbackend says");
    assert_bad_gateway(head).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_head_that_never_ends_gets_502() {
    let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..2000 {
        head.extend_from_slice(format!("X-Line-{i}: backend says more\r\n").as_bytes());
    }
    assert_bad_gateway(head).await;
}

/// A backend announces `length` bytes, sends `sent` of them and stalls: the
/// client gets those bytes, and its connection closes after the pool's
/// timeout (1 s).
pub(crate) async fn body_stalls(length: usize, sent: usize) {
    let (backend, _seen) = scripted(move |mut wire| async move {
        if wire.read_request().await.is_some() {
            let mut start =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n").into_bytes();
            start.extend(pattern(sent));
            wire.write(&start).await;
            wire.hold().await;
        }
    })
    .await;
    let config = BalancerConfig::http(&[backend.addr]).pool_key("timeout", "\"1s\"");
    let _halb = Halb::start(&config.to_toml()).await;

    let seen = read_until_closed(config.listen, &raw_get("/stalls")).await;

    assert!(seen.head.starts_with("HTTP/1.1 200"), "{}", seen.head);
    assert!(
        seen.head
            .to_ascii_lowercase()
            .contains(&format!("content-length: {length}")),
        "{}",
        seen.head
    );
    assert!(
        seen.after_head == pattern(sent),
        "{} bytes came of the {sent} sent before the stall",
        seen.after_head.len()
    );
    assert!(
        seen.took >= Duration::from_millis(500),
        "cut off after only {:?}; the pool timeout is 1s",
        seen.took
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_is_cut_off_after_the_pool_timeout() {
    body_stalls(1000, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_closes_mid_body_closes_the_client_connection() {
    let (backend, _seen) = scripted(|mut wire| async move {
        while let Some(request) = wire.read_request().await {
            let start: &[u8] = match request.target.as_str() {
                "/sized" => b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this",
                "/chunked" => {
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nonly this\r\n"
                }
                _ => {
                    wire.write(&ok(b"whole")).await;
                    continue;
                }
            };
            wire.write(start).await;
            return;
        }
    })
    .await;
    let config = BalancerConfig::http(&[backend.addr]);
    let _halb = Halb::start(&config.to_toml()).await;

    let sized = read_until_closed(config.listen, &raw_get("/sized")).await;
    assert!(sized.head.starts_with("HTTP/1.1 200"), "{}", sized.head);
    assert_eq!(sized.after_head, b"only this", "{}", sized.head);

    // Re-framed as chunked for the client, the body must not end with the
    // last chunk, or the client would take it as complete.
    let chunked = read_until_closed(config.listen, &raw_get("/chunked")).await;
    assert!(chunked.head.starts_with("HTTP/1.1 200"), "{}", chunked.head);
    let text = String::from_utf8_lossy(&chunked.after_head).into_owned();
    assert!(text.contains("only this"), "{text:?}");
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "the cut body was completed: {text:?}"
    );

    a_get_after_the_break_is_whole(config.listen).await;
}

/// After a backend broke off a response, a new GET (answered `whole` by
/// the scripted backend) still gets a whole response.
pub(crate) async fn a_get_after_the_break_is_whole(listen: SocketAddr) {
    let reply = within(ANSWER_LIMIT, "a GET after the break", get_once(listen, "/")).await;
    assert_eq!((reply.status, reply.text()), (200, "whole".to_owned()));
}
