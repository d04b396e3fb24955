//! Host-name backends (issue 19): `address = "app.halb.test:PORT"` is looked
//! up through the system resolver at start and every `resolve_interval`;
//! every address of the name is a backend, addresses that come are added
//! and those that go are drained (no request fails), and a lookup that
//! fails keeps the last good answer and says so.
//!
//! halb runs in a mount namespace of its own where the test's files stand
//! in for /etc/hosts and /etc/resolv.conf (a name server on a port where
//! nothing listens, so that a name missing from the hosts file fails at
//! once): the test changes what the name resolves to by rewriting them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::backends::{named_at, Backend};
use crate::support::load::{assert_none_failed, Load, Outcome};
use crate::support::process::TempFile;
use crate::support::status::backend_entry;
use crate::support::{free_addr, Halb};

const NAME: &str = "app.halb.test";

/// Two backends on the same port of 127.0.0.2 and 127.0.0.3.
async fn two_backends() -> (Backend, Backend) {
    for _ in 0..20 {
        let two = named_at("two", SocketAddr::from(([127, 0, 0, 2], 0))).await;
        let port = two.addr.port();
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.3", port)) {
            drop(listener);
            let three = named_at("three", SocketAddr::from(([127, 0, 0, 3], port))).await;
            return (two, three);
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

fn hosts(addresses: &[&str]) -> String {
    let mut text = String::from("127.0.0.1 localhost\n");
    for address in addresses {
        text.push_str(&format!("{address} {NAME}\n"));
    }
    text
}

/// Rewrites the file in place: the bind mount follows the inode.
fn rewrite(file: &TempFile, text: &str) {
    std::fs::write(&file.path, text).expect("rewrite the hosts file");
}

/// Waits until 12 requests in a row are all answered by `names`, each of
/// them at least once; how long that took.
async fn wait_for_answers(front: SocketAddr, names: &[&str], limit: Duration) -> Duration {
    let started = Instant::now();
    let mut client = crate::support::HttpClient::connect(front).await;
    loop {
        let mut seen = Vec::new();
        for _ in 0..12 {
            let reply = client.get("/", &[]).await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            seen.push(reply.text());
        }
        if seen.iter().all(|s| names.contains(&s.as_str()))
            && names.iter().all(|n| seen.iter().any(|s| s == n))
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "not answered by exactly {names:?} within {limit:?}; last: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_backend_follows_what_the_name_resolves_to() {
    let (two, three) = two_backends().await;
    let port = two.addr.port();
    let hosts_file = TempFile::with_contents("hosts", &hosts(&["127.0.0.2"]));
    let resolv_file = TempFile::with_contents(
        "resolv.conf",
        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    );
    let (front, admin) = (free_addr(), free_addr());
    let config = format!(
        "[runtime]\nresolve_interval = \"200ms\"\n\
         [admin]\nbind = \"{admin}\"\n\
         [[listener]]\nname = \"web\"\nbind = \"{front}\"\npool = \"app\"\n\
         [[pool]]\nname = \"app\"\n\
         [[pool.backend]]\naddress = \"{NAME}:{port}\"\n"
    );
    let script = format!(
        "exec unshare --mount --propagation private sh -c \
         'mount --bind {} /etc/hosts && mount --bind {} /etc/resolv.conf && exec \"$@\"' sh \"$@\"",
        hosts_file.path.display(),
        resolv_file.path.display()
    );
    let halb = Halb::start_wrapped(&config, &script).await;

    // Resolved before it listened: the first requests are served.
    wait_for_answers(front, &["two"], Duration::from_millis(500)).await;
    let load = Load::start(front, "/", 2, Duration::from_millis(5));

    // A second address appears: it becomes a backend.
    rewrite(&hosts_file, &hosts(&["127.0.0.2", "127.0.0.3"]));
    let took = wait_for_answers(front, &["two", "three"], Duration::from_secs(3)).await;
    eprintln!("a new address served after {took:?}");
    let status = halb.status_json().await;
    assert_eq!(
        backend_entry(&status, three.addr)["state"],
        "up",
        "{status:#}"
    );

    // The first goes away: drained, not cut.
    rewrite(&hosts_file, &hosts(&["127.0.0.3"]));
    wait_for_answers(front, &["three"], Duration::from_secs(3)).await;

    // The name stops resolving (not in hosts, no name server): the last
    // good answer stays, and the log says so.
    rewrite(&hosts_file, &hosts(&[]));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    wait_for_answers(front, &["three"], Duration::from_millis(500)).await;
    let outcomes: Vec<Outcome> = load.finish().await;
    assert_none_failed(&outcomes);
    assert!(outcomes.len() > 100, "only {} requests", outcomes.len());
    let logs = halb.logs();
    assert!(
        logs.contains("keeping its last addresses") && logs.contains(NAME),
        "{logs}"
    );
    let status = halb.status_json().await;
    let backends = status["pools"][0]["backends"].as_array().expect("backends");
    let addresses: Vec<&str> = backends
        .iter()
        .filter_map(|b| b["address"].as_str())
        .collect();
    assert_eq!(addresses, [three.addr.to_string()], "{status:#}");
    drop(two);
}
