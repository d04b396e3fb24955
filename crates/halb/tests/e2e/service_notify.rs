//! Running under systemd `Type=notify` (issue 19): halb tells the service
//! manager READY=1 once it serves, RELOADING=1 (with MONOTONIC_USEC) then
//! READY=1 around every reload, a refused one included, and STOPPING=1 when
//! it starts to drain. The test is the manager: it opens the datagram
//! socket and hands it over in NOTIFY_SOCKET.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use crate::support::backends::named;
use crate::support::node_config::NodeConfig;
use crate::support::process::TempFile;
use crate::support::{free_addr, Halb};

/// The service manager's end: every message halb sends, one per datagram.
struct Manager {
    socket: UnixDatagram,
    _path: TempFile,
}

impl Manager {
    fn open() -> Manager {
        let path = TempFile::unique("notify.sock");
        let socket = UnixDatagram::bind(&path.path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        Manager {
            socket,
            _path: path,
        }
    }

    fn address(&self) -> String {
        self._path.path.display().to_string()
    }

    /// The next message, as `KEY=value` lines.
    fn next(&self) -> Vec<String> {
        let mut buffer = [0u8; 4096];
        let n = self
            .socket
            .recv(&mut buffer)
            .expect("a message from halb within 10 s");
        String::from_utf8_lossy(&buffer[..n])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn nothing_pending(&self) -> bool {
        self.socket.set_nonblocking(true).expect("nonblocking");
        let mut buffer = [0u8; 4096];
        let empty = self.socket.recv(&mut buffer).is_err();
        self.socket.set_nonblocking(false).expect("blocking");
        empty
    }
}

fn first_word(message: &[String]) -> &str {
    message.first().map(String::as_str).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halb_tells_the_service_manager_ready_reloading_and_stopping() {
    let (a, b) = (named("a").await, named("b").await);
    let front = free_addr();
    let config = NodeConfig::new()
        .listener("front", front, "app")
        .pool("app", &[a.addr]);
    let manager = Manager::open();
    let socket = manager.address();
    let mut halb =
        Halb::start_with_env(&config.to_toml(), &[], &[("NOTIFY_SOCKET", &socket)]).await;

    // READY=1 comes once it serves: /healthz answered before start returned.
    let ready = manager.next();
    assert_eq!(first_word(&ready), "READY=1", "{ready:?}");
    assert!(
        ready.iter().any(|l| l.starts_with("STATUS=serving")),
        "{ready:?}"
    );

    // A good reload: RELOADING=1 with the monotonic clock, then READY=1.
    let grown = NodeConfig::new()
        .listener("front", front, "app")
        .pool("app", &[a.addr, b.addr]);
    halb.rewrite_config(&grown.to_toml());
    halb.signal("HUP");
    let reloading = manager.next();
    assert_eq!(first_word(&reloading), "RELOADING=1", "{reloading:?}");
    let usec: u64 = reloading
        .iter()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"))
        .parse()
        .expect("MONOTONIC_USEC is a number");
    assert!(usec > 0);
    let ready = manager.next();
    assert_eq!(first_word(&ready), "READY=1", "{ready:?}");
    assert!(
        ready.iter().any(|l| l.contains("2 backend(s)")),
        "the status follows the new config: {ready:?}"
    );

    // A refused reload: the node still serves the old config, so READY=1.
    halb.rewrite_config("[[listener]]\nname = 1\n");
    halb.signal("HUP");
    assert_eq!(first_word(&manager.next()), "RELOADING=1");
    let ready = manager.next();
    assert_eq!(first_word(&ready), "READY=1", "{ready:?}");
    assert!(
        ready.iter().any(|l| l.contains("2 backend(s)")),
        "{ready:?}"
    );

    halb.signal("TERM");
    let stopping = manager.next();
    assert_eq!(first_word(&stopping), "STOPPING=1", "{stopping:?}");
    let status = halb
        .wait_for_exit(Duration::from_secs(10))
        .await
        .expect("halb exits after SIGTERM");
    assert!(status.success(), "{status}");
    assert!(manager.nothing_pending(), "nothing after STOPPING=1");
}
