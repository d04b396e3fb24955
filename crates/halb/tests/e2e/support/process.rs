//! Runs the real `halb` binary: `halb run --config FILE` for most tests, and
//! any other command line for the CLI tests. Output goes to files so that a
//! failing test can print what halb said.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::BufReader;
use tokio::net::TcpStream;

use super::client::{read_response, RawResponse};
use super::within;

const HEALTHY_WITHIN: Duration = Duration::from_secs(10);

/// A file in the temp dir that is removed on drop.
pub struct TempFile {
    pub path: PathBuf,
}

impl TempFile {
    /// A new, unique, not yet existing path; `kind` ends up in the name.
    pub fn unique(kind: &str) -> TempFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("halb-e2e-{}-{n}-{kind}", std::process::id());
        TempFile {
            path: std::env::temp_dir().join(name),
        }
    }

    /// A new temp file holding `contents`.
    pub fn with_contents(kind: &str, contents: &str) -> TempFile {
        let file = TempFile::unique(kind);
        std::fs::write(&file.path, contents).expect("write temp file");
        file
    }

    pub fn read(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap_or_default()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `halb` with its stdout and stderr going to the given files.
pub fn halb_command(stdout: &TempFile, stderr: &TempFile) -> Command {
    logged_command(env!("CARGO_BIN_EXE_halb"), stdout, stderr)
}

/// `program` with no input and its output in the two files.
fn logged_command(program: &str, stdout: &TempFile, stderr: &TempFile) -> Command {
    let mut command = Command::new(program);
    command
        .stdin(Stdio::null())
        .stdout(File::create(&stdout.path).expect("create stdout file"))
        .stderr(File::create(&stderr.path).expect("create stderr file"))
        .env("RUST_BACKTRACE", "1");
    command
}

/// What a finished `halb` command said.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Runs `halb ARGS` to completion (killing it after `limit`).
pub fn run_halb(args: &[&str], limit: Duration) -> Finished {
    let stdout = TempFile::unique("stdout");
    let stderr = TempFile::unique("stderr");
    let mut child = halb_command(&stdout, &stderr)
        .args(args)
        .spawn()
        .expect("spawn halb");
    let status = wait_with_limit(&mut child, limit, || {})
        .unwrap_or_else(|| panic!("`halb {}` still running after {limit:?}", args.join(" ")));
    Finished {
        status,
        stdout: stdout.read(),
        stderr: stderr.read(),
    }
}

/// Waits for `child` to exit, calling `each_poll` every 10 ms meanwhile;
/// kills it and returns `None` if it is still running after `limit`.
pub fn wait_with_limit(
    child: &mut Child,
    limit: Duration,
    mut each_poll: impl FnMut(),
) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        each_poll();
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A child process that is killed when the test ends, pass or fail.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `halb run --config FILE`, killed on drop. When the test fails,
/// drop prints halb's stdout and stderr.
pub struct Halb {
    child: Child,
    admin: SocketAddr,
    /// The config file halb runs on; tests rewrite it to reload.
    config: TempFile,
    stdout: TempFile,
    stderr: TempFile,
}

impl Halb {
    /// Writes `config_toml` to a temp file, starts halb on it and waits until
    /// its admin `/healthz` answers 200 (halb binds every listener before it
    /// answers). The config must have an `[admin]` table with `bind`.
    pub async fn start(config_toml: &str) -> Halb {
        Self::start_with_args(config_toml, &[]).await
    }

    /// As [`Halb::start`], with `extra` after `run --config FILE` (such as
    /// `--watch`).
    pub async fn start_with_args(config_toml: &str, extra: &[&str]) -> Halb {
        Self::start_with_env(config_toml, extra, &[]).await
    }

    /// As [`Halb::start_with_args`], with `env` set for the process.
    pub async fn start_with_env(config_toml: &str, extra: &[&str], env: &[(&str, &str)]) -> Halb {
        Self::launch(config_toml, extra, env, None).await
    }

    /// As [`Halb::start`], with halb started by `wrapper`: `sh -c SCRIPT`
    /// where the script ends by running `"$@"` (halb and its arguments),
    /// e.g. to run it in a mount namespace of its own.
    pub async fn start_wrapped(config_toml: &str, script: &str) -> Halb {
        Self::launch(config_toml, &[], &[], Some(script)).await
    }

    async fn launch(
        config_toml: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        wrapper: Option<&str>,
    ) -> Halb {
        let admin = admin_bind(config_toml);
        let config = TempFile::with_contents("config.toml", config_toml);
        let stdout = TempFile::unique("stdout");
        let stderr = TempFile::unique("stderr");
        let mut command = match wrapper {
            None => halb_command(&stdout, &stderr),
            Some(script) => {
                let mut command = logged_command("sh", &stdout, &stderr);
                command
                    .arg("-c")
                    .arg(script)
                    .arg("halb")
                    .arg(env!("CARGO_BIN_EXE_halb"));
                command
            }
        };
        let child = command
            .arg("run")
            .arg("--config")
            .arg(&config.path)
            .args(extra)
            .envs(env.iter().copied())
            .spawn()
            .expect("spawn halb");
        let mut halb = Halb {
            child,
            admin,
            config,
            stdout,
            stderr,
        };
        halb.wait_until_healthy().await;
        halb
    }

    async fn wait_until_healthy(&mut self) {
        let deadline = Instant::now() + HEALTHY_WITHIN;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("halb exited ({status}) before /healthz answered 200");
            }
            if let Ok(response) = admin_get(self.admin, "/healthz").await {
                if response.status == 200 {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "halb's /healthz on {} did not answer 200 within {HEALTHY_WITHIN:?}",
                    self.admin
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Where the admin API answers.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// `METHOD path` on the admin API (no body); the raw answer.
    pub async fn admin_request(&self, method: &str, path: &str) -> RawResponse {
        within(
            Duration::from_secs(10),
            "an admin API request",
            admin_request(self.admin, method, path),
        )
        .await
        .unwrap_or_else(|e| panic!("{method} {path} on the admin API: {e}"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `GET /api/v1/status`, parsed.
    pub async fn status_json(&self) -> Value {
        let response = within(
            Duration::from_secs(10),
            "GET /api/v1/status",
            admin_get(self.admin, "/api/v1/status"),
        )
        .await
        .expect("GET /api/v1/status");
        assert_eq!(
            response.status,
            200,
            "GET /api/v1/status: {}",
            response.text()
        );
        serde_json::from_slice(&response.body)
            .unwrap_or_else(|e| panic!("status is not JSON ({e}): {}", response.text()))
    }

    /// The process's peak resident set size (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// The process's resident set size now (VmRSS) in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/PID/status"))
    }

    /// The value of the sample of `family` whose labels include all of
    /// `labels` (each written `name="value"`), from `/metrics`.
    pub async fn metric(&self, family: &str, labels: &[&str]) -> f64 {
        let scrape = self.admin_request("GET", "/metrics").await.text();
        scrape
            .lines()
            .filter(|line| line.starts_with(&format!("{family}{{")))
            .find(|line| labels.iter().all(|label| line.contains(label)))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no {family} {labels:?} in:\n{scrape}"))
    }

    /// Clock ticks (1/100 s) of CPU, user and system, the process has used.
    pub fn cpu_ticks(&self) -> u64 {
        cpu_ticks(self.pid())
    }

    /// Everything halb wrote so far.
    pub fn logs(&self) -> String {
        format!(
            "--- halb stdout ---\n{}\n--- halb stderr ---\n{}",
            self.stdout.read(),
            self.stderr.read()
        )
    }
}

impl Drop for Halb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// Changing a running halb: its config file, signals, and its exit.
impl Halb {
    /// The config file halb was started on.
    pub fn config_path(&self) -> &Path {
        &self.config.path
    }

    /// Replaces the config file's text in one step (a sibling file renamed
    /// over it), so that a watching halb never reads half a file.
    pub fn rewrite_config(&self, config_toml: &str) {
        let mut staging = self.config.path.clone().into_os_string();
        staging.push(".new");
        std::fs::write(&staging, config_toml).expect("write the new config");
        std::fs::rename(&staging, &self.config.path).expect("rename the new config into place");
    }

    /// Sends `signal` (a name `kill -s` knows: `HUP`, `TERM`, `INT`) to
    /// halb, through kill(1): the workspace forbids `unsafe`, so no libc.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} {} failed", self.pid());
    }

    /// Whether halb has exited (its status then comes from
    /// [`Halb::wait_for_exit`]).
    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }

    /// Waits up to `limit` for halb to exit; `None` if it is still running
    /// then (it is not killed: drop does that).
    pub async fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// `POST path` on the admin API with a JSON body; the raw answer.
    pub async fn admin_post_json(&self, path: &str, body: &str) -> RawResponse {
        within(
            Duration::from_secs(10),
            "an admin API request",
            admin_request_with_body(
                self.admin,
                "POST",
                path,
                &[("Content-Type", "application/json")],
                body,
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("POST {path} on the admin API: {e}"))
    }

    /// `METHOD path` on the admin API with extra request headers (such as
    /// `Authorization`); the raw answer.
    pub async fn admin_request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> RawResponse {
        within(
            Duration::from_secs(10),
            "an admin API request",
            admin_request_with(self.admin, method, path, headers),
        )
        .await
        .unwrap_or_else(|e| panic!("{method} {path} on the admin API: {e}"))
    }
}

/// The `bind` of the config's `[admin]` table.
fn admin_bind(config_toml: &str) -> SocketAddr {
    let mut in_admin = false;
    for line in config_toml.lines().map(str::trim) {
        if line.starts_with('[') {
            in_admin = line == "[admin]";
        } else if in_admin && line.starts_with("bind") {
            let value = line.split('"').nth(1).expect("bind = \"ADDR\"");
            return value.parse().expect("admin bind is an address");
        }
    }
    panic!("the test config has no [admin] bind:\n{config_toml}")
}

/// A one-shot `GET path` to the admin listener.
pub async fn admin_get(admin: SocketAddr, path: &str) -> std::io::Result<RawResponse> {
    admin_request(admin, "GET", path).await
}

/// A one-shot `METHOD path` (no body) to the admin listener.
pub async fn admin_request(
    admin: SocketAddr,
    method: &str,
    path: &str,
) -> std::io::Result<RawResponse> {
    admin_request_with(admin, method, path, &[]).await
}

/// A one-shot `METHOD path` (no body) with extra headers to the admin
/// listener.
pub async fn admin_request_with(
    admin: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<RawResponse> {
    admin_request_with_body(admin, method, path, headers, "").await
}

/// A one-shot `METHOD path` with extra headers and a body to the admin
/// listener.
pub async fn admin_request_with_body(
    admin: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<RawResponse> {
    use tokio::io::AsyncWriteExt;
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let attempt = async {
        let mut stream = TcpStream::connect(admin).await?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {admin}\r\nContent-Length: {}\r\n\
             {extra}Connection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        read_response(&mut BufReader::new(stream)).await
    };
    match tokio::time::timeout(Duration::from_secs(2), attempt).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "admin request timed out",
        )),
    }
}

/// Clock ticks (1/100 s) of CPU, user and system, process `pid` has used.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the command name (which is in parentheses).
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let utime: u64 = fields[11].parse().expect("utime");
    let stime: u64 = fields[12].parse().expect("stime");
    utime + stime
}
