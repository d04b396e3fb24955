//! TLS to backends (`[pool.tls]`, issue 16): halb in front of a TLS
//! backend. The backend is a second halb terminating TLS (certificates
//! made here with rcgen) before a plain echo backend, so its handshake
//! counter says how many TLS connections the front made, and the echoed
//! `X-Forwarded-Proto: https` proves the hop was TLS.

use std::path::Path;
use std::time::Duration;

use crate::support::backends;
use crate::support::certs::CertDir;
use crate::support::client::{get_once, HttpClient};
use crate::support::status::{backend_entry, wait_for_state, wait_until_up};
use crate::support::{BalancerConfig, Halb};

/// The TLS backend: a halb terminating TLS with `cert` before `echo`.
async fn tls_backend(
    echo: std::net::SocketAddr,
    cert: &Path,
    key: &Path,
) -> (Halb, BalancerConfig) {
    let tls = format!("{{ cert = {cert:?}, key = {key:?} }}");
    let config = BalancerConfig::http(&[echo]).listener_key("tls", &tls);
    (Halb::start(&config.to_toml()).await, config)
}

/// A certificate and key for `backend.test` from a CA of `dir`, and the
/// pool's `tls` value that trusts that CA and asks for that name.
fn backend_test_cert(dir: &CertDir) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let authority = dir.ca("good");
    let (cert, key) = dir.issue(&authority, "backend", &["backend.test"]);
    let tls = format!("{{ ca = {:?}, sni = \"backend.test\" }}", authority.path);
    (cert, key, tls)
}

