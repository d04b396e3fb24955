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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resetting_streams_rapidly_gets_goaway_and_others_are_served() {
    let backend = backends::named("app").await;
    let config = BalancerConfig::http(&[backend.addr]);
    let halb = Halb::start(&config.to_toml()).await;

    let tcp = tokio::net::TcpStream::connect(config.listen).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.expect("h2c handshake");
    let connection = tokio::spawn(connection);
    let mut opened = 0;
    for _ in 0..10_000 {
        let request = http::Request::get(format!("http://{}/", config.listen))
            .body(())
            .unwrap();
        let Ok(ready) = client.ready().await else {
            break;
        };
        client = ready;
        match client.send_request(request, false) {
            Ok((_response, mut stream)) => {
                stream.send_reset(h2::Reason::CANCEL);
                opened += 1;
            }
            Err(_) => break,
        }
    }
    let ended = within(Duration::from_secs(20), "the connection's end", connection).await;
    let error = ended
        .expect("join")
        .expect_err("the connection should end in GOAWAY");
    println!(
        "after {opened} streams opened and reset: {error}; {} reached the backend",
        backend.requests()
    );
    // GOAWAY, then halb closes: a client still writing may see the close
    // (a broken pipe) before it reads the GOAWAY.
    assert!(
        error.is_io()
            || error.is_go_away() && error.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM),
        "{error}"
    );
    assert!(opened < 10_000, "every stream was taken: {opened}");

    // Others are still served.
    let (ok, body, log) = curl(&[
        "--http2-prior-knowledge",
        &format!("http://{}/", config.listen),
    ]);
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
