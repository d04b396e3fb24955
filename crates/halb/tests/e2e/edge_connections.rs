//! Connection-level hardening (issue 16): the PROXY protocol on listeners
//! and to backends, the `X-Forwarded-For` trust policy, slowloris clients
//! cut off at the head timeout, serving on at the descriptor limit, and
//! `max_connections` as backpressure.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::backends::{echo_headers, named, serve_raw, tcp_echo};
use crate::support::client::{get_once, raw_exchange, try_get_once};
use crate::support::process::TempFile;
use crate::support::{exclusive, within, BalancerConfig, Halb};

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// A PROXY v2 header: TCP over IPv4 from `source` to `destination`.
fn proxy_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(source), SocketAddr::V4(destination)) = (source, destination) else {
        panic!("IPv4 addresses only");
    };
    let mut header = V2_SIGNATURE.to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0x00, 12 + 7]);
    header.extend_from_slice(&source.ip().octets());
    header.extend_from_slice(&destination.ip().octets());
    header.extend_from_slice(&source.port().to_be_bytes());
    header.extend_from_slice(&destination.port().to_be_bytes());
    // A TLV (PP2_TYPE_AUTHORITY "a.b"), which halb skips.
    header.extend_from_slice(&[0x02, 0x00, 0x04, b'a', b'.', b'b', b'c']);
    header
}

