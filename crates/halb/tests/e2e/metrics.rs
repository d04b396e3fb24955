//! `GET /metrics` (issue 4): real traffic through halb, then the exposition
//! parsed by a real Prometheus text parser (Python's `prometheus_client`,
//! which `scripts/test.sh` installs) and its values checked against what
//! the clients saw.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::backends::{named, refused};
use crate::support::client::get_once;
use crate::support::status::wait_until_up;
use crate::support::{BalancerConfig, Halb, HttpClient};

/// Reads the exposition on stdin with `prometheus_client`'s parser and
/// prints every family: name, type and samples (name, labels, value).
const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
families = []
for family in text_string_to_metric_families(sys.stdin.read()):
    families.append({
        "name": family.name,
        "type": family.type,
        "samples": [
            {"name": s.name, "labels": s.labels, "value": s.value}
            for s in family.samples
        ],
    })
print(json.dumps(families, allow_nan=False))
"#;

/// A scrape of `/metrics`, as the Prometheus parser read it.
pub struct Scrape {
    families: Vec<Value>,
}

impl Scrape {
    /// `GET /metrics` (with `headers`), checked for status and content type
    /// and parsed.
    pub async fn of(halb: &Halb, headers: &[(&str, &str)]) -> Scrape {
        let response = halb.admin_request_with("GET", "/metrics", headers).await;
        assert_eq!(response.status, 200, "GET /metrics: {}", response.text());
        let content_type = response.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "content type {content_type:?}"
        );
        Scrape::parse(&response.text())
    }

    pub fn parse(text: &str) -> Scrape {
        let mut python = Command::new("python3")
            .args(["-c", PARSER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run python3 (scripts/test.sh installs prometheus-client)");
        python
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("feed the exposition to the parser");
        let output = python.wait_with_output().expect("parser output");
        assert!(
            output.status.success(),
            "the Prometheus parser refused the exposition (is prometheus-client \
             installed? `python3 -m pip install prometheus-client`):\n{}\n--- exposition ---\n{text}",
            String::from_utf8_lossy(&output.stderr)
        );
        let families: Vec<Value> =
            serde_json::from_slice(&output.stdout).expect("the parser prints JSON");
        Scrape { families }
    }

    /// The family `name` (as the parser names it: counters without `_total`).
    pub fn family(&self, name: &str) -> &Value {
        self.families
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no family {name} in the scrape"))
    }

    /// Samples named `name` whose labels include all of `labels`.
    pub fn samples<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Value> + 'a {
        self.families
            .iter()
            .flat_map(|f| f["samples"].as_array().into_iter().flatten())
            .filter(move |s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
    }

    /// The sum of the samples [`Scrape::samples`] finds (0 when none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples(name, labels)
            .map(|s| s["value"].as_f64().expect("a numeric value"))
            .sum()
    }

    /// The one sample named `name` with exactly these labels.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Value> = self
            .samples(name, labels)
            .filter(|s| s["labels"].as_object().map(|l| l.len()) == Some(labels.len()))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "samples {name}{labels:?}: {found:?}\nfamilies: {:#?}",
            self.families.iter().map(|f| &f["name"]).collect::<Vec<_>>()
        );
        found[0]["value"].as_f64().expect("a numeric value")
    }
}

