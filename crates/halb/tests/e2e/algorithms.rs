//! How each balancing algorithm spreads real requests over real backends.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::backends::{addrs, delayed, named};
use crate::support::client::answers_on_new_connections;
use crate::support::{exclusive, BalancerConfig, Halb, HttpClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_is_exact_across_workers() {
    let (a, b, c) = (named("a").await, named("b").await, named("c").await);
    let config = BalancerConfig::http(&addrs(&[&a, &b, &c]));
    let _halb = Halb::start(&config.to_toml()).await;

    let answers = answers_on_new_connections(config.listen, 300).await;

    let first_cycle: HashSet<&str> = answers[..3].iter().map(String::as_str).collect();
    assert_eq!(
        first_cycle.len(),
        3,
        "the first 3 answers must come from 3 backends: {:?}",
        &answers[..3]
    );
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(
            answer,
            &answers[i % 3],
            "answer {i} breaks the cycle {:?}; first 12 answers: {:?}",
            &answers[..3],
            &answers[..12]
        );
    }
    for backend in [&a, &b, &c] {
        assert_eq!(
            backend.requests(),
            100,
            "requests per backend over 300 GETs"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_is_smooth_and_exact() {
    let (a, b, c) = (named("a").await, named("b").await, named("c").await);
    let config = BalancerConfig::http(&addrs(&[&a, &b, &c]))
        .algorithm("weighted_round_robin")
        .weights(&[5, 1, 1]);
    let _halb = Halb::start(&config.to_toml()).await;

    let answers = answers_on_new_connections(config.listen, 700).await;

    assert_eq!(
        answers[..7],
        ["a", "a", "b", "a", "c", "a", "a"],
        "weights 5,1,1 must interleave smoothly, as nginx does"
    );
    assert_eq!(
        (a.requests(), b.requests(), c.requests()),
        (500, 100, 100),
        "requests per backend over 700 GETs with weights 5,1,1"
    );
}

/// Keeps `clients` keep-alive clients busy with sequential GETs for
/// `duration`; every answer must be 200. Returns the number of requests.
async fn drive_concurrently(listen: SocketAddr, clients: usize, duration: Duration) -> usize {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        tasks.push(tokio::spawn(async move {
            let mut client = HttpClient::connect(listen).await;
            let mut sent = 0usize;
            while Instant::now() < deadline {
                let reply = client.get("/", &[]).await;
                assert_eq!(reply.status, 200, "{}", reply.text());
                sent += 1;
            }
            sent
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("client task");
    }
    total
}

/// Runs 8 clients for 2 s against a fast (0 ms) and a slow (100 ms)
/// backend balanced by `algorithm`; returns (fast, slow) request counts.
async fn fast_and_slow_counts(algorithm: &'static str) -> (usize, usize) {
    let _alone = exclusive().await;
    let fast = delayed("fast", Duration::ZERO).await;
    let slow = delayed("slow", Duration::from_millis(100)).await;
    let config = BalancerConfig::http(&addrs(&[&fast, &slow])).algorithm(algorithm);
    let _halb = Halb::start(&config.to_toml()).await;

    let total = drive_concurrently(config.listen, 8, Duration::from_secs(2)).await;

    assert_eq!(
        fast.requests() + slow.requests(),
        total,
        "every request reached one backend"
    );
    eprintln!(
        "{algorithm}: fast {} slow {}",
        fast.requests(),
        slow.requests()
    );
    (fast.requests(), slow.requests())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_favours_the_fast_backend() {
    let (fast, slow) = fast_and_slow_counts("least_connections").await;
    assert!(
        fast > 3 * slow,
        "least_connections: fast {fast} should be > 3 × slow {slow}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_two_choices_favours_the_fast_backend() {
    let (fast, slow) = fast_and_slow_counts("random_two_choices").await;
    assert!(
        2 * fast > 3 * slow,
        "random_two_choices: fast {fast} should be > 1.5 × slow {slow}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_ewma_favours_the_fast_backend() {
    let (fast, slow) = fast_and_slow_counts("peak_ewma").await;
    assert!(
        fast > 3 * slow,
        "peak_ewma: fast {fast} should be > 3 × slow {slow}"
    );
}

const MAGLEV_KEYS: usize = 300;

fn maglev_config(backends: &[SocketAddr]) -> BalancerConfig {
    BalancerConfig::http(backends)
        .algorithm("maglev")
        .pool_key("hash_key", "\"header:x-user\"")
}

/// The backend answering each of `x-user: user-0 .. user-299`.
async fn maglev_assignment(listen: SocketAddr) -> Vec<String> {
    let mut client = HttpClient::connect(listen).await;
    let mut assignment = Vec::with_capacity(MAGLEV_KEYS);
    for i in 0..MAGLEV_KEYS {
        let user = format!("user-{i}");
        let reply = client.get("/", &[("x-user", &user)]).await;
        assert_eq!(reply.status, 200, "{user}: {}", reply.text());
        assignment.push(reply.text());
    }
    assignment
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maglev_is_stable_across_processes_and_minimally_disrupted() {
    let (a, b, c) = (named("a").await, named("b").await, named("c").await);
    let all = addrs(&[&a, &b, &c]);

    let first = maglev_config(&all);
    let second = maglev_config(&all);
    let first_halb = Halb::start(&first.to_toml()).await;
    let second_halb = Halb::start(&second.to_toml()).await;
    let before = maglev_assignment(first.listen).await;
    let other_process = maglev_assignment(second.listen).await;
    drop((first_halb, second_halb));

    for name in ["a", "b", "c"] {
        let share = before.iter().filter(|n| *n == name).count();
        assert!(
            share > MAGLEV_KEYS / 6,
            "backend {name} got only {share} of {MAGLEV_KEYS} keys"
        );
    }
    let differing: Vec<usize> = (0..MAGLEV_KEYS)
        .filter(|&i| before[i] != other_process[i])
        .collect();
    assert!(
        differing.is_empty(),
        "two halb processes with the same backends disagree on {} keys, e.g. user-{}",
        differing.len(),
        differing[0]
    );

    // Remove the middle backend, so that a table keyed by position rather
    // than by backend identity shows up as a large disruption.
    let without_b = maglev_config(&addrs(&[&a, &c]));
    let _third_halb = Halb::start(&without_b.to_toml()).await;
    let after = maglev_assignment(without_b.listen).await;

    let moved = (0..MAGLEV_KEYS).filter(|&i| before[i] != after[i]).count();
    let stayed_on_b = (0..MAGLEV_KEYS).filter(|&i| after[i] == "b").count();
    assert_eq!(stayed_on_b, 0, "no key may map to the removed backend");
    // Maglev's table population can move a few slots of surviving backends
    // (about 0.01% for 3 → 2 backends at size 65537), so allow 1% of them.
    let not_on_b = before.iter().filter(|n| *n != "b").count();
    let moved_needlessly = (0..MAGLEV_KEYS)
        .filter(|&i| before[i] != "b" && before[i] != after[i])
        .count();
    assert!(
        moved_needlessly * 100 <= not_on_b,
        "{moved_needlessly} of {not_on_b} keys that were not on the removed backend moved"
    );
    let moved_fraction = moved as f64 / MAGLEV_KEYS as f64;
    assert!(
        (1.0 / 3.0 - 0.1..=1.0 / 3.0 + 0.1).contains(&moved_fraction),
        "removing 1 of 3 backends moved {moved_fraction:.3} of the keys; expected 1/3 ± 0.1"
    );
}
