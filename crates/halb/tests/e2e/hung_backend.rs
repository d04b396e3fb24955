//! A backend that accepts connections and reads requests but never answers
//! (issue 3, check 2): GETs fail over to another backend within the per-try
//! timeout and none fails; a POST with a body is never sent twice.

use std::time::{Duration, Instant};

use crate::support::backends::{addrs, hang, named};
use crate::support::client::full_body;
use crate::support::status::{number, pool_entry};
use crate::support::{exclusive, BalancerConfig, Halb, HttpClient};

const TRY_TIMEOUT: Duration = Duration::from_millis(300);
/// Added to the per-try timeout: a retry's own round trip, on a busy machine.
const SLACK: Duration = Duration::from_millis(400);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gets_fail_over_from_a_hung_backend_within_the_try_timeout() {
    let _alone = exclusive().await;
    let (silent, a, b) = (hang().await, named("a").await, named("b").await);
    // Outlier detection off: every third GET must go through the timeout
    // and the failover, not only the first few before an ejection.
    let config = BalancerConfig::http(&addrs(&[&silent, &a, &b]))
        .pool_key("timeout", "\"300ms\"")
        .outlier_key("consecutive_failures", "0");
    let _halb = Halb::start(&config.to_toml()).await;

    let mut clients = Vec::new();
    for _ in 0..3 {
        let listen = config.listen;
        clients.push(tokio::spawn(async move {
            let mut client = HttpClient::connect(listen).await;
            let mut replies = Vec::new();
            for _ in 0..8 {
                let started = Instant::now();
                let reply = client.get("/", &[]).await;
                replies.push((reply.status, reply.text(), started.elapsed()));
            }
            replies
        }));
    }
    let mut replies = Vec::new();
    for client in clients {
        replies.extend(client.await.expect("client"));
    }

    let failed: Vec<_> = replies.iter().filter(|r| r.0 != 200).collect();
    assert!(failed.is_empty(), "failed GETs: {failed:?}");
    assert!(
        replies.iter().all(|r| r.1 == "a" || r.1 == "b"),
        "answers: {replies:?}"
    );
    assert_eq!(
        a.requests() + b.requests(),
        replies.len(),
        "one answer per GET"
    );
    // Round robin gives the hung backend its turn again and again.
    assert!(
        silent.requests() >= 3,
        "the hung backend saw {} of {} GETs",
        silent.requests(),
        replies.len()
    );
    let failed_over: Vec<Duration> = replies
        .iter()
        .map(|r| r.2)
        .filter(|took| *took >= TRY_TIMEOUT)
        .collect();
    assert!(
        failed_over.len() >= silent.requests(),
        "each GET that reached the hung backend waits one try timeout: {replies:?}"
    );
    let slowest = replies.iter().map(|r| r.2).max().expect("replies");
    assert!(
        slowest <= TRY_TIMEOUT + SLACK,
        "the slowest GET took {slowest:?}; the per-try timeout is {TRY_TIMEOUT:?} \
         (+{SLACK:?} slack for the retry)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_to_a_hung_backend_is_sent_once_and_gets_504() {
    let (silent, a, b) = (hang().await, named("a").await, named("b").await);
    let config = BalancerConfig::http(&addrs(&[&silent, &a, &b])).pool_key("timeout", "\"300ms\"");
    let halb = Halb::start(&config.to_toml()).await;

    // Round robin brings the hung backend's turn within three POSTs.
    let mut replies = Vec::new();
    for i in 0..3 {
        let mut client = HttpClient::connect(config.listen).await;
        let request = client
            .request("POST", "/orders")
            .body(full_body(format!("order {i}")))
            .expect("request");
        let started = Instant::now();
        let reply = client.exchange(request).await;
        replies.push((reply.status, reply.text(), started.elapsed()));
    }
    // Give a (wrong) second send time to arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = halb.status_json().await;

    let timed_out: Vec<_> = replies.iter().filter(|r| r.0 == 504).collect();
    let answered = replies.iter().filter(|r| r.0 == 200).count();
    assert_eq!(
        timed_out.len() + answered,
        replies.len(),
        "every POST gets 200 or 504: {replies:?}"
    );
    assert!(
        !timed_out.is_empty(),
        "no POST reached the hung backend: {replies:?}"
    );
    assert_eq!(
        silent.requests(),
        timed_out.len(),
        "the hung backend must see each POST that timed out on it once: {replies:?}"
    );
    assert_eq!(
        a.requests() + b.requests(),
        answered,
        "a POST that reached the hung backend must not be sent elsewhere too: {replies:?}"
    );
    for reply in &timed_out {
        assert!(
            reply.2 >= TRY_TIMEOUT,
            "504 before the try timeout: {reply:?}"
        );
    }
    let pool = pool_entry(&status);
    assert_eq!(
        number(pool, "retries"),
        0,
        "no retry was made, so the status must count none: {pool:#}"
    );
}
