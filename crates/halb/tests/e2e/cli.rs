//! The command line: `halb check`, `halb run` on a bad config, `halb
//! --version` and `halb demo`.

use std::collections::HashSet;
use std::io::BufRead;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::client::get_once;
use crate::support::config::line_of;
use crate::support::process::{halb_command, run_halb, wait_with_limit, KillOnDrop, TempFile};
use crate::support::{free_addr, BalancerConfig};

const CLI_LIMIT: Duration = Duration::from_secs(20);

/// A valid config; the error cases below each break it in one place.
const VALID: &str = r#"[runtime]
workers = 2

[admin]
bind = "127.0.0.1:19900"

[[listener]]
name = "web"
bind = "127.0.0.1:18080"
protocol = "http"
pool = "app"

[[pool]]
name = "app"
algorithm = "round_robin"
timeout = "30s"

[[pool.backend]]
address = "127.0.0.1:19001"
weight = 1

[[pool.backend]]
address = "127.0.0.1:19002"
weight = 1
"#;

/// `halb check --config FILE` on `config`.
fn check(config: &str) -> crate::support::process::Finished {
    let file = TempFile::with_contents("check.toml", config);
    let path = file.path.to_str().expect("UTF-8 temp path");
    run_halb(&["check", "--config", path], CLI_LIMIT)
}

/// `VALID` with `from` replaced by `to` (which must occur exactly once).
fn broken(config: &str, from: &str, to: &str) -> String {
    assert_eq!(config.matches(from).count(), 1, "{from:?} must occur once");
    config.replacen(from, to, 1)
}

/// Checks that `halb check` rejects `config` with exit code 1 and names
/// each `(key path, text on the offending line)` with its line number.
fn assert_check_names(config: &str, errors: &[(&str, &str)]) {
    let finished = check(config);
    assert_eq!(
        finished.code(),
        Some(1),
        "`halb check` on a bad config; stderr:\n{}",
        finished.stderr
    );
    for (path, on_line) in errors {
        let line = line_of(config, on_line);
        let expected = format!("{path} (line {line})");
        assert!(
            finished.stderr.contains(&expected),
            "stderr must name `{expected}`; stderr:\n{}\nconfig:\n{config}",
            finished.stderr
        );
    }
}

#[test]
fn check_accepts_a_valid_config() {
    let finished = check(VALID);
    assert_eq!(
        finished.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        finished.stdout,
        finished.stderr
    );
}

#[test]
fn check_names_an_unknown_key() {
    let config = broken(
        VALID,
        "protocol = \"http\"\n",
        "protocol = \"http\"\ncolour = \"red\"\n",
    );
    assert_check_names(&config, &[("listener[0].colour", "colour")]);
}

#[test]
fn check_names_a_bad_duration() {
    let config = broken(VALID, "timeout = \"30s\"", "timeout = \"thirty seconds\"");
    assert_check_names(&config, &[("pool[0].timeout", "thirty seconds")]);
}

#[test]
fn check_names_an_out_of_range_weight() {
    let config = broken(
        VALID,
        "address = \"127.0.0.1:19002\"\nweight = 1",
        "address = \"127.0.0.1:19002\"\nweight = 2000",
    );
    assert_check_names(&config, &[("pool[0].backend[1].weight", "weight = 2000")]);
}

#[test]
fn check_names_a_listener_naming_a_missing_pool() {
    let config = broken(VALID, "pool = \"app\"", "pool = \"nowhere\"");
    assert_check_names(&config, &[("listener[0].pool", "pool = \"nowhere\"")]);
}

#[test]
fn check_names_a_bad_address() {
    let config = broken(
        VALID,
        "address = \"127.0.0.1:19001\"",
        "address = \"not-an-address\"",
    );
    assert_check_names(&config, &[("pool[0].backend[0].address", "not-an-address")]);
}

#[test]
fn check_lists_every_error_at_once() {
    let config = broken(VALID, "timeout = \"30s\"", "timeout = \"thirty seconds\"");
    let config = broken(&config, "pool = \"app\"", "pool = \"nowhere\"");
    let config = broken(
        &config,
        "address = \"127.0.0.1:19002\"\nweight = 1",
        "address = \"127.0.0.1:19002\"\nweight = 2000",
    );
    assert_check_names(
        &config,
        &[
            ("listener[0].pool", "pool = \"nowhere\""),
            ("pool[0].timeout", "thirty seconds"),
            ("pool[0].backend[1].weight", "weight = 2000"),
        ],
    );
}

#[test]
fn check_rejects_a_toml_syntax_error() {
    let config = broken(VALID, "weight = 1\n\n", "weight = = 1\n\n");
    let finished = check(&config);
    assert_eq!(finished.code(), Some(1), "stderr:\n{}", finished.stderr);
    let line = format!("line {}", line_of(&config, "weight = = 1"));
    assert!(
        finished.stderr.contains(&line),
        "stderr must give the {line}:\n{}",
        finished.stderr
    );
}

