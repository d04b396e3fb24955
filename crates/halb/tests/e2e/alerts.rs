//! Webhook alerts (issue 4): a JSON POST to every webhook on backend and
//! pool state changes and on refused reloads, each webhook served on its
//! own so a dead one delays no other, and traffic never waits for any.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::backends::{hang, named, refused, tcp_echo};
use crate::support::client::answers_on_new_connections;
use crate::support::node_config::NodeConfig;
use crate::support::reload::{reload_via_api, strings};
use crate::support::status::wait_until_up;
use crate::support::webhook::{Delivery, WebhookReceiver};
use crate::support::{exclusive, free_addr, Halb};

/// A live webhook hears of a change within this. Checks run every 100 ms
/// and `fall = 1`; the rest is slack for a busy machine, well below the
/// 2 s each dead webhook below could cost if it were waited for.
const ALERTED_WITHIN: Duration = Duration::from_millis(1800);

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
fn is_rfc3339_utc(time: &str) -> bool {
    let bytes = time.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|part| part.iter().all(u8::is_ascii_digit))
    };
    bytes.len() >= 20
        && digits(0..4)
        && bytes[4] == b'-'
        && digits(5..7)
        && bytes[7] == b'-'
        && digits(8..10)
        && bytes[10] == b'T'
        && digits(11..13)
        && bytes[13] == b':'
        && digits(14..16)
        && bytes[16] == b':'
        && digits(17..19)
        && time.ends_with('Z')
}

/// What every alert carries: a POST of JSON to the configured path, with
/// when, where and how bad.
fn assert_well_formed(delivery: &Delivery, severity: &str) {
    let json = &delivery.json;
    assert_eq!(delivery.method, "POST", "{}", delivery.raw);
    assert_eq!(delivery.path, "/hook", "{}", delivery.raw);
    assert!(
        delivery
            .content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("application/json")),
        "content type {:?}",
        delivery.content_type
    );
    assert!(
        json["time"].as_str().is_some_and(is_rfc3339_utc),
        "time: {}",
        delivery.raw
    );
    assert!(
        json["node"].as_str().is_some_and(|n| !n.is_empty()),
        "node: {}",
        delivery.raw
    );
    assert_eq!(json["severity"], severity, "{}", delivery.raw);
}

