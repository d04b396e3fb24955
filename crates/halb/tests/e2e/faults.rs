//! Fault injection (issue 15): `/api/v1/faults` guarded by the token and
//! `[chaos] allow`, bad bodies refused naming the field, and faults in the
//! data path as clients see them: latency, abort (counted in halb's own
//! metrics), a share of requests, a TCP reset, and a fault ended early.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::metrics::Scrape;
use crate::support::backends::{named, tcp_named};
use crate::support::client::{HttpClient, RawResponse};
use crate::support::node_config::NodeConfig;
use crate::support::process::admin_request_with_body;
use crate::support::{free_addr, within, Halb};

const TOKEN: &str = "e2e-chaos-token-41c2";

fn json(response: &RawResponse) -> Value {
    serde_json::from_slice(&response.body).unwrap_or_else(|e| {
        panic!(
            "{} answer is not JSON ({e}): {}",
            response.status,
            response.text()
        )
    })
}

/// `POST /api/v1/faults` with `body`; 201 expected; the fault's id.
async fn add_fault(halb: &Halb, body: &str) -> String {
    let response = halb.admin_post_json("/api/v1/faults", body).await;
    assert_eq!(response.status, 201, "POST {body}: {}", response.text());
    let fault = json(&response);
    fault["id"].as_str().expect("the fault's id").to_owned()
}

async fn active_faults(halb: &Halb) -> Vec<Value> {
    let response = halb.admin_request("GET", "/api/v1/faults").await;
    assert_eq!(response.status, 200, "{}", response.text());
    json(&response)["faults"]
        .as_array()
        .expect("a faults array")
        .clone()
}