fn with_admin_token(toml: &str, token: &str) -> String {
    let mut lines: Vec<String> = toml.lines().map(str::to_owned).collect();
    let admin = lines
        .iter()
        .position(|line| line == "[admin]")
        .expect("an [admin] table");
    lines.insert(admin + 2, format!("token = \"{token}\""));
    lines.join("\n") + "\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_counts_and_histograms_match_the_traffic() {
    let a = named("a").await;
    let dead = refused();
    // No retries and no outlier detection: every other request goes to the
    // refused backend and gets 502 from halb.
    let config = BalancerConfig::http(&[a.addr, dead])
        .pool_key("retries", "0")
        .outlier_key("consecutive_failures", "0");
    let token = "metrics-secret";
    let halb = Halb::start(&with_admin_token(&config.to_toml(), token)).await;
    let auth = format!("Bearer {token}");
    let auth = [("authorization", auth.as_str())];

    let unauthorized = halb.admin_request("GET", "/metrics").await;
    assert_eq!(unauthorized.status, 401, "/metrics without the token");

    let (mut ok, mut bad_gateway, mut connections) = (0u64, 0u64, 0u64);
    for i in 0..12 {
        let reply = get_once(config.listen, &format!("/new/{i}")).await;
        connections += 1;
        match reply.status {
            200 => ok += 1,
            502 => bad_gateway += 1,
            other => panic!("unexpected status {other}: {}", reply.text()),
        }
    }
    let mut client = HttpClient::connect(config.listen).await;
    connections += 1;
    for i in 0..10 {
        match client.get(&format!("/kept/{i}"), &[]).await.status {
            200 => ok += 1,
            502 => bad_gateway += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    drop(client);
    assert!(ok > 0 && bad_gateway > 0, "{ok} × 200, {bad_gateway} × 502");
    let total = ok + bad_gateway;

    // In-flight and open connections drop as the last bodies and sockets
    // close: give them a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let scrape = loop {
        let scrape = Scrape::of(&halb, &auth).await;
        let settled = scrape.sum("halb_backend_in_flight", &[]) == 0.0
            && scrape.sum("halb_listener_active_connections", &[]) == 0.0;
        if settled || Instant::now() > deadline {
            break scrape;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let a_label = a.addr.to_string();
    let dead_label = dead.to_string();
    let front = ("listener", "front");
    let default = ("route", "default");

    assert_eq!(scrape.family("halb_http_requests")["type"], "counter");
    assert_eq!(
        scrape.value(
            "halb_http_requests_total",
            &[
                front,
                default,
                ("pool", "app"),
                ("backend", &a_label),
                ("code", "2xx")
            ]
        ),
        ok as f64
    );
    assert_eq!(
        scrape.value(
            "halb_http_requests_total",
            &[
                front,
                default,
                ("pool", "app"),
                ("backend", ""),
                ("code", "5xx")
            ]
        ),
        bad_gateway as f64,
        "halb's own 502s count with backend=\"\""
    );
    assert_eq!(scrape.sum("halb_http_requests_total", &[]), total as f64);

    let duration = scrape.family("halb_http_request_duration_seconds");
    assert_eq!(duration["type"], "histogram");
    assert_eq!(
        scrape.value("halb_http_request_duration_seconds_count", &[front]),
        total as f64
    );
    assert_eq!(
        scrape.value(
            "halb_http_request_duration_seconds_bucket",
            &[front, ("le", "+Inf")]
        ),
        total as f64
    );
    assert!(scrape.value("halb_http_request_duration_seconds_sum", &[front]) > 0.0);
    let buckets: Vec<f64> = scrape
        .samples("halb_http_request_duration_seconds_bucket", &[front])
        .map(|s| s["value"].as_f64().unwrap())
        .collect();
    assert!(
        buckets.windows(2).all(|w| w[0] <= w[1]),
        "cumulative buckets: {buckets:?}"
    );
    let a_backend = [("pool", "app"), ("backend", a_label.as_str())];
    assert_eq!(
        scrape.value("halb_backend_response_seconds_count", &a_backend),
        ok as f64,
        "one backend response time per response from a"
    );
    assert_eq!(
        scrape.value(
            "halb_backend_response_seconds_count",
            &[("pool", "app"), ("backend", &dead_label)]
        ),
        0.0
    );

    assert_eq!(scrape.value("halb_backend_in_flight", &a_backend), 0.0);
    assert_eq!(
        scrape.value(
            "halb_backend_in_flight",
            &[("pool", "app"), ("backend", &dead_label)]
        ),
        0.0
    );
    assert_eq!(
        scrape.value("halb_backend_attempts_total", &a_backend),
        ok as f64
    );
    assert_eq!(
        scrape.value(
            "halb_backend_failures_total",
            &[("pool", "app"), ("backend", &dead_label)]
        ),
        bad_gateway as f64
    );
    assert_eq!(
        scrape.value(
            "halb_backend_state",
            &[("pool", "app"), ("backend", &a_label), ("state", "up")]
        ),
        1.0
    );
    assert_eq!(
        scrape.sum("halb_backend_state", &[("backend", &a_label)]),
        1.0,
        "exactly one state is current"
    );
    let http = [front, ("protocol", "http")];
    assert_eq!(
        scrape.value("halb_listener_connections_total", &http),
        connections as f64
    );
    assert_eq!(scrape.value("halb_listener_active_connections", &http), 0.0);
    assert_eq!(
        scrape.value("halb_pool_retries_total", &[("pool", "app")]),
        0.0
    );

    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        scrape.value("halb_build_info", &[("version", version)]),
        1.0
    );
    let status = halb
        .admin_request_with("GET", "/api/v1/status", &auth)
        .await;
    let status: Value = serde_json::from_slice(&status.body).expect("status JSON");
    let hash = status["config"]["hash"].as_str().expect("config.hash");
    assert_eq!(scrape.value("halb_config_info", &[("hash", hash)]), 1.0);
    assert_eq!(
        scrape.value("halb_config_reloads_total", &[("result", "ok")]),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_reloads_and_tcp_connections_are_counted() {
    let (a, b) = (named("a").await, named("b").await);
    let config = BalancerConfig::http(&[a.addr, b.addr]).http_checks("100ms", "1s", 1, 1);
    let halb = Halb::start(&config.to_toml()).await;
    wait_until_up(&halb, &[a.addr, b.addr]).await;

    // A reload that is refused, then one that is applied and changes the hash.
    halb.rewrite_config("this is not toml");
    let refused = halb.admin_request("POST", "/api/v1/reload").await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    let tcp_listen: SocketAddr = crate::support::free_addr();
    let mut toml = config.to_toml();
    toml.push_str(&format!(
        "\n[[listener]]\nname = \"raw\"\nbind = \"{tcp_listen}\"\nprotocol = \"tcp\"\npool = \"app\"\n"
    ));
    halb.rewrite_config(&toml);
    let applied = halb.admin_request("POST", "/api/v1/reload").await;
    assert_eq!(applied.status, 200, "{}", applied.text());

    for _ in 0..3 {
        let mut stream = tokio::net::TcpStream::connect(tcp_listen)
            .await
            .expect("connect to the tcp listener");
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("read");
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let scrape = Scrape::of(&halb, &[]).await;
    for backend in [a.addr, b.addr] {
        let label = backend.to_string();
        let labels = [("pool", "app"), ("backend", label.as_str())];
        let passed = scrape.value(
            "halb_health_checks_total",
            &[labels[0], labels[1], ("result", "pass")],
        );
        let failed = scrape.value(
            "halb_health_checks_total",
            &[labels[0], labels[1], ("result", "fail")],
        );
        assert!(passed >= 1.0, "{backend}: {passed} checks passed");
        assert_eq!(failed, 0.0, "{backend}: {failed} checks failed");
        let checked = scrape.value("halb_health_check_duration_seconds_count", &labels);
        // Checks keep running between the samples: allow one in flight.
        assert!(
            (checked - passed).abs() <= 2.0,
            "{backend}: {checked} durations for {passed} checks"
        );
        assert_eq!(
            scrape.value("halb_backend_state_changes_total", &labels),
            1.0,
            "{backend}: pending to up"
        );
    }
    assert_eq!(
        scrape.value("halb_config_reloads_total", &[("result", "failed")]),
        1.0
    );
    assert_eq!(
        scrape.value("halb_config_reloads_total", &[("result", "ok")]),
        1.0
    );
    let status = halb.status_json().await;
    let hash = status["config"]["hash"].as_str().expect("config.hash");
    assert_eq!(scrape.value("halb_config_info", &[("hash", hash)]), 1.0);
    assert_eq!(
        scrape.sum("halb_tcp_connections_total", &[("listener", "raw")]),
        3.0
    );
    assert_eq!(
        scrape.value(
            "halb_listener_connections_total",
            &[("listener", "raw"), ("protocol", "tcp")]
        ),
        3.0
    );
    assert_eq!(
        scrape.value("halb_pool_usable_backends", &[("pool", "app")]),
        2.0
    );
}