async fn handshakes(halb: &Halb) -> f64 {
    let metrics = halb.admin_request("GET", "/metrics").await.text();
    metrics
        .lines()
        .filter(|line| line.starts_with("halb_tls_handshakes_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_a_tls_backend_over_pooled_connections_and_checks_pass() {
    let echo = backends::echo_headers().await;
    let dir = CertDir::new();
    let (cert, key, tls) = backend_test_cert(&dir);
    let (backend, backend_config) = tls_backend(echo.addr, &cert, &key).await;

    let config = BalancerConfig::http(&[backend_config.listen])
        .pool_key("tls", &tls)
        .http_checks("1s", "1s", 1, 1);
    let front = Halb::start(&config.to_toml()).await;
    wait_until_up(&front, &[backend_config.listen]).await;
    let status = front.status_json().await;
    let check = backend_entry(&status, backend_config.listen)["check"].to_string();
    assert!(check.contains("passed"), "health check over TLS: {check}");

    let before = handshakes(&backend).await;
    const REQUESTS: usize = 200;
    let mut client = HttpClient::connect(config.listen).await;
    for _ in 0..REQUESTS {
        let reply = client.get("/", &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let headers: serde_json::Value =
            serde_json::from_str(&reply.text()).expect("echoed headers");
        assert_eq!(headers["x-forwarded-proto"][0], "https", "{}", reply.text());
    }
    // Requests on new client connections share the pooled backend ones too.
    for _ in 0..20 {
        assert_eq!(get_once(config.listen, "/").await.status, 200);
    }
    let made = handshakes(&backend).await - before;
    // One connection per worker, plus the health checks' (one each, about
    // one a second): far fewer than the 220 requests.
    println!("backend TLS handshakes for 220 requests: {made}");
    assert!(made >= 1.0, "no TLS handshake at the backend");
    assert!(
        made <= 20.0,
        "{made} handshakes for 220 requests: connections not reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_whose_certificate_does_not_verify_is_down_with_the_reason() {
    let echo = backends::echo_headers().await;
    let dir = CertDir::new();
    let authority = dir.ca("good");
    let stranger = dir.ca("stranger");
    // Named by IP address too: with no `sni`, the address is verified.
    let (cert, key) = dir.issue(&authority, "backend", &["backend.test", "127.0.0.1"]);
    let (_backend, backend_config) = tls_backend(echo.addr, &cert, &key).await;
    let target = backend_config.listen;

    let cases = [
        (
            format!("{{ ca = {:?} }}", stranger.path),
            "UnknownIssuer",
            "down",
        ),
        (
            format!("{{ ca = {:?}, sni = \"other.test\" }}", authority.path),
            "certificate not valid for name",
            "down",
        ),
        (format!("{{ ca = {:?} }}", authority.path), "passed", "up"),
        ("{ verify = false }".to_owned(), "passed", "up"),
    ];
    for (tls, reason, state) in cases {
        let config = BalancerConfig::http(&[target])
            .pool_key("tls", &tls)
            .http_checks("300ms", "1s", 1, 1);
        let front = Halb::start(&config.to_toml()).await;
        wait_for_state(&front, target, state, Duration::from_secs(10)).await;
        // Pending backends start down: wait for a check's own word.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let check = loop {
            let status = front.status_json().await;
            let check = backend_entry(&status, target)["check"].to_string();
            if check.contains(reason) || std::time::Instant::now() > deadline {
                break check;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        println!("{tls}: {check}");
        assert!(check.contains(reason), "{tls}: want {reason:?} in {check}");
        assert_eq!(
            backend_entry(&front.status_json().await, target)["state"],
            state
        );
        let reply = get_once(config.listen, "/").await;
        if state == "up" {
            assert_eq!(reply.status, 200, "{tls}: {}", reply.text());
        } else {
            assert!(reply.status >= 500, "{tls}: {}", reply.status);
        }
    }
}

#[test]
fn halb_check_names_an_unusable_ca_file() {
    let dir = CertDir::new();
    let not_pem = dir.path("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    for (file, problem) in [
        (dir.path("missing.pem"), "cannot be read"),
        (not_pem, "holds no PEM certificate"),
    ] {
        let config = BalancerConfig::http(&[crate::support::free_addr()])
            .pool_key("tls", &format!("{{ ca = {file:?} }}"));
        let toml =
            crate::support::process::TempFile::with_contents("check.toml", &config.to_toml());
        let path = toml.path.to_str().unwrap().to_owned();
        let checked = crate::support::process::run_halb(
            &["check", "--config", &path],
            Duration::from_secs(20),
        );
        assert_eq!(
            checked.code(),
            Some(1),
            "{}{}",
            checked.stdout,
            checked.stderr
        );
        let wanted = format!("pool app: [pool.tls] ca: {}: {problem}", file.display());
        assert!(checked.stderr.contains(&wanted), "{}", checked.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_cross_a_tls_backend_connection_both_ways() {
    const UP: usize = 8 << 20;
    const DOWN: u64 = 32 << 20;
    let sink = backends::upload_counter().await;
    let source = backends::download(DOWN).await;
    let dir = CertDir::new();
    let (cert, key, tls) = backend_test_cert(&dir);
    let (_up, up_config) = tls_backend(sink.addr, &cert, &key).await;
    let (_down, down_config) = tls_backend(source.addr, &cert, &key).await;

    let config = BalancerConfig::http(&[up_config.listen]).pool_key("tls", &tls);
    let _front = Halb::start(&config.to_toml()).await;
    let mut client = HttpClient::connect(config.listen).await;
    let request = client
        .request("POST", "/")
        .body(crate::support::client::full_body(vec![b'x'; UP]))
        .unwrap();
    let reply = client.exchange(request).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), UP.to_string(), "bytes the backend received");

    let config = BalancerConfig::http(&[down_config.listen]).pool_key("tls", &tls);
    let _front = Halb::start(&config.to_toml()).await;
    let mut client = HttpClient::connect(config.listen).await;
    for _ in 0..2 {
        let reply = client.get("/", &[]).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body.len() as u64, DOWN, "bytes the client received");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_webhook_gets_its_alerts_over_tls() {
    let receiver = crate::support::webhook::WebhookReceiver::start().await;
    let dir = CertDir::new();
    let authority = dir.ca("hooks");
    let (cert, key) = dir.issue(&authority, "hooks", &["127.0.0.1"]);
    // The receiver behind TLS: a halb terminating it.
    let (_hooks, hooks_config) = tls_backend(receiver.addr, &cert, &key).await;
    let url = format!("https://{}/hook", hooks_config.listen);

    let echo = backends::echo_headers().await;
    let config = BalancerConfig::http(&[echo.addr]).http_checks("100ms", "500ms", 1, 1);
    let toml = format!("{}\n[alerts]\nwebhooks = [{url:?}]\n", config.to_toml());
    let ca_file = authority.path.to_str().unwrap().to_owned();
    let since = std::time::Instant::now();
    let halb = Halb::start_with_env(&toml, &[], &[("SSL_CERT_FILE", &ca_file)]).await;
    let delivery = receiver
        .wait_for(
            since,
            Duration::from_secs(20),
            "backend_up over https",
            |d| d.event() == "backend_up",
        )
        .await;
    assert_eq!(delivery.path, "/hook", "{}", delivery.raw);
    drop(halb);

    // Trusting another CA, the same webhook gets nothing and the log says why.
    let stranger = dir.ca("stranger");
    let stranger_file = stranger.path.to_str().unwrap().to_owned();
    let before = receiver.deliveries().len();
    let halb = Halb::start_with_env(&toml, &[], &[("SSL_CERT_FILE", &stranger_file)]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !halb.logs().contains("UnknownIssuer") {
        assert!(
            std::time::Instant::now() < deadline,
            "no TLS failure logged: {}",
            halb.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        receiver.deliveries().len(),
        before,
        "delivered without trust"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_file_replaced_on_disk_is_used_after_a_reload() {
    let echo = backends::echo_headers().await;
    let dir = CertDir::new();
    let authority = dir.ca("good");
    let stranger = dir.ca("stranger");
    let (cert, key) = dir.issue(&authority, "backend", &["backend.test"]);
    let (_backend, backend_config) = tls_backend(echo.addr, &cert, &key).await;
    let target = backend_config.listen;

    // The pool trusts `trusted.pem`, which holds the wrong CA at first.
    let trusted = dir.path("trusted.pem");
    std::fs::copy(&stranger.path, &trusted).unwrap();
    let tls = format!("{{ ca = {trusted:?}, sni = \"backend.test\" }}");
    let config = BalancerConfig::http(&[target])
        .pool_key("tls", &tls)
        .http_checks("200ms", "1s", 1, 1);
    let front = Halb::start(&config.to_toml()).await;
    let reply = get_once(config.listen, "/").await;
    assert!(
        reply.status >= 500,
        "served with an untrusted CA: {}",
        reply.status
    );

    std::fs::copy(&authority.path, &trusted).unwrap();
    crate::support::reload::reload_via_sighup(&front, &config.to_toml()).await;
    wait_for_state(&front, target, "up", Duration::from_secs(10)).await;
    assert_eq!(get_once(config.listen, "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_given_by_host_name_are_verified_for_that_name() {
    let echo = backends::echo_headers().await;
    let dir = CertDir::new();
    let authority = dir.ca("good");
    // For the name only: verifying the IP address instead would fail.
    let (cert, key) = dir.issue(&authority, "backend", &["localhost"]);
    let (_backend, backend_config) = tls_backend(echo.addr, &cert, &key).await;
    let target = backend_config.listen;

    let tls = format!("{{ ca = {:?} }}", authority.path);
    let config = BalancerConfig::http(&[target])
        .pool_key("tls", &tls)
        .http_checks("200ms", "1s", 1, 1);
    let toml = config.to_toml().replace(
        &format!("address = \"{target}\""),
        &format!("address = \"localhost:{}\"", target.port()),
    );
    let front = Halb::start(&toml).await;
    wait_for_state(&front, target, "up", Duration::from_secs(10)).await;
    let status = front.status_json().await;
    let check = backend_entry(&status, target)["check"].to_string();
    assert!(check.contains("passed"), "{check}");
    assert_eq!(get_once(config.listen, "/").await.status, 200);
}

/// A WebSocket upgrade to a TLS backend: the 101 and the bytes after it
/// are relayed over the backend's TLS connection, both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_to_a_tls_backend_is_relayed_both_ways() {
    let echo = backends::websocket_echo().await;
    let dir = CertDir::new();
    let (cert, key, tls) = backend_test_cert(&dir);
    let (_backend, backend_config) = tls_backend(echo.addr, &cert, &key).await;

    let config = BalancerConfig::http(&[backend_config.listen]).pool_key("tls", &tls);
    let _front = Halb::start(&config.to_toml()).await;
    crate::websocket::upgrade_and_echo(config.listen).await;
    assert_eq!(echo.requests(), 1, "one handshake reached the backend");
}
