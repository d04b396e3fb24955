//! MySQL/MariaDB role checks (issue 17) against real MariaDB servers: a
//! `role = "primary"` pool sends writes only to the server with
//! `read_only = 0`, follows the roles when they are swapped live (several
//! times, the write-unavailability window measured each time and its
//! median printed), fences the demoted server's open sessions, while a
//! `role = "replica"` pool over the same servers reads from the other;
//! and a wrong password says `authentication failed`.
//!
//! The two servers do not replicate: the roles come from `read_only`
//! alone, which is what the check reads, and is enough to show routing.
//! Each server's table holds exactly the writes it accepted, so where each
//! acknowledged write landed is known.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::databases::{
    closed_on_down, config, keep_writing, wait_check_says, wait_state, FAILOVER_LIMIT,
};
use crate::support::mariadb::{mysql_connect, Mariadb, MYSQL_PASSWORD, MYSQL_USER};
use crate::support::{free_addr, within, Halb};

/// Role swaps measured in one run.
const SWAPS: usize = 5;

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_writes_follow_read_only_and_the_demoted_server_is_fenced() {
    let (a, b) = tokio::join!(Mariadb::start(), Mariadb::start());
    b.set_read_only(true);
    let servers = [&a, &b];
    let (admin, listen, reads) = (free_addr(), free_addr(), free_addr());
    let check = format!("user = \"{MYSQL_USER}\"\npassword_env = \"HALB_TEST_MYSQL_PASSWORD\"");
    let toml = config(
        admin,
        &[("rw", listen, "db"), ("ro", reads, "replicas")],
        &[("db", "primary"), ("replicas", "replica")],
        "mysql",
        &check,
        &[a.addr, b.addr],
    );
    let halb =
        Halb::start_with_env(&toml, &[], &[("HALB_TEST_MYSQL_PASSWORD", MYSQL_PASSWORD)]).await;
    wait_state(&halb, "db", a.addr, "up").await;
    let replica = wait_check_says(&halb, "db", b.addr, "role is replica, want primary").await;
    assert_eq!(replica["state"], "down", "{replica:#}");
    wait_state(&halb, "replicas", b.addr, "up").await;
    wait_state(&halb, "replicas", a.addr, "down").await;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(keep_writing(stop.clone(), move |seq| async move {
        let Ok(mut conn) = mysql_connect(listen, MYSQL_PASSWORD).await else {
            return false;
        };
        let written = conn
            .query_drop(format!("INSERT INTO writes VALUES ({seq})"))
            .await
            .is_ok();
        let _ = conn.disconnect().await;
        written
    }));
    tokio::time::sleep(Duration::from_millis(400)).await;

    // Each swap: (when, the new primary's index, when the old was seen down).
    let mut swaps = Vec::new();
    let (mut old_downs, mut new_ups) = (Vec::new(), Vec::new());
    for swap in 0..SWAPS {
        let (old, new) = (servers[swap % 2], servers[(swap + 1) % 2]);
        // A session through halb, on the primary, open across the swap.
        let mut session = mysql_connect(listen, MYSQL_PASSWORD)
            .await
            .expect("a session via halb");
        session
            .query_drop("SELECT 1")
            .await
            .expect("a query via halb");

        let failover = Instant::now();
        old.set_read_only(true);
        new.set_read_only(false);
        let (old_down, new_up) = tokio::join!(
            wait_state(&halb, "db", old.addr, "down"),
            wait_state(&halb, "db", new.addr, "up")
        );
        old_downs.push(old_down - failover);
        new_ups.push(new_up - failover);
        within(
            Duration::from_secs(5),
            "halb closes the session to the demoted server",
            async {
                while session.ping().await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        )
        .await;
        swaps.push((failover, (swap + 1) % 2, old_down));
        // The replica pool over the same servers follows too: reads go to
        // the demoted server only.
        wait_state(&halb, "replicas", old.addr, "up").await;
        wait_state(&halb, "replicas", new.addr, "down").await;
        for _ in 0..5 {
            let mut reader = mysql_connect(reads, MYSQL_PASSWORD)
                .await
                .expect("a session via the read listener");
            let port: Option<u16> = reader.query_first("SELECT @@port").await.expect("@@port");
            let _ = reader.disconnect().await;
            assert_eq!(port, Some(old.addr.port()), "a read reached the primary");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.expect("writer");

    let metrics = halb.admin_request("GET", "/metrics").await.text();
    for server in servers {
        assert!(
            closed_on_down(&metrics, "db", server.addr) >= 1,
            "{}: {metrics}",
            server.addr
        );
    }
    // halb's checks log in and quit politely, and make no bare connect:
    // the servers count no aborted connection attempt (MySQL blocks a host
    // after max_connect_errors of them).
    for server in servers {
        assert_eq!(server.status("Aborted_connects"), 0, "{}", server.addr);
    }
    let stored = [a.stored().await, b.stored().await];
    let mut windows = Vec::new();
    for (i, &(failover, new, old_down)) in swaps.iter().enumerate() {
        windows.push(writes.unavailable(failover, |seq| stored[new].contains(&seq)));
        // From the moment the old server was marked down to the next swap,
        // every acknowledged write is on the new primary.
        let until = swaps.get(i + 1).map(|s| s.0);
        for write in writes.acked() {
            if write.at > old_down && until.is_none_or(|until| write.at < until) {
                assert!(
                    stored[new].contains(&write.seq),
                    "write {} acknowledged after swap {i} is not on the new primary",
                    write.seq
                );
            }
        }
    }
    let acked = writes.acked().count();
    assert!(acked > 20, "only {acked} writes acknowledged");
    for write in writes.acked() {
        let copies = stored.iter().filter(|s| s.contains(&write.seq)).count();
        assert_eq!(copies, 1, "write {} is on {copies} servers", write.seq);
    }
    println!(
        "mysql role swaps ({SWAPS}, interval 200ms, rise 2, fall 2): write-unavailability window \
         median {:?} (each {windows:?}); old primary down after median {:?}, new primary up \
         after median {:?}; {acked} writes acknowledged, each on the primary of its time",
        median(windows.clone()),
        median(old_downs),
        median(new_ups),
    );
    for window in windows {
        assert!(window < FAILOVER_LIMIT, "window {window:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_mysql_credentials_say_authentication_failed() {
    let server = Mariadb::start().await;
    let check = format!("user = \"{MYSQL_USER}\"\npassword = \"not-the-password\"");
    let toml = config(
        free_addr(),
        &[("rw", free_addr(), "db")],
        &[("db", "any")],
        "mysql",
        &check,
        &[server.addr],
    );
    let halb = Halb::start(&toml).await;
    let backend = wait_check_says(&halb, "db", server.addr, "authentication failed").await;
    assert_eq!(backend["state"], "down", "{backend:#}");
    let reason = backend["check"].as_str().unwrap_or_default();
    assert!(reason.contains("Access denied"), "{backend:#}");
}
