//! Staged rollout (issue 13, check 8): `halb config push --canary lb1`
//! with a revision that makes lb1's requests fail (its pool points at a
//! dead port) is rolled back by itself: the push exits 1 saying why, lb1
//! runs the previous revision again, and lb2 never sees the bad one. A
//! good revision tried the same way is promoted to every node.

use std::time::Duration;

use crate::etcd_config::configs;
use crate::support::backends::{named, refused};
use crate::support::etcd::{has_backend, wait_status, Etcd, StateDir};
use crate::support::load::Load;
use crate::support::process::{run_halb, Finished, TempFile};
use crate::support::status::wait_until_up;
use crate::support::{free_addr, Halb};

const LIMIT: Duration = Duration::from_secs(15);

/// Two nodes, lb1 and lb2, on one shared document; both listen on its
/// front address (the kernel spreads connections over both), returned
/// with the document.
async fn fleet(
    etcd: &Etcd,
    shared_backend: std::net::SocketAddr,
) -> (Halb, Halb, std::net::SocketAddr, String, [StateDir; 2]) {
    let states = [StateDir::new(), StateDir::new()];
    let front = free_addr();
    let (local1, shared) = configs(front, &[shared_backend], &[etcd.url()], &states[0], "lb1");
    let (local2, _) = configs(front, &[shared_backend], &[etcd.url()], &states[1], "lb2");
    etcd.put("/halb/config", &shared);
    let lb1 = Halb::start(&local1).await;
    let lb2 = Halb::start(&local2).await;
    wait_until_up(&lb1, &[shared_backend]).await;
    wait_until_up(&lb2, &[shared_backend]).await;
    // Both registered, so that the push can find lb1.
    wait_status(&lb1, LIMIT, "lb1 in the registry", |_| {
        etcd.get("/halb/nodes/lb1").is_some() && etcd.get("/halb/nodes/lb2").is_some()
    })
    .await;
    (lb1, lb2, front, shared, states)
}

/// `halb config push --canary lb1 --watch WATCH FILE`, off the runtime.
async fn push_canary(etcd: &Etcd, document: &str, watch: &str) -> Finished {
    let file = TempFile::with_contents("shared.toml", document);
    let args: Vec<String> = [
        "config",
        "push",
        "--etcd",
        &etcd.url(),
        "--canary",
        "lb1",
        "--watch",
        watch,
        &file.path.display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let finished = run_halb(&args, Duration::from_secs(60));
        drop(file);
        finished
    })
    .await
    .expect("push")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_fails_requests_is_rolled_back_and_others_never_see_it() {
    let etcd = Etcd::start().await;
    let a = named("a").await;
    let (lb1, lb2, front, shared, _states) = fleet(&etcd, a.addr).await;
    let before = lb2.status_json().await;
    let revision = before["config_revision"].clone();

    // lb2's revision, read every 20 ms while the push runs.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watching = tokio::spawn({
        let (admin, stop) = (lb2.admin(), stop.clone());
        async move {
            let mut seen = std::collections::BTreeSet::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(r) = crate::support::process::admin_get(admin, "/api/v1/status").await {
                    let status: serde_json::Value =
                        serde_json::from_slice(&r.body).unwrap_or_default();
                    seen.insert(status["config_revision"].to_string());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        }
    });
    // New connections: the kernel spreads them over both nodes, so the
    // canary gets its share whatever happened to earlier connections.
    let load = Load::start_new_connections(front, "/", 4, Duration::from_millis(5));
    let bad = shared.replace(&a.addr.to_string(), &refused().to_string());
    let out = push_canary(&etcd, &bad, "5s").await;
    let outcomes = load.finish().await;
    println!("{}{}", out.stdout, out.stderr);
    assert_eq!(out.code(), Some(1), "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("rolled back"), "{}", out.stderr);
    assert!(out.stderr.contains("were 5xx"), "{}", out.stderr);

    let (status, _) = wait_status(&lb1, LIMIT, "lb1 back on the stored revision", |s| {
        s["config_revision"] == revision
    })
    .await;
    assert!(has_backend(&status, a.addr), "{status:#}");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = watching.await.expect("lb2 watcher");
    assert_eq!(seen.len(), 1, "lb2 ran more than one revision: {seen:?}");
    let after = lb2.status_json().await;
    assert_eq!(after["config_revision"], revision);
    assert_eq!(
        after["config"]["reloads_ok"], before["config"]["reloads_ok"],
        "lb2 applied something: {after:#}"
    );
    assert_eq!(
        etcd.get("/halb/config").map(|t| t.trim_end().to_owned()),
        Some(shared.trim_end().to_owned())
    );
    assert_eq!(etcd.get("/halb/canary"), None);
    let failed = outcomes.iter().filter(|o| !o.is_ok()).count();
    println!(
        "{failed} of {} requests failed on the canary during its trial",
        outcomes.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_is_promoted_to_every_node() {
    let etcd = Etcd::start().await;
    let (a, b) = (named("a").await, named("b").await);
    let (lb1, lb2, front, shared, _states) = fleet(&etcd, a.addr).await;
    // New connections: the kernel spreads them over both nodes, so the
    // canary gets its share whatever happened to earlier connections.
    let load = Load::start_new_connections(front, "/", 4, Duration::from_millis(5));
    let good = format!("{shared}\n[[pool.backend]]\naddress = \"{}\"\n", b.addr);
    let out = push_canary(&etcd, &good, "2s").await;
    let outcomes = load.finish().await;
    assert_eq!(out.code(), Some(0), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("promoted"), "{}", out.stdout);
    for halb in [&lb1, &lb2] {
        wait_status(halb, LIMIT, "b on every node", |s| has_backend(s, b.addr)).await;
    }
    assert_eq!(etcd.get("/halb/canary"), None);
    crate::support::load::assert_none_failed(&outcomes);
}
