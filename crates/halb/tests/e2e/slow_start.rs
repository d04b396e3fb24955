//! Slow start (issue 3): a backend enabled again is ramped from 5 % to its
//! full share of traffic over `slow_start`, not flooded at once.

use std::time::{Duration, Instant};

use crate::support::backends::{addrs, named};
use crate::support::load::{assert_none_failed, share, Load};
use crate::support::{exclusive, BalancerConfig, Halb};

const SLOW_START: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_enabled_backend_ramps_up_over_the_slow_start_window() {
    let _alone = exclusive().await;
    let (a, b, c) = (named("a").await, named("b").await, named("c").await);
    let config = BalancerConfig::http(&addrs(&[&a, &b, &c])).pool_key("slow_start", "\"2s\"");
    let halb = Halb::start(&config.to_toml()).await;
    let action = |what: &str| format!("/api/v1/pools/app/backends/{}/{what}", c.addr);

    let load = Load::start(config.listen, "/", 4, Duration::from_millis(1));
    let disabled = halb.admin_request("POST", &action("disable")).await;
    assert_eq!(disabled.status, 200, "{}", disabled.text());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let enabled = halb.admin_request("POST", &action("enable")).await;
    let enabled_at = Instant::now();
    assert_eq!(enabled.status, 200, "{}", enabled.text());
    tokio::time::sleep(SLOW_START + Duration::from_millis(1500)).await;
    let outcomes = load.finish().await;

    assert_none_failed(&outcomes);
    // Full share: a third. In the first 300 ms the ramp is at most 15 %.
    let (early, early_count) = share(
        &outcomes,
        "c",
        enabled_at,
        enabled_at + Duration::from_millis(300),
    );
    // After the window (+200 ms slack for a busy machine), the full share.
    let after = enabled_at + SLOW_START + Duration::from_millis(200);
    let (late, late_count) = share(&outcomes, "c", after, after + Duration::from_secs(1));

    assert!(
        early_count >= 50 && late_count >= 100,
        "too few answers to measure: {early_count} early, {late_count} late"
    );
    assert!(
        early < 0.15,
        "c got {:.1} % of {early_count} requests in the first 300 ms after it was \
         enabled; a full share is 33 %",
        early * 100.0
    );
    assert!(
        (0.25..=0.42).contains(&late),
        "c got {:.1} % of {late_count} requests after the slow-start window; \
         a full share is 33 %",
        late * 100.0
    );
}
