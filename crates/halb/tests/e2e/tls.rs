//! TLS termination (issue 16): curl and openssl against a listener with
//! `[listener.tls]`, certificates made in the test (one CA per certificate,
//! so which CA verifies the connection says which certificate halb served).

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::backends;
use crate::support::certs::{Ca, CertDir};
use crate::support::reload::{config_status, reload_counts, reload_via_api, reload_via_sighup};
use crate::support::{BalancerConfig, Halb};

/// A TLS listener's config: `default` for any name, `api.test` and
/// `*.wild.test` by SNI.
fn tls_config(backend: std::net::SocketAddr, dir: &CertDir, api_cert: &Path) -> BalancerConfig {
    let tls = format!(
        "{{ cert = {:?}, key = {:?}, sni = [\
         {{ name = \"api.test\", cert = {:?}, key = {:?} }}, \
         {{ name = \"*.wild.test\", cert = {:?}, key = {:?} }}] }}",
        dir.path("default.pem"),
        dir.path("default.key"),
        api_cert,
        dir.path("api.key"),
        dir.path("wild.pem"),
        dir.path("wild.key"),
    );
    BalancerConfig::http(&[backend]).listener_key("tls", &tls)
}

struct Setup {
    dir: CertDir,
    default_ca: Ca,
    api_ca: Ca,
    wild_ca: Ca,
}

fn certificates() -> Setup {
    let dir = CertDir::new();
    let default_ca = dir.ca("default");
    let api_ca = dir.ca("api");
    let wild_ca = dir.ca("wild");
    dir.issue(&default_ca, "default", &["default.test", "other.test"]);
    dir.issue(&api_ca, "api", &["api.test"]);
    dir.issue(&wild_ca, "wild", &["*.wild.test"]);
    Setup {
        dir,
        default_ca,
        api_ca,
        wild_ca,
    }
}

