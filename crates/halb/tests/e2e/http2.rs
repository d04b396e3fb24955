//! HTTP/2 to clients (issue 16): curl over TLS (ALPN h2) and in the clear
//! (h2c with prior knowledge), h2load with 100 streams per connection,
//! and a client that resets stream after stream (rapid reset) getting
//! GOAWAY while others are served. The backends speak HTTP/1.1 only.

use std::process::Command;
use std::time::Duration;

use crate::support::backends;
use crate::support::{within, BalancerConfig, Halb};

/// A listener with TLS, from a self-signed certificate for `h2.test`.
struct TlsFiles(std::path::PathBuf);

impl TlsFiles {
    fn new() -> TlsFiles {
        let dir = std::env::temp_dir().join(format!("halb-h2-{}-{}", std::process::id(), line!()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["h2.test".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        TlsFiles(dir)
    }

    fn listener_key(&self) -> String {
        format!(
            "{{ cert = {:?}, key = {:?} }}",
            self.0.join("cert.pem"),
            self.0.join("key.pem")
        )
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn curl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "-v", "--max-time", "20"])
        .args(args)
        .output()
        .expect("run curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_speaks_http2_over_tls_and_in_the_clear_to_http1_backends() {
    let backend = backends::named("app").await;
    let files = TlsFiles::new();
    let tls = BalancerConfig::http(&[backend.addr]).listener_key("tls", &files.listener_key());
    let tls_port = tls.listen.port();
    let tls_halb = Halb::start(&tls.to_toml()).await;
    let plain = BalancerConfig::http(&[backend.addr]);
    let plain_halb = Halb::start(&plain.to_toml()).await;

    let resolve = format!("h2.test:{tls_port}:127.0.0.1");
    let url = format!("https://h2.test:{tls_port}/");
    let (ok, body, log) = curl(&["--http2", "-k", "--resolve", &resolve, &url]);
    assert!(ok, "{log}");
    assert_eq!(body, "app");
    assert!(log.contains("ALPN: server accepted h2"), "{log}");
    assert!(log.contains("< HTTP/2 200"), "{log}");

    // Still HTTP/1.1 for a client that asks for it.
    let (ok, body, log) = curl(&["--http1.1", "-k", "--resolve", &resolve, &url]);
    assert!(ok && body == "app", "{log}");
    assert!(log.contains("< HTTP/1.1 200"), "{log}");

    let url = format!("http://{}/", plain.listen);
    let (ok, body, log) = curl(&["--http2-prior-knowledge", &url]);
    assert!(ok, "{log}");
    assert_eq!(body, "app");
    assert!(log.contains("< HTTP/2 200"), "{log}");
    // And HTTP/1.1 on the same listener, as before.
    let (ok, body, _) = curl(&[&url]);
    assert!(ok && body == "app");

    // The backend saw every request, as HTTP/1.1 (it speaks nothing else).
    assert_eq!(backend.requests(), 4);
    drop((tls_halb, plain_halb));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2load_with_100_streams_per_connection_gets_all_200() {
    let backend = backends::named("app").await;
    let files = TlsFiles::new();
    // 200 streams at once open up to 200 backend connections together: on
    // a busy test machine the test's backend may take more than the
    // default second to accept them all.
    let config = BalancerConfig::http(&[backend.addr])
        .listener_key("tls", &files.listener_key())
        .pool_key("connect_timeout", "\"10s\"");
    let toml = format!(
        "{}\n[log]\nlevel = \"info,halb_proxy=debug\"\n",
        config.to_toml()
    );
    let halb = Halb::start(&toml).await;
    let url = format!("https://127.0.0.1:{}/", config.listen.port());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("h2load")
            .args(["-n", "4000", "-c", "2", "-m", "100"])
            .arg(url)
            .output()
            .expect("run h2load")
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{report}");
    assert!(
        report.contains("4000 succeeded, 0 failed"),
        "{report}\n{}",
        halb.logs()
    );
    assert!(report.contains("status codes: 4000 2xx"), "{report}");
    assert!(report.contains("Application protocol: h2"), "{report}");
    assert_eq!(backend.requests(), 4000);
    assert_eq!(halb.metric("halb_http2_connections_total", &[]).await, 2.0);
    assert_eq!(halb.metric("halb_http2_streams_total", &[]).await, 4000.0);
    assert_eq!(halb.metric("halb_http2_active_streams", &[]).await, 0.0);
}

/// Streams the attacker opens and resets, over as many connections as
/// GOAWAY makes it open.
const RESET_STREAMS: usize = 10_000;

/// One attacking connection: open stream after stream and reset each at
/// once, until halb ends the connection. The streams opened, and how the
/// connection ended.
async fn reset_streams(
    addr: std::net::SocketAddr,
    budget: usize,
) -> (usize, Result<(), h2::Error>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2c handshake");
    let connection = tokio::spawn(connection);
    let mut opened = 0;
    let mut client = Some(client);
    while let Some(ready) = client.take().filter(|_| opened < budget) {
        let request = http::Request::get(format!("http://{addr}/"))
            .body(())
            .unwrap();
        let Ok(mut ready) = ready.ready().await else {
            break;
        };
        match ready.send_request(request, false) {
            Ok((_response, mut stream)) => {
                stream.send_reset(h2::Reason::CANCEL);
                opened += 1;
                client = Some(ready);
            }
            Err(_) => break,
        }
    }
    // The last handle gone, the client side closes once it is done.
    drop(client);
    let ended = within(Duration::from_secs(20), "the connection's end", connection).await;
    (opened, ended.expect("join"))
}

/// One request on an HTTP/2 connection: the status and the body.
async fn get(
    client: &h2::client::SendRequest<bytes::Bytes>,
    request: http::Request<()>,
) -> Result<(http::StatusCode, Vec<u8>), h2::Error> {
    let mut client = client.clone().ready().await?;
    let (response, _) = client.send_request(request, true)?;
    let response = response.await?;
    let status = response.status();
    let mut body = response.into_body();
    let mut got = Vec::new();
    while let Some(chunk) = body.data().await {
        got.extend_from_slice(&chunk?);
    }
    Ok((status, got))
}

/// Rapid reset (CVE-2023-44487): a client that opens and resets 10,000
/// streams, reconnecting each time halb sends it GOAWAY, while a normal
/// client keeps sending requests on its own connection. Memory and CPU
/// stay flat: what the attack costs is printed, and bounded generously.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resetting_streams_rapidly_gets_goaway_and_others_are_served() {
    let backend = backends::named("app").await;
    let config = BalancerConfig::http(&[backend.addr]);
    let halb = Halb::start(&config.to_toml()).await;
    let addr = config.listen;

    // Warm up: one connection's worth of normal streams, so that the
    // allocator's first growth is not counted against the attack.
    let (ok, body, log) = curl(&["--http2-prior-knowledge", &format!("http://{addr}/")]);
    assert!(ok && body == "app", "{log}");
    let rss_before = halb.rss_kib();
    let cpu_before = halb.cpu_ticks();

    // The normal client: a request every 5 ms on its own connection, from
    // before the attack starts until it is over and 20 were sent.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attack_over = done.clone();
    let (first_served, serving) = tokio::sync::oneshot::channel();
    let normal = tokio::spawn(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.expect("h2c handshake");
        tokio::spawn(connection);
        let (mut served, mut during, mut failed) = (0, 0, Vec::new());
        let mut first_served = Some(first_served);
        let stop = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < stop {
            let over = attack_over.load(std::sync::atomic::Ordering::Relaxed);
            let request = http::Request::get(format!("http://{addr}/"))
                .body(())
                .unwrap();
            let answer = get(&client, request);
            match within(Duration::from_secs(10), "a normal request", answer).await {
                Ok((status, got)) if status == 200 && got == b"app" => {
                    served += 1;
                    if !over {
                        during += 1;
                    }
                }
                other => failed.push(format!("{other:?}")),
            }
            if let Some(first) = first_served.take() {
                let _ = first.send(());
            }
            if over && served >= 20 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (served, during, failed)
    });
    serving.await.expect("the normal client's first request");

    let started = std::time::Instant::now();
    let (mut reset, mut goaways, mut connections) = (0, 0, 0);
    while reset < RESET_STREAMS {
        let budget = RESET_STREAMS - reset;
        let (opened, ended) = reset_streams(addr, budget).await;
        reset += opened;
        connections += 1;
        match ended {
            Err(error)
                if error.is_go_away() && error.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM) =>
            {
                goaways += 1
            }
            // GOAWAY, then halb closes: a client still writing may see the
            // close (a broken pipe) before it reads the GOAWAY.
            Err(error) if error.is_io() => {}
            // The last connection may end as the client leaves.
            Ok(()) if opened == budget => {}
            other => panic!("connection {connections} ended with {other:?} after {opened} streams"),
        }
    }
    let attack = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (served, during, failed) = normal.await.unwrap();
    let cpu_attack = halb.cpu_ticks() - cpu_before;
    let rss_after = halb.rss_kib();
    // After the attack, nothing is left working.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu_idle_from = halb.cpu_ticks();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu_idle = halb.cpu_ticks() - cpu_idle_from;
    let active = halb.metric("halb_http2_active_streams", &[]).await;
    let calm = halb
        .metric(
            "halb_http2_goaways_total",
            &["reason=\"enhance_your_calm\""],
        )
        .await;
    println!(
        "{reset} streams reset over {connections} connections in {attack:?}: {goaways} GOAWAY \
         (enhance_your_calm) read by the client, {calm} counted by halb; {} reached the \
         backend; halb used {cpu_attack} CPU ticks (1/100 s), RSS {rss_before} -> {rss_after} \
         KiB, {cpu_idle} ticks in the second after; the normal client: {served} served ({during} during \
         the attack), {} failed",
        backend.requests(),
        failed.len()
    );
    assert!(goaways >= 1, "no GOAWAY over {connections} connections");
    assert!(calm >= 1.0, "halb counted no enhance_your_calm GOAWAY");
    assert!(
        connections < RESET_STREAMS / 2,
        "{connections} connections: halb accepted few streams before GOAWAY"
    );
    assert!(failed.is_empty(), "normal requests failed: {failed:?}");
    assert!(
        served >= 20 && during >= 1,
        "{served} normal requests served, {during} during the attack"
    );
    assert_eq!(active, 0.0, "streams still active after the attack");
    assert!(
        rss_after < rss_before + 16 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    // Flat CPU: the attack's streams cost no more than a few seconds of
    // CPU (a debug build; release is several times cheaper), and nothing
    // keeps working after it.
    assert!(cpu_attack < 1000, "{cpu_attack} CPU ticks for the attack");
    assert!(
        cpu_idle < 10,
        "{cpu_idle} CPU ticks in a second after the attack"
    );

    // Others are still served.
    let (ok, body, log) = curl(&["--http2-prior-knowledge", &format!("http://{addr}/")]);
    assert!(ok && body == "app", "{log}");
    drop(halb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_node_sends_goaway_and_finishes_the_streams_under_way() {
    let backend = backends::delayed("slow", Duration::from_millis(800)).await;
    let config = BalancerConfig::http(&[backend.addr]);
    let mut halb = Halb::start(&config.to_toml()).await;

    let tcp = tokio::net::TcpStream::connect(config.listen).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2c handshake");
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::get(format!("http://{}/", config.listen))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    halb.signal("TERM");

    let response = within(Duration::from_secs(10), "the response", response)
        .await
        .expect("the stream under way is answered");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut got = Vec::new();
    while let Some(chunk) = body.data().await {
        got.extend_from_slice(&chunk.expect("body"));
    }
    assert_eq!(got, b"slow");
    // The connection ends without error: GOAWAY with NO_ERROR, then close.
    let ended = within(Duration::from_secs(10), "the connection's end", connection)
        .await
        .expect("join");
    if let Err(error) = ended {
        assert!(
            error.is_go_away() && error.reason() == Some(h2::Reason::NO_ERROR),
            "{error}"
        );
    }
    // No new stream after GOAWAY.
    let request = http::Request::get("/").body(()).unwrap();
    assert!(client.send_request(request, true).is_err());
    halb.wait_for_exit(Duration::from_secs(10)).await;
}

/// `body_timeout` holds for HTTP/2 bodies too: a stream that trickles its
/// body (a byte every 200 ms, never pausing for `idle_timeout`) is
/// answered 408 once the body is not whole in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_http2_body_is_answered_408_at_body_timeout() {
    let counter = backends::upload_counter().await;
    let config = BalancerConfig::http(&[counter.addr]).listener_key("body_timeout", "\"1s\"");
    let _halb = Halb::start(&config.to_toml()).await;

    let tcp = tokio::net::TcpStream::connect(config.listen).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2c handshake");
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post(format!("http://{}/up", config.listen))
        .header("content-length", "100")
        .body(())
        .unwrap();
    let (response, mut body) = client.send_request(request, false).unwrap();
    let started = std::time::Instant::now();
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            if body
                .send_data(bytes::Bytes::from_static(b"a"), false)
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let response = within(Duration::from_secs(10), "the answer", response)
        .await
        .expect("an answer");
    let took = started.elapsed();
    trickle.abort();
    assert_eq!(response.status(), 408);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "answered after {took:?} for a 1 s body_timeout"
    );
}