fn is_event(delivery: &Delivery, event: &str, backend: Option<&str>) -> bool {
    delivery.event() == event
        && match backend {
            Some(backend) => delivery.json["backend"] == backend,
            None => true,
        }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_down_and_up_reach_a_webhook_listed_after_dead_ones() {
    let _machine = exclusive().await;
    let receiver = WebhookReceiver::start().await;
    // Listed first: a webhook that refuses connections, and one that
    // accepts the POST and never answers.
    let silent_webhook = hang().await;
    let webhooks = [
        format!("http://{}/hook", refused()),
        format!("http://{}/hook", silent_webhook.addr),
        receiver.url("/hook"),
    ];
    let (a, mut b) = (named("a").await, named("b").await);
    let front = free_addr();
    let config = NodeConfig::new()
        .webhooks(&webhooks)
        .alerts_key("timeout", "\"2s\"")
        .alerts_key("max_attempts", "5")
        .listener("front", front, "app")
        .pool("app", &[a.addr, b.addr])
        .http_checks("app", "100ms", "500ms", 1, 1);
    let started = Instant::now();
    let halb = Halb::start(&config.to_toml()).await;
    wait_until_up(&halb, &[a.addr, b.addr]).await;
    // Both came up at start: each is an alert, and neither waited on the
    // dead webhooks.
    for backend in [a.addr, b.addr] {
        let up = receiver
            .wait_for(
                started,
                Duration::from_secs(10),
                "backend_up at start",
                |d| is_event(d, "backend_up", Some(&backend.to_string())),
            )
            .await;
        assert!(
            up.arrived.duration_since(started) < Duration::from_secs(5),
            "backend_up for {backend} came {:?} after start",
            up.arrived.duration_since(started)
        );
    }

    let killed = Instant::now();
    b.stop().await;
    let down = receiver
        .wait_for(killed, Duration::from_secs(10), "backend_down for b", |d| {
            is_event(d, "backend_down", Some(&b.addr.to_string()))
        })
        .await;
    let took = down.arrived.duration_since(killed);
    assert!(
        took <= ALERTED_WITHIN,
        "backend_down came {took:?} after b died"
    );
    assert_well_formed(&down, "warning");
    assert_eq!(down.json["pool"], "app", "{}", down.raw);
    assert!(
        down.json["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "backend_down without a reason: {}",
        down.raw
    );
    // Traffic does not wait for alerts: a answers every request.
    assert_eq!(answers_on_new_connections(front, 10).await, ["a"; 10]);

    let restarted = Instant::now();
    b.restart().await;
    let up = receiver
        .wait_for(
            restarted,
            Duration::from_secs(10),
            "backend_up for b",
            |d| is_event(d, "backend_up", Some(&b.addr.to_string())),
        )
        .await;
    let took = up.arrived.duration_since(restarted);
    assert!(
        took <= ALERTED_WITHIN,
        "backend_up came {took:?} after b returned"
    );
    assert_well_formed(&up, "info");
    assert_eq!(up.json["pool"], "app", "{}", up.raw);
    // a stayed up throughout: no alert about it since start.
    let about_a: Vec<String> = receiver
        .deliveries()
        .iter()
        .filter(|d| d.arrived >= killed && d.json["backend"] == a.addr.to_string())
        .map(|d| d.raw.clone())
        .collect();
    assert!(
        about_a.is_empty(),
        "alerts about a, which never changed: {about_a:#?}"
    );
    assert!(
        silent_webhook.requests() > 0,
        "halb never tried the silent webhook: the test proves nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_without_usable_backends_is_critical() {
    let _machine = exclusive().await;
    let receiver = WebhookReceiver::start().await;
    let mut only = named("only").await;
    let config = NodeConfig::new()
        .webhooks(&[receiver.url("/hook")])
        .listener("front", free_addr(), "app")
        .pool("app", &[only.addr])
        .http_checks("app", "100ms", "500ms", 1, 1);
    let halb = Halb::start(&config.to_toml()).await;
    wait_until_up(&halb, &[only.addr]).await;

    let killed = Instant::now();
    only.stop().await;
    let unavailable = receiver
        .wait_for(killed, Duration::from_secs(10), "pool_unavailable", |d| {
            is_event(d, "pool_unavailable", None)
        })
        .await;
    assert_well_formed(&unavailable, "critical");
    assert_eq!(unavailable.json["pool"], "app", "{}", unavailable.raw);
    let took = unavailable.arrived.duration_since(killed);
    assert!(
        took <= ALERTED_WITHIN,
        "pool_unavailable came {took:?} after the kill"
    );

    let restarted = Instant::now();
    only.restart().await;
    let available = receiver
        .wait_for(restarted, Duration::from_secs(10), "pool_available", |d| {
            is_event(d, "pool_available", None)
        })
        .await;
    assert_well_formed(&available, "info");
    assert_eq!(available.json["pool"], "app", "{}", available.raw);

    // In order: down, unavailable, up, available, each once.
    let events: Vec<String> = receiver
        .deliveries()
        .iter()
        .filter(|d| d.arrived >= killed)
        .map(|d| d.event().to_owned())
        .collect();
    assert_eq!(
        events,
        [
            "backend_down",
            "pool_unavailable",
            "backend_up",
            "pool_available"
        ],
        "{:#?}",
        receiver.deliveries()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reload_is_alerted_with_its_errors() {
    let receiver = WebhookReceiver::start().await;
    let a = named("a").await;
    let front = free_addr();
    let good = NodeConfig::new()
        .webhooks(&[format!("http://{}/hook", refused()), receiver.url("/hook")])
        .listener("front", front, "app")
        .pool("app", &[a.addr]);
    let halb = Halb::start(&good.to_toml()).await;
    let bad = good.to_toml().replace("pool = \"app\"", "pool = \"nope\"");

    let sent = Instant::now();
    halb.rewrite_config(&bad);
    let (code, outcome) = reload_via_api(&halb, &[]).await;
    assert_eq!(code, 400, "{outcome:#}");
    let errors = strings(&outcome["errors"]);
    assert!(!errors.is_empty(), "{outcome:#}");
    let alert = receiver
        .wait_for(sent, Duration::from_secs(5), "reload_failed (API)", |d| {
            is_event(d, "reload_failed", None)
        })
        .await;
    assert_well_formed(&alert, "warning");
    assert_eq!(strings(&alert.json["errors"]), errors, "{}", alert.raw);
    assert!(
        errors.iter().any(|e| e.contains("listener[0].pool")),
        "{errors:#?}"
    );

    let signalled = Instant::now();
    halb.signal("HUP");
    let alert = receiver
        .wait_for(
            signalled,
            Duration::from_secs(5),
            "reload_failed (SIGHUP)",
            |d| is_event(d, "reload_failed", None),
        )
        .await;
    assert_eq!(strings(&alert.json["errors"]), errors, "{}", alert.raw);

    // The refused reloads changed nothing, and a good one sends no alert.
    assert_eq!(answers_on_new_connections(front, 3).await, ["a"; 3]);
    let before = receiver.deliveries().len();
    halb.rewrite_config(&good.to_toml());
    let (code, outcome) = reload_via_api(&halb, &[]).await;
    assert_eq!(code, 200, "{outcome:#}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after: Vec<Value> = receiver.deliveries()[before..]
        .iter()
        .map(|d| d.json.clone())
        .collect();
    assert!(after.is_empty(), "alerts after a good reload: {after:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_can_add_a_webhook() {
    let first = WebhookReceiver::start().await;
    let second = WebhookReceiver::start().await;
    let a = named("a").await;
    let base = NodeConfig::new()
        .listener("front", free_addr(), "app")
        .pool("app", &[a.addr]);
    let one = base.clone().webhooks(&[first.url("/hook")]);
    let both = base.webhooks(&[first.url("/hook"), second.url("/hook")]);
    let halb = Halb::start(&one.to_toml()).await;

    halb.rewrite_config(&both.to_toml());
    let (code, outcome) = reload_via_api(&halb, &[]).await;
    assert_eq!(code, 200, "{outcome:#}");
    // A refused reload is the alert to look for.
    let sent = Instant::now();
    halb.rewrite_config(&both.to_toml().replace("round_robin", "round_robbin"));
    let (code, outcome) = reload_via_api(&halb, &[]).await;
    assert_eq!(code, 400, "{outcome:#}");
    for receiver in [&first, &second] {
        receiver
            .wait_for(sent, Duration::from_secs(5), "reload_failed", |d| {
                is_event(d, "reload_failed", None)
            })
            .await;
    }
}

/// One state change of one backend is one alert, also when a reload
/// changed its pool while a TCP connection through the old pool was open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_state_change_is_one_alert_after_a_pool_change_under_an_open_tcp_connection() {
    let _machine = exclusive().await;
    let receiver = WebhookReceiver::start().await;
    let (mut db1, db2, db3) = (tcp_echo().await, tcp_echo().await, tcp_echo().await);
    let front = free_addr();
    let config = |backends: &[std::net::SocketAddr]| {
        NodeConfig::new()
            .webhooks(&[receiver.url("/hook")])
            .tcp_listener("db", front, "db")
            .pool("db", backends)
            .tcp_checks("db", "100ms", "500ms", 1, 1)
            .to_toml()
    };
    let halb = Halb::start(&config(&[db1.addr, db2.addr])).await;
    wait_until_up(&halb, &[db1.addr, db2.addr]).await;
    let _open = tokio::net::TcpStream::connect(front)
        .await
        .expect("connect to the TCP listener");
    tokio::time::sleep(Duration::from_millis(200)).await;

    halb.rewrite_config(&config(&[db1.addr, db2.addr, db3.addr]));
    let (code, outcome) = reload_via_api(&halb, &[]).await;
    assert_eq!(code, 200, "{outcome:#}");
    wait_until_up(&halb, &[db3.addr]).await;

    let killed = Instant::now();
    db1.stop().await;
    receiver
        .wait_for(
            killed,
            Duration::from_secs(5),
            "backend_down for db1",
            |d| is_event(d, "backend_down", Some(&db1.addr.to_string())),
        )
        .await;
    // Checks run every 100 ms: a second checker would have spoken by now.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let downs: Vec<String> = receiver
        .deliveries()
        .iter()
        .filter(|d| d.arrived >= killed && d.json["backend"] == db1.addr.to_string())
        .map(|d| d.raw.clone())
        .collect();
    assert_eq!(downs.len(), 1, "alerts for one death of db1: {downs:#?}");
}
