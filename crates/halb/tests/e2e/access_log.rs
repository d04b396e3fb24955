//! The access log (issue 4): one line per HTTP request and per TCP
//! connection, JSON or plain, to a file or standard output; turned on and
//! off by a reload.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::metrics::Scrape;
use crate::support::backends::{named, refused, tcp_echo};
use crate::support::client::get_once;
use crate::support::process::TempFile;
use crate::support::{BalancerConfig, Halb};

/// `[access_log]` writing `format` to `path` (standard output when `None`).
fn access_log(format: &str, path: Option<&TempFile>) -> String {
    let mut table = format!("\n[access_log]\nformat = \"{format}\"\n");
    if let Some(file) = path {
        table.push_str(&format!("path = \"{}\"\n", file.path.display()));
    }
    table
}

/// Waits until `read()` has at least `n` lines; returns them.
async fn lines(what: &str, n: usize, read: impl Fn() -> String) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = read();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} lines after 5 s, expected {n}:\n{text}",
            lines.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
}

/// An RFC 3339 UTC time with milliseconds, within a minute of now.
fn assert_recent_time(time: &Value) {
    let time = time.as_str().expect("time is a string");
    assert_eq!(time.len(), "2025-01-01T00:00:00.000Z".len(), "{time}");
    assert!(time.ends_with('Z') && &time[10..11] == "T", "{time}");
    let year: u32 = time[..4].parse().expect("year");
    assert!(year >= 2024, "{time}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_go_to_the_file_one_per_request() {
    let a = named("a").await;
    let dead = refused();
    // Round robin over a and a refused backend, one retry: every request
    // ends at a, half of them after a retry.
    let config = BalancerConfig::http(&[a.addr, dead])
        .pool_key("retries", "1")
        .outlier_key("consecutive_failures", "0");
    let file = TempFile::unique("access.log");
    let halb = Halb::start(&(config.to_toml() + &access_log("json", Some(&file)))).await;

    for i in 0..10 {
        let reply = get_once(config.listen, &format!("/item/{i}?q=x")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let lines = lines("the access log file", 10, || file.read()).await;
    assert_eq!(lines.len(), 10, "{lines:#?}");

    let mut paths = Vec::new();
    let mut retried = 0u32;
    for line in &lines {
        let entry = json(line);
        assert_recent_time(&entry["time"]);
        let client: SocketAddr = entry["client"]
            .as_str()
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("client is ip:port: {line}"));
        assert!(client.ip().is_loopback(), "{line}");
        assert_eq!(entry["listener"], "front", "{line}");
        assert_eq!(entry["pool"], "app", "{line}");
        assert_eq!(entry["backend"], a.addr.to_string(), "{line}");
        assert_eq!(entry["protocol"], "http", "{line}");
        assert_eq!(entry["method"], "GET", "{line}");
        assert_eq!(entry["status"], 200, "{line}");
        assert_eq!(entry["bytes"], 1, "the body \"a\": {line}");
        let total = entry["duration_ms"].as_f64().expect("duration_ms");
        let backend = entry["backend_ms"].as_f64().expect("backend_ms");
        assert!(0.0 < backend && backend <= total, "{line}");
        match entry["retries"].as_u64() {
            Some(0) => {}
            Some(1) => retried += 1,
            _ => panic!("retries: {line}"),
        }
        paths.push(entry["path"].as_str().expect("path").to_owned());
    }
    paths.sort();
    let mut expected: Vec<String> = (0..10).map(|i| format!("/item/{i}?q=x")).collect();
    expected.sort();
    assert_eq!(paths, expected, "one line per request");
    assert!(retried > 0, "no request tried the refused backend first");

    let scrape = Scrape::of(&halb, &[]).await;
    assert_eq!(
        scrape.value("halb_pool_retries_total", &[("pool", "app")]),
        f64::from(retried)
    );
    assert_eq!(scrape.value("halb_access_log_lines_total", &[]), 10.0);
    assert_eq!(scrape.value("halb_access_log_dropped_total", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_lines_are_readable_and_show_halb_errors() {
    let a = named("a").await;
    let dead = refused();
    let config = BalancerConfig::http(&[a.addr, dead])
        .pool_key("retries", "0")
        .outlier_key("consecutive_failures", "0");
    let file = TempFile::unique("access.log");
    let _halb = Halb::start(&(config.to_toml() + &access_log("plain", Some(&file)))).await;

    let mut statuses = Vec::new();
    for i in 0..4 {
        statuses.push(get_once(config.listen, &format!("/p/{i}")).await.status);
    }
    assert!(
        statuses.contains(&200) && statuses.contains(&502),
        "{statuses:?}"
    );
    let lines = lines("the access log file", 4, || file.read()).await;
    let mut paths = Vec::new();
    for line in &lines {
        // 2025-05-01T12:00:00.123Z 127.0.0.1:40000 front app/127.0.0.1:9001 200 1B 1.234ms backend=0.912ms retries=0 "GET /p/0"
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 11, "{line}");
        assert_recent_time(&Value::from(fields[0]));
        assert!(fields[1].parse::<SocketAddr>().is_ok(), "client: {line}");
        assert_eq!(fields[2], "front", "{line}");
        assert!(fields[5].ends_with('B'), "bytes: {line}");
        assert!(fields[6].ends_with("ms"), "duration: {line}");
        assert_eq!(fields[8], "retries=0", "{line}");
        assert_eq!(fields[9], "\"GET", "{line}");
        paths.push(fields[10].to_owned());
        match fields[4] {
            "200" => {
                assert_eq!(fields[3], format!("app/{}", a.addr), "{line}");
                assert_eq!(fields[5], "1B", "{line}");
                assert!(fields[7].starts_with("backend=") && fields[7].ends_with("ms"));
            }
            "502" => {
                // The backend tried, and no backend time: it never answered.
                assert_eq!(fields[3], format!("app/{dead}"), "{line}");
                assert_eq!(fields[7], "backend=-", "{line}");
            }
            other => panic!("status {other}: {line}"),
        }
    }
    assert_eq!(
        lines.iter().filter(|l| l.contains(" 502 ")).count(),
        statuses.iter().filter(|s| **s == 502).count()
    );
    paths.sort();
    assert_eq!(paths, ["/p/0\"", "/p/1\"", "/p/2\"", "/p/3\""]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_connection_gets_one_line() {
    let echo = tcp_echo().await;
    let config = BalancerConfig::tcp(&[echo.addr]);
    let file = TempFile::unique("access.log");
    let _halb = Halb::start(&(config.to_toml() + &access_log("json", Some(&file)))).await;

    let mut stream = TcpStream::connect(config.listen).await.expect("connect");
    stream.write_all(b"hello").await.expect("write");
    stream.shutdown().await.expect("half-close");
    let mut echoed = Vec::new();
    stream.read_to_end(&mut echoed).await.expect("read");
    assert_eq!(echoed, b"hello");
    drop(stream);

    let lines = lines("the access log file", 1, || file.read()).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let entry = json(&lines[0]);
    assert_recent_time(&entry["time"]);
    assert_eq!(entry["protocol"], "tcp");
    assert_eq!(entry["listener"], "front");
    assert_eq!(entry["pool"], "app");
    assert_eq!(entry["backend"], echo.addr.to_string());
    assert_eq!(entry["bytes"], 5, "bytes sent to the client");
    assert!(entry["status"].is_null() && entry["method"].is_null() && entry["path"].is_null());
    assert!(entry["backend_ms"].as_f64().is_some(), "connect time");
    assert_eq!(entry["retries"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_output_is_flushed_at_shutdown() {
    let a = named("a").await;
    let config = BalancerConfig::http(&[a.addr]);
    let mut halb = Halb::start(&(config.to_toml() + &access_log("json", None))).await;
    for i in 0..3 {
        assert_eq!(
            get_once(config.listen, &format!("/out/{i}")).await.status,
            200
        );
    }
    halb.signal("TERM");
    let status = halb.wait_for_exit(Duration::from_secs(10)).await;
    assert!(status.is_some_and(|s| s.success()), "exit: {status:?}");
    let logs = halb.logs();
    for i in 0..3 {
        let path = format!("\"path\":\"/out/{i}\"");
        assert_eq!(logs.matches(&path).count(), 1, "{path} in:\n{logs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_turns_the_access_log_on_and_off() {
    let a = named("a").await;
    let config = BalancerConfig::http(&[a.addr]);
    let file = TempFile::unique("access.log");
    let halb = Halb::start(&config.to_toml()).await;

    assert_eq!(get_once(config.listen, "/before").await.status, 200);
    halb.rewrite_config(&(config.to_toml() + &access_log("json", Some(&file))));
    let reload = halb.admin_request("POST", "/api/v1/reload").await;
    assert_eq!(reload.status, 200, "{}", reload.text());
    assert_eq!(get_once(config.listen, "/during").await.status, 200);
    let logged = lines("the access log file", 1, || file.read()).await;
    assert_eq!(logged.len(), 1, "{logged:#?}");
    assert_eq!(json(&logged[0])["path"], "/during");

    halb.rewrite_config(&config.to_toml());
    let reload = halb.admin_request("POST", "/api/v1/reload").await;
    assert_eq!(reload.status, 200, "{}", reload.text());
    assert_eq!(get_once(config.listen, "/after").await.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(file.read().lines().count(), 1, "{}", file.read());

    // A path that cannot be opened refuses the reload.
    let nowhere = "/nonexistent-dir/halb/access.log";
    halb.rewrite_config(&(config.to_toml() + &format!("\n[access_log]\npath = \"{nowhere}\"\n")));
    let refused = halb.admin_request("POST", "/api/v1/reload").await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(refused.text().contains(nowhere), "{}", refused.text());
}
