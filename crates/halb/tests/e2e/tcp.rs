//! TCP listeners: a byte stream both ways, half-close passed on, and the
//! backend picked per connection.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::backends::{addrs, tcp_echo, tcp_half_close, tcp_named};
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
