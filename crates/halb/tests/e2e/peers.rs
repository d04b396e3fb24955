//! Active-active nodes (issue 14): two halb processes on loopback linked by
//! `[cluster.peers]`, sharing a stick table (users learned on one node map
//! the same on the other; the survivor of a SIGKILL keeps them; a restarted
//! node gets them back by full resync), health verdicts (a node with slow
//! checks learns of a dead backend from its peer within a second and its
//! sticky users move the same way on both nodes, no GET failed), operator
//! actions, a node with the wrong secret refused, and sticky cookies that
//! any node honours.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::backends::{named, Backend};
use crate::support::client::HttpClient;
use crate::support::node_config::NodeConfig;
use crate::support::status::{wait_for_state, wait_until_up};
use crate::support::{free_addr, within, Halb};

const SECRET: &str = "e2e-peers-secret-6c1f9a";
const USERS: usize = 40;

/// One node of a pair (or trio): its listener and config.
struct Spec {
    listen: SocketAddr,
    config: NodeConfig,
}

/// Node `name` of a fleet whose peer ports are `peers`, with pool `app`
/// over `backends` and `sticky` keys, checks every `interval`.
fn spec(
    name: &str,
    peer: SocketAddr,
    others: &[SocketAddr],
    secret: &str,
    backends: &[SocketAddr],
    sticky: &[(&str, &str)],
    interval: &str,
) -> Spec {
    let listen = free_addr();
    let list: Vec<String> = others.iter().map(|p| format!("\"{p}\"")).collect();
    let config = NodeConfig::new()
        .section(&format!(
            "[cluster]\nnode = \"{name}\"\n\n[cluster.peers]\nbind = \"{peer}\"\npeers = [{}]\nsecret = \"{secret}\"\n",
            list.join(", ")
        ))
        .listener("front", listen, "app")
        .pool("app", backends)
        .http_checks("app", interval, "500ms", 1, 2)
        .sticky("app", sticky);
    Spec { listen, config }
}

fn table_on_user() -> [(&'static str, &'static str); 2] {
    [("kind", "\"table\""), ("key", "\"header:X-User\"")]
}

async fn status(halb: &Halb) -> Value {
    halb.status_json().await
}

