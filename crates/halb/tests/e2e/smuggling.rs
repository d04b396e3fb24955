//! The request-smuggling conformance corpus (`tests/smuggling/`): each
//! input is sent to halb and to HAProxy, both in front of the same
//! recording backend, in the same run. halb's outcome (status, and the
//! requests the backend saw) must be the one written beside the input;
//! HAProxy's is reported beside it, as a table, for comparison.
//!
//! An input is `NAME.req` (the client's bytes, CRLF kept); with
//! `NAME.resp`, the backend answers it with those bytes (response-side
//! cases). `NAME.expect` holds `# what it is`, `status: N` and
//! `backend: none` or the requests seen, `METHOD TARGET "body"`, joined
//! by ` | ` (`<why>` in place of the body when it never came whole).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::support::client::read_response;
use crate::support::free_addr;
use crate::support::process::{KillOnDrop, TempFile};
use crate::support::scripted::{answering, ok, Received, Seen};
use crate::support::{BalancerConfig, Halb};

/// How long a proxy gets to answer one input before it counts as silent.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);
/// How long after the answer a forwarded request has to reach the backend.
const SETTLE: Duration = Duration::from_millis(150);

struct Case {
    name: String,
    what: String,
    request: Vec<u8>,
    response: Option<Vec<u8>>,
    status: String,
    backend: String,
}

fn corpus() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smuggling");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "req"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|path| {
            let expect = std::fs::read_to_string(path.with_extension("expect"))
                .unwrap_or_else(|e| panic!("{}: no .expect beside it: {e}", path.display()));
            let field = |key: &str| {
                expect
                    .lines()
                    .find_map(|line| line.strip_prefix(key))
                    .map(|value| value.trim().to_owned())
                    .unwrap_or_else(|| panic!("{}: no {key:?} line", path.display()))
            };
            Case {
                name: path.file_stem().unwrap().to_string_lossy().into_owned(),
                what: field("#"),
                request: std::fs::read(&path).expect("a request file"),
                response: std::fs::read(path.with_extension("resp")).ok(),
                status: field("status:"),
                backend: field("backend:"),
            }
        })
        .collect()
}

/// What one proxy did with one input.
struct Outcome {
    /// The status code, or `closed` / `silent` when there was none.
    status: String,
    /// The requests the backend saw, as in `.expect`.
    backend: String,
}

fn summary(seen: &[Received]) -> String {
    if seen.is_empty() {
        return "none".to_owned();
    }
    let shown: Vec<String> = seen
        .iter()
        .map(|request| {
            let body = match &request.body {
                Ok(body) => format!("{:?}", String::from_utf8_lossy(body)),
                Err(why) => format!("<{why}>"),
            };
            format!("{} {} {body}", request.method, request.target)
        })
        .collect();
    shown.join(" | ")
}

async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return "refused".to_owned();
    };
    // The proxy may answer and close before reading everything.
    let _ = stream.write_all(request).await;
    let (read_half, _write_half) = stream.split();
    match tokio::time::timeout(ANSWER_WITHIN, read_response(&mut BufReader::new(read_half))).await {
        Ok(Ok(response)) => response.status.to_string(),
        Ok(Err(_)) => "closed".to_owned(),
        Err(_) => "silent".to_owned(),
    }
}

async fn run_case(
    addr: SocketAddr,
    case: &Case,
    seen: &Seen,
    answer: &Mutex<Option<Vec<u8>>>,
) -> Outcome {
    *answer.lock().unwrap() = case.response.clone();
    let before = seen.count();
    let status = exchange(addr, &case.request).await;
    tokio::time::sleep(SETTLE).await;
    let all = seen.all();
    Outcome {
        status,
        backend: summary(&all[before.min(all.len())..]),
    }
}

/// HAProxy (2.6 on Debian 12) in HTTP mode before `backend`, killed on drop.
fn haproxy(listen: SocketAddr, backend: SocketAddr) -> (KillOnDrop, TempFile) {
    let config = TempFile::with_contents(
        "haproxy.cfg",
        &format!(
            "defaults\n  mode http\n  timeout connect 2s\n  timeout client 5s\n  \
             timeout server 5s\n  timeout http-request 2s\n\
             frontend smuggling\n  bind {listen}\n  default_backend recording\n\
             backend recording\n  server b {backend}\n"
        ),
    );
    let child = Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&config.path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy runs (scripts/test.sh installs it)");
    (KillOnDrop(child), config)
}

async fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smuggling_corpus_gets_its_expected_outcomes_with_haproxy_compared() {
    let cases = corpus();
    assert!(cases.len() >= 40, "{} inputs", cases.len());
    let answer: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let respond = answer.clone();
    let (backend, seen) =
        answering(move |_| respond.lock().unwrap().clone().unwrap_or_else(|| ok(b"ok"))).await;
    // The response-side inputs are failures of the one backend: it must
    // not be ejected for them.
    let config = BalancerConfig::http(&[backend.addr]).outlier_key("consecutive_failures", "0");
    let _halb = Halb::start(&config.to_toml()).await;
    let haproxy_listen = free_addr();
    let _haproxy = haproxy(haproxy_listen, backend.addr);
    wait_listening(haproxy_listen).await;

    let mut table = String::from(
        "| input | what | halb | backend saw (halb) | HAProxy | backend saw (HAProxy) |\n\
         |---|---|---|---|---|---|\n",
    );
    let mut wrong = Vec::new();
    for case in &cases {
        let halb = run_case(config.listen, case, &seen, &answer).await;
        let haproxy = run_case(haproxy_listen, case, &seen, &answer).await;
        let cell = |s: &str| s.replace('|', "\\|");
        writeln!(
            table,
            "| `{}` | {} | {} | {} | {} | {} |",
            case.name,
            cell(&case.what),
            halb.status,
            cell(&halb.backend),
            haproxy.status,
            cell(&haproxy.backend)
        )
        .unwrap();
        if (halb.status.as_str(), halb.backend.as_str())
            != (case.status.as_str(), case.backend.as_str())
        {
            wrong.push(format!(
                "{}: expected {} / {}, halb gave {} / {}",
                case.name, case.status, case.backend, halb.status, halb.backend
            ));
        }
    }
    println!("{table}");
    let written = Path::new(env!("CARGO_TARGET_TMPDIR")).join("smuggling.md");
    std::fs::write(&written, &table).expect("write the table");
    println!("(also in {})", written.display());
    assert!(
        wrong.is_empty(),
        "halb's outcome differs from the corpus:\n{}",
        wrong.join("\n")
    );
}
