//! Real MariaDB servers for the MySQL-check tests: each made with
//! `mariadb-install-db` in a temp directory of its own and run on a free
//! loopback port with grant tables on (the login is checked), with one
//! account that has a password and no SUPER (so `read_only` binds it).
//! Killed and removed on drop. As root, the server runs as root
//! (`--user=root`): the directory is the test's own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

use super::databases::{running_as_root, TempDir};
use super::free_addr;

/// The account the tests (and halb's checks) log in as.
pub const MYSQL_USER: &str = "halb";
/// Its password.
pub const MYSQL_PASSWORD: &str = "halb-test-secret";
/// The database the tests write into (`writes (seq BIGINT PRIMARY KEY)`).
pub const MYSQL_DATABASE: &str = "halb_test";

/// Options that keep a test server small and quick to start.
const SMALL: [&str; 5] = [
    "--innodb-log-file-size=4M",
    "--innodb-buffer-pool-size=16M",
    "--skip-log-bin",
    "--skip-name-resolve",
    "--max-connections=60",
];

/// One MariaDB server.
pub struct Mariadb {
    pub addr: SocketAddr,
    dir: TempDir,
    child: Option<Child>,
}

impl Mariadb {
    /// A new server, writable (`read_only = 0`), ready for logins.
    pub async fn start() -> Mariadb {
        let dir = TempDir::new("mariadb");
        let data = dir.0.join("data");
        let mut install = Command::new("mariadb-install-db");
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .args(SMALL)
            .stdout(Stdio::null());
        if running_as_root() {
            install.arg("--user=root");
        }
        let output = install
            .output()
            .expect("run mariadb-install-db (scripts/test.sh installs mariadb-server)");
        assert!(
            output.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // Run at each start, before the first login is accepted.
        let init = dir.0.join("init.sql");
        std::fs::write(
            &init,
            format!(
                "CREATE DATABASE IF NOT EXISTS {MYSQL_DATABASE};\n\
                 CREATE TABLE IF NOT EXISTS {MYSQL_DATABASE}.writes (seq BIGINT PRIMARY KEY);\n\
                 CREATE USER IF NOT EXISTS '{MYSQL_USER}'@'%' IDENTIFIED BY '{MYSQL_PASSWORD}';\n\
                 GRANT SELECT, INSERT, DELETE ON {MYSQL_DATABASE}.* TO '{MYSQL_USER}'@'%';\n"
            ),
        )
        .expect("write init.sql");
        let addr = free_addr();
        let child = spawn(&dir.0, &data, &init, addr);
        let mut server = Mariadb {
            addr,
            dir,
            child: Some(child),
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut conn) = mysql_connect(self.addr, MYSQL_PASSWORD).await {
                if conn.query_drop("SELECT 1").await.is_ok() {
                    let _ = conn.disconnect().await;
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("mariadbd exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd on {} not ready: {}",
                self.addr,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's error log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("error.log")).unwrap_or_default()
    }

    /// `SET GLOBAL read_only = ...`: on makes it a replica, off a primary.
    pub fn set_read_only(&self, on: bool) {
        self.as_root(&format!("SET GLOBAL read_only = {}", u8::from(on)));
    }

    /// A global status counter (`Aborted_connects`, say).
    pub fn status(&self, name: &str) -> u64 {
        let out = self.as_root(&format!("SHOW GLOBAL STATUS LIKE '{name}'"));
        out.split_whitespace()
            .nth(1)
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("status {name}: {out:?}"))
    }

    /// Runs `sql` as root over the server's own socket (the test account
    /// may not); its output, tab-separated without column names.
    fn as_root(&self, sql: &str) -> String {
        let output = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.dir.0.join("socket").display()))
            .args(["-u", "root", "--batch", "--skip-column-names", "-e", sql])
            .output()
            .expect("run the mariadb client");
        assert!(
            output.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The `seq` of every row of `writes` on this server.
    pub async fn stored(&self) -> std::collections::HashSet<u64> {
        let mut conn = mysql_connect(self.addr, MYSQL_PASSWORD)
            .await
            .expect("connect to mariadb");
        let rows: Vec<u64> = conn
            .query("SELECT seq FROM writes")
            .await
            .expect("SELECT seq FROM writes");
        let _ = conn.disconnect().await;
        rows.into_iter().collect()
    }
}

fn spawn(dir: &Path, data: &Path, init: &Path, addr: SocketAddr) -> Child {
    let mut command = Command::new(mariadbd());
    command
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", dir.join("socket").display()))
        .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
        .arg(format!("--log-error={}", dir.join("error.log").display()))
        .arg(format!("--init-file={}", init.display()))
        .arg(format!("--port={}", addr.port()))
        .arg("--bind-address=127.0.0.1")
        .args(SMALL)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if running_as_root() {
        command.arg("--user=root");
    }
    command.spawn().expect("spawn mariadbd")
}

/// The server program: on the PATH, or where Debian puts it (`/usr/sbin`
/// is not on every user's PATH).
fn mariadbd() -> PathBuf {
    let sbin = PathBuf::from("/usr/sbin/mariadbd");
    if sbin.exists() {
        sbin
    } else {
        PathBuf::from("mariadbd")
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A session as the test account to `addr` (a server, or halb in front of
/// one), in the test database.
pub async fn mysql_connect(addr: SocketAddr, password: &str) -> Result<Conn, mysql_async::Error> {
    let opts = OptsBuilder::default()
        .ip_or_hostname(addr.ip().to_string())
        .tcp_port(addr.port())
        .user(Some(MYSQL_USER))
        .pass(Some(password))
        .db_name(Some(MYSQL_DATABASE))
        // Through halb on loopback, the client would otherwise move to the
        // server's Unix socket and go round the balancer.
        .prefer_socket(false);
    Conn::new(opts).await
}