/// Sequential GETs on one keep-alive connection for `length`: each one's
/// status and time.
async fn requests_for(listen: SocketAddr, length: Duration) -> Vec<(u16, Duration)> {
    let mut client = HttpClient::connect(listen).await;
    let until = Instant::now() + length;
    let mut seen = Vec::new();
    while Instant::now() < until {
        let started = Instant::now();
        let reply = within(Duration::from_secs(10), "a request", client.get("/", &[])).await;
        seen.push((reply.status, started.elapsed()));
    }
    seen
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// halb with `[chaos] allow = true`, listener `front` on a fresh address
/// for pool `app` of `backends`; the node and where it listens.
pub(crate) async fn chaos_node(backends: &[SocketAddr]) -> (Halb, SocketAddr) {
    let listen = free_addr();
    let config = NodeConfig::new()
        .chaos_allowed()
        .listener("front", listen, "app")
        .pool("app", backends);
    (Halb::start(&config.to_toml()).await, listen)
}

/// Every method and path of the faults API.
const FAULT_ENDPOINTS: [(&str, &str); 3] = [
    ("GET", "/api/v1/faults"),
    ("POST", "/api/v1/faults"),
    ("DELETE", "/api/v1/faults/abc"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_is_refused_unless_chaos_is_allowed_and_the_token_is_right() {
    let a = named("a").await;
    let listen = free_addr();
    let off = NodeConfig::new()
        .listener("front", listen, "app")
        .pool("app", &[a.addr]);
    let halb = Halb::start(&off.to_toml()).await;
    let body = r#"{"pool":"app","kind":"abort","value":503,"duration":"3s"}"#;
    for (method, path) in FAULT_ENDPOINTS {
        let response = admin_request_with_body(halb.admin(), method, path, &[], body)
            .await
            .expect("admin answer");
        assert_eq!(response.status, 403, "{method} {path}: {}", response.text());
        assert!(
            response.text().contains("[chaos] allow"),
            "403 names the key: {}",
            response.text()
        );
    }
    drop(halb);

    let on = NodeConfig::new()
        .token(TOKEN)
        .chaos_allowed()
        .listener("front", free_addr(), "app")
        .pool("app", &[a.addr]);
    let halb = Halb::start(&on.to_toml()).await;
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    for (method, path) in FAULT_ENDPOINTS {
        let response = admin_request_with_body(halb.admin(), method, path, &[], body)
            .await
            .expect("admin answer");
        assert_eq!(response.status, 401, "{method} {path} without the token");
        let wrong = [("Authorization", "Bearer wrong")];
        let response = admin_request_with_body(halb.admin(), method, path, &wrong, body)
            .await
            .expect("admin answer");
        assert_eq!(response.status, 401, "{method} {path} with a wrong token");
    }

    let backend = a.addr.to_string();
    let bad_backend =
        r#"{"pool":"app","backend":"127.0.0.1:1","kind":"reset","duration":"1s"}"#.to_owned();
    let cases: Vec<(String, &str)> = vec![
        (
            r#"{"pool":"nope","kind":"reset","duration":"1s"}"#.into(),
            "pool",
        ),
        (bad_backend, "backend"),
        (
            r#"{"pool":"app","kind":"melt","duration":"1s"}"#.into(),
            "kind",
        ),
        (
            r#"{"pool":"app","kind":"abort","duration":"1s"}"#.into(),
            "value",
        ),
        (
            r#"{"pool":"app","kind":"abort","value":700,"duration":"1s"}"#.into(),
            "value",
        ),
        (
            r#"{"pool":"app","kind":"latency","value":"soon","duration":"1s"}"#.into(),
            "value",
        ),
        (
            r#"{"pool":"app","kind":"reset","duration":"61m"}"#.into(),
            "duration",
        ),
        (
            r#"{"pool":"app","kind":"reset","percent":0,"duration":"1s"}"#.into(),
            "percent",
        ),
        (
            r#"{"pool":"app","kind":"reset","percent":150,"duration":"1s"}"#.into(),
            "percent",
        ),
        (
            r#"{"pool":"app","kind":"reset","duration":"1s","colour":"red"}"#.into(),
            "colour",
        ),
        (r#"{"pool":"app","kind":"reset"}"#.into(), "duration"),
        ("not json".into(), "bad fault"),
    ];
    for (body, field) in &cases {
        let response = admin_request_with_body(halb.admin(), "POST", "/api/v1/faults", &auth, body)
            .await
            .expect("admin answer");
        assert_eq!(response.status, 400, "{body}: {}", response.text());
        let message = json(&response)["error"].as_str().unwrap_or("").to_owned();
        assert!(message.contains(field), "{body}: {message:?} names {field}");
    }

    let good = format!(
        r#"{{"pool":"app","backend":"{backend}","kind":"latency","value":"10ms","percent":25,"duration":"30s"}}"#
    );
    let response = admin_request_with_body(halb.admin(), "POST", "/api/v1/faults", &auth, &good)
        .await
        .expect("admin answer");
    assert_eq!(response.status, 201, "{}", response.text());
    let fault = json(&response);
    let id = fault["id"].as_str().expect("id").to_owned();
    assert_eq!(fault["pool"], "app");
    assert_eq!(fault["backend"], backend.as_str());
    assert_eq!(fault["kind"], "latency");
    assert_eq!(fault["value"], "10ms");
    assert_eq!(fault["percent"], 25.0);
    assert_eq!(fault["duration_s"], 30.0);
    let listed = admin_request_with_body(halb.admin(), "GET", "/api/v1/faults", &auth, "")
        .await
        .expect("admin answer");
    let listed = json(&listed)["faults"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], id.as_str());
    let remaining = listed[0]["remaining_s"].as_f64().expect("remaining_s");
    assert!(
        remaining > 20.0 && remaining <= 30.0,
        "remaining_s {remaining}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_slows_requests_until_the_fault_expires() {
    let a = named("a").await;
    let (halb, listen) = chaos_node(&[a.addr]).await;

    let id = add_fault(
        &halb,
        r#"{"pool":"app","kind":"latency","value":"200ms","duration":"2s"}"#,
    )
    .await;
    let during = requests_for(listen, Duration::from_millis(1500)).await;
    assert!(
        during.iter().all(|(status, _)| *status == 200),
        "{during:?}"
    );
    let mut times: Vec<Duration> = during.iter().map(|(_, t)| *t).collect();
    let p50 = median(&mut times);
    eprintln!("latency fault: p50 {p50:?} over {} requests", times.len());
    assert!(
        p50 >= Duration::from_millis(200),
        "p50 during the fault: {p50:?}"
    );

    // Gone by itself once its 2 s are up.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !active_faults(&halb).await.is_empty() {
        assert!(Instant::now() < deadline, "the fault did not expire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = requests_for(listen, Duration::from_millis(500)).await;
    let mut times: Vec<Duration> = after.iter().map(|(_, t)| *t).collect();
    let p50 = median(&mut times);
    eprintln!("after the fault: p50 {p50:?} over {} requests", times.len());
    assert!(
        p50 < Duration::from_millis(100),
        "p50 after the fault: {p50:?}"
    );

    let status = halb.status_json().await;
    assert_eq!(status["faults"], Value::Array(Vec::new()));
    let logs = halb.logs();
    assert!(
        logs.contains("fault started") && logs.contains("fault ended") && logs.contains(&id),
        "start and end are logged:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_answers_without_the_backend_and_metrics_agree() {
    let a = named("a").await;
    let (halb, listen) = chaos_node(&[a.addr]).await;

    let load = tokio::spawn(requests_for(listen, Duration::from_secs(5)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    add_fault(
        &halb,
        r#"{"pool":"app","kind":"abort","value":503,"percent":100,"duration":"3s"}"#,
    )
    .await;
    let status = halb.status_json().await;
    assert_eq!(
        status["faults"].as_array().map(Vec::len),
        Some(1),
        "{status}"
    );
    let seen = load.await.expect("load");
    let ok = seen.iter().filter(|(s, _)| *s == 200).count();
    let aborted = seen.iter().filter(|(s, _)| *s == 503).count();
    eprintln!("abort fault: {ok} answered 200, {aborted} answered 503");
    assert_eq!(ok + aborted, seen.len(), "only 200 and 503 answers");
    assert!(aborted > 0 && ok > 0, "{ok} ok, {aborted} aborted");
    assert_eq!(a.requests(), ok, "aborted requests never reach the backend");

    let scrape = Scrape::of(&halb, &[]).await;
    let five_xx = scrape.sum("halb_http_requests_total", &[("code", "5xx")]);
    assert_eq!(
        five_xx, aborted as f64,
        "halb's 5xx count agrees with the client"
    );
    let applied = scrape.value(
        "halb_faults_applied_total",
        &[("pool", "app"), ("kind", "abort")],
    );
    assert_eq!(applied, aborted as f64);
    assert_eq!(scrape.value("halb_faults_active", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_percent_hits_about_that_share_and_delete_ends_it_early() {
    let a = named("a").await;
    let (halb, listen) = chaos_node(&[a.addr]).await;

    let id = add_fault(
        &halb,
        r#"{"pool":"app","kind":"abort","value":500,"percent":50,"duration":"60s"}"#,
    )
    .await;
    let mut client = HttpClient::connect(listen).await;
    let mut aborted = 0;
    let total = 400;
    for _ in 0..total {
        match client.get("/", &[]).await.status {
            200 => {}
            500 => aborted += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    eprintln!("percent 50: {aborted} of {total} aborted");
    assert!(
        (total * 3 / 10..=total * 7 / 10).contains(&aborted),
        "{aborted} of {total} aborted at 50 %"
    );

    let deleted = halb
        .admin_request("DELETE", &format!("/api/v1/faults/{id}"))
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert!(active_faults(&halb).await.is_empty());
    for _ in 0..50 {
        assert_eq!(client.get("/", &[]).await.status, 200, "after DELETE");
    }
    let again = halb
        .admin_request("DELETE", &format!("/api/v1/faults/{id}"))
        .await;
    assert_eq!(again.status, 404, "{}", again.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_pool_resets_connections_during_a_fault() {
    let backend = tcp_named("t").await;
    let listen = free_addr();
    let config = NodeConfig::new()
        .chaos_allowed()
        .tcp_listener("front", listen, "db")
        .pool("db", &[backend.addr]);
    let halb = Halb::start(&config.to_toml()).await;

    let read_all = |addr| async move {
        // On loopback the reset may come before connect returns.
        let mut got = Vec::new();
        let read = match TcpStream::connect(addr).await {
            Ok(mut stream) => {
                let reading = stream.read_to_end(&mut got);
                within(Duration::from_secs(10), "a TCP answer", reading).await
            }
            Err(e) => Err(e),
        };
        (read, got)
    };
    let (read, got) = read_all(listen).await;
    assert!(read.is_ok() && got == b"t", "before: {read:?} {got:?}");

    let id = add_fault(&halb, r#"{"pool":"db","kind":"reset","duration":"30s"}"#).await;
    let before = backend.connections();
    for _ in 0..5 {
        let (read, got) = read_all(listen).await;
        let reset = matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset);
        assert!(
            reset && got.is_empty(),
            "during the fault: {read:?} {got:?}"
        );
    }
    assert_eq!(
        backend.connections(),
        before,
        "reset connections reach no backend"
    );

    let deleted = halb
        .admin_request("DELETE", &format!("/api/v1/faults/{id}"))
        .await;
    assert_eq!(deleted.status, 204);
    let (read, got) = read_all(listen).await;
    assert!(
        read.is_ok() && got == b"t",
        "after DELETE: {read:?} {got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_holds_requests_and_bandwidth_throttles_bodies() {
    let a = crate::support::backends::download(64 * 1024).await;
    let (halb, listen) = chaos_node(&[a.addr]).await;

    let started = Instant::now();
    let whole = HttpClient::connect(listen).await.get("/", &[]).await;
    let unthrottled = started.elapsed();
    assert_eq!((whole.status, whole.body.len()), (200, 64 * 1024));

    let id = add_fault(
        &halb,
        r#"{"pool":"app","kind":"bandwidth","value":32768,"duration":"30s"}"#,
    )
    .await;
    let started = Instant::now();
    let slow = HttpClient::connect(listen).await.get("/", &[]).await;
    let throttled = started.elapsed();
    eprintln!("64 KiB: {unthrottled:?} unthrottled, {throttled:?} at 32 KiB/s");
    assert_eq!((slow.status, slow.body.len()), (200, 64 * 1024));
    assert!(
        throttled >= Duration::from_millis(1500),
        "{throttled:?} at 32 KiB/s"
    );
    let deleted = halb
        .admin_request("DELETE", &format!("/api/v1/faults/{id}"))
        .await;
    assert_eq!(deleted.status, 204);

    let before = a.requests();
    add_fault(&halb, r#"{"pool":"app","kind":"timeout","duration":"2s"}"#).await;
    let held = tokio::time::timeout(
        Duration::from_secs(1),
        crate::support::client::try_get_once(listen, "/"),
    )
    .await;
    assert!(held.is_err(), "answered during a timeout fault: {held:?}");
    // When the fault ends, what it held is let go with a reset, unanswered.
    let started = Instant::now();
    let let_go = crate::support::client::try_get_once(listen, "/").await;
    assert!(
        let_go.is_err(),
        "held request answered: {:?}",
        let_go.map(|r| r.status)
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "held past the fault's end"
    );
    assert_eq!(a.requests(), before, "held requests reach no backend");
    let after = HttpClient::connect(listen).await.get("/", &[]).await;
    assert_eq!(after.status, 200, "after the fault");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_fault_hits_that_backend_only() {
    let (a, b) = (named("a").await, named("b").await);
    let (halb, listen) = chaos_node(&[a.addr, b.addr]).await;
    let body = format!(
        r#"{{"pool":"app","backend":"{}","kind":"abort","value":502,"duration":"30s"}}"#,
        b.addr
    );
    add_fault(&halb, &body).await;
    let mut client = HttpClient::connect(listen).await;
    let (mut from_a, mut aborted) = (0, 0);
    for _ in 0..100 {
        let reply = client.get("/", &[]).await;
        match (reply.status, reply.text().as_str()) {
            (200, "a") => from_a += 1,
            (502, _) => aborted += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(b.requests(), 0, "b's requests were all aborted");
    assert_eq!(a.requests(), from_a);
    assert!(
        from_a >= 30 && aborted >= 30,
        "{from_a} from a, {aborted} aborted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_alerted_and_a_reload_turning_chaos_off_ends_them() {
    let a = named("a").await;
    let webhook = crate::support::webhook::WebhookReceiver::start().await;
    let listen = free_addr();
    let config = NodeConfig::new()
        .chaos_allowed()
        .webhooks(&[webhook.url("/hook")])
        .listener("front", listen, "app")
        .pool("app", &[a.addr]);
    let halb = Halb::start(&config.to_toml()).await;
    let since = Instant::now();
    let id = add_fault(
        &halb,
        r#"{"pool":"app","kind":"abort","value":503,"duration":"10m"}"#,
    )
    .await;
    let started = webhook
        .wait_for(since, Duration::from_secs(5), "fault_started", |d| {
            d.event() == "fault_started"
        })
        .await;
    assert_eq!(started.json["id"], id.as_str());
    assert_eq!(started.json["pool"], "app");
    assert_eq!(started.json["kind"], "abort");
    assert_eq!(started.json["value"], "503");
    assert_eq!(started.json["severity"], "warning");
    assert_eq!(get_status(listen).await, 503);

    // The same config without [chaos]: the reload ends the fault at once.
    let off = NodeConfig::new()
        .admin_bind(config.admin)
        .webhooks(&[webhook.url("/hook")])
        .listener("front", listen, "app")
        .pool("app", &[a.addr]);
    halb.rewrite_config(&off.to_toml());
    let (status, outcome) = crate::support::reload::reload_via_api(&halb, &[]).await;
    assert_eq!(status, 200, "{outcome}");
    let ended = webhook
        .wait_for(since, Duration::from_secs(5), "fault_ended", |d| {
            d.event() == "fault_ended"
        })
        .await;
    assert_eq!(ended.json["id"], id.as_str());
    assert_eq!(ended.json["reason"], "chaos disallowed");
    assert_eq!(
        get_status(listen).await,
        200,
        "the fault ended with the reload"
    );
    let refused = halb.admin_request("GET", "/api/v1/faults").await;
    assert_eq!(refused.status, 403);
}

async fn get_status(listen: SocketAddr) -> u16 {
    HttpClient::connect(listen).await.get("/", &[]).await.status
}
