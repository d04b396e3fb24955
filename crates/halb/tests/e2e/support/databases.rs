//! Real database servers for the database-check tests: PostgreSQL (a
//! primary and a streaming replica made with `pg_basebackup -R`) and
//! Redis, each on a free loopback port in a temp directory of its own,
//! stopped and removed on drop. PostgreSQL refuses to run as root, so as
//! root its programs run as `nobody`.

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::free_addr;

/// The password of the `postgres` superuser in the test clusters.
pub const PG_PASSWORD: &str = "halb-test-secret";

const NOBODY: u32 = 65534;
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Whether the tests run as root (then servers that refuse root run as `nobody`).
pub fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A temp directory, usable by `nobody` when running as root; removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(kind: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("halb-{kind}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temp dir");
        if running_as_root() {
            std::os::unix::fs::chown(&path, Some(NOBODY), Some(NOBODY)).expect("chown temp dir");
        }
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The newest installed PostgreSQL's programs.
fn pg_bin(program: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (/usr/lib/postgresql); scripts/test.sh installs it")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    versions.sort_by_key(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .last()
        .expect("a PostgreSQL version")
        .join("bin")
        .join(program)
}

fn pg_command(program: &str) -> Command {
    let mut command = Command::new(pg_bin(program));
    if running_as_root() {
        command.uid(NOBODY).gid(NOBODY);
    }
    command.env("PGPASSWORD", PG_PASSWORD);
    command
}

fn run(mut command: Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Sends `signal` to `pid` (root may signal `nobody`'s processes).
fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// Waits for `child` to exit, up to `limit`; true when it did.
fn wait_exit(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// One PostgreSQL server.
pub struct Postgres {
    pub addr: SocketAddr,
    data: PathBuf,
    child: Option<Child>,
    _dir: TempDir,
}

impl Postgres {
    /// A new primary: `initdb` (password login over TCP), then started.
    pub async fn primary() -> Postgres {
        let dir = TempDir::new("pg");
        let data = dir.0.join("data");
        let password_file = dir.0.join("password");
        std::fs::write(&password_file, PG_PASSWORD).expect("write the password file");
        if running_as_root() {
            std::os::unix::fs::chown(&password_file, Some(NOBODY), Some(NOBODY)).expect("chown");
        }
        let mut initdb = pg_command("initdb");
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", password_file.display()))
            .arg("--no-sync");
        run(initdb, "initdb");
        Self::start(dir, data).await
    }

    /// A streaming replica of `primary` (`pg_basebackup -R`), started.
    pub async fn replica_of(primary: &Postgres) -> Postgres {
        let dir = TempDir::new("pg");
        let data = dir.0.join("data");
        let mut basebackup = pg_command("pg_basebackup");
        basebackup
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-U", "postgres", "-R", "-X", "stream"])
            .args(["-p", &primary.addr.port().to_string()])
            .arg("--no-sync");
        run(basebackup, "pg_basebackup");
        Self::start(dir, data).await
    }

    async fn start(dir: TempDir, data: PathBuf) -> Postgres {
        let addr = free_addr();
        let child = Self::spawn(&dir.0, &data, addr);
        let mut server = Postgres {
            addr,
            data,
            child: Some(child),
            _dir: dir,
        };
        server.wait_ready().await;
        server
    }

    fn spawn(dir: &Path, data: &Path, addr: SocketAddr) -> Child {
        let log = std::fs::File::create(dir.join("postgres.log")).expect("log file");
        let mut command = pg_command("postgres");
        command
            .arg("-D")
            .arg(data)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", &format!("port={}", addr.port())])
            .args(["-c", &format!("unix_socket_directories={}", dir.display())])
            .args(["-c", "fsync=off", "-c", "shared_buffers=16MB"])
            .args(["-c", "max_connections=40"])
            .stdout(Stdio::null())
            .stderr(log);
        command.spawn().expect("spawn postgres")
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(client) = pg_connect(self.addr, PG_PASSWORD).await {
                if client.simple_query("SELECT 1").await.is_ok() {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("postgres exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "postgres on {} not ready: {}",
                self.addr,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        let dir = self.data.parent().expect("data dir has a parent");
        std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default()
    }

    /// Fast shutdown (SIGINT): sessions are ended, the server stops.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "INT");
            if !wait_exit(&mut child, Duration::from_secs(30)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Ends recovery: a replica becomes a primary.
    pub async fn promote(&self) {
        let client = pg_connect(self.addr, PG_PASSWORD).await.expect("connect");
        client
            .simple_query("SELECT pg_promote(true, 30)")
            .await
            .expect("pg_promote");
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Immediate shutdown: the postmaster removes its shared memory.
            signal(child.id(), "QUIT");
            if !wait_exit(&mut child, Duration::from_secs(10)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A session as `postgres` to `addr` (a server, or halb in front of one).
pub async fn pg_connect(
    addr: SocketAddr,
    password: &str,
) -> Result<tokio_postgres::Client, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut config = tokio_postgres::Config::new();
    config
        .user("postgres")
        .password(password)
        .dbname("postgres");
    let (client, connection) = config
        .connect_raw(stream, tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(client)
}

/// One Redis server.
pub struct Redis {
    pub addr: SocketAddr,
    child: Option<Child>,
    _dir: TempDir,
}

impl Redis {
    /// A Redis on a free port; `password` sets `requirepass`.
    pub async fn start(password: Option<&str>) -> Redis {
        let dir = TempDir::new("redis");
        let addr = free_addr();
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &addr.port().to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = password {
            command.args(["--requirepass", password]);
        }
        let child = command
            .spawn()
            .expect("spawn redis-server (scripts/test.sh installs it)");
        let server = Redis {
            addr,
            child: Some(child),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server on {addr} not ready"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    /// Runs one inline command on this server directly; its reply.
    pub async fn command(&self, command: &str) -> String {
        let mut session = RespSession::connect(self.addr)
            .await
            .expect("connect to redis");
        session.command(command).await.expect("redis command")
    }

    /// `REPLICAOF` the other server, or `None` for `REPLICAOF NO ONE`.
    pub async fn replicate(&self, of: Option<&Redis>) {
        let command = match of {
            Some(primary) => format!("REPLICAOF 127.0.0.1 {}", primary.addr.port()),
            None => "REPLICAOF NO ONE".to_owned(),
        };
        let reply = self.command(&command).await;
        assert!(reply.starts_with("+OK"), "{command}: {reply}");
    }

    /// Waits until this replica's link to its primary is up.
    pub async fn wait_linked(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let info = self.command("INFO replication").await;
            if info.contains("master_link_status:up") {
                return;
            }
            assert!(Instant::now() < deadline, "replica not linked: {info}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A plain RESP session (inline commands), to a server or through halb.
pub struct RespSession {
    stream: TcpStream,
}

impl RespSession {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<RespSession> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RespSession { stream })
    }

    /// Sends one inline command and reads one whole reply (a simple line,
    /// an error, an integer, a bulk string, or an array of those, as the
    /// commands of these tests answer).
    pub async fn command(&mut self, command: &str) -> std::io::Result<String> {
        self.stream
            .write_all(format!("{command}\r\n").as_bytes())
            .await?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = self.stream.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed",
                ));
            }
            reply.extend_from_slice(&buf[..n]);
            if complete(&reply).is_some() {
                return Ok(String::from_utf8_lossy(&reply).into_owned());
            }
        }
    }

    /// Resolves when the other side closes the connection.
    pub async fn closed(&mut self) {
        let mut buf = [0u8; 64];
        while matches!(self.stream.read(&mut buf).await, Ok(n) if n > 0) {}
    }
}

/// The length of the first whole RESP value in `bytes`, if it is there.
fn complete(bytes: &[u8]) -> Option<usize> {
    let line_end = bytes.windows(2).position(|w| w == b"\r\n")?;
    let header = std::str::from_utf8(&bytes[1..line_end]).ok()?;
    let after = line_end + 2;
    match bytes.first()? {
        b'+' | b'-' | b':' => Some(after),
        b'$' => {
            let len: i64 = header.parse().ok()?;
            if len < 0 {
                return Some(after);
            }
            let end = after + len as usize + 2;
            (bytes.len() >= end).then_some(end)
        }
        b'*' => {
            let count: i64 = header.parse().ok()?;
            let mut at = after;
            for _ in 0..count.max(0) {
                at += complete(&bytes[at..])?;
            }
            Some(at)
        }
        _ => None,
    }
}

/// The first column of every row `sql` returns, as text.
pub async fn pg_column(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    let rows = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter()
        .filter_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .collect()
}
