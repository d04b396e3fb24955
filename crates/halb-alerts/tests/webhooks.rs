//! Alerts delivered to real webhook receivers on 127.0.0.1: payloads,
//! retries, a dead webhook next to a live one, and the non-blocking queue.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use halb_alerts::{Alert, AlertStats, Alerter, QUEUE_CAPACITY, WEBHOOK_QUEUE_CAPACITY};
use serde_json::json;
use support::{eventually, refused_port, Answer, Receiver};

fn config(webhooks: Vec<String>, max_attempts: u32) -> halb_config::Alerts {
    halb_config::Alerts {
        webhooks,
        timeout: Duration::from_secs(2),
        max_attempts,
    }
}

fn backend() -> SocketAddr {
    "127.0.0.1:9001".parse().unwrap()
}

fn backend_down() -> Alert {
    Alert::BackendDown {
        pool: "app".into(),
        backend: backend(),
        reason: "connect failed: connection refused".into(),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`
fn is_rfc3339_utc(time: &str) -> bool {
    let shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    time.len() == shape.len()
        && time.chars().zip(shape.chars()).all(|(c, s)| match s {
            'd' => c.is_ascii_digit(),
            _ => c == s,
        })
}

#[tokio::test]
async fn every_alert_arrives_as_json_with_its_fields() {
    let mut receiver = Receiver::start(Answer::Ok).await;
    let alerter = Alerter::new(&config(vec![receiver.url("/hooks/halb?team=ops")], 3));
    let alerts = [
        (
            backend_down(),
            json!({"event": "backend_down", "pool": "app", "backend": "127.0.0.1:9001",
                   "reason": "connect failed: connection refused", "severity": "warning"}),
        ),
        (
            Alert::BackendUp {
                pool: "app".into(),
                backend: backend(),
            },
            json!({"event": "backend_up", "pool": "app", "backend": "127.0.0.1:9001",
                   "severity": "info"}),
        ),
        (
            Alert::PoolUnavailable { pool: "app".into() },
            json!({"event": "pool_unavailable", "pool": "app", "severity": "critical"}),
        ),
        (
            Alert::PoolAvailable { pool: "app".into() },
            json!({"event": "pool_available", "pool": "app", "severity": "info"}),
        ),
        (
            Alert::ReloadFailed {
                errors: vec![
                    "pools[0].backends[1].address: invalid socket address".into(),
                    "listeners[0].pool: no pool named `ap`".into(),
                ],
            },
            json!({"event": "reload_failed", "severity": "warning", "errors": [
                "pools[0].backends[1].address: invalid socket address",
                "listeners[0].pool: no pool named `ap`"]}),
        ),
    ];
    let expected_node = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|n| n.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    for (alert, _) in &alerts {
        alerter.send(alert.clone());
    }
    // One worker per webhook delivers in order.
    for (_, expected) in alerts {
        let received = receiver.next(Duration::from_secs(5)).await;
        assert_eq!(received.method, "POST");
        assert_eq!(received.path, "/hooks/halb?team=ops");
        assert_eq!(received.host, receiver.addr.to_string());
        assert_eq!(received.content_type, "application/json");
        let mut json = received.json;
        let fields = json.as_object_mut().unwrap();
        let time = fields.remove("time").expect("time field");
        assert!(is_rfc3339_utc(time.as_str().unwrap()), "{time}");
        assert_eq!(
            fields.remove("node").expect("node field"),
            expected_node.as_str()
        );
        assert_eq!(json, expected);
    }
    eventually(Duration::from_secs(2), "5 delivered", || {
        alerter.stats().delivered == 5
    })
    .await;
    assert_eq!(
        alerter.stats(),
        AlertStats {
            delivered: 5,
            failed: 0,
            dropped: 0
        }
    );
}

#[tokio::test]
async fn failed_attempts_are_retried_until_a_2xx() {
    let mut receiver = Receiver::start(Answer::FailFirst(2)).await;
    let alerter = Alerter::new(&config(vec![receiver.url("/")], 5));
    let started = Instant::now();
    alerter.send(backend_down());
    for _ in 0..3 {
        let received = receiver.next(Duration::from_secs(5)).await;
        assert_eq!(received.json["event"], "backend_down");
    }
    eventually(Duration::from_secs(2), "delivered", || {
        alerter.stats().delivered == 1
    })
    .await;
    // Two backoffs: about 200 ms then 400 ms, each at least 75 % of that.
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(receiver.hits(), 3);
    assert_eq!(alerter.stats().failed, 0);
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    let mut receiver = Receiver::start(Answer::Status(404)).await;
    let alerter = Alerter::new(&config(vec![receiver.url("/wrong")], 5));
    alerter.send(backend_down());
    receiver.next(Duration::from_secs(5)).await;
    eventually(Duration::from_secs(2), "failed", || {
        alerter.stats().failed == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.hits(), 1);
    assert_eq!(alerter.stats().delivered, 0);
}

#[tokio::test]
async fn a_dead_webhook_neither_delays_a_live_one_nor_is_retried_forever() {
    let (dead, _reserved) = refused_port();
    let mut live = Receiver::start(Answer::Ok).await;
    let alerter = Alerter::new(&config(
        vec![format!("http://{dead}/hook"), live.url("/hook")],
        3,
    ));
    let started = Instant::now();
    alerter.send(Alert::PoolUnavailable { pool: "app".into() });
    live.next(Duration::from_secs(1)).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    // The dead one: 3 refused attempts with about 200 + 400 ms between.
    eventually(Duration::from_secs(5), "dead webhook given up", || {
        alerter.stats().failed == 1
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
    // A later alert still reaches the live webhook promptly.
    let again = Instant::now();
    alerter.send(Alert::PoolAvailable { pool: "app".into() });
    assert_eq!(
        live.next(Duration::from_secs(1)).await.json["event"],
        "pool_available"
    );
    assert!(again.elapsed() < Duration::from_secs(1));
    eventually(Duration::from_secs(5), "second alert settled", || {
        alerter.stats()
            == AlertStats {
                delivered: 2,
                failed: 2,
                dropped: 0,
            }
    })
    .await;
}

#[tokio::test]
async fn a_hanging_webhook_never_blocks_send() {
    let mut receiver = Receiver::start(Answer::Hang).await;
    let alerter = Alerter::new(&config(vec![receiver.url("/")], 5));
    alerter.send(backend_down());
    receiver.next(Duration::from_secs(5)).await; // the worker is now stuck on it
    let started = Instant::now();
    for _ in 0..100 {
        alerter.send(backend_down());
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(50),
        "100 sends took {elapsed:?}"
    );
    assert_eq!(alerter.stats(), AlertStats::default());
}

#[tokio::test]
async fn a_full_queue_drops_and_counts() {
    let receiver = Receiver::start(Answer::Hang).await;
    let alerter = Alerter::new(&config(vec![receiver.url("/")], 5));
    // On this single-threaded runtime nothing else runs until the test
    // awaits, so the fan-out task cannot drain the queue meanwhile.
    for _ in 0..QUEUE_CAPACITY + 10 {
        alerter.send(backend_down());
    }
    assert_eq!(alerter.stats().dropped, 10);
    // Then the webhook's own queue overflows: its worker is stuck on the
    // first alert (maybe), WEBHOOK_QUEUE_CAPACITY wait, the rest are dropped.
    let at_least = (10 + QUEUE_CAPACITY - WEBHOOK_QUEUE_CAPACITY - 1) as u64;
    eventually(
        Duration::from_secs(5),
        "webhook queue overflow counted",
        || alerter.stats().dropped >= at_least,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = alerter.stats();
    assert!(stats.dropped <= at_least + 1, "{stats:?}");
    assert_eq!((stats.delivered, stats.failed), (0, 0));
}

#[tokio::test]
async fn clones_and_reconfigured_alerters_share_counters() {
    let mut first = Receiver::start(Answer::Ok).await;
    let mut second = Receiver::start(Answer::Ok).await;
    let alerter = Alerter::new(&config(vec![first.url("/")], 1));
    alerter.clone().send(backend_down());
    first.next(Duration::from_secs(5)).await;
    let reloaded = alerter.reconfigured(&config(vec![second.url("/")], 1));
    drop(alerter);
    reloaded.send(backend_down());
    second.next(Duration::from_secs(5)).await;
    eventually(Duration::from_secs(2), "both delivered", || {
        reloaded.stats().delivered == 2
    })
    .await;
}

#[test]
fn without_webhooks_the_alerter_is_a_no_op_even_outside_a_runtime() {
    let alerter = Alerter::new(&halb_config::Alerts::default());
    assert!(!alerter.is_enabled());
    for _ in 0..QUEUE_CAPACITY * 2 {
        alerter.send(backend_down());
    }
    assert_eq!(alerter.stats(), AlertStats::default());
    // Unparseable URLs are skipped, not fatal.
    let alerter = Alerter::new(&config(vec!["ftp://example.com/".into()], 3));
    assert!(!alerter.is_enabled());
    assert!(!Alerter::disabled().is_enabled());
}