/// `curl -v https://NAME:PORT/` with SNI `name`, trusting only `ca`.
fn curl(port: u16, name: &str, ca: &Path, extra: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "-v", "--max-time", "20"])
        .arg("--resolve")
        .arg(format!("{name}:{port}:127.0.0.1"))
        .arg("--cacert")
        .arg(ca)
        .args(extra)
        .arg(format!("https://{name}:{port}/"))
        .output()
        .expect("run curl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_the_certificate_its_sni_names_over_tls_1_2_and_1_3() {
    let backend = backends::echo_headers().await;
    let setup = certificates();
    let config = tls_config(backend.addr, &setup.dir, &setup.dir.path("api.pem"));
    let port = config.listen.port();
    let halb = Halb::start(&config.to_toml()).await;

    let versions: [(&[&str], &str); 2] = [
        (&["--http1.1", "--tlsv1.2", "--tls-max", "1.2"], "TLSv1.2"),
        (&["--http1.1", "--tlsv1.3"], "TLSv1.3"),
    ];
    for (flags, version) in versions {
        for (name, ca) in [
            ("api.test", &setup.api_ca.path),
            ("a.wild.test", &setup.wild_ca.path),
            ("default.test", &setup.default_ca.path),
            // No SNI entry for it: the default certificate.
            ("other.test", &setup.default_ca.path),
        ] {
            let out = curl(port, name, ca, flags);
            let (body, log) = (text(&out.stdout), text(&out.stderr));
            assert!(out.status.success(), "{name} {version}: {log}");
            assert!(
                log.contains(&format!("SSL connection using {version}")),
                "{name}: not {version}: {log}"
            );
            assert!(
                log.contains("ALPN: server accepted http/1.1"),
                "{name}: {log}"
            );
            let headers: serde_json::Value = serde_json::from_str(&body).expect("echoed headers");
            assert_eq!(headers["x-forwarded-proto"][0], "https", "{body}");
        }
        // The certificate for api.test is not the default one: the
        // default's CA does not verify it.
        let out = curl(port, "api.test", &setup.default_ca.path, flags);
        assert!(!out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("certificate"),
            "{}",
            text(&out.stderr)
        );
    }

    // 4 names × 2 versions (the refused ones end in the client's alert).
    let tls12 = halb
        .metric("halb_tls_handshakes_total", &["version=\"TLSv1.2\""])
        .await;
    let tls13 = halb
        .metric("halb_tls_handshakes_total", &["version=\"TLSv1.3\""])
        .await;
    assert!(tls12 >= 4.0, "TLS 1.2 handshakes: {tls12}");
    assert!(tls13 >= 4.0, "TLS 1.3 handshakes: {tls13}");

    // Plain HTTP to the TLS port is not TLS: refused, counted by reason.
    let _ =
        crate::support::client::raw_exchange(config.listen, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let malformed = halb
            .metric(
                "halb_tls_handshake_failures_total",
                &["reason=\"malformed\""],
            )
            .await;
        if malformed >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "plain HTTP not counted as a failed handshake"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_replaced_on_disk_is_served_after_sighup_while_a_download_finishes() {
    const SIZE: u64 = 96 << 20;
    let backend = backends::download(SIZE).await;
    let setup = certificates();
    let config = tls_config(backend.addr, &setup.dir, &setup.dir.path("api.pem"));
    let toml = config.to_toml();
    let port = config.listen.port();
    let halb = Halb::start(&toml).await;

    // A long download on the old certificate: about 4 s at 24 MB/s.
    let download = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "60",
            "--limit-rate",
            "24M",
            "-o",
            "/dev/null",
        ])
        .args(["-w", "%{http_code} %{size_download}"])
        .arg("--resolve")
        .arg(format!("default.test:{port}:127.0.0.1"))
        .arg("--cacert")
        .arg(&setup.default_ca.path)
        .arg(format!("https://default.test:{port}/"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the download");
    tokio::time::sleep(Duration::from_millis(700)).await;

    let new_ca = setup.dir.ca("renewed");
    setup
        .dir
        .issue(&new_ca, "default", &["default.test", "other.test"]);
    let config = reload_via_sighup(&halb, &toml).await;
    assert_eq!(reload_counts(&config), (1, 0), "{config:#}");

    let out = curl(port, "default.test", &new_ca.path, &[]);
    assert!(
        out.status.success(),
        "new certificate: {}",
        text(&out.stderr)
    );
    let out = curl(port, "default.test", &setup.default_ca.path, &[]);
    assert!(
        !out.status.success(),
        "the old certificate is still served: {}",
        text(&out.stderr)
    );

    let finished = tokio::task::spawn_blocking(move || download.wait_with_output())
        .await
        .expect("join")
        .expect("the download");
    assert_eq!(
        text(&finished.stdout),
        format!("200 {SIZE}"),
        "the download that started on the old certificate: {}",
        text(&finished.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_changed_on_disk_is_served_without_a_reload() {
    let backend = backends::named("app").await;
    let setup = certificates();
    let config = tls_config(backend.addr, &setup.dir, &setup.dir.path("api.pem"));
    let port = config.listen.port();
    let halb = Halb::start(&config.to_toml()).await;
    assert!(curl(port, "api.test", &setup.api_ca.path, &[])
        .status
        .success());

    let new_ca = setup.dir.ca("api-renewed");
    setup.dir.issue(&new_ca, "api", &["api.test"]);
    let started = Instant::now();
    loop {
        let out = curl(port, "api.test", &new_ca.path, &[]);
        if out.status.success() {
            assert_eq!(text(&out.stdout), "app");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the new certificate was not picked up: {}",
            text(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("new certificate served after {:?}", started.elapsed());
    let status = config_status(&halb).await;
    assert_eq!(reload_counts(&status), (0, 0), "{status:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_certificate_file_on_reload_is_named_and_the_running_ones_stay() {
    let backend = backends::named("app").await;
    let setup = certificates();
    let good = tls_config(backend.addr, &setup.dir, &setup.dir.path("api.pem"));
    let port = good.listen.port();
    let halb = Halb::start(&good.to_toml()).await;

    let not_pem = setup.dir.path("not-pem.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let missing = setup.dir.path("missing.pem");
    let cases = [
        (missing.clone(), "cannot be read"),
        (not_pem.clone(), "holds no PEM certificate"),
        // api.key beside another certificate.
        (setup.dir.path("wild.pem"), "does not match the certificate"),
    ];
    for (i, (cert, problem)) in cases.iter().enumerate() {
        let mut bad = tls_config(backend.addr, &setup.dir, cert);
        bad.listen = good.listen;
        bad.admin = good.admin;
        halb.rewrite_config(&bad.to_toml());
        let (status, outcome) = reload_via_api(&halb, &[]).await;
        assert_ne!(status, 200, "{outcome:#}");
        let errors = outcome.to_string();
        let file = if *problem == "does not match the certificate" {
            setup.dir.path("api.key")
        } else {
            cert.clone()
        };
        assert!(
            errors.contains(&file.display().to_string()) && errors.contains(problem),
            "case {i}: {file:?} / {problem:?} not in {errors}"
        );
        let status = config_status(&halb).await;
        assert_eq!(reload_counts(&status), (0, i as u64 + 1), "{status:#}");
        // Still served: the certificates of the running config.
        let out = curl(port, "api.test", &setup.api_ca.path, &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "app");
    }
}

/// `openssl s_client` once with `-sess_out` and once with `-sess_in`; the
/// second's output.
fn s_client_twice(port: u16, version_flag: &str, session: &Path) -> String {
    let run = |session_flag: &str| {
        let mut child = Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .args(["-servername", "default.test", version_flag, "-ign_eof"])
            .arg(session_flag)
            .arg(session)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run openssl s_client");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"GET / HTTP/1.1\r\nhost: default.test\r\nconnection: close\r\n\r\n")
            .unwrap();
        let out = child.wait_with_output().expect("s_client");
        format!("{}{}", text(&out.stdout), text(&out.stderr))
    };
    let first = run("-sess_out");
    assert!(first.contains("200 OK"), "{first}");
    assert!(first.contains("New, TLSv1."), "{first}");
    let second = run("-sess_in");
    assert!(second.contains("200 OK"), "{second}");
    second
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_resume_over_tls_1_2_and_1_3() {
    let backend = backends::named("app").await;
    let setup = certificates();
    let config = tls_config(backend.addr, &setup.dir, &setup.dir.path("api.pem"));
    let port = config.listen.port();
    let halb = Halb::start(&config.to_toml()).await;

    for (flag, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let session = setup.dir.path(&format!("session{flag}"));
        let second = tokio::task::spawn_blocking(move || s_client_twice(port, flag, &session))
            .await
            .expect("join");
        assert!(
            second.contains(&format!("Reused, {version}")),
            "not resumed over {version}: {second}"
        );
    }
    let resumed = halb.metric("halb_tls_resumed_handshakes_total", &[]).await;
    assert!(resumed >= 2.0, "resumed handshakes: {resumed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_over_tls_is_relayed_both_ways() {
    use std::io::Read as _;

    let backend = backends::websocket_echo().await;
    let setup = certificates();
    let config = tls_config(backend.addr, &setup.dir, &setup.dir.path("api.pem"));
    let port = config.listen.port();
    let _halb = Halb::start(&config.to_toml()).await;

    // Bytes after the 101 go through as they are: the echo backend sends
    // every one back. 256 KiB, so that both ways take many records.
    let payload: Vec<u8> = (0..256 * 1024u32).map(|i| b'a' + (i % 26) as u8).collect();
    let echoed = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("openssl")
            .args(["s_client", "-quiet", "-ign_eof", "-connect"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-servername", "default.test"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run openssl s_client");
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(
                b"GET /chat HTTP/1.1\r\nhost: default.test\r\nupgrade: websocket\r\n\
                  connection: upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                  sec-websocket-version: 13\r\n\r\n",
            )
            .unwrap();
        stdin.write_all(&payload).unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut chunk = [0u8; 64 * 1024];
        while Instant::now() < deadline {
            let Some(head_end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
                match stdout.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                }
                continue;
            };
            if got.len() - (head_end + 4) >= payload.len() {
                break;
            }
            match stdout.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        (got, payload)
    })
    .await
    .expect("join");
    let (got, payload) = echoed;
    let head_end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {}", text(&got)));
    let head = text(&got[..head_end]);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let body = &got[head_end + 4..];
    assert_eq!(body.len(), payload.len(), "echoed bytes");
    assert!(
        body == payload.as_slice(),
        "the echoed bytes differ from those sent"
    );
}

#[test]
fn halb_check_reads_the_certificate_files() {
    let setup = certificates();
    let good = tls_config(
        crate::support::free_addr(),
        &setup.dir,
        &setup.dir.path("api.pem"),
    );
    let file = crate::support::process::TempFile::with_contents("check.toml", &good.to_toml());
    let path = file.path.to_str().unwrap().to_owned();
    let checked =
        crate::support::process::run_halb(&["check", "--config", &path], Duration::from_secs(20));
    assert_eq!(
        checked.code(),
        Some(0),
        "{}{}",
        checked.stdout,
        checked.stderr
    );

    let missing = setup.dir.path("missing.pem");
    let bad = tls_config(crate::support::free_addr(), &setup.dir, &missing);
    let file = crate::support::process::TempFile::with_contents("check.toml", &bad.to_toml());
    let path = file.path.to_str().unwrap().to_owned();
    let checked =
        crate::support::process::run_halb(&["check", "--config", &path], Duration::from_secs(20));
    assert_eq!(
        checked.code(),
        Some(1),
        "{}{}",
        checked.stdout,
        checked.stderr
    );
    let wanted = format!(
        "listener front: [listener.tls]: {}: cannot be read",
        missing.display()
    );
    assert!(checked.stderr.contains(&wanted), "{}", checked.stderr);
}
