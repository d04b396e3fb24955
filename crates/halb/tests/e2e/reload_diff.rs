//! A reload is applied as typed changes to exactly what changed: a backend
//! added to a pool starts its own check and leaves the other backends'
//! checks, counters and connections as they were; a backend removed from
//! every pool has its idle connections closed.

use std::time::{Duration, Instant};

use crate::support::backends::{named, Health};
use crate::support::client::HttpClient;
use crate::support::node_config::NodeConfig;
use crate::support::reload::{reload_via_api, strings};
use crate::support::status::{backend_entry, wait_for_state, wait_until_up};
use crate::support::{exclusive, free_addr, within, Halb};

/// b fails two checks of its `fall = 3`; then a reload adds c. b's check
/// goes on counting (it was not restarted), so its third failure, one
/// interval later, takes it down; a restarted check would need three more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_backend_leaves_the_other_checks_running() {
    let _machine = exclusive().await;
    let (a, b, c) = (named("a").await, named("b").await, named("c").await);
    let (front, admin) = (free_addr(), free_addr());
    let config = |backends: &[std::net::SocketAddr]| {
        NodeConfig::new()
            .admin_bind(admin)
            .listener("front", front, "app")
            .pool("app", backends)
            .http_checks("app", "1s", "500ms", 1, 3)
            .to_toml()
    };
    let halb = Halb::start(&config(&[a.addr, b.addr])).await;
    wait_until_up(&halb, &[a.addr, b.addr]).await;

    b.set_health(Health::Failing);
    let failing_since = b.checks();
    within(Duration::from_secs(5), "two failed checks of b", async {
        while b.checks() < failing_since + 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // b's second failure was just counted: its third is one interval away.
    let checks_of_a = a.checks();
    halb.rewrite_config(&config(&[a.addr, b.addr, c.addr]));
    let reloaded = Instant::now();
    let (code, outcome) = reload_via_api(&halb, &[]).await;
    assert_eq!(code, 200, "{outcome:#}");
    assert_eq!(
        strings(&outcome["changes"]),
        [format!("pool app: {} added", c.addr)],
        "{outcome:#}"
    );

    let status = halb.status_json().await;
    assert_eq!(backend_entry(&status, a.addr)["state"], "up", "{status:#}");
    let a_check = backend_entry(&status, a.addr)["check"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        a_check.starts_with("passed in"),
        "a's last check is kept: {a_check}"
    );
    assert_eq!(
        backend_entry(&status, b.addr)["state"],
        "up",
        "b: two failures of three"
    );
    assert_eq!(
        backend_entry(&status, c.addr)["state"],
        "down",
        "c waits for its first check: {status:#}"
    );

    wait_for_state(&halb, b.addr, "down", Duration::from_secs(5)).await;
    let took = reloaded.elapsed();
    assert!(
        took < Duration::from_millis(1700),
        "b went down {took:?} after the reload: its check started over"
    );
    wait_until_up(&halb, &[c.addr]).await;
    // a was checked on its own schedule meanwhile, about once a second.
    let extra = a.checks() - checks_of_a;
    let elapsed = reloaded.elapsed().as_secs_f64();
    assert!(
        (extra as f64) <= elapsed + 1.5,
        "a had {extra} checks in {elapsed:.1}s: its check was restarted"
    );
}

/// Idle keep-alive connections to a backend that leaves every pool are
/// closed at the reload; those to the backends that stay are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_backend_loses_its_idle_connections() {
    let (a, b) = (named("a").await, named("b").await);
    let (front, admin) = (free_addr(), free_addr());
    let config = |backends: &[std::net::SocketAddr]| {
        NodeConfig::new()
            .admin_bind(admin)
            .listener("front", front, "app")
            .pool("app", backends)
            .to_toml()
    };
    let halb = Halb::start(&config(&[a.addr, b.addr])).await;
    let mut client = HttpClient::connect(front).await;
    for _ in 0..10 {
        let reply = client.get("/", &[]).await;
        assert_eq!(reply.status, 200);
    }
    assert!(
        b.open_connections() > 0,
        "halb keeps b's connection for reuse"
    );
    let a_open = a.open_connections();
    assert!(a_open > 0);

    halb.rewrite_config(&config(&[a.addr]));
    let (code, outcome) = reload_via_api(&halb, &[]).await;
    assert_eq!(code, 200, "{outcome:#}");
    within(
        Duration::from_secs(2),
        "b's idle connections closed",
        async {
            while b.open_connections() > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        },
    )
    .await;
    assert_eq!(a.open_connections(), a_open, "a's connections are kept");
    let before = a.connections();
    for _ in 0..5 {
        assert_eq!(client.get("/", &[]).await.text(), "a");
    }
    assert_eq!(a.connections(), before, "served over the kept connections");
}
