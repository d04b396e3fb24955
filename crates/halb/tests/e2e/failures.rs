//! Failing backends: retries around refused and dead backends, and the
//! explicit 502 / 503 / 504 answers when no backend can serve.

use std::time::{Duration, Instant};

use crate::support::backends::{addrs, hang, named, refused};
use crate::support::client::{answers_on_new_connections, full_body, get_once};
use crate::support::{BalancerConfig, Halb, HttpClient};

/// The status entry of the backend at `address` (in any pool).
fn backend_status(status: &serde_json::Value, address: std::net::SocketAddr) -> &serde_json::Value {
    status["pools"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|pool| pool["backends"].as_array().into_iter().flatten())
        .find(|backend| backend["address"] == address.to_string())
        .unwrap_or_else(|| panic!("backend {address} not in status: {status:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_backend_is_retried_without_failing_a_get() {
    let (a, c) = (named("a").await, named("c").await);
    let dead = refused();
    let config = BalancerConfig::http(&[a.addr, dead, c.addr]);
    let halb = Halb::start(&config.to_toml()).await;

    let answers = answers_on_new_connections(config.listen, 300).await;

    assert!(
        answers.iter().all(|name| name == "a" || name == "c"),
        "answers from unknown backends: {:?}",
        answers
            .iter()
            .filter(|n| *n != "a" && *n != "c")
            .collect::<Vec<_>>()
    );
    assert_eq!(a.requests() + c.requests(), 300);
    let status = halb.status_json().await;
    let dead_status = backend_status(&status, dead);
    assert!(
        dead_status["failures"].as_u64().is_some_and(|f| f > 0),
        "the refused backend's failures counter must be > 0: {dead_status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_dies_mid_run_is_skipped_without_failing_a_get() {
    let (a, mut b, c) = (named("a").await, named("b").await, named("c").await);
    let config = BalancerConfig::http(&addrs(&[&a, &b, &c]));
    let _halb = Halb::start(&config.to_toml()).await;

    // Warm up: halb now holds pooled keep-alive connections to b.
    answers_on_new_connections(config.listen, 30).await;
    assert!(b.requests() > 0, "b was never used while alive");
    b.stop().await;

    let answers = answers_on_new_connections(config.listen, 300).await;
    assert!(answers.iter().all(|name| name == "a" || name == "c"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_backends_refused_gives_502() {
    let config = BalancerConfig::http(&[refused(), refused()]);
    let _halb = Halb::start(&config.to_toml()).await;

    for _ in 0..3 {
        let reply = get_once(config.listen, "/").await;
        assert_eq!(reply.status, 502, "{}", reply.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_usable_backend_gives_503() {
    let (a, b) = (named("a").await, named("b").await);
    let config = BalancerConfig::http(&addrs(&[&a, &b])).weights(&[0, 0]);
    let _halb = Halb::start(&config.to_toml()).await;

    for _ in 0..3 {
        let reply = get_once(config.listen, "/").await;
        assert_eq!(reply.status, 503, "{}", reply.text());
    }
    assert_eq!(
        a.requests() + b.requests(),
        0,
        "weight-0 backends must get no traffic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_never_answers_gives_504_after_the_pool_timeout() {
    let silent = hang().await;
    let config = BalancerConfig::http(&[silent.addr])
        .pool_key("timeout", "\"300ms\"")
        .pool_key("retries", "0");
    let _halb = Halb::start(&config.to_toml()).await;

    let started = Instant::now();
    let reply = get_once(config.listen, "/").await;
    let took = started.elapsed();

    assert_eq!(reply.status, 504, "{}", reply.text());
    assert!(
        took >= Duration::from_millis(290),
        "504 after only {took:?}; timeout is 300ms"
    );
    assert!(
        took < Duration::from_secs(3),
        "504 took {took:?}; timeout is 300ms"
    );
    assert_eq!(silent.requests(), 1, "the request reached the backend once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_that_times_out_is_retried_on_another_backend() {
    let (silent, a) = (hang().await, named("a").await);
    let config = BalancerConfig::http(&addrs(&[&silent, &a])).pool_key("timeout", "\"300ms\"");
    let _halb = Halb::start(&config.to_toml()).await;

    for i in 0..4 {
        let reply = get_once(config.listen, "/").await;
        assert_eq!(
            (reply.status, reply.text()),
            (200, "a".to_owned()),
            "GET {i}"
        );
    }
    assert!(
        silent.requests() > 0,
        "round robin never tried the silent backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_that_times_out_is_not_sent_twice() {
    let (silent, a) = (hang().await, named("a").await);
    let config = BalancerConfig::http(&addrs(&[&silent, &a])).pool_key("timeout", "\"300ms\"");
    let _halb = Halb::start(&config.to_toml()).await;

    let mut statuses = Vec::new();
    for _ in 0..4 {
        let mut client = HttpClient::connect(config.listen).await;
        let request = client
            .request("POST", "/orders")
            .body(full_body("one order"))
            .expect("request");
        statuses.push(client.exchange(request).await.status);
    }

    let timed_out = statuses.iter().filter(|s| **s == 504).count();
    let answered = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        silent.requests() > 0,
        "round robin never tried the silent backend"
    );
    assert_eq!(
        silent.requests() + a.requests(),
        4,
        "each POST must reach exactly one backend (statuses {statuses:?})"
    );
    assert_eq!(
        (timed_out, answered),
        (silent.requests(), a.requests()),
        "statuses {statuses:?}"
    );
}
