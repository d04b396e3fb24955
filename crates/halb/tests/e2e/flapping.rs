//! A flapping backend (issue 3, check 4): its health check passes and fails
//! in turn every 150 ms, while it serves every real request it gets. With
//! checks every 100 ms, rise 3 and fall 3, flapping alone never gives three
//! results in a row, so halb's verdict must hold still; only a real, longer
//! outage and recovery move it. And no request may reach the backend while
//! halb says it is down: the backend records when each request arrived, and
//! a sampler records what the status API said when.

use std::time::{Duration, Instant};

use crate::support::backends::{addrs, named, Health};
use crate::support::load::{assert_none_failed, Load};
use crate::support::status::{changes, surely_in, wait_until_up, StateSampler};
use crate::support::{exclusive, BalancerConfig, Halb};

const FLAP_EVERY: Duration = Duration::from_millis(150);
/// A request picked just before halb marked the backend down may arrive
/// just after; allowed this long.
const GRACE: Duration = Duration::from_millis(50);

/// Lines of halb's log saying that `address` went up or down.
fn transitions_logged(logs: &str, address: std::net::SocketAddr) -> Vec<String> {
    let backend = format!("backend={address}");
    logs.lines()
        .filter(|line| line.contains(&backend))
        .filter(|line| line.contains("backend is up") || line.contains("backend is down"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_backend_changes_state_rarely_and_gets_nothing_while_down() {
    let _alone = exclusive().await;
    let (a, b, flapper) = (named("a").await, named("b").await, named("flapper").await);
    let config =
        BalancerConfig::http(&addrs(&[&a, &b, &flapper])).http_checks("100ms", "200ms", 3, 3);
    let halb = Halb::start(&config.to_toml()).await;
    wait_until_up(&halb, &addrs(&[&a, &b, &flapper])).await;
    let marked_up_at_start = transitions_logged(&halb.logs(), flapper.addr).len();

    let sampler = StateSampler::start(&halb, flapper.addr, Duration::from_millis(5));
    let load = Load::start(config.listen, "/", 4, Duration::from_millis(3));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Up, flapping: never three failures in a row, so it stays up.
    flapper.set_health(Health::Flapping {
        since: Instant::now(),
        every: FLAP_EVERY,
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let served_while_up = flapper.requests();
    // A real outage of its checks: marked down after three failures.
    flapper.set_health(Health::Failing);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Down, flapping: never three passes in a row, so it stays down.
    flapper.set_health(Health::Flapping {
        since: Instant::now(),
        every: FLAP_EVERY,
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Healthy again: back up after three passes.
    flapper.set_health(Health::Passing);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let outcomes = load.finish().await;
    let samples = sampler.finish().await;
    let arrivals = flapper.arrivals();
    let logged = transitions_logged(&halb.logs(), flapper.addr);
    let logged = &logged[marked_up_at_start..];

    assert_none_failed(&outcomes);
    assert!(
        served_while_up > 0,
        "the flapper got no traffic while up and flapping"
    );
    // 2 changes forced by the outage and the recovery; about 40 flaps could
    // have made ~40. One more pair is tolerated for a stalled check on a
    // busy machine.
    assert!(
        (2..=4).contains(&logged.len()),
        "{} state changes over ~40 flaps (expected the outage's down and the \
         recovery's up): {logged:#?}",
        logged.len()
    );
    assert!(
        changes(&samples) <= 4,
        "the sampled state changed {} times",
        changes(&samples)
    );
    let down_spans = surely_in(&samples, "down");
    assert!(
        !down_spans.is_empty(),
        "the status never showed the backend down"
    );
    let while_down: Vec<Duration> = arrivals
        .iter()
        .filter(|arrived| {
            down_spans
                .iter()
                .any(|(from, to)| **arrived >= *from + GRACE && **arrived <= *to)
        })
        .map(|arrived| arrived.duration_since(samples[0].asked))
        .collect();
    assert!(
        while_down.is_empty(),
        "{} requests reached the backend while the status said down (times since \
         sampling began: {:?}); down spans: {:?}",
        while_down.len(),
        &while_down[..while_down.len().min(10)],
        down_spans
            .iter()
            .map(|(from, to)| (
                from.duration_since(samples[0].asked),
                to.duration_since(samples[0].asked)
            ))
            .collect::<Vec<_>>()
    );
    assert!(
        flapper.checks() >= 40,
        "only {} checks reached the flapper in ~8 s at a 100 ms interval",
        flapper.checks()
    );
    let last = samples.last().expect("samples");
    assert_eq!(last.state, "up", "recovered at the end");
    assert!(
        flapper.requests() > served_while_up,
        "no traffic after the recovery"
    );
}
