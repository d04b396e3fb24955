//! Reload by `halb run --watch` (issue 4): a changed config file is
//! applied within two seconds; a bad one is refused once and changes
//! nothing.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::support::backends::named;
use crate::support::client::answers_on_new_connections;
use crate::support::node_config::NodeConfig;
use crate::support::reload::{
    config_status, pool_backends, reload_counts, reload_via_api, strings,
};
use crate::support::{exclusive, free_addr, Halb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_applies_a_changed_file_within_two_seconds() {
    let _machine = exclusive().await;
    let (a, b) = (named("a").await, named("b").await);
    let front = free_addr();
    let one = NodeConfig::new()
        .listener("front", front, "app")
        .pool("app", &[a.addr]);
    let two = NodeConfig::new()
        .listener("front", front, "app")
        .pool("app", &[a.addr, b.addr]);
    let halb = Halb::start_with_args(&one.to_toml(), &["--watch"]).await;
    // The watcher must not reload a file that did not change.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(reload_counts(&config_status(&halb).await), (0, 0));

    let changed = Instant::now();
    halb.rewrite_config(&two.to_toml());
    let took = wait_until(Duration::from_secs(5), || async {
        pool_backends(&halb.status_json().await, "app").len() == 2
    })
    .await;
    assert!(
        took <= Duration::from_secs(2),
        "--watch applied the new file after {took:?}"
    );
    let answers: HashSet<String> = answers_on_new_connections(front, 4)
        .await
        .into_iter()
        .collect();
    assert_eq!(answers, HashSet::from(["a".to_owned(), "b".to_owned()]));
    assert_eq!(reload_counts(&config_status(&halb).await), (1, 0));

    // A bad file is refused once (not at every look), and nothing changes.
    let broken = two.to_toml().replace("round_robin", "round_robbin");
    halb.rewrite_config(&broken);
    let took = wait_until(Duration::from_secs(5), || async {
        reload_counts(&config_status(&halb).await) == (1, 1)
    })
    .await;
    assert!(
        took <= Duration::from_secs(2),
        "bad file noticed after {took:?}"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let config = config_status(&halb).await;
    assert_eq!(reload_counts(&config), (1, 1), "{config:#}");
    assert!(
        strings(&config["last_error"])
            .iter()
            .any(|e| e.contains("pool[0].algorithm")),
        "{config:#}"
    );
    assert_eq!(pool_backends(&halb.status_json().await, "app").len(), 2);
    assert!(changed.elapsed() > Duration::from_secs(3));
}

/// Polls `condition` every 20 ms; how long until it held. Fails the test
/// after `limit`.
async fn wait_until<F, Fut>(limit: Duration, condition: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if condition().await {
            return started.elapsed();
        }
        assert!(
            started.elapsed() <= limit,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `--watch` must not refuse again a bad file that a SIGHUP or API reload
/// already refused: one bad file, one failed reload, one alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_refused_through_the_api_is_not_refused_again_by_watch() {
    let a = named("a").await;
    let good = NodeConfig::new()
        .listener("front", free_addr(), "app")
        .pool("app", &[a.addr]);
    let halb = Halb::start_with_args(&good.to_toml(), &["--watch"]).await;
    halb.rewrite_config(&good.to_toml().replace("round_robin", "round_robbin"));
    let (code, outcome) = reload_via_api(&halb, &[]).await;
    assert_eq!(code, 400, "{outcome:#}");
    // The watcher looks every second.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let config = config_status(&halb).await;
    assert_eq!(reload_counts(&config), (0, 1), "{config:#}");
}