/// Waits until every peer link of `halb` is connected both ways.
async fn wait_linked(halb: &Halb, links: usize) -> Value {
    let started = Instant::now();
    loop {
        let s = status(halb).await;
        let peers = s["peers"].as_array().cloned().unwrap_or_default();
        if peers.len() == links
            && peers
                .iter()
                .all(|p| p["connected"] == true && p["inbound"] == true)
        {
            return s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "peer links not up: {}",
            s["peers"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Which backend serves `user` through `listen` (one GET; it must be 200).
async fn served(client: &mut HttpClient, user: &str) -> String {
    let reply = within(
        Duration::from_secs(10),
        "a GET",
        client.get("/", &[("x-user", user)]),
    )
    .await;
    assert_eq!(reply.status, 200, "GET for {user}: {}", reply.text());
    reply.text()
}

async fn map_users(
    listen: SocketAddr,
    users: impl Iterator<Item = usize>,
) -> HashMap<usize, String> {
    let mut client = HttpClient::connect(listen).await;
    let mut out = HashMap::new();
    for u in users {
        out.insert(u, served(&mut client, &format!("user-{u}")).await);
    }
    out
}

/// Polls until every user maps through `listen` as in `want`; how long.
async fn until_same(
    listen: SocketAddr,
    want: &HashMap<usize, String>,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let now = map_users(listen, want.keys().copied()).await;
        let differ: Vec<_> = want.iter().filter(|(u, b)| now.get(u) != Some(b)).collect();
        if differ.is_empty() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{} users still map differently after {limit:?}: {differ:?} vs {now:?}",
            differ.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn three_backends() -> [Backend; 3] {
    [named("b1").await, named("b2").await, named("b3").await]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_users_follow_across_nodes_a_killed_node_and_a_restart() {
    let backends = three_backends().await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let (pa, pb) = (free_addr(), free_addr());
    let a = spec("lb1", pa, &[pb], SECRET, &addrs, &table_on_user(), "100ms");
    let b = spec("lb2", pb, &[pa], SECRET, &addrs, &table_on_user(), "100ms");
    let a_toml = a.config.to_toml();
    let mut node_a = Halb::start(&a_toml).await;
    let node_b = Halb::start(&b.config.to_toml()).await;
    let linked = wait_linked(&node_a, 1).await;
    wait_linked(&node_b, 1).await;
    wait_until_up(&node_a, &addrs).await;
    wait_until_up(&node_b, &addrs).await;
    let link = &linked["peers"][0];
    assert_eq!(link["address"], pb.to_string().as_str());
    assert_eq!(link["node"], "lb2");
    assert!(link["lag_ms"].is_u64(), "{link}");

    // 1. Learned on A, the same on B within a second.
    let learned = map_users(a.listen, 0..USERS).await;
    let spread: std::collections::HashSet<_> = learned.values().collect();
    assert_eq!(spread.len(), 3, "round robin spread the users: {learned:?}");
    let took = until_same(b.listen, &learned, Duration::from_secs(1)).await;
    eprintln!("{USERS} users learned on lb1 map the same on lb2 after {took:?}");
    let s = status(&node_a).await;
    eprintln!("lb1 peers: {}", s["peers"]);
    assert!(s["peers"][0]["updates_sent"].as_u64().unwrap_or(0) >= USERS as u64);

    // 2. A dies: B keeps them all; users learned on B meanwhile reach A
    // when it comes back (B's full resync).
    node_a.signal("KILL");
    node_a.wait_for_exit(Duration::from_secs(5)).await;
    let kept = map_users(b.listen, 0..USERS).await;
    assert_eq!(kept, learned, "lb2 keeps every user after lb1's death");
    let later = map_users(b.listen, USERS..USERS + 20).await;
    let node_a = Halb::start(&a_toml).await;
    wait_linked(&node_a, 1).await;
    wait_until_up(&node_a, &addrs).await;
    let mut all = learned.clone();
    all.extend(later);
    let took = until_same(a.listen, &all, Duration::from_secs(3)).await;
    eprintln!(
        "restarted lb1 maps all {} users as lb2 after {took:?} from linked",
        all.len()
    );
    let s = status(&node_b).await;
    assert!(
        s["peers"][0]["resyncs"].as_u64().unwrap_or(0) >= 2,
        "{}",
        s["peers"]
    );
    drop(backends);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_verdict_takes_a_dead_backend_out_within_a_second_and_users_move_alike() {
    let mut backends = three_backends().await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let (pa, pb) = (free_addr(), free_addr());
    let a = spec("lb1", pa, &[pb], SECRET, &addrs, &table_on_user(), "100ms");
    let b = spec("lb2", pb, &[pa], SECRET, &addrs, &table_on_user(), "10s");
    let node_a = Halb::start(&a.config.to_toml()).await;
    let node_b = Halb::start(&b.config.to_toml()).await;
    wait_linked(&node_a, 1).await;
    wait_linked(&node_b, 1).await;
    // lb2's first checks (spread over a tenth of 10 s) must have passed.
    wait_until_up(&node_a, &addrs).await;
    wait_until_up(&node_b, &addrs).await;
    let learned = map_users(a.listen, 0..USERS).await;
    until_same(b.listen, &learned, Duration::from_secs(1)).await;

    // Requests on both nodes all along: none may fail.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let load = |listen: SocketAddr, mut stopped: tokio::sync::watch::Receiver<bool>| {
        tokio::spawn(async move {
            let mut client = HttpClient::connect(listen).await;
            let (mut ok, mut failed, mut u) = (0, 0, 0);
            while !*stopped.borrow_and_update() {
                let reply = client
                    .get("/", &[("x-user", &format!("user-{}", u % USERS))])
                    .await;
                if reply.status == 200 {
                    ok += 1;
                } else {
                    failed += 1;
                }
                u += 1;
            }
            (ok, failed)
        })
    };
    let load_a = load(a.listen, stopped.clone());
    let load_b = load(b.listen, stopped);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let victim = backends[1].addr;
    let killed = Instant::now();
    backends[1].stop().await;
    wait_for_state(&node_b, victim, "down", Duration::from_secs(3)).await;
    let seen_down = killed.elapsed();
    eprintln!(
        "lb2, checking every 10 s, showed the dead backend down {seen_down:?} after the kill"
    );
    assert!(seen_down <= Duration::from_secs(1), "{seen_down:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop.send(true);
    let (ok_a, failed_a) = load_a.await.expect("load on lb1");
    let (ok_b, failed_b) = load_b.await.expect("load on lb2");
    eprintln!("during the kill: lb1 {ok_a} ok {failed_a} failed, lb2 {ok_b} ok {failed_b} failed");
    assert_eq!((failed_a, failed_b), (0, 0), "no GET failed");

    let now_a = map_users(a.listen, 0..USERS).await;
    let now_b = map_users(b.listen, 0..USERS).await;
    assert_eq!(now_a, now_b, "users moved the same way on both nodes");
    let moved = learned.iter().filter(|(u, b)| now_a[u] != **b).count();
    let on_victim = learned.values().filter(|b| *b == "b2").count();
    assert_eq!(moved, on_victim, "only the dead backend's users moved");
    assert!(now_a.values().all(|b| b != "b2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_wrong_secret_is_refused_and_operator_actions_reach_every_node() {
    let backends = three_backends().await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let (pa, pb, pc) = (free_addr(), free_addr(), free_addr());
    let a = spec("lb1", pa, &[pb], SECRET, &addrs, &table_on_user(), "100ms");
    let b = spec("lb2", pb, &[pa], SECRET, &addrs, &table_on_user(), "100ms");
    let c = spec(
        "lb3",
        pc,
        &[pa, pb],
        "not-the-fleet-secret-0",
        &addrs,
        &table_on_user(),
        "100ms",
    );
    let node_a = Halb::start(&a.config.to_toml()).await;
    let node_b = Halb::start(&b.config.to_toml()).await;
    let node_c = Halb::start(&c.config.to_toml()).await;
    wait_linked(&node_a, 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = status(&node_c).await;
    let links = s["peers"].as_array().expect("peers").clone();
    assert_eq!(links.len(), 2);
    for link in &links {
        assert_eq!(link["connected"], false, "{link}");
        assert!(
            link["last_error"].as_str().unwrap_or("").contains("secret"),
            "the reason is named: {link}"
        );
    }
    let metrics = node_a.admin_request("GET", "/metrics").await.text();
    let refused = metrics
        .lines()
        .find(|l| l.starts_with("halb_peer_refused_inbound_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(refused >= 1.0, "lb1 counted the refused peer:\n{metrics}");
    assert!(node_a.logs().contains("peer refused"), "lb1 logs it");

    // Garbage and an oversized frame on the peer port: dropped, named in
    // the log, the links unharmed.
    for frame in [
        [&5u32.to_be_bytes()[..], b"{bad}"].concat(),
        (1u32 << 30).to_be_bytes().to_vec(),
    ] {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stranger = tokio::net::TcpStream::connect(pa).await.expect("connect");
        stranger.write_all(&frame).await.expect("write");
        let mut rest = Vec::new();
        // The node closes the connection (a reset counts): `within` fails
        // the test if it is held open.
        let _ = within(
            Duration::from_secs(5),
            "the peer port closes",
            stranger.read_to_end(&mut rest),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = node_a.logs();
    assert!(
        logs.contains("does not parse"),
        "the bad frame is named:\n{logs}"
    );
    assert!(
        logs.contains("over the limit of 4096"),
        "the oversized frame is named"
    );
    wait_linked(&node_a, 1).await;

    // A drain through lb1's API applies on lb2 too.
    let victim = addrs[0];
    let path = format!("/api/v1/pools/app/backends/{victim}/drain");
    let answer = node_a.admin_request("POST", &path).await;
    assert!(answer.status < 300, "{}", answer.text());
    let took = wait_for_state(&node_b, victim, "draining", Duration::from_secs(1)).await;
    eprintln!("a drain on lb1 reached lb2 after {took:?}");
    drop(node_c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_cookie_set_by_one_node_is_honoured_by_the_other() {
    let backends = three_backends().await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let (pa, pb) = (free_addr(), free_addr());
    let cookie = [("kind", "\"cookie\"")];
    let a = spec("lb1", pa, &[pb], SECRET, &addrs, &cookie, "100ms");
    let b = spec("lb2", pb, &[pa], SECRET, &addrs, &cookie, "100ms");
    let node_a = Halb::start(&a.config.to_toml()).await;
    let node_b = Halb::start(&b.config.to_toml()).await;
    wait_until_up(&node_a, &addrs).await;
    wait_until_up(&node_b, &addrs).await;
    let mut on_a = HttpClient::connect(a.listen).await;
    let mut on_b = HttpClient::connect(b.listen).await;
    for _ in 0..6 {
        let first = on_a.get("/", &[]).await;
        assert_eq!(first.status, 200);
        let set = first
            .headers
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .expect("lb1 sets the cookie")
            .to_owned();
        assert!(
            set.starts_with("HALB=") && set.contains("HttpOnly"),
            "{set}"
        );
        assert!(
            !addrs.iter().any(|a| set.contains(&a.to_string())),
            "the cookie does not show the address: {set}"
        );
        let value = set.split(';').next().unwrap_or("").to_owned();
        for _ in 0..5 {
            let again = on_b.get("/", &[("cookie", &value)]).await;
            assert_eq!(
                again.text(),
                first.text(),
                "lb2 honours lb1's cookie {value}"
            );
            assert!(again.headers.get("set-cookie").is_none(), "no new cookie");
        }
    }
    // A forged cookie names no backend: the client gets a real one.
    let forged = on_b.get("/", &[("cookie", "HALB=0000000000000000")]).await;
    assert_eq!(forged.status, 200);
    assert!(forged.headers.get("set-cookie").is_some());
}

/// Which TCP backend a connection from `from` reaches through `listen`.
async fn tcp_served(from: std::net::IpAddr, listen: SocketAddr) -> String {
    use tokio::io::AsyncReadExt;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(from, 0))
        .expect("bind the client address");
    let mut stream = within(Duration::from_secs(5), "connect", socket.connect(listen))
        .await
        .expect("connect");
    let mut name = String::new();
    within(
        Duration::from_secs(5),
        "read",
        stream.read_to_string(&mut name),
    )
    .await
    .expect("read");
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_stick_table_on_the_client_address_holds_on_both_nodes() {
    use crate::support::backends::tcp_named;
    let backends = [
        tcp_named("t1").await,
        tcp_named("t2").await,
        tcp_named("t3").await,
    ];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let (pa, pb) = (free_addr(), free_addr());
    let node = |name: &str, peer: SocketAddr, other: SocketAddr| {
        let listen = free_addr();
        let config = NodeConfig::new()
            .section(&format!(
                "[cluster]\nnode = \"{name}\"\n\n[cluster.peers]\nbind = \"{peer}\"\npeers = [\"{other}\"]\nsecret = \"{SECRET}\"\n"
            ))
            .tcp_listener("front", listen, "app")
            .pool("app", &addrs)
            .sticky("app", &[("kind", "\"table\"")]);
        (listen, config)
    };
    let (listen_a, config_a) = node("lb1", pa, pb);
    let (listen_b, config_b) = node("lb2", pb, pa);
    let node_a = Halb::start(&config_a.to_toml()).await;
    let node_b = Halb::start(&config_b.to_toml()).await;
    wait_linked(&node_a, 1).await;
    wait_linked(&node_b, 1).await;
    let clients: Vec<std::net::IpAddr> = (2..14u8)
        .map(|i| std::net::IpAddr::from([127, 0, 0, i]))
        .collect();
    let mut first = HashMap::new();
    for ip in &clients {
        first.insert(*ip, tcp_served(*ip, listen_a).await);
    }
    let distinct: std::collections::HashSet<_> = first.values().collect();
    assert!(
        distinct.len() > 1,
        "round robin spread new clients: {first:?}"
    );
    for _ in 0..3 {
        for ip in &clients {
            assert_eq!(tcp_served(*ip, listen_a).await, first[ip], "{ip} on lb1");
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for ip in &clients {
        assert_eq!(tcp_served(*ip, listen_b).await, first[ip], "{ip} on lb2");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_nodes_find_their_peers_in_the_registry() {
    use crate::etcd_config::configs;
    use crate::support::etcd::{Etcd, StateDir};
    let etcd = Etcd::start().await;
    let backends = three_backends().await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let (state1, state2) = (StateDir::new(), StateDir::new());
    let front = free_addr();
    let (local1, shared) = configs(front, &addrs, &[etcd.url()], &state1, "lb1");
    let (local2, _) = configs(front, &addrs, &[etcd.url()], &state2, "lb2");
    // No `peers` list: each node finds the other in etcd's node registry.
    let peers =
        |bind: SocketAddr| format!("\n[cluster.peers]\nbind = \"{bind}\"\nsecret = \"{SECRET}\"\n");
    let (pa, pb) = (free_addr(), free_addr());
    etcd.put("/halb/config", &shared);
    let lb1 = Halb::start(&(local1 + &peers(pa))).await;
    let lb2 = Halb::start(&(local2 + &peers(pb))).await;
    let s1 = wait_linked(&lb1, 1).await;
    let s2 = wait_linked(&lb2, 1).await;
    assert_eq!(s1["peers"][0]["address"], pb.to_string().as_str());
    assert_eq!(s1["peers"][0]["node"], "lb2");
    assert_eq!(s2["peers"][0]["address"], pa.to_string().as_str());
    let record = etcd.get("/halb/nodes/lb1").expect("lb1's record");
    assert!(record.contains(&pa.to_string()), "{record}");

    // `halb cluster status` shows each node's peer links.
    let url = etcd.url();
    let started = Instant::now();
    let table = loop {
        let url = url.clone();
        let out = tokio::task::spawn_blocking(move || {
            crate::support::process::run_halb(
                &["cluster", "status", "--etcd", &url],
                Duration::from_secs(15),
            )
        })
        .await
        .expect("halb cluster status");
        assert_eq!(out.code(), Some(0), "{}", out.stderr);
        let linked = out
            .stdout
            .lines()
            .any(|l| l.starts_with("lb1") && l.contains(" lb2"))
            && out
                .stdout
                .lines()
                .any(|l| l.starts_with("lb2") && l.contains(" lb1"));
        if linked {
            break out.stdout;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{}", out.stdout);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(table.contains("PEERS"), "{table}");

    // The discovered link carries operator actions like a configured one.
    let victim = addrs[2];
    let path = format!("/api/v1/pools/app/backends/{victim}/disable");
    assert!(lb1.admin_request("POST", &path).await.status < 300);
    wait_for_state(&lb2, victim, "disabled", Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_operator_actions_reach_every_node_and_survive_a_fleet_restart() {
    use crate::etcd_config::configs;
    use crate::support::etcd::{Etcd, StateDir};
    let etcd = Etcd::start().await;
    let backends = three_backends().await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let (state1, state2) = (StateDir::new(), StateDir::new());
    let front = free_addr();
    let (local1, shared) = configs(front, &addrs, &[etcd.url()], &state1, "lb1");
    let (local2, _) = configs(front, &addrs, &[etcd.url()], &state2, "lb2");
    etcd.put("/halb/config", &shared);
    let lb1 = Halb::start(&local1).await;
    let lb2 = Halb::start(&local2).await;
    wait_until_up(&lb1, &addrs).await;
    wait_until_up(&lb2, &addrs).await;

    // No peer links: etcd carries the drain to lb2.
    let victim = addrs[1];
    let drain = format!("/api/v1/pools/app/backends/{victim}/drain");
    assert!(lb1.admin_request("POST", &drain).await.status < 300);
    let took = wait_for_state(&lb2, victim, "draining", Duration::from_secs(5)).await;
    eprintln!("a drain on lb1 reached lb2 through etcd after {took:?}");
    let key = format!("/halb/admin/app/{victim}");
    let kept = etcd.get(&key).expect("the drain is kept in etcd");
    assert!(
        kept.contains("\"draining\"") && kept.contains("lb1"),
        "{kept}"
    );

    // The whole fleet restarts: the drain holds.
    drop((lb1, lb2));
    let lb1 = Halb::start(&local1).await;
    let lb2 = Halb::start(&local2).await;
    wait_for_state(&lb1, victim, "draining", Duration::from_secs(5)).await;
    wait_for_state(&lb2, victim, "draining", Duration::from_secs(5)).await;

    // An enable on lb2 deletes the key and reaches lb1.
    let enable = format!("/api/v1/pools/app/backends/{victim}/enable");
    assert!(lb2.admin_request("POST", &enable).await.status < 300);
    wait_for_state(&lb1, victim, "up", Duration::from_secs(5)).await;
    let started = Instant::now();
    while etcd.get(&key).is_some() {
        assert!(started.elapsed() < Duration::from_secs(5), "the key stays");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
