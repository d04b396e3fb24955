//! The end-to-end test kit: spawn the real `halb` binary ([`process`]), run
//! real backends in the test process ([`backends`], and [`scripted`] ones
//! that write exact bytes), and talk to halb as a client would
//! ([`client`]). Nothing here is a mock: every byte crosses a real loopback
//! socket.

pub mod backends;
pub mod body;
pub mod certs;
pub mod client;
pub mod config;
pub mod databases;
pub mod etcd;
pub mod load;
pub mod mariadb;
pub mod netns;
pub mod node_config;
pub mod process;
pub mod reload;
pub mod scripted;
pub mod status;
pub mod webdriver;
pub mod webhook;
pub mod websocket_key;

use std::collections::HashSet;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;
use std::time::Duration;

pub use client::{HttpClient, Reply};
pub use config::BalancerConfig;
pub use process::Halb;

/// Ports handed out by [`free_port`] in this process, so two tests never get
/// the same one even if the kernel would hand it out again.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A loopback port with nothing listening on it right now. Configs need fixed
/// ports (halb binds them itself), so bind port 0, read the port, release it.
/// Also the address of a "refused" backend: nothing listens there.
pub fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        drop(listener);
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if handed_out.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// `127.0.0.1:{free_port()}`.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Fails the test instead of hanging it when halb (or a backend) stops
/// answering; the timeouts are generous because the test machine is busy.
pub async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// Serialises the tests that measure time or memory, so they do not compete
/// with each other for the machine's two cores. An OS file lock, because
/// nextest runs every test in its own process.
pub async fn exclusive() -> ExclusiveGuard {
    let path = std::env::temp_dir().join("halb-e2e-exclusive.lock");
    let file = tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .expect("open the e2e lock file");
        file.lock().expect("lock the e2e lock file");
        file
    })
    .await
    .expect("lock task");
    ExclusiveGuard(file)
}

/// Held while a timing- or memory-sensitive test runs; unlocks on drop.
pub struct ExclusiveGuard(#[allow(dead_code)] std::fs::File);
