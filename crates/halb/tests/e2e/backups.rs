//! Backup backends and total outages (issue 3, check 5): backups serve only
//! while no primary is usable and stop getting new requests once a primary
//! is back; with every backend down halb answers 503 at once, and the first
//! success comes within one check interval of a backend returning.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::backends::{addrs, delayed, Backend};
use crate::support::load::{assert_none_failed, Load};
use crate::support::status::{backend_entry, number, state_of, wait_for_state, wait_until_up};
use crate::support::{exclusive, BalancerConfig, Halb, HttpClient};

const INTERVAL: Duration = Duration::from_millis(100);
/// Added to the bounds: the machine is shared and busy.
const SLACK: Duration = Duration::from_millis(300);

async fn backend(name: &str) -> Backend {
    delayed(name, Duration::from_millis(2)).await
}

fn total(backends: &[&Backend]) -> usize {
    backends.iter().map(|b| b.requests()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_serve_only_while_every_primary_is_down() {
    let _alone = exclusive().await;
    let (mut p1, mut p2) = (backend("p1").await, backend("p2").await);
    let (k1, k2) = (backend("k1").await, backend("k2").await);
    let config = BalancerConfig::http(&addrs(&[&p1, &p2]))
        .backups(&addrs(&[&k1, &k2]))
        .http_checks("100ms", "100ms", 2, 2);
    let halb = Halb::start(&config.to_toml()).await;
    wait_until_up(&halb, &addrs(&[&p1, &p2, &k1, &k2])).await;

    let load = Load::start(config.listen, "/", 3, Duration::from_millis(3));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let backups_while_primaries_up = total(&[&k1, &k2]);

    p1.stop().await;
    p2.stop().await;
    for primary in [&p1, &p2] {
        wait_for_state(&halb, primary.addr, "down", Duration::from_secs(10)).await;
    }
    let backups_at_outage = total(&[&k1, &k2]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let backups_after_outage = total(&[&k1, &k2]);

    p1.restart().await;
    p2.restart().await;
    let primaries = [p1.addr, p2.addr];
    let first_up = first_up(&halb, &primaries, Duration::from_secs(40)).await;
    // A request picked just before the primary came up may still arrive.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let backups_at_recovery = total(&[&k1, &k2]);
    let primaries_at_recovery = total(&[&p1, &p2]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let backups_later = total(&[&k1, &k2]);
    let primaries_later = total(&[&p1, &p2]);
    let outcomes = load.finish().await;
    let status = halb.status_json().await;

    assert_none_failed(&outcomes);
    assert_eq!(
        backups_while_primaries_up, 0,
        "backups got traffic while primaries were up"
    );
    assert!(
        backups_after_outage > backups_at_outage,
        "backups did not serve while every primary was down"
    );
    assert_eq!(
        backups_later, backups_at_recovery,
        "backups kept getting requests after primary {first_up} was back up: {status:#}"
    );
    assert!(
        primaries_later > primaries_at_recovery,
        "the primaries got no traffic once back: {status:#}"
    );
}

/// Polls until one of `addresses` passes its checks again (its state is
/// no longer `down`); returns it.
async fn first_up(halb: &Halb, addresses: &[SocketAddr], limit: Duration) -> SocketAddr {
    let started = Instant::now();
    loop {
        let status = halb.status_json().await;
        if let Some(up) = addresses
            .iter()
            .find(|a| backend_entry(&status, **a)["state"] != "down")
        {
            return *up;
        }
        assert!(
            started.elapsed() < limit,
            "none of {addresses:?} came back up within {limit:?}: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_backend_down_503_comes_at_once_and_the_first_success_within_an_interval() {
    let _alone = exclusive().await;
    let (mut p1, mut p2) = (backend("p1").await, backend("p2").await);
    let mut k1 = backend("k1").await;
    let config = BalancerConfig::http(&addrs(&[&p1, &p2]))
        .backups(&[k1.addr])
        .pool_key("connect_timeout", "\"1s\"")
        .http_checks("100ms", "100ms", 2, 2);
    let halb = Halb::start(&config.to_toml()).await;
    wait_until_up(&halb, &addrs(&[&p1, &p2, &k1])).await;

    for backend in [&mut p1, &mut p2, &mut k1] {
        backend.stop().await;
    }
    for address in addrs(&[&p1, &p2, &k1]) {
        wait_for_state(&halb, address, "down", Duration::from_secs(10)).await;
    }
    let attempts_before: u64 = {
        let status = halb.status_json().await;
        addrs(&[&p1, &p2, &k1])
            .iter()
            .map(|a| number(backend_entry(&status, *a), "requests"))
            .sum()
    };
    let mut client = HttpClient::connect(config.listen).await;
    let mut outage = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        let reply = client.get("/", &[]).await;
        outage.push((reply.status, started.elapsed()));
    }
    let attempts_after: u64 = {
        let status = halb.status_json().await;
        addrs(&[&p1, &p2, &k1])
            .iter()
            .map(|a| number(backend_entry(&status, *a), "requests"))
            .sum()
    };

    let returned = Instant::now();
    p1.restart().await;
    let mut waiting = Vec::new();
    let first_success = loop {
        let reply = client.get("/", &[]).await;
        if reply.status == 200 {
            break returned.elapsed();
        }
        waiting.push(reply.status);
        assert!(
            returned.elapsed() < Duration::from_secs(10),
            "no success within 10 s of a backend returning: {waiting:?}; state {}",
            state_of(&halb, p1.addr).await
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };

    assert!(
        outage.iter().all(|(status, _)| *status == 503),
        "with every backend down: {outage:?}"
    );
    // "At once": no connect attempt, no timeout; 100 ms is far below the
    // 1 s connect timeout, 50 ms more is slack for a busy machine.
    let slowest = outage.iter().map(|(_, took)| *took).max().expect("replies");
    assert!(
        slowest < Duration::from_millis(150),
        "a 503 took {slowest:?}: {outage:?}"
    );
    assert_eq!(
        attempts_after, attempts_before,
        "halb tried backends it knows are down"
    );
    assert!(
        waiting.iter().all(|status| *status == 503),
        "answers before the first success: {waiting:?}"
    );
    // The returning backend's next check comes within one interval (+10%
    // jitter); it brings it up at once since nothing else is in service.
    let bound = INTERVAL + INTERVAL / 10 + SLACK;
    assert!(
        first_success <= bound,
        "first 200 {first_success:?} after a backend returned; one check interval \
         is {INTERVAL:?} (+10% jitter, +{SLACK:?} slack)"
    );
}