#[test]
fn run_with_a_bad_config_exits_1_without_binding() {
    let config = BalancerConfig::http(&[free_addr()]).weights(&[2000]);
    let file = TempFile::with_contents("bad-run.toml", &config.to_toml());
    let (stdout, stderr) = (TempFile::unique("stdout"), TempFile::unique("stderr"));
    let mut child = KillOnDrop(
        halb_command(&stdout, &stderr)
            .arg("run")
            .arg("--config")
            .arg(&file.path)
            .spawn()
            .expect("spawn halb run"),
    );

    let mut bound = Vec::new();
    let status = wait_with_limit(&mut child.0, CLI_LIMIT, || {
        for addr in [config.listen, config.admin] {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(50)).is_ok() {
                bound.push(addr);
            }
        }
    })
    .expect("`halb run` on a bad config must exit");

    let stderr = stderr.read();
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    assert!(bound.is_empty(), "halb bound {bound:?} on a bad config");
    assert!(
        stderr.contains("pool[0].backend[0].weight"),
        "stderr:\n{stderr}"
    );
}

#[test]
fn version_prints_the_package_version() {
    let finished = run_halb(&["--version"], CLI_LIMIT);
    assert_eq!(finished.code(), Some(0), "stderr:\n{}", finished.stderr);
    let expected = format!("halb {}", env!("CARGO_PKG_VERSION"));
    assert_eq!(finished.stdout.trim(), expected);
}

/// Every `http://127.0.0.1:PORT` in `line`.
fn loopback_urls(line: &str) -> Vec<SocketAddr> {
    line.match_indices("http://127.0.0.1:")
        .filter_map(|(at, prefix)| {
            let rest = &line[at + prefix.len()..];
            let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
            port.parse::<u16>()
                .ok()
                .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_balances_over_its_backends_and_stops_on_sigint() {
    let stderr = TempFile::unique("demo-stderr");
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_halb"))
            .arg("demo")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr.path).expect("stderr file"))
            .spawn()
            .expect("spawn halb demo"),
    );
    let stdout = child.0.stdout.take().expect("demo stdout");
    let (lines, printed) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                break;
            }
        }
    });

    // Collect what the demo prints until it has printed a URL and then
    // been quiet for a second.
    let mut output = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let quiet_for = if output.iter().any(|l: &String| !loopback_urls(l).is_empty()) {
            Duration::from_secs(1)
        } else {
            Duration::from_millis(100)
        };
        match printed.recv_timeout(quiet_for) {
            Ok(line) => output.push(line),
            Err(mpsc::RecvTimeoutError::Timeout) if quiet_for == Duration::from_secs(1) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let urls_by_line: Vec<(&String, Vec<SocketAddr>)> = output
        .iter()
        .map(|line| (line, loopback_urls(line)))
        .filter(|(_, urls)| !urls.is_empty())
        .collect();
    assert!(
        !urls_by_line.is_empty(),
        "the demo printed no http://127.0.0.1:PORT URL: {output:?}"
    );

    // The balancer is the URL whose line says so, else whichever URL
    // answers from several backends.
    let said_balancer = urls_by_line
        .iter()
        .find(|(line, _)| line.to_ascii_lowercase().contains("balancer"))
        .map(|(_, urls)| urls[0]);
    let candidates: Vec<SocketAddr> = match said_balancer {
        Some(url) => vec![url],
        None => urls_by_line
            .iter()
            .flat_map(|(_, urls)| urls.clone())
            .collect(),
    };
    let mut backends_seen = HashSet::new();
    for url in &candidates {
        let mut seen = HashSet::new();
        for _ in 0..6 {
            let reply = get_once(*url, "/").await;
            if reply.status == 200 {
                seen.insert(reply.text());
            }
        }
        if seen.len() > backends_seen.len() {
            backends_seen = seen;
        }
    }
    assert!(
        backends_seen.len() >= 2,
        "6 requests to the demo balancer ({candidates:?}) reached {} backend(s): {backends_seen:?}; demo printed {output:?}",
        backends_seen.len()
    );

    // SIGINT without `unsafe` (the workspace forbids it): use kill(1).
    let signalled = Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(signalled.success(), "kill -INT failed");
    let status = wait_with_limit(&mut child.0, Duration::from_secs(5), || {});
    let status = status.unwrap_or_else(|| {
        panic!(
            "the demo did not exit within 5 s of SIGINT; stderr:\n{}",
            stderr.read()
        )
    });
    assert_eq!(
        status.code(),
        Some(0),
        "demo exit after SIGINT; stderr:\n{}",
        stderr.read()
    );
}
