//! The fleet's commands and etcd's failures (issue 13, checks 3, 4, 5, 7
//! and 9), against real etcd: `halb config push` refuses a bad file and
//! stores a good one; a backend on a lease starts down until its checks
//! pass and drains when the lease goes; `halb register` killed with
//! SIGKILL is gone after its TTL; etcd killed under load fails nothing and
//! the next change after its return is applied; a three-member cluster
//! loses a member unnoticed; `halb cluster status` lists two nodes at one
//! revision; 100 backend changes in a second under load fail nothing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::etcd_config::{configs, serving};
use crate::support::backends::{named, Health};
use crate::support::etcd::{has_backend, wait_status, Etcd, StateDir};
use crate::support::load::{assert_none_failed, Load};
use crate::support::process::{halb_command, run_halb, KillOnDrop, TempFile};
use crate::support::status::{wait_for_state, wait_until_up};
use crate::support::{exclusive, free_addr, Halb};

const LIMIT: Duration = Duration::from_secs(15);

/// The shared document as etcd holds it, without trailing newlines.
fn stored(etcd: &Etcd) -> String {
    etcd.get("/halb/config")
        .map(|text| text.trim_end().to_owned())
        .unwrap_or_default()
}

fn backend_key(address: SocketAddr) -> String {
    format!("/halb/pools/app/backends/{address}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_push_refuses_a_bad_file_and_stores_a_good_one() {
    let etcd = Etcd::start().await;
    let a = named("a").await;
    let (front, state) = (free_addr(), StateDir::new());
    let (_, shared) = configs(front, &[a.addr], &[etcd.url()], &state, "lb1");

    let bad = TempFile::with_contents(
        "shared.toml",
        &(shared.replace("name = \"front\"", "name = 7") + "\n[runtime]\nworkers = 2\n"),
    );
    let out = run_halb(
        &[
            "config",
            "push",
            "--etcd",
            &etcd.url(),
            &bad.path.display().to_string(),
        ],
        LIMIT,
    );
    assert_eq!(out.code(), Some(1), "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("listener[0].name"), "{}", out.stderr);
    assert!(
        out.stderr.contains("[runtime] is node-local"),
        "every error is printed: {}",
        out.stderr
    );
    assert_eq!(etcd.get("/halb/config"), None, "nothing was written");

    let good = TempFile::with_contents("shared.toml", &shared);
    let path = good.path.display().to_string();
    let out = run_halb(&["config", "push", "--etcd", &etcd.url(), &path], LIMIT);
    assert_eq!(out.code(), Some(0), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("stored /halb/config"), "{}", out.stdout);
    assert_eq!(stored(&etcd), shared.trim_end());

    // A dry run names the change and writes nothing.
    let other = free_addr().to_string();
    let changed =
        TempFile::with_contents("shared.toml", &shared.replace(&a.addr.to_string(), &other));
    let changed_path = changed.path.display().to_string();
    let out = run_halb(
        &[
            "config",
            "push",
            "--etcd",
            &etcd.url(),
            "--dry-run",
            &changed_path,
        ],
        LIMIT,
    );
    assert_eq!(out.code(), Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("dry run: nothing written"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&other),
        "the diff names the change: {}",
        out.stdout
    );
    assert_eq!(stored(&etcd), shared.trim_end());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leased_backend_joins_once_checked_and_drains_when_its_lease_goes() {
    let _machine = exclusive().await;
    let etcd = Etcd::start().await;
    let (a, b) = (named("a").await, named("b").await);
    let (halb, front, _, _state) = serving(&etcd, &[etcd.url()], a.addr).await;
    let load = Load::start(front, "/", 4, Duration::from_millis(5));

    // It starts down: no request reaches it before its checks pass.
    b.set_health(Health::Failing);
    let lease = etcd.grant(30);
    etcd.put_on_lease(&backend_key(b.addr), "", &lease);
    wait_status(&halb, LIMIT, "b in the pool", |s| has_backend(s, b.addr)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        b.requests(),
        0,
        "a backend that never passed its checks got traffic"
    );
    b.set_health(Health::Passing);
    wait_until_up(&halb, &[b.addr]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b.requests() > 0, "b got no traffic once up");

    etcd.revoke(&lease);
    wait_status(&halb, LIMIT, "b gone", |s| !has_backend(s, b.addr)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = b.requests();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        b.requests(),
        after,
        "b still gets requests after its lease went"
    );
    assert_none_failed(&load.finish().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_register_process_leaves_after_its_ttl() {
    let etcd = Etcd::start().await;
    let a = named("a").await;
    let key = backend_key(a.addr);
    let (stdout, stderr) = (TempFile::unique("stdout"), TempFile::unique("stderr"));
    let address = a.addr.to_string();
    let check = format!("http://{}/healthz", a.addr);
    let child = halb_command(&stdout, &stderr)
        .args(["register", "--etcd", &etcd.url(), "--pool", "app"])
        .args(["--address", &address, "--ttl", "2s", "--check", &check])
        .spawn()
        .expect("spawn halb register");
    let mut register = KillOnDrop(child);
    let deadline = Instant::now() + LIMIT;
    while etcd.get(&key).is_none() {
        assert!(
            Instant::now() < deadline,
            "not registered: {}{}",
            stdout.read(),
            stderr.read()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Renewed: it outlives its TTL while the process lives.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(etcd.get(&key).is_some(), "the key expired while renewed");

    register.0.kill().expect("SIGKILL halb register");
    let killed = Instant::now();
    while etcd.get(&key).is_some() {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "still registered 10 s after SIGKILL"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gone = killed.elapsed();
    println!(
        "halb register SIGKILLed: key gone after {} ms (ttl 2 s)",
        gone.as_millis()
    );
    assert!(
        gone >= Duration::from_millis(500),
        "gone before its TTL: {gone:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_killed_for_a_minute_under_load_fails_nothing() {
    let mut etcd = Etcd::start().await;
    let (a, b) = (named("a").await, named("b").await);
    let (halb, front, _, _state) = serving(&etcd, &[etcd.url()], a.addr).await;
    let load = Load::start(front, "/", 2, Duration::from_millis(10));

    etcd.kill();
    wait_status(&halb, LIMIT, "the store seen as away", |s| {
        s["cluster"]["store"]["connected"] == false
    })
    .await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    etcd.restart().await;
    etcd.put(&backend_key(b.addr), "");
    let (_, applied) = wait_status(&halb, Duration::from_secs(30), "b applied", |s| {
        s["cluster"]["store"]["connected"] == true && has_backend(s, b.addr)
    })
    .await;
    let outcomes = load.finish().await;
    assert_none_failed(&outcomes);
    println!(
        "etcd down 60 s: {} requests, 0 failed; the first change after its return applied in {} ms",
        outcomes.len(),
        applied.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_member_cluster_loses_a_member_unnoticed() {
    let mut members = Etcd::start_cluster().await;
    let urls: Vec<String> = members.iter().map(Etcd::url).collect();
    let (a, b) = (named("a").await, named("b").await);
    let (halb, front, _, _state) = serving(&members[1], &urls, a.addr).await;
    let load = Load::start(front, "/", 2, Duration::from_millis(10));

    // The first endpoint is the one the node talks to first.
    let first = members[0].url();
    assert_eq!(
        halb.status_json().await["cluster"]["store"]["endpoint"],
        first
    );
    members[0].kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    members[1].put(&backend_key(b.addr), "");
    let (status, applied) =
        wait_status(&halb, LIMIT, "b applied", |s| has_backend(s, b.addr)).await;
    assert_ne!(status["cluster"]["store"]["endpoint"], first, "{status:#}");
    assert_eq!(status["cluster"]["store"]["connected"], true, "{status:#}");
    let outcomes = load.finish().await;
    assert_none_failed(&outcomes);
    println!(
        "one of three etcd members killed: the next change applied in {} ms, 0 of {} requests failed",
        applied.as_millis(),
        outcomes.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_status_lists_two_nodes_at_one_revision() {
    let etcd = Etcd::start().await;
    let a = named("a").await;
    let (state1, state2) = (StateDir::new(), StateDir::new());
    let (local1, shared) = configs(free_addr(), &[a.addr], &[etcd.url()], &state1, "lb1");
    // The same shared document; the second node's own file differs in its
    // name, admin port and state dir.
    let (local2, _) = configs(free_addr(), &[a.addr], &[etcd.url()], &state2, "lb2");
    etcd.put("/halb/config", &shared);
    let lb1 = Halb::start(&local1).await;
    let lb2 = Halb::start(&local2).await;
    let revision = etcd
        .ctl(&["get", "/halb/config", "-w", "fields"])
        .lines()
        .find_map(|line| line.strip_prefix("\"ModRevision\" : "))
        .and_then(|r| r.trim().parse::<i64>().ok())
        .expect("the config's mod revision");

    let deadline = Instant::now() + LIMIT;
    let fleet = loop {
        let out = run_halb(
            &["cluster", "status", "--etcd", &etcd.url(), "--json"],
            LIMIT,
        );
        assert_eq!(out.code(), Some(0), "{}", out.stderr);
        let fleet: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
        let nodes = fleet["nodes"].as_array().cloned().unwrap_or_default();
        let converged = nodes.len() == 2 && nodes.iter().all(|n| n["converged"] == true);
        if converged {
            break fleet;
        }
        assert!(Instant::now() < deadline, "not converged: {fleet:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut names: Vec<&str> = (fleet["nodes"].as_array().into_iter().flatten())
        .filter_map(|n| n["node"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["lb1", "lb2"], "{fleet:#}");
    assert_eq!(
        etcd.keys("/halb/nodes/"),
        ["/halb/nodes/lb1", "/halb/nodes/lb2"]
    );
    for node in fleet["nodes"].as_array().into_iter().flatten() {
        assert_eq!(node["config_revision"], revision, "{fleet:#}");
    }
    for (halb, admin) in [(&lb1, lb1.admin()), (&lb2, lb2.admin())] {
        let status = halb.status_json().await;
        assert_eq!(
            status["config_revision"],
            revision.to_string(),
            "{status:#}"
        );
        let listed = fleet["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| n["admin"] == admin.to_string());
        assert!(listed, "{admin} not in {fleet:#}");
    }

    // The table form says the same.
    let out = run_halb(&["cluster", "status", "--etcd", &etcd.url()], LIMIT);
    let rows: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("lb")).collect();
    assert_eq!(rows.len(), 2, "{}", out.stdout);
    assert!(
        rows.iter().all(|row| row.contains(" yes")),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_backend_changes_in_a_second_fail_nothing() {
    let _machine = exclusive().await;
    let etcd = Etcd::start().await;
    let a = named("a").await;
    let mut churners = Vec::new();
    for i in 0..10 {
        churners.push(named(&format!("c{i}")).await);
    }
    let (halb, front, _, _state) = serving(&etcd, &[etcd.url()], a.addr).await;
    let client = halb_cluster::Client::from_urls(&etcd.url()).expect("etcd client");
    let load = Load::start(front, "/", 4, Duration::from_millis(2));
    let (cpu_before, started) = (halb.cpu_ticks() as f64 / 100.0, Instant::now());

    // Each of ten backends joins and leaves five times: 100 events.
    let mut present = [false; 10];
    for event in 0..100 {
        let i = event % 10;
        let key = backend_key(churners[i].addr);
        if present[i] {
            client.delete(&key).await.expect("etcd delete");
        } else {
            client.put(&key, b"", 0).await.expect("etcd put");
        }
        present[i] = !present[i];
        tokio::time::sleep(Duration::from_millis(9)).await;
    }
    let churned = started.elapsed();
    wait_status(&halb, LIMIT, "every churned backend gone", |s| {
        churners.iter().all(|c| !has_backend(s, c.addr))
    })
    .await;
    // And once more in, to be served: the last changes are applied.
    client
        .put(&backend_key(churners[0].addr), b"", 0)
        .await
        .expect("etcd put");
    wait_status(&halb, LIMIT, "c0 back", |s| {
        has_backend(s, churners[0].addr)
    })
    .await;
    wait_for_state(&halb, churners[0].addr, "up", LIMIT).await;
    let cpu = halb.cpu_ticks() as f64 / 100.0 - cpu_before;
    let outcomes = load.finish().await;
    assert_none_failed(&outcomes);
    let served: usize = churners.iter().map(|c| c.requests()).sum();
    println!(
        "100 backend changes in {} ms under load: {} requests, 0 failed, {served} served by churned backends; \
         halb used {cpu:.2} s CPU over {:.1} s, peak RSS {} KiB",
        churned.as_millis(),
        outcomes.len(),
        started.elapsed().as_secs_f64(),
        halb.peak_rss_kib()
    );
}
