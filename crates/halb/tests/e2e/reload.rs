//! Hot reload (issue 4) by SIGHUP and `POST /api/v1/reload`, applied as a
//! diff without failing a request; a bad file is refused whole and the
//! running config stays. `--watch`: see `reload_watch.rs`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::backends::named;
use crate::support::client::{
    answers_on_new_connections, connection_refused, read_response, try_get_once, wait_until_refused,
};
use crate::support::config::line_of;
use crate::support::load::{failed, Load, Outcome};
use crate::support::node_config::NodeConfig;
use crate::support::reload::{
    config_status, listener_names, pool_backends, reload_counts, reload_via_api, reload_via_sighup,
    strings, wait_for_reloads,
};
use crate::support::status::backend_entry;
use crate::support::{exclusive, free_addr, Halb};

/// The number: 50 reloads under load, 0 failed requests.
const RELOADS: u64 = 50;

/// A `config` status object's hash.
fn hash_of(config: &Value) -> String {
    config["hash"].as_str().expect("config.hash").to_owned()
}

/// Every outcome must be a 200 from one of `names`.
fn assert_all_served_by(outcomes: &[Outcome], names: &[&str], what: &str) {
    let failures = failed(outcomes);
    assert!(
        failures.is_empty(),
        "{} of {} {what} failed; first ones: {:#?}",
        failures.len(),
        outcomes.len(),
        &failures[..failures.len().min(10)]
    );
    let strangers: HashSet<&str> = outcomes
        .iter()
        .filter_map(Outcome::body)
        .filter(|body| !names.contains(body))
        .collect();
    assert!(
        strangers.is_empty(),
        "{what} answered by unknown backends: {strangers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_reloads_under_steady_load_fail_no_request() {
    let _machine = exclusive().await;
    let (a, b, c) = (named("a").await, named("b").await, named("c").await);
    let (front, extra) = (free_addr(), free_addr());
    let base = NodeConfig::new().listener("front", front, "app");
    // A: front -> app {a, b}. B: A plus backend c and listener "extra".
    let config_a = base.clone().pool("app", &[a.addr, b.addr]).to_toml();
    let config_b = base
        .listener("extra", extra, "app")
        .pool("app", &[a.addr, b.addr, c.addr])
        .to_toml();
    let halb = Halb::start(&config_a).await;
    let hash_a = hash_of(&config_status(&halb).await);
    let mut hash_b: Option<String> = None;

    let keep_alive = Load::start(front, "/", 4, Duration::from_millis(5));
    let new_connections = Load::start_new_connections(front, "/", 4, Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let loop_started = Instant::now();
    let mut extra_answers = 0;
    for i in 0..RELOADS {
        let adding = i % 2 == 0;
        let (text, name) = if adding {
            (&config_b, "B")
        } else {
            (&config_a, "A")
        };
        // SIGHUP twice (B then A), the API twice, and so on: both triggers
        // apply both configs.
        let by_signal = i % 4 < 2;
        let config = if by_signal {
            reload_via_sighup(&halb, text).await
        } else {
            halb.rewrite_config(text);
            let (status, outcome) = reload_via_api(&halb, &[]).await;
            assert_eq!(
                status, 200,
                "reload {i} (to {name}) via the API: {outcome:#}"
            );
            assert_eq!(outcome["status"], "applied", "reload {i}: {outcome:#}");
            assert_eq!(
                strings(&outcome["pools_changed"]),
                ["app"],
                "reload {i}: {outcome:#}"
            );
            if adding {
                assert_eq!(
                    strings(&outcome["listeners_added"]),
                    ["extra"],
                    "{outcome:#}"
                );
                assert!(
                    strings(&outcome["listeners_removed"]).is_empty(),
                    "{outcome:#}"
                );
            } else {
                assert_eq!(
                    strings(&outcome["listeners_removed"]),
                    ["extra"],
                    "{outcome:#}"
                );
                assert_eq!(
                    strings(&outcome["backends_removed"]),
                    [format!("app/{}", c.addr)],
                    "{outcome:#}"
                );
            }
            config_status(&halb).await
        };
        let (ok, failed_reloads) = reload_counts(&config);
        assert_eq!(
            (ok, failed_reloads),
            (i + 1, 0),
            "after reload {i} (to {name}, by {}): {config:#}\n{}",
            if by_signal { "SIGHUP" } else { "API" },
            halb.logs()
        );
        let hash = hash_of(&config);
        if adding {
            assert_ne!(hash, hash_a, "reload {i} to B left A's hash");
            assert_eq!(hash_b.get_or_insert_with(|| hash.clone()), &hash);
        } else {
            assert_eq!(hash, hash_a, "reload {i} back to A");
        }

        let status = halb.status_json().await;
        if adding {
            assert_eq!(
                listener_names(&status),
                ["front", "extra"],
                "after reload {i}"
            );
            let reply = try_get_once(extra, "/")
                .await
                .unwrap_or_else(|e| panic!("the added listener {extra} after reload {i}: {e}"));
            assert_eq!(reply.status, 200, "the added listener: {}", reply.text());
            assert!(
                ["a", "b", "c"].contains(&reply.text().as_str()),
                "the added listener answered {:?}",
                reply.text()
            );
            extra_answers += 1;
        } else {
            assert_eq!(listener_names(&status), ["front"], "after reload {i}");
            assert_eq!(
                pool_backends(&status, "app"),
                [a.addr.to_string(), b.addr.to_string()]
            );
            wait_until_refused(extra, Duration::from_secs(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(50 + (i * 37) % 50)).await;
    }
    let loop_took = loop_started.elapsed();

    // The last reload went back to A: c gets no new request from now on
    // (past a grace for requests it had already been picked for).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c_after_removal = c.requests();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let keep_alive = keep_alive.finish().await;
    let new_connections = new_connections.finish().await;

    assert_all_served_by(&keep_alive, &["a", "b", "c"], "keep-alive requests");
    assert_all_served_by(
        &new_connections,
        &["a", "b", "c"],
        "new-connection requests",
    );
    let during = |outcomes: &[Outcome]| {
        outcomes
            .iter()
            .filter(|o| o.sent >= loop_started && o.sent < loop_started + loop_took)
            .count()
    };
    // The load really overlapped the reloads: at least ~20 requests per
    // second of each kind, far below what even a busy machine does.
    let floor = (loop_took.as_secs_f64() * 20.0) as usize;
    assert!(
        during(&keep_alive) >= floor && during(&new_connections) >= floor,
        "too little load during {loop_took:?} of reloads: {} keep-alive, {} new-connection requests",
        during(&keep_alive),
        during(&new_connections)
    );
    assert!(
        c.requests() > 0,
        "c never got a request while it was in the pool"
    );
    assert_eq!(
        c.requests(),
        c_after_removal,
        "c still got requests after it was removed"
    );
    assert_eq!(extra_answers, RELOADS / 2);

    let config = config_status(&halb).await;
    assert_eq!(reload_counts(&config), (RELOADS, 0), "{config:#}");
    assert!(connection_refused(extra).await, "extra still accepts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_is_refused_whole_and_the_running_config_stays() {
    let (a, b) = (named("a").await, named("b").await);
    let front = free_addr();
    let good = NodeConfig::new()
        .listener("front", front, "app")
        .pool("app", &[a.addr]);
    let halb = Halb::start(&good.to_toml()).await;
    let hash = hash_of(&config_status(&halb).await);
    let file = halb.config_path().display().to_string();

    // A syntax error: a table header without its closing brackets.
    let syntax = good.to_toml().replacen("[[listener]]", "[[listener]", 1);
    halb.rewrite_config(&syntax);
    let (status, refused) = reload_via_api(&halb, &[]).await;
    assert_eq!(status, 400, "{refused:#}");
    assert_eq!(refused["status"], "rejected", "{refused:#}");
    let errors = strings(&refused["errors"]);
    let line = line_of(&syntax, "[[listener]");
    assert!(
        errors.len() == 1 && errors[0].starts_with(&format!("{file}: line {line}")),
        "the syntax error must name the file and line {line}: {errors:#?}"
    );
    assert_eq!(
        answers_on_new_connections(front, 4).await,
        ["a", "a", "a", "a"]
    );

    // Semantic errors, two of them: each named by key path and line.
    let semantic = NodeConfig::new()
        .listener("front", front, "nope")
        .pool("app", &[a.addr, b.addr])
        .pool_key("app", "retries", "99")
        .to_toml();
    halb.rewrite_config(&semantic);
    let (status, refused) = reload_via_api(&halb, &[]).await;
    assert_eq!(status, 400, "{refused:#}");
    assert_eq!(refused["status"], "rejected", "{refused:#}");
    let errors = strings(&refused["errors"]);
    for expected in [
        format!(
            "{file}: listener[0].pool (line {})",
            line_of(&semantic, "pool = \"nope\"")
        ),
        format!(
            "{file}: pool[0].retries (line {})",
            line_of(&semantic, "retries = 99")
        ),
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(&expected)),
            "no error starting {expected:?}: {errors:#?}"
        );
    }
    assert_eq!(errors.len(), 2, "{errors:#?}");

    // Nothing changed: same pool (b is not in it), same hash, same listener.
    assert_eq!(
        answers_on_new_connections(front, 4).await,
        ["a", "a", "a", "a"]
    );
    assert_eq!(b.requests(), 0);
    let config = config_status(&halb).await;
    assert_eq!(reload_counts(&config), (0, 2), "{config:#}");
    assert_eq!(hash_of(&config), hash);
    assert_eq!(strings(&config["last_error"]), errors, "{config:#}");

    // The same file by SIGHUP: refused and counted the same way.
    halb.signal("HUP");
    let config = wait_for_reloads(&halb, 3, Duration::from_secs(10)).await;
    assert_eq!(reload_counts(&config), (0, 3), "{config:#}");
    assert_eq!(strings(&config["last_error"]), errors, "{config:#}");
    assert_eq!(hash_of(&config), hash);
    assert_eq!(
        answers_on_new_connections(front, 4).await,
        ["a", "a", "a", "a"]
    );

    // A good file after the bad ones applies and clears the last error.
    let fixed = NodeConfig::new()
        .listener("front", front, "app")
        .pool("app", &[a.addr, b.addr]);
    let config = reload_via_sighup(&halb, &fixed.to_toml()).await;
    assert_eq!(reload_counts(&config), (1, 3), "{config:#}");
    assert!(
        strings(&config["last_error"]).is_empty(),
        "last_error after a good reload: {config:#}"
    );
    assert_ne!(hash_of(&config), hash);
    let answers: HashSet<String> = answers_on_new_connections(front, 4)
        .await
        .into_iter()
        .collect();
    assert_eq!(answers, HashSet::from(["a".to_owned(), "b".to_owned()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_whose_new_listener_cannot_bind_changes_nothing() {
    let (a, b) = (named("a").await, named("b").await);
    let front = free_addr();
    // Held without SO_REUSEPORT, so halb cannot bind it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().expect("address");
    let before = NodeConfig::new()
        .listener("front", front, "app")
        .pool("app", &[a.addr]);
    let halb = Halb::start(&before.to_toml()).await;
    let hash = hash_of(&config_status(&halb).await);

    // A new listener that cannot bind, and a pool change with it.
    let after = NodeConfig::new()
        .listener("front", front, "app")
        .listener("extra", taken_addr, "app")
        .pool("app", &[a.addr, b.addr]);
    halb.rewrite_config(&after.to_toml());
    let (code, outcome) = reload_via_api(&halb, &[]).await;
    assert_eq!(code, 400, "{outcome:#}");
    assert_eq!(outcome["status"], "rejected", "{outcome:#}");
    let errors = strings(&outcome["errors"]);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("extra") && e.contains(&taken_addr.to_string())),
        "the error must name the listener and its address: {errors:#?}"
    );

    let config = config_status(&halb).await;
    assert_eq!(reload_counts(&config), (0, 1), "{config:#}");
    assert_eq!(hash_of(&config), hash);
    assert_eq!(strings(&config["last_error"]), errors);
    let status = halb.status_json().await;
    assert_eq!(listener_names(&status), ["front"]);
    assert_eq!(pool_backends(&status, "app"), [a.addr.to_string()]);
    assert_eq!(answers_on_new_connections(front, 4).await, ["a"; 4]);
    assert_eq!(
        b.requests(),
        0,
        "the refused reload's pool change took effect"
    );
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_pool_keeps_its_counters_and_state_across_a_reload() {
    let (a, b) = (named("a").await, named("b").await);
    let (s1, s2) = (named("s1").await, named("s2").await);
    let (front, side) = (free_addr(), free_addr());
    let before = NodeConfig::new()
        .listener("front", front, "app")
        .listener("side", side, "side")
        .pool("app", &[a.addr, b.addr])
        .pool("side", &[s1.addr]);
    let after = NodeConfig::new()
        .listener("front", front, "app")
        .listener("side", side, "side")
        .pool("app", &[a.addr, b.addr])
        .pool("side", &[s1.addr, s2.addr]);
    let halb = Halb::start(&before.to_toml()).await;

    answers_on_new_connections(front, 20).await;
    answers_on_new_connections(side, 6).await;
    // An operator drained b: that is part of the pool's state too.
    let drain = halb
        .admin_request(
            "POST",
            &format!("/api/v1/pools/app/backends/{}/drain", b.addr),
        )
        .await;
    assert_eq!(drain.status, 200, "drain b: {}", drain.text());
    let requests =
        |status: &Value, addr: SocketAddr| backend_entry(status, addr)["requests"].clone();
    let status = halb.status_json().await;
    assert_eq!(requests(&status, a.addr), 10);
    assert_eq!(requests(&status, b.addr), 10);
    assert_eq!(requests(&status, s1.addr), 6);

    halb.rewrite_config(&after.to_toml());
    let (code, outcome) = reload_via_api(&halb, &[]).await;
    assert_eq!(code, 200, "{outcome:#}");
    assert_eq!(strings(&outcome["pools_changed"]), ["side"], "{outcome:#}");
    for untouched in [
        "pools_added",
        "pools_removed",
        "listeners_added",
        "listeners_removed",
        "backends_removed",
    ] {
        assert!(
            strings(&outcome[untouched]).is_empty(),
            "{untouched}: {outcome:#}"
        );
    }

    let status = halb.status_json().await;
    assert_eq!(
        requests(&status, a.addr),
        10,
        "a's counter after the reload"
    );
    assert_eq!(
        requests(&status, b.addr),
        10,
        "b's counter after the reload"
    );
    assert_eq!(
        backend_entry(&status, b.addr)["state"],
        "draining",
        "b's drain after the reload: {status:#}"
    );
    assert_eq!(
        requests(&status, s1.addr),
        6,
        "s1 stayed in the changed pool"
    );
    assert_eq!(requests(&status, s2.addr), 0);

    // The counters go on from where they were.
    assert_eq!(answers_on_new_connections(front, 10).await, ["a"; 10]);
    answers_on_new_connections(side, 6).await;
    let status = halb.status_json().await;
    assert_eq!(requests(&status, a.addr), 20);
    assert_eq!(requests(&status, b.addr), 10);
    assert_eq!(requests(&status, s1.addr), 9);
    assert_eq!(requests(&status, s2.addr), 3);
    assert_eq!((a.requests(), b.requests()), (20, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_listener_finishes_in_flight_work_then_refuses() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};

    let slow = named("slow").await;
    let (front, extra) = (free_addr(), free_addr());
    let with_extra = NodeConfig::new()
        .listener("front", front, "app")
        .listener("extra", extra, "app")
        .pool("app", &[slow.addr]);
    let without = NodeConfig::new()
        .listener("front", front, "app")
        .pool("app", &[slow.addr]);
    let halb = Halb::start(&with_extra.to_toml()).await;

    // An idle keep-alive connection on the listener to be removed.
    let mut idle = tokio::net::TcpStream::connect(extra)
        .await
        .expect("connect");
    idle.write_all(format!("GET / HTTP/1.1\r\nHost: {extra}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut idle = BufReader::new(idle);
    let first = read_response(&mut idle).await.expect("first response");
    assert_eq!((first.status, first.text().as_str()), (200, "slow"));

    // A request that takes a second, in flight when the listener goes.
    let in_flight = tokio::spawn(async move {
        let started = Instant::now();
        let mut stream = tokio::net::TcpStream::connect(extra)
            .await
            .expect("connect");
        stream
            .write_all(format!("GET /sleep/1000 HTTP/1.1\r\nHost: {extra}\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut reader = BufReader::new(stream);
        let response = read_response(&mut reader).await;
        let took = started.elapsed();
        // Then halb closes the connection.
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut rest)).await;
        (response, took, closed.map(|r| r.map(|_| rest)))
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while slow.requests() < 2 {
        assert!(
            Instant::now() < deadline,
            "the slow request never reached the backend"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    halb.rewrite_config(&without.to_toml());
    let (code, outcome) = reload_via_api(&halb, &[]).await;
    assert_eq!(code, 200, "{outcome:#}");
    assert_eq!(
        strings(&outcome["listeners_removed"]),
        ["extra"],
        "{outcome:#}"
    );
    let refused_after = wait_until_refused(extra, Duration::from_secs(1)).await;
    assert!(
        !in_flight.is_finished(),
        "the slow request ended before the listener stopped accepting ({refused_after:?} after the reload)"
    );

    let (response, took, closed) = in_flight.await.expect("in-flight task");
    let response = response.expect("the in-flight request on the removed listener");
    assert_eq!((response.status, response.text().as_str()), (200, "slow"));
    assert!(
        took >= Duration::from_millis(950),
        "answered after {took:?}"
    );
    match closed {
        Ok(Ok(rest)) => assert!(rest.is_empty(), "more bytes after the response: {rest:?}"),
        Ok(Err(e)) => panic!("reading after the response: {e}"),
        Err(_) => panic!("halb kept the removed listener's connection open"),
    }

    // The idle keep-alive connection is closed too.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "the idle connection on the removed listener: {closed:?}"
    );

    assert!(connection_refused(extra).await);
    assert_eq!(answers_on_new_connections(front, 3).await, ["slow"; 3]);
}

/// Renaming a listener while keeping its address and protocol should not
/// cost a request: the address is served before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renaming_a_listener_in_place_fails_no_request() {
    let _machine = exclusive().await;
    let a = named("a").await;
    let front = free_addr();
    let named_front = NodeConfig::new()
        .listener("front", front, "app")
        .pool("app", &[a.addr])
        .to_toml();
    let named_web = NodeConfig::new()
        .listener("web", front, "app")
        .pool("app", &[a.addr])
        .to_toml();
    let halb = Halb::start(&named_front).await;
    let load = Load::start_new_connections(front, "/", 4, Duration::from_millis(2));
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..20 {
        halb.rewrite_config(if i % 2 == 0 { &named_web } else { &named_front });
        let (code, outcome) = reload_via_api(&halb, &[]).await;
        assert_eq!(code, 200, "{outcome:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let outcomes = load.finish().await;
    assert_all_served_by(&outcomes, &["a"], "requests to a listener renamed in place");
}
