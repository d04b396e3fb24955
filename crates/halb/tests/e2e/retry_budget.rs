//! The retry budget (issue 3, check 7): with every backend failing and
//! `retries = 3`, retries may be at most `percent` % of the requests (here
//! 20 %, no per-second allowance), so the backends see at most 1.2 attempts
//! per request instead of 4.

use std::net::SocketAddr;

use crate::support::backends::{addrs, hang, refused};
use crate::support::status::{backend_entry, number, pool_entry};
use crate::support::{BalancerConfig, Halb, HttpClient};

/// Concurrent clients, and GETs each sends.
const CLIENTS: usize = 4;
const PER_CLIENT: usize = 50;

/// A pool of `backends` that retries 3 times under a 20 % budget, with
/// outlier detection off (ejections would hide the budget's effect).
fn budgeted(backends: &[SocketAddr]) -> BalancerConfig {
    BalancerConfig::http(backends)
        .pool_key("retries", "3")
        .pool_key("timeout", "\"100ms\"")
        .retry_budget_key("percent", "20")
        .retry_budget_key("min_per_second", "0")
        .outlier_key("consecutive_failures", "0")
}

/// Sends `per_client` GETs from each of `clients` clients; their statuses.
async fn get_concurrently(listen: SocketAddr, clients: usize, per_client: usize) -> Vec<u16> {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            let mut client = HttpClient::connect(listen).await;
            for _ in 0..per_client {
                statuses.push(client.get("/", &[]).await.status);
            }
            statuses
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.extend(task.await.expect("client"));
    }
    statuses
}

/// Checks the attempts the status API counts against the budget.
async fn assert_within_budget(
    halb: &Halb,
    backends: &[SocketAddr],
    requests: usize,
    failed_with: u16,
    statuses: &[u16],
) {
    let status = halb.status_json().await;
    let attempts: u64 = backends
        .iter()
        .map(|b| number(backend_entry(&status, *b), "requests"))
        .sum();
    let pool = pool_entry(&status);
    let (retries, denied) = (number(pool, "retries"), number(pool, "retries_denied"));
    let requests = requests as u64;

    assert!(
        statuses.iter().all(|s| *s == failed_with),
        "every GET fails with {failed_with}: {statuses:?}"
    );
    // Retries are counted then checked by concurrent requests: a few over
    // the exact share are tolerated.
    let slack = CLIENTS as u64;
    assert!(
        attempts <= requests + requests / 5 + slack,
        "{attempts} backend attempts for {requests} requests; the budget allows \
         {requests} + 20 % (+{slack}): {status:#}"
    );
    assert_eq!(
        attempts,
        requests + retries,
        "each request's first try plus the retries the status counts: {pool:#}"
    );
    assert!(
        retries >= requests / 10,
        "the budget allows about {} retries, only {retries} were made",
        requests / 5
    );
    assert!(denied > 0, "no retry was refused by the budget: {pool:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_to_refusing_backends_stay_within_the_budget() {
    let backends = [refused(), refused(), refused(), refused()];
    let config = budgeted(&backends);
    let halb = Halb::start(&config.to_toml()).await;

    let statuses = get_concurrently(config.listen, CLIENTS, PER_CLIENT).await;

    assert_within_budget(&halb, &backends, CLIENTS * PER_CLIENT, 502, &statuses).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_to_hung_backends_stay_within_the_budget() {
    let silent = [hang().await, hang().await, hang().await, hang().await];
    let backends = addrs(&[&silent[0], &silent[1], &silent[2], &silent[3]]);
    let config = budgeted(&backends);
    let halb = Halb::start(&config.to_toml()).await;

    // Each try waits out the 100 ms timeout: fewer requests.
    let statuses = get_concurrently(config.listen, CLIENTS, 10).await;

    let seen: usize = silent.iter().map(|b| b.requests()).sum();
    assert_within_budget(&halb, &backends, CLIENTS * 10, 504, &statuses).await;
    let status = halb.status_json().await;
    let attempts: u64 = backends
        .iter()
        .map(|b| number(backend_entry(&status, *b), "requests"))
        .sum();
    assert_eq!(
        seen as u64, attempts,
        "the backends saw as many requests as halb counts attempts"
    );
}
