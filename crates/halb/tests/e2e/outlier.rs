//! Passive outlier detection (issue 3, check 3): a backend answering 500 is
//! ejected, gets traffic again once the ejection is over, and
//! `max_ejection_percent` caps how much of a pool is ejected at once. The
//! 500s themselves still reach the client: they are answers, not retried.

use std::time::{Duration, Instant};

use crate::support::backends::{addrs, named};
use crate::support::status::{backend_entry, number};
use crate::support::{exclusive, BalancerConfig, Halb, HttpClient};

/// Added to the ejection time: the machine is shared and busy.
const SLACK: Duration = Duration::from_millis(400);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_answering_500_is_ejected_and_back_after_the_ejection() {
    let _alone = exclusive().await;
    let (a, b, bad) = (named("a").await, named("b").await, named("bad").await);
    bad.force_status(Some(500));
    let base_ejection = Duration::from_secs(1);
    let config = BalancerConfig::http(&addrs(&[&a, &b, &bad]))
        .outlier_key("consecutive_failures", "3")
        .outlier_key("base_ejection", "\"1s\"");
    let halb = Halb::start(&config.to_toml()).await;
    let mut client = HttpClient::connect(config.listen).await;

    // Round robin: every third GET reaches the bad backend until it is
    // ejected after its third 500 in a row.
    let mut statuses = Vec::new();
    while bad.requests() < 3 {
        statuses.push(client.get("/", &[]).await.status);
        assert!(
            statuses.len() < 30,
            "the bad backend got too little traffic"
        );
    }
    let ejected_at = Instant::now();
    let status = halb.status_json().await;
    let entry = backend_entry(&status, bad.addr).clone();

    // During the ejection every GET is served by a or b.
    let mut during = Vec::new();
    while ejected_at.elapsed() < base_ejection - Duration::from_millis(200) {
        during.push(client.get("/", &[]).await.status);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let bad_during = bad.requests();

    // After it, the bad backend gets a request again (and fails it).
    let mut back_after = None;
    while ejected_at.elapsed() < Duration::from_secs(10) {
        statuses.push(client.get("/", &[]).await.status);
        if bad.requests() > bad_during {
            back_after = Some(ejected_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    assert_eq!(
        statuses.iter().filter(|s| **s == 500).count(),
        bad.requests(),
        "each 500 reaches the client once, unretried: {statuses:?}"
    );
    assert_eq!(entry["state"], "ejected", "{entry:#}");
    assert!(number(&entry, "ejections") >= 1, "{entry:#}");
    assert_eq!(bad_during, 3, "requests reached the ejected backend");
    assert!(
        during.iter().all(|s| *s == 200) && during.len() > 10,
        "GETs during the ejection: {during:?}"
    );
    let back_after = back_after.expect("the bad backend got no traffic within 10 s");
    assert!(
        back_after <= base_ejection + SLACK,
        "the ejected backend got traffic again {back_after:?} after its ejection; \
         base_ejection = {base_ejection:?} (+{SLACK:?} slack)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_ejection_percent_caps_the_ejected_share_of_a_pool() {
    let good = named("good").await;
    let bad = [
        named("bad1").await,
        named("bad2").await,
        named("bad3").await,
    ];
    for backend in &bad {
        backend.force_status(Some(500));
    }
    let config = BalancerConfig::http(&addrs(&[&good, &bad[0], &bad[1], &bad[2]]))
        .outlier_key("consecutive_failures", "2")
        .outlier_key("base_ejection", "\"30s\"")
        .outlier_key("max_ejection_percent", "50");
    let halb = Halb::start(&config.to_toml()).await;
    let mut client = HttpClient::connect(config.listen).await;

    let mut most_ejected = 0;
    let mut statuses = Vec::new();
    for _ in 0..60 {
        statuses.push(client.get("/", &[]).await.status);
        let status = halb.status_json().await;
        let ejected = bad
            .iter()
            .filter(|b| backend_entry(&status, b.addr)["state"] == "ejected")
            .count();
        most_ejected = most_ejected.max(ejected);
    }
    let status = halb.status_json().await;
    let states: Vec<String> = bad
        .iter()
        .map(|b| backend_entry(&status, b.addr)["state"].to_string())
        .collect();
    let ejections: u64 = bad
        .iter()
        .map(|b| number(backend_entry(&status, b.addr), "ejections"))
        .sum();

    assert_eq!(
        backend_entry(&status, good.addr)["state"],
        "up",
        "{status:#}"
    );
    assert!(
        most_ejected <= 2,
        "{most_ejected} of 4 backends were ejected at once; max_ejection_percent = 50"
    );
    assert_eq!(
        states.iter().filter(|s| *s == "\"ejected\"").count(),
        2,
        "two of the three failing backends are ejected, the third keeps serving: {states:?}"
    );
    assert_eq!(ejections, 2, "{status:#}");
    let kept = bad
        .iter()
        .find(|b| backend_entry(&status, b.addr)["state"] == "up")
        .expect("a failing backend left in");
    assert!(
        kept.requests() > 10,
        "the failing backend that may not be ejected keeps its share: {} requests",
        kept.requests()
    );
    assert!(
        halb.logs().contains("max_ejection_percent is reached"),
        "halb should say why it did not eject: {}",
        halb.logs()
    );
}
