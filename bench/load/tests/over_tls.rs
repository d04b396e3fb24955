//! halb-load over TLS against a real rustls server on 127.0.0.1: with
//! `--close` each request is a new handshake, resumed from a ticket by
//! default and full with `--no-resume`, and the report says which.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::thread;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

#[allow(deprecated)]
fn server_config() -> Arc<ServerConfig> {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert.cert.der().to_vec())], key)
        .unwrap();
    config.ticketer = rustls::crypto::ring::Ticketer::new().unwrap();
    Arc::new(config)
}

/// Answers each request on a connection with 5 bytes, keep-alive.
fn serve() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = server_config();
    thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let config = config.clone();
            thread::spawn(move || {
                let conn = ServerConnection::new(config).unwrap();
                let mut tls = StreamOwned::new(conn, tcp);
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if tls.write_all(RESPONSE).and_then(|_| tls.flush()).is_err() {
                            return;
                        }
                    }
                    match tls.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    port
}

/// Runs halb-load for a second; returns (requests, handshakes, resumed, errors).
fn load(port: u16, extra: &[&str]) -> (u64, u64, u64, u64) {
    let url = format!("https://127.0.0.1:{port}/hello");
    let out = Command::new(env!("CARGO_BIN_EXE_halb-load"))
        .args(["-c", "4", "-d", "1"])
        .args(extra)
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let get = |key: &str| -> u64 {
        let at = text.find(&format!("\"{key}\":")).expect(key) + key.len() + 3;
        let digits: String = text[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().unwrap()
    };
    let errors = ["connect_errors", "read_errors", "write_errors", "timeouts"]
        .iter()
        .map(|k| get(k))
        .sum();
    (get("requests"), get("handshakes"), get("resumed"), errors)
}

#[test]
fn a_new_connection_per_request_resumes_its_session() {
    let port = serve();
    let (requests, handshakes, resumed, errors) = load(port, &["--close"]);
    assert_eq!(errors, 0);
    assert!(requests > 20, "only {requests} requests in a second");
    assert_eq!(handshakes, requests);
    // The first handshake of each of the 4 connections is a full one.
    assert!(
        resumed + 4 >= handshakes,
        "{resumed} of {handshakes} resumed"
    );
}

#[test]
fn no_resume_makes_every_handshake_a_full_one() {
    let port = serve();
    let (requests, handshakes, resumed, errors) = load(port, &["--close", "--no-resume"]);
    assert_eq!(errors, 0);
    assert!(requests > 20, "only {requests} requests in a second");
    assert_eq!((handshakes, resumed), (requests, 0));
}

#[test]
fn keep_alive_makes_one_handshake_per_connection() {
    let port = serve();
    let (requests, handshakes, _, errors) = load(port, &[]);
    assert_eq!(errors, 0);
    assert!(requests > 100, "only {requests} requests in a second");
    assert_eq!(handshakes, 4);
}