/// The values of `name` the echo backend received.
fn echoed(body: &[u8], name: &str) -> Vec<String> {
    let headers: Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("echo backend answered {}", String::from_utf8_lossy(body)));
    headers[name]
        .as_array()
        .map(|values| {
            values
                .iter()
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the access log has `n` lines; returns them.
async fn log_lines(file: &TempFile, n: usize) -> Vec<String> {
    within(Duration::from_secs(5), "access log lines", async {
        loop {
            let lines: Vec<String> = file.read().lines().map(str::to_owned).collect();
            if lines.len() >= n {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_v1_and_v2_name_the_original_client_and_a_bare_connection_is_refused() {
    let echo = echo_headers().await;
    let config = BalancerConfig::http(&[echo.addr]).listener_key("proxy_protocol", "true");
    let log = TempFile::unique("access.log");
    let toml = format!(
        "{}\n[access_log]\nformat = \"json\"\npath = \"{}\"\n",
        config.to_toml(),
        log.path.display()
    );
    let halb = Halb::start(&toml).await;
    let request = b"GET /who HTTP/1.1\r\nhost: x\r\nx-forwarded-for: 6.6.6.6\r\n\r\n";

    let v1 = [
        &b"PROXY TCP4 203.0.113.7 198.51.100.1 40001 80\r\n"[..],
        request,
    ]
    .concat();
    let reply = raw_exchange(config.listen, &v1).await.expect("v1 answer");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(echoed(&reply.body, "x-forwarded-for"), ["203.0.113.7"]);

    let source: SocketAddr = "192.0.2.44:40002".parse().unwrap();
    let v2 = [
        &proxy_v2(source, "198.51.100.1:80".parse().unwrap())[..],
        request,
    ]
    .concat();
    let reply = raw_exchange(config.listen, &v2).await.expect("v2 answer");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(echoed(&reply.body, "x-forwarded-for"), ["192.0.2.44"]);

    let lines = log_lines(&log, 2).await;
    let clients: Vec<String> = lines
        .iter()
        .map(|line| {
            let entry: Value = serde_json::from_str(line).expect("a JSON line");
            entry["client"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(clients, ["203.0.113.7:40001", "192.0.2.44:40002"]);

    // No header: refused without an answer, and nothing reaches the backend.
    let before = echo.requests();
    let bare = raw_exchange(config.listen, request).await;
    assert!(bare.is_err(), "a bare request was answered: {bare:?}");
    let garbage = raw_exchange(config.listen, b"PROXY TCP9 x y 1 2\r\n\r\n").await;
    assert!(garbage.is_err(), "a bad header was answered: {garbage:?}");
    assert_eq!(echo.requests(), before);
    let logs = halb.logs();
    assert!(
        logs.contains("expects a PROXY header"),
        "the refusal is logged:\n{logs}"
    );
    let metrics = halb.admin_request("GET", "/metrics").await.text();
    assert!(
        metrics.contains(
            "halb_listener_refused_connections_total{listener=\"front\",protocol=\"http\"} 2"
        ),
        "the refusals are counted:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_listener_takes_and_sends_the_proxy_header() {
    // The backend answers with the first line it got: the header halb sent.
    let backend = serve_raw(|mut stream| async move {
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(b"\r\n") && got.len() < 200 {
            if stream.read_exact(&mut byte).await.is_err() {
                return;
            }
            got.push(byte[0]);
        }
        let _ = stream.write_all(&got).await;
        let _ = stream.shutdown().await;
    })
    .await;
    let config = BalancerConfig::tcp(&[backend.addr])
        .listener_key("proxy_protocol", "true")
        .pool_key("send_proxy", "\"v1\"");
    let _halb = Halb::start(&config.to_toml()).await;

    let mut client = TcpStream::connect(config.listen).await.expect("connect");
    let source: SocketAddr = "192.0.2.9:5000".parse().unwrap();
    client
        .write_all(&proxy_v2(source, "198.51.100.1:443".parse().unwrap()))
        .await
        .expect("write");
    let mut answer = String::new();
    within(Duration::from_secs(5), "the backend's answer", async {
        client.read_to_string(&mut answer).await
    })
    .await
    .expect("read");
    let expected = format!(
        "PROXY TCP4 192.0.2.9 127.0.0.1 5000 {}\r\n",
        config.listen.port()
    );
    assert_eq!(answer, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_is_appended_only_for_trusted_proxies() {
    let echo = echo_headers().await;
    let request = b"GET / HTTP/1.1\r\nhost: x\r\nx-forwarded-for: 10.9.8.7\r\n\r\n";

    let untrusting =
        BalancerConfig::http(&[echo.addr]).listener_key("trusted_proxies", "[\"10.0.0.0/8\"]");
    let _a = Halb::start(&untrusting.to_toml()).await;
    let reply = raw_exchange(untrusting.listen, request)
        .await
        .expect("answer");
    assert_eq!(echoed(&reply.body, "x-forwarded-for"), ["127.0.0.1"]);

    let trusting = BalancerConfig::http(&[echo.addr])
        .listener_key("trusted_proxies", "[\"10.0.0.0/8\", \"127.0.0.1/32\"]");
    let _b = Halb::start(&trusting.to_toml()).await;
    let reply = raw_exchange(trusting.listen, request)
        .await
        .expect("answer");
    assert_eq!(
        echoed(&reply.body, "x-forwarded-for"),
        ["10.9.8.7, 127.0.0.1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_client_limits_answer_429() {
    let a = named("a").await;
    let config = BalancerConfig::http(&[a.addr])
        .listener_key("limits", "{ per_ip_connections = 2, per_ip_rate = 5 }");
    let _halb = Halb::start(&config.to_toml()).await;

    let statuses: Vec<u16> = {
        let mut statuses = Vec::new();
        for _ in 0..10 {
            let reply = raw_exchange(config.listen, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .expect("answer");
            statuses.push(reply.status);
        }
        statuses
    };
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!(
        ok >= 5 && limited >= 1 && ok + limited == 10,
        "{statuses:?}"
    );

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let held: Vec<TcpStream> = {
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(TcpStream::connect(config.listen).await.expect("connect"));
        }
        held
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let third = raw_exchange(config.listen, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("answer");
    assert_eq!(third.status, 429, "a third connection from one address");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_max_connections_the_next_connection_waits_and_is_served_after_a_close() {
    let echo = tcp_echo().await;
    let config = BalancerConfig::tcp(&[echo.addr]).listener_key("max_connections", "4");
    let _halb = Halb::start(&config.to_toml()).await;

    async fn echo_once(stream: &mut TcpStream, limit: Duration) -> bool {
        if stream.write_all(b"ping").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 4];
        matches!(
            tokio::time::timeout(limit, stream.read_exact(&mut buf)).await,
            Ok(Ok(_))
        )
    }
    let mut held = Vec::new();
    for i in 0..4 {
        let mut stream = TcpStream::connect(config.listen).await.expect("connect");
        assert!(
            echo_once(&mut stream, Duration::from_secs(5)).await,
            "connection {i}"
        );
        held.push(stream);
    }
    // The fifth connects (the kernel's backlog takes it) but is not served.
    let mut fifth = TcpStream::connect(config.listen).await.expect("connect");
    assert!(
        !echo_once(&mut fifth, Duration::from_millis(700)).await,
        "served past max_connections"
    );
    let closed = Instant::now();
    drop(held.remove(0));
    let mut buf = [0u8; 4];
    within(
        Duration::from_secs(5),
        "the waiting connection served",
        async { fifth.read_exact(&mut buf).await },
    )
    .await
    .expect("echo");
    assert_eq!(&buf, b"ping");
    println!(
        "max_connections: waiting connection served {:?} after a close",
        closed.elapsed()
    );
}

/// A connection to `addr` from 127.0.0.2: the thousands these tests open
/// take their ephemeral ports there, not on 127.0.0.1, where other tests
/// running meanwhile bind the ports they picked.
async fn connect_aside(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind("127.0.0.2:0".parse().expect("address"))?;
    socket.connect(addr).await
}

/// A slowloris client: a partial head, then a byte every `drip`, until
/// halb closes the connection; how long that took from the first byte.
async fn slowloris(addr: SocketAddr, drip: Duration) -> Option<Duration> {
    let mut stream = connect_aside(addr).await.ok()?;
    let started = Instant::now();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nx-a: ")
        .await
        .ok()?;
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(drip, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {} // the 408, then the close
            Err(_) => {
                if stream.write_all(b"a").await.is_err() {
                    return Some(started.elapsed());
                }
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            return None;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_at_the_head_timeout_while_others_are_served() {
    let _machine = exclusive().await;
    let a = named("a").await;
    let config = BalancerConfig::http(&[a.addr]).listener_key("request_head_timeout", "\"2s\"");
    let _halb = Halb::start(&config.to_toml()).await;

    let attackers: Vec<_> = (0..2000)
        .map(|_| tokio::spawn(slowloris(config.listen, Duration::from_millis(500))))
        .collect();
    // Meanwhile a normal client's requests all succeed.
    let mut served = 0;
    let mut slowest = Duration::ZERO;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let started = Instant::now();
        let reply = try_get_once(config.listen, "/")
            .await
            .expect("a normal GET");
        assert_eq!(reply.status, 200);
        slowest = slowest.max(started.elapsed());
        served += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut closed_after = Vec::new();
    for attacker in attackers {
        closed_after.push(
            attacker
                .await
                .expect("task")
                .expect("closed by halb within 30 s"),
        );
    }
    closed_after.sort();
    let median = closed_after[closed_after.len() / 2];
    let last = closed_after[closed_after.len() - 1];
    println!(
        "slowloris: 2000 closed, median {median:?}, last {last:?}; \
         normal GETs {served}, slowest {slowest:?}"
    );
    assert!(served >= 20, "only {served} normal requests in 3 s");
    assert!(
        median >= Duration::from_millis(1900) && median < Duration::from_secs(6),
        "median close {median:?} for a 2 s head timeout"
    );
    assert!(last < Duration::from_secs(15), "last close {last:?}");
}

/// Descriptors process `pid` holds now.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_descriptor_limit_halb_keeps_serving_without_spinning() {
    let _machine = exclusive().await;
    let a = named("a").await;
    let config = BalancerConfig::http(&[a.addr]);
    let halb = Halb::start_wrapped(&config.to_toml(), "ulimit -n 1024 && exec \"$@\"").await;
    let pid = halb.pid();

    // Flood with idle connections, well past the 1,024 descriptors.
    let mut flood = Vec::new();
    for i in 0..1500 {
        match connect_aside(config.listen).await {
            Ok(stream) => flood.push(stream),
            Err(e) => panic!("connection {i} of the flood: {e}"),
        }
        if i % 250 == 0 {
            // During the flood, a normal GET is served.
            let reply = within(Duration::from_secs(5), "a GET during the flood", async {
                get_once(config.listen, "/").await
            })
            .await;
            assert_eq!(reply.status, 200);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fds = open_fds(pid);
    let log_before = halb.logs().len();
    let cpu_before = halb.cpu_ticks();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = halb.cpu_ticks() - cpu_before;
    let log_growth = halb.logs().len() - log_before;
    let started = Instant::now();
    let reply = within(Duration::from_secs(5), "a GET at the limit", async {
        get_once(config.listen, "/").await
    })
    .await;
    assert_eq!(reply.status, 200);
    let at_limit = started.elapsed();
    // The reserve keeps the admin API answering.
    assert_eq!(halb.admin_request("GET", "/healthz").await.status, 200);
    println!(
        "fd limit 1024, 1500 idle connections: halb holds {fds} descriptors, \
         CPU {cpu} ticks in 2 s, log +{log_growth} bytes, GET at the limit {at_limit:?}"
    );
    assert!(fds < 1024, "{fds} descriptors");
    assert!(
        cpu < 50,
        "{cpu} ticks of CPU in 2 s at the limit (100 = one core)"
    );
    assert!(log_growth < 2000, "the log grew {log_growth} bytes in 2 s");

    // After the flood, too.
    drop(flood);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..5 {
        assert_eq!(get_once(config.listen, "/").await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_relays_past_the_descriptor_limit_back_off_and_recover() {
    let _machine = exclusive().await;
    let echo = tcp_echo().await;
    let config = BalancerConfig::tcp(&[echo.addr]);
    let halb = Halb::start_wrapped(&config.to_toml(), "ulimit -n 1024 && exec \"$@\"").await;
    let pid = halb.pid();

    // Each relayed connection holds a client and a backend socket and,
    // while bytes flow, splice pipes: far more than 1,024 descriptors.
    let mut flood = Vec::new();
    for _ in 0..700 {
        let Ok(mut stream) = connect_aside(config.listen).await else {
            continue;
        };
        let _ = stream.write_all(b"x").await;
        flood.push(stream);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fds = open_fds(pid);
    let mut kinds = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        let target = std::fs::read_link(entry.path())
            .map(|t| t.display().to_string())
            .unwrap_or_default();
        *kinds
            .entry(target.split(':').next().unwrap_or("").to_owned())
            .or_insert(0) += 1;
    }
    println!("fd kinds: {kinds:?}");
    let log_before = halb.logs().len();
    let cpu_before = halb.cpu_ticks();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = halb.cpu_ticks() - cpu_before;
    let log_growth = halb.logs().len() - log_before;
    println!(
        "tcp at fd limit 1024, 700 relays: halb holds {fds} descriptors, \
         CPU {cpu} ticks in 2 s, log +{log_growth} bytes"
    );
    assert_eq!(halb.admin_request("GET", "/healthz").await.status, 200);
    assert!(
        cpu < 50,
        "{cpu} ticks of CPU in 2 s at the limit (100 = one core)"
    );
    assert!(log_growth < 2000, "the log grew {log_growth} bytes in 2 s");

    drop(flood);
    let mut stream = within(
        Duration::from_secs(10),
        "a connection after the flood",
        async {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let Ok(mut stream) = TcpStream::connect(config.listen).await else {
                    continue;
                };
                let mut buf = [0u8; 4];
                let echoed = async {
                    stream.write_all(b"ping").await?;
                    stream.read_exact(&mut buf).await
                };
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), echoed).await {
                    return stream;
                }
            }
        },
    )
    .await;
    let _ = stream.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_cut_off_at_body_timeout_and_a_prompt_one_passes() {
    let counter = crate::support::backends::upload_counter().await;
    let config = BalancerConfig::http(&[counter.addr]).listener_key("body_timeout", "\"1s\"");
    let _halb = Halb::start(&config.to_toml()).await;

    let whole = b"POST /up HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello";
    let reply = raw_exchange(config.listen, whole).await.expect("answer");
    assert_eq!(reply.status, 200, "{}", reply.text());

    let mut stream = TcpStream::connect(config.listen).await.expect("connect");
    stream
        .write_all(b"POST /up HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n")
        .await
        .expect("head");
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        // A byte every 200 ms: never a pause long enough for idle_timeout.
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {
                if stream.write_all(b"a").await.is_err() {
                    break;
                }
            }
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never cut off");
    }
    let took = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "cut off after {took:?} for a 1 s body_timeout"
    );
}
