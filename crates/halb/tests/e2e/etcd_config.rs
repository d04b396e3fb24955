//! The fleet's config in etcd (issue 13, checks 1, 2 and 6): a node serves
//! listeners and pools from `<prefix>/config`; a backend key added under
//! load is applied within a second with no failed request; an invalid
//! document and a deleted key are refused with the error in the status API
//! while traffic goes on; a node started while etcd is down serves its
//! last-known-good config and reconciles when etcd returns.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::backends::named;
use crate::support::client::get_once;
use crate::support::etcd::{
    cluster_section, has_backend, local_part, refusal, shared_part, wait_status, Etcd, StateDir,
};
use crate::support::load::{assert_none_failed, Load};
use crate::support::node_config::NodeConfig;
use crate::support::status::wait_until_up;
use crate::support::{exclusive, free_addr, Halb};

const LIMIT: Duration = Duration::from_secs(15);

/// A node's own file and the shared document, for one listener and pool
/// `app` with fast HTTP checks.
pub fn configs(
    front: SocketAddr,
    backends: &[SocketAddr],
    etcd: &[String],
    state: &StateDir,
    node: &str,
) -> (String, String) {
    let toml = NodeConfig::new()
        .listener("front", front, "app")
        .pool("app", backends)
        .http_checks("app", "100ms", "500ms", 1, 2)
        .to_toml();
    let local = local_part(&toml) + &cluster_section(node, &state.0, etcd);
    (local, shared_part(&toml))
}

/// Node `lb1` serving pool `app` of `backend` from the shared document,
/// which `etcd` writes (the node talks to `urls`): the node, its front
/// address, the document and the node's state dir.
pub async fn serving(
    etcd: &Etcd,
    urls: &[String],
    backend: SocketAddr,
) -> (Halb, SocketAddr, String, StateDir) {
    let (front, state) = (free_addr(), StateDir::new());
    let (local, shared) = configs(front, &[backend], urls, &state, "lb1");
    etcd.put("/halb/config", &shared);
    let halb = Halb::start(&local).await;
    wait_until_up(&halb, &[backend]).await;
    (halb, front, shared, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_key_is_applied_within_a_second_under_load() {
    let _machine = exclusive().await;
    let etcd = Etcd::start().await;
    let (a, b) = (named("a").await, named("b").await);
    let (halb, front, _, _state) = serving(&etcd, &[etcd.url()], a.addr).await;
    let status = halb.status_json().await;
    assert_eq!(status["config_source"], "etcd", "{status:#}");
    assert_eq!(status["node"], "lb1");
    assert_eq!(get_once(front, "/").await.body, "a");

    let load = Load::start(front, "/", 4, Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(300)).await;
    etcd.put(&format!("/halb/pools/app/backends/{}", b.addr), "");
    let (_, applied) = wait_status(&halb, LIMIT, "b in the pool", |s| has_backend(s, b.addr)).await;
    wait_until_up(&halb, &[b.addr]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcomes = load.finish().await;
    assert_none_failed(&outcomes);
    assert!(b.requests() > 0, "b got no traffic after joining");
    println!(
        "backend key applied {} ms after etcdctl put returned; {} requests, 0 failed",
        applied.as_millis(),
        outcomes.len()
    );
    assert!(
        applied < Duration::from_secs(3),
        "applied after {applied:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_document_and_a_deleted_key_are_refused() {
    let etcd = Etcd::start().await;
    let (a, b) = (named("a").await, named("b").await);
    let (halb, front, shared, _state) = serving(&etcd, &[etcd.url()], a.addr).await;
    let good_revision = halb.status_json().await["config_revision"].clone();
    let load = Load::start(front, "/", 2, Duration::from_millis(5));

    etcd.put(
        "/halb/config",
        &shared.replace("name = \"front\"", "name = 7"),
    );
    let (status, _) = wait_status(&halb, LIMIT, "the invalid document refused", |s| {
        refusal(s).contains("listener[0].name")
    })
    .await;
    assert_eq!(status["config_revision"], good_revision, "{status:#}");
    assert!(status["cluster"]["refused_config_revision"].as_i64() > Some(0));
    assert!(refusal(&status).contains("expected a string, got an integer 7"));

    etcd.delete("/halb/config");
    let (status, _) = wait_status(&halb, LIMIT, "the deletion refused", |s| {
        refusal(s).contains("/halb/config does not exist")
    })
    .await;
    assert_eq!(status["config_revision"], good_revision);
    assert_eq!(get_once(front, "/").await.body, "a", "traffic goes on");

    // A backend key while no good document is stored changes nothing yet.
    etcd.put(&format!("/halb/pools/app/backends/{}", b.addr), "");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!has_backend(&halb.status_json().await, b.addr));

    etcd.put("/halb/config", &shared);
    let (status, _) = wait_status(&halb, LIMIT, "the good document applied", |s| {
        refusal(s).is_empty() && has_backend(s, b.addr)
    })
    .await;
    assert_ne!(status["config_revision"], good_revision);
    assert_eq!(status["cluster"]["refused_config_revision"], 0);
    assert_none_failed(&load.finish().await);
    let logs = halb.logs();
    assert!(logs.contains("reload refused"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_with_etcd_down_serves_the_last_known_good() {
    let mut etcd = Etcd::start().await;
    let (a, b) = (named("a").await, named("b").await);
    let (front, state) = (free_addr(), StateDir::new());
    let (local, shared) = configs(front, &[a.addr], &[etcd.url()], &state, "lb1");
    etcd.put("/halb/config", &shared);
    {
        let halb = Halb::start(&local).await;
        wait_status(&halb, LIMIT, "the last-known-good written", |s| {
            s["cluster"]["last_known_good"]["written_revision"].as_i64() > Some(0)
        })
        .await;
    }
    etcd.kill();

    let halb = Halb::start(&local).await;
    wait_until_up(&halb, &[a.addr]).await;
    assert_eq!(get_once(front, "/").await.body, "a");
    let status = halb.status_json().await;
    assert_eq!(
        status["cluster"]["served_from"], "last-known-good",
        "{status:#}"
    );
    assert_eq!(status["cluster"]["store"]["connected"], false);
    assert_eq!(status["config_source"], "etcd");

    etcd.restart().await;
    etcd.put(&format!("/halb/pools/app/backends/{}", b.addr), "");
    wait_status(&halb, LIMIT, "reconciled with etcd", |s| {
        s["cluster"]["served_from"] == "etcd" && has_backend(s, b.addr)
    })
    .await;
}
