//! Active health checks (issue 3, check 1): a backend that dies abruptly
//! under load costs no client request, is marked down within
//! `fall × interval + timeout`, and gets traffic again within
//! `rise × interval` plus one interval of coming back.
//!
//! Run twice: with outlier detection at its defaults (on, 5 failures, 30 s),
//! where the dead backend's connect failures eject it before the checks mark
//! it down and the bound for its return must hold all the same
//! (Envoy, for one, lifts an ejection when an active check passes); and with
//! outlier detection off, the checks alone.

use std::time::{Duration, Instant};

use crate::support::backends::{addrs, delayed};
use crate::support::load::{assert_none_failed, Load};
use crate::support::status::{backend_entry, wait_for_state, wait_until_up};
use crate::support::{exclusive, BalancerConfig, Halb};

const INTERVAL: Duration = Duration::from_millis(100);
const CHECK_TIMEOUT: Duration = Duration::from_millis(100);
const RISE: u32 = 2;
const FALL: u32 = 2;
/// Added to every bound the issue sets: the machine is shared and busy, and
/// the status API is polled every 10 ms (plus its own answer time).
const SLACK: Duration = Duration::from_millis(300);

/// Waits, polling every 5 ms, until `count()` exceeds `before`; returns how
/// long that took, or `None` after `limit`.
async fn until_more(before: usize, count: impl Fn() -> usize, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if count() > before {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_costs_no_request_is_marked_down_and_comes_back() {
    killed_backend(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_comes_back_by_checks_alone_without_outlier_detection() {
    killed_backend(false).await;
}

/// Kills one of three backends under load, then restarts it on its port.
async fn killed_backend(outlier_detection: bool) {
    let _alone = exclusive().await;
    // A few milliseconds per answer, so that requests are in flight on the
    // victim when it dies.
    let a = delayed("a", Duration::from_millis(3)).await;
    let b = delayed("b", Duration::from_millis(3)).await;
    let mut victim = delayed("victim", Duration::from_millis(3)).await;
    let mut config =
        BalancerConfig::http(&addrs(&[&a, &b, &victim])).http_checks("100ms", "100ms", RISE, FALL);
    if !outlier_detection {
        config = config.outlier_key("consecutive_failures", "0");
    }
    let halb = Halb::start(&config.to_toml()).await;
    wait_until_up(&halb, &addrs(&[&a, &b, &victim])).await;

    let load = Load::start(config.listen, "/", 6, Duration::from_millis(2));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(victim.requests() > 0, "the victim got no traffic while up");

    let killed = Instant::now();
    victim.stop().await;
    wait_for_state(&halb, victim.addr, "down", Duration::from_secs(10)).await;
    let down_after = killed.elapsed();
    let down_bound = INTERVAL * FALL + CHECK_TIMEOUT;
    let status = halb.status_json().await;
    let entry = backend_entry(&status, victim.addr).clone();

    // Some load while it is down, then bring it back on the same port.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let served_before = victim.requests();
    let restarted = Instant::now();
    victim.restart().await;
    let back_after = until_more(served_before, || victim.requests(), Duration::from_secs(40))
        .await
        .map(|_| restarted.elapsed());
    let back_bound = INTERVAL * RISE + INTERVAL;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let outcomes = load.finish().await;
    let status_after = halb.status_json().await;

    assert_none_failed(&outcomes);
    assert!(
        down_after <= down_bound + SLACK,
        "marked down {down_after:?} after the kill; fall × interval + timeout = {down_bound:?} \
         (+{SLACK:?} slack)"
    );
    assert!(
        entry["check"]
            .as_str()
            .is_some_and(|c| c.starts_with("failed: connect failed")),
        "the down backend's last check should say the connection failed: {entry:#}"
    );
    let back_after = back_after.unwrap_or_else(|| {
        panic!(
            "the restarted backend got no traffic within 40 s; its status: {:#}",
            backend_entry(&status_after, victim.addr)
        )
    });
    assert!(
        back_after <= back_bound + SLACK,
        "traffic reached the restarted backend {back_after:?} after its restart; \
         rise × interval + interval = {back_bound:?} (+{SLACK:?} slack); status: {:#}",
        backend_entry(&status_after, victim.addr)
    );
    assert_eq!(backend_entry(&status_after, victim.addr)["state"], "up");
}
