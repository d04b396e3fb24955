//! halb-load against a real server on 127.0.0.1: what it reports must be
//! what the server sent, and a server that breaks its responses must show
//! up as errors, not as requests.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

const BODY: usize = 1024 * 1024;
const HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n";

/// Serves keep-alive GETs with a 1 MiB body; with `cut`, every response
/// stops half-way and the connection closes. Counts the requests it saw.
fn serve(cut: bool) -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let counter = counter.clone();
            thread::spawn(move || answer(stream, cut, &counter));
        }
    });
    (port, seen)
}

fn answer(mut stream: TcpStream, cut: bool, seen: &AtomicU64) {
    let body = vec![b'x'; BODY];
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            seen.fetch_add(1, Ordering::Relaxed);
            let sent = if cut { BODY / 2 } else { BODY };
            if stream.write_all(HEAD.as_bytes()).is_err()
                || stream.write_all(&body[..sent]).is_err()
                || cut
            {
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Runs halb-load for a second and returns its report's fields.
fn load(port: u16) -> serde_like::Report {
    let out = Command::new(env!("CARGO_BIN_EXE_halb-load"))
        .args(["-c", "4", "-d", "1", &format!("http://127.0.0.1:{port}/1m")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let json = text.trim().strip_prefix("WRKJSON ").expect("a report line");
    serde_like::Report::parse(json)
}

/// Just enough of the report's flat JSON object of integers.
mod serde_like {
    pub struct Report(Vec<(String, u64)>);

    impl Report {
        pub fn parse(json: &str) -> Report {
            let inner = json.trim_start_matches('{').trim_end_matches('}');
            Report(
                inner
                    .split(',')
                    .map(|pair| {
                        let (k, v) = pair.split_once(':').unwrap();
                        (k.trim_matches('"').to_string(), v.parse().unwrap())
                    })
                    .collect(),
            )
        }

        pub fn get(&self, key: &str) -> u64 {
            self.0.iter().find(|(k, _)| k == key).unwrap().1
        }
    }
}

#[test]
fn it_counts_whole_responses_and_their_bytes() {
    let (port, seen) = serve(false);
    let report = load(port);
    let requests = report.get("requests");
    assert!(requests > 10, "only {requests} responses in a second");
    // Each counted response is head plus 1 MiB; no request was counted
    // that the server did not answer.
    assert_eq!(report.get("bytes"), requests * (HEAD.len() + BODY) as u64);
    assert!(requests <= seen.load(Ordering::Relaxed));
    for key in [
        "connect_errors",
        "read_errors",
        "write_errors",
        "status_errors",
        "timeouts",
    ] {
        assert_eq!(report.get(key), 0, "{key}");
    }
    assert!(report.get("p50_us") > 0 && report.get("p50_us") <= report.get("p99_us"));
}

#[test]
fn a_body_cut_short_is_a_read_error_not_a_request() {
    let (port, _) = serve(true);
    let report = load(port);
    assert_eq!(report.get("requests"), 0);
    assert!(report.get("read_errors") > 0);
}
