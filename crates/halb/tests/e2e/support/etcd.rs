//! Real etcd for the fleet tests: Debian's `etcd` started on free loopback
//! ports with a temporary data dir (one member or a cluster of three), and
//! Debian's `etcdctl` to write keys, grant and revoke leases, as an
//! operator would. Members are killed on drop and their data removed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;
use super::process::{admin_get, KillOnDrop, TempFile};

const READY_WITHIN: Duration = Duration::from_secs(20);

/// One etcd member.
pub struct Etcd {
    pub name: String,
    pub client: SocketAddr,
    peer: SocketAddr,
    /// `name=http://peer,…` of the whole cluster.
    initial_cluster: String,
    /// The same for every member of one cluster.
    token: String,
    data_dir: PathBuf,
    log: TempFile,
    process: Option<KillOnDrop>,
}

impl Etcd {
    /// A one-member cluster, ready.
    pub async fn start() -> Etcd {
        let mut members = Self::members(1);
        let mut etcd = members.remove(0);
        etcd.spawn();
        etcd.wait_ready().await;
        etcd
    }

    /// A three-member cluster, ready.
    pub async fn start_cluster() -> Vec<Etcd> {
        let mut members = Self::members(3);
        for member in &mut members {
            member.spawn();
        }
        for member in &members {
            member.wait_ready().await;
        }
        members
    }

    fn members(n: usize) -> Vec<Etcd> {
        let tag = TempFile::unique("etcd");
        let specs: Vec<(String, SocketAddr, SocketAddr)> = (0..n)
            .map(|i| {
                let name = format!("m{i}");
                let client = SocketAddr::from(([127, 0, 0, 1], free_port()));
                let peer = SocketAddr::from(([127, 0, 0, 1], free_port()));
                (name, client, peer)
            })
            .collect();
        let initial_cluster = specs
            .iter()
            .map(|(name, _, peer)| format!("{name}=http://{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        specs
            .into_iter()
            .map(|(name, client, peer)| Etcd {
                data_dir: tag.path.with_extension(format!("{name}.data")),
                log: TempFile::unique(&format!("etcd-{name}.log")),
                name,
                client,
                peer,
                initial_cluster: initial_cluster.clone(),
                token: format!("halb-e2e-{}", tag.path.display()),
                process: None,
            })
            .collect()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log.path)
            .expect("etcd log file");
        let child = Command::new("etcd")
            .args([
                "--name",
                &self.name,
                "--data-dir",
                &self.data_dir.display().to_string(),
                "--listen-client-urls",
                &format!("http://{}", self.client),
                "--advertise-client-urls",
                &format!("http://{}", self.client),
                "--listen-peer-urls",
                &format!("http://{}", self.peer),
                "--initial-advertise-peer-urls",
                &format!("http://{}", self.peer),
                "--initial-cluster",
                &self.initial_cluster,
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                &self.token,
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("etcd log file"))
            .stderr(log)
            .spawn()
            .expect("spawn etcd (Debian package etcd-server; scripts/test.sh installs it)");
        self.process = Some(KillOnDrop(child));
    }

    /// Wait until the member answers `GET /health` with `"health":"true"`.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(response) = admin_get(self.client, "/health").await {
                if response.status == 200
                    && String::from_utf8_lossy(&response.body).contains("true")
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "etcd {} not healthy within {READY_WITHIN:?}; its log:\n{}",
                self.name,
                self.log.read()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.client)
    }

    /// SIGKILL: the member vanishes mid-whatever.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.0.kill();
            let _ = process.0.wait();
        }
    }

    /// Start the killed member again on its data dir and ports.
    pub async fn restart(&mut self) {
        assert!(self.process.is_none(), "etcd {} still runs", self.name);
        self.spawn();
        self.wait_ready().await;
    }

    /// `etcdctl ARGS` against this member; its stdout. Fails the test when
    /// etcdctl does.
    pub fn ctl(&self, args: &[&str]) -> String {
        let output = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(self.url())
            .args(args)
            .output()
            .expect("run etcdctl");
        assert!(
            output.status.success(),
            "etcdctl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn put(&self, key: &str, value: &str) {
        self.ctl(&["put", key, value]);
    }

    pub fn delete(&self, key: &str) {
        self.ctl(&["del", key]);
    }

    /// A lease of `ttl` seconds; its id as etcdctl prints it (hex).
    pub fn grant(&self, ttl: u32) -> String {
        // "lease 694d7d2b0ab1a40a granted with TTL(5s)"
        let out = self.ctl(&["lease", "grant", &ttl.to_string()]);
        out.split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("unexpected etcdctl answer: {out}"))
            .to_owned()
    }

    pub fn put_on_lease(&self, key: &str, value: &str, lease: &str) {
        self.ctl(&["put", &format!("--lease={lease}"), key, value]);
    }

    pub fn revoke(&self, lease: &str) {
        self.ctl(&["lease", "revoke", lease]);
    }

    /// The value at `key`, if there is one.
    pub fn get(&self, key: &str) -> Option<String> {
        let out = self.ctl(&["get", "--print-value-only", key]);
        (!out.is_empty()).then(|| out.strip_suffix('\n').unwrap_or(&out).to_owned())
    }

    /// Every key under `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.ctl(&["get", "--prefix", "--keys-only", prefix])
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// `[cluster]` and `[cluster.etcd]` for a node: its own file's tail.
pub fn cluster_section(node: &str, state_dir: &std::path::Path, endpoints: &[String]) -> String {
    let endpoints: Vec<String> = endpoints.iter().map(|e| format!("{e:?}")).collect();
    format!(
        "\n[cluster]\nnode = {node:?}\nstate_dir = {:?}\n\n[cluster.etcd]\nendpoints = [{}]\nprefix = \"/halb\"\n",
        state_dir.display().to_string(),
        endpoints.join(", ")
    )
}

/// The shared part (listeners and pools) of a rendered node config.
pub fn shared_part(node_toml: &str) -> String {
    let start = node_toml
        .find("\n[[listener]]")
        .expect("the config has a listener");
    node_toml[start..].to_owned()
}

/// The node-local part (`[runtime]`, `[admin]`) of a rendered node config.
pub fn local_part(node_toml: &str) -> String {
    let end = node_toml
        .find("\n[[listener]]")
        .expect("the config has a listener");
    node_toml[..end].to_owned()
}

/// A temporary state dir, removed on drop.
pub struct StateDir(pub PathBuf);

impl StateDir {
    pub fn new() -> StateDir {
        let dir = TempFile::unique("state").path.clone();
        std::fs::create_dir_all(&dir).expect("create state dir");
        StateDir(dir)
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls the status API every 10 ms until `ready` holds; the status then
/// and how long it took. Fails the test after `limit`.
pub async fn wait_status(
    halb: &super::Halb,
    limit: Duration,
    what: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> (serde_json::Value, Duration) {
    let started = Instant::now();
    loop {
        let status = halb.status_json().await;
        if ready(&status) {
            return (status, started.elapsed());
        }
        assert!(
            started.elapsed() < limit,
            "not within {limit:?}: {what}; status: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether any pool in `status` has the backend at `address`.
pub fn has_backend(status: &serde_json::Value, address: SocketAddr) -> bool {
    status["pools"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|pool| pool["backends"].as_array().into_iter().flatten())
        .any(|backend| backend["address"] == address.to_string())
}

/// The status API's refusal errors, joined.
pub fn refusal(status: &serde_json::Value) -> String {
    status["config"]["last_error"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}
