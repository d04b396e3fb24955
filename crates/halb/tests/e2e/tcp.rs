//! TCP listeners: a byte stream both ways, half-close passed on, and the
//! backend picked per connection, by its open connections too, across a
//! reload.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::backends::{addrs, serve_raw, tcp_echo, tcp_half_close, tcp_named, Backend};
use crate::support::reload::{reload_via_api, strings};
use crate::support::status::backend_entry;
use crate::support::{within, BalancerConfig, Halb};

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mib_is_echoed_both_ways() {
    let echo = tcp_echo().await;
    let config = BalancerConfig::tcp(&[echo.addr]);
    let _halb = Halb::start(&config.to_toml()).await;

    let sent: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(7) % 256) as u8)
        .collect();
    let stream = TcpStream::connect(config.listen).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let to_send = sent.clone();
    // Write and read at once: the echo cannot buffer 1 MiB in the sockets.
    let writing = tokio::spawn(async move {
        writer.write_all(&to_send).await.expect("write 1 MiB");
        writer.shutdown().await.expect("half-close");
    });
    let mut received = Vec::with_capacity(sent.len());
    within(
        LIMIT,
        "the echo of 1 MiB",
        reader.read_to_end(&mut received),
    )
    .await
    .expect("read the echo");
    writing.await.expect("writer");

    assert_eq!(received.len(), sent.len(), "echoed byte count");
    assert!(received == sent, "the echoed bytes differ from those sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_reaches_the_backend_and_its_answer_comes_back() {
    let backend = tcp_half_close().await;
    let config = BalancerConfig::tcp(&[backend.addr]);
    let _halb = Halb::start(&config.to_toml()).await;

    let mut stream = TcpStream::connect(config.listen).await.expect("connect");
    stream
        .write_all(&vec![b'x'; 10 * 1024])
        .await
        .expect("write 10 KiB");
    stream.shutdown().await.expect("half-close");
    let mut answer = String::new();
    within(
        LIMIT,
        "the answer after half-close, then EOF",
        stream.read_to_string(&mut answer),
    )
    .await
    .expect("read answer");

    assert_eq!(answer, "got 10240 bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tcp_connection_picks_the_next_backend() {
    let (a, b, c) = (
        tcp_named("a").await,
        tcp_named("b").await,
        tcp_named("c").await,
    );
    let config = BalancerConfig::tcp(&addrs(&[&a, &b, &c]));
    let _halb = Halb::start(&config.to_toml()).await;

    let mut answers = Vec::new();
    for _ in 0..9 {
        let mut stream = TcpStream::connect(config.listen).await.expect("connect");
        let mut name = String::new();
        within(LIMIT, "a backend's name", stream.read_to_string(&mut name))
            .await
            .expect("read name");
        answers.push(name);
    }

    for backend in [&a, &b, &c] {
        assert_eq!(
            backend.connections(),
            3,
            "connections per backend; answers {answers:?}"
        );
    }
    let mut first_cycle = answers[..3].to_vec();
    first_cycle.sort();
    assert_eq!(first_cycle, ["a", "b", "c"], "answers {answers:?}");
}

/// Writes its name, then holds the connection open until the client
/// closes it.
async fn holding(name: &str) -> Backend {
    let name: Arc<str> = name.into();
    serve_raw(move |mut stream| {
        let name = name.clone();
        async move {
            let _ = stream.write_all(name.as_bytes()).await;
            let mut sink = [0u8; 64];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        }
    })
    .await
}

/// A connection through `listen`, open, and the name of its backend.
async fn open_connection(listen: std::net::SocketAddr) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(listen).await.expect("connect");
    let mut name = [0u8; 1];
    within(LIMIT, "a backend's name", stream.read_exact(&mut name))
        .await
        .expect("read name");
    (stream, String::from_utf8_lossy(&name).into_owned())
}

/// Least connections counts open connections; a reload that adds a
/// backend (a new array of counts for the pool) carries the count of those
/// open on the others into it, so new connections go to the idle newcomer,
/// and closing the old ones brings the counts back to 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_counts_open_connections_across_a_reload() {
    let (a, b, c) = (holding("a").await, holding("b").await, holding("c").await);
    let before = BalancerConfig::tcp(&addrs(&[&a, &b])).algorithm("least_connections");
    let halb = Halb::start(&before.to_toml()).await;
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(open_connection(before.listen).await);
    }
    let mut names: Vec<&str> = open.iter().map(|(_, name)| name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["a", "a", "b", "b"]);

    let mut after = BalancerConfig::tcp(&addrs(&[&a, &b, &c])).algorithm("least_connections");
    (after.listen, after.admin) = (before.listen, before.admin);
    halb.rewrite_config(&after.to_toml());
    let (code, outcome) = reload_via_api(&halb, &[]).await;
    assert_eq!(code, 200, "{outcome:#}");
    assert_eq!(strings(&outcome["pools_changed"]), ["app"], "{outcome:#}");
    let status = halb.status_json().await;
    let in_flight = |status: &serde_json::Value, backend: &Backend| {
        backend_entry(status, backend.addr)["in_flight"].as_u64()
    };
    let counts: Vec<_> = [&a, &b, &c].map(|b| in_flight(&status, b)).into();
    assert_eq!(counts, [Some(2), Some(2), Some(0)], "{status:#}");

    let newer = [
        open_connection(before.listen).await,
        open_connection(before.listen).await,
    ];
    assert_eq!(newer.each_ref().map(|(_, name)| name.as_str()), ["c", "c"]);

    drop(open);
    let deadline = Instant::now() + LIMIT;
    loop {
        let status = halb.status_json().await;
        let counts: Vec<_> = [&a, &b, &c].map(|b| in_flight(&status, b)).into();
        if counts == [Some(0), Some(0), Some(2)] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "in flight {counts:?}: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
