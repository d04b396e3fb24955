//! A little L2 network made of network namespaces, for the tests of
//! redundant nodes: a bridge namespace (the "switch", 198.18.0.1, where the
//! backends run), node namespaces `n1`, `n2`… (198.18.0.11, .12…, each
//! with `eth0` on the bridge) and a client namespace (198.18.0.50).
//! Names carry the pid and a counter, so parallel tests never collide; a
//! [`Lab`] removes its processes and namespaces on drop, failed test or not.
//!
//! Sockets made on a thread that entered a namespace stay in it, so the
//! backends and clients are plain threads of the test process.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

use super::process::TempFile;

pub const BRIDGE_IP: &str = "198.18.0.1";
pub const CLIENT_IP: &str = "198.18.0.50";
pub const VIP: &str = "198.18.0.100";

/// Run `ip` with `args`; panic with its output when it fails.
pub fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The address of node `n` (1-based).
pub fn node_ip(n: usize) -> String {
    format!("198.18.0.{}", 10 + n)
}

/// The namespaces of one test.
pub struct Lab {
    prefix: String,
    nodes: usize,
    children: Mutex<Vec<Child>>,
    stop_backends: Arc<AtomicBool>,
}

impl Lab {
    /// A bridge, `nodes` node namespaces and a client namespace.
    pub fn new(nodes: usize) -> Lab {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let lab = Lab {
            prefix: format!("halb{}x{n}", std::process::id()),
            nodes,
            children: Mutex::new(Vec::new()),
            stop_backends: Arc::new(AtomicBool::new(false)),
        };
        let br = lab.ns("br");
        ip(&["netns", "add", &br]);
        ip(&["-n", &br, "link", "set", "lo", "up"]);
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]);
        ip(&[
            "-n",
            &br,
            "addr",
            "add",
            &format!("{BRIDGE_IP}/24"),
            "dev",
            "br0",
        ]);
        ip(&["-n", &br, "link", "set", "br0", "up"]);
        for i in 1..=nodes {
            lab.attach(&format!("n{i}"), &node_ip(i), &format!("p{i}"));
        }
        lab.attach("cl", CLIENT_IP, "pcl");
        lab
    }

    /// A namespace with `eth0` at `address`, its peer `port` on the bridge.
    fn attach(&self, short: &str, address: &str, port: &str) {
        let ns = self.ns(short);
        let br = self.ns("br");
        ip(&["netns", "add", &ns]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&[
            "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", port, "netns", &br,
        ]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{address}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &br, "link", "set", port, "master", "br0"]);
        ip(&["-n", &br, "link", "set", port, "up"]);
    }

    /// The full name of namespace `short` (`br`, `cl`, `n1`…).
    pub fn ns(&self, short: &str) -> String {
        format!("{}{short}", self.prefix)
    }

    /// Cut (`false`) or restore node `n`'s link at the bridge, as pulling
    /// its cable out of the switch would.
    pub fn set_link(&self, n: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.ns("br"), "link", "set", &format!("p{n}"), state]);
    }

    /// Whether node `n` has `address` on its `eth0`.
    pub fn holds(&self, n: usize, address: &str) -> bool {
        let output = Command::new("ip")
            .args([
                "-n",
                &self.ns(&format!("n{n}")),
                "-4",
                "-o",
                "addr",
                "show",
                "dev",
                "eth0",
            ])
            .output()
            .expect("run ip");
        String::from_utf8_lossy(&output.stdout).contains(&format!(" {address}/"))
    }

    /// `ip neigh` of namespace `short`, for failure messages.
    pub fn neighbours(&self, short: &str) -> String {
        let output = Command::new("ip")
            .args(["-n", &self.ns(short), "neigh", "show"])
            .output()
            .expect("run ip");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The nodes that hold `address` now.
    pub fn holders(&self, address: &str) -> Vec<usize> {
        (1..=self.nodes)
            .filter(|n| self.holds(*n, address))
            .collect()
    }

    /// Run `f` on a thread inside namespace `short`; sockets it makes stay there.
    pub fn in_ns<T: Send + 'static>(
        &self,
        short: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let path = PathBuf::from("/run/netns").join(self.ns(short));
        std::thread::spawn(move || {
            enter(&path);
            f()
        })
        .join()
        .expect("thread in namespace")
    }

    /// Start a command inside namespace `short`; it is killed on drop.
    /// Returns its index for [`Lab::kill`] and friends.
    pub fn spawn(&self, short: &str, program: &str, args: &[&str], log: &TempFile) -> usize {
        // One open file for both streams: two would each write from offset
        // 0 and overwrite one another.
        let stdout = std::fs::File::create(&log.path).expect("log file");
        let stderr = stdout.try_clone().expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(short), program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn in namespace");
        let mut children = self.children.lock().unwrap();
        children.push(child);
        children.len() - 1
    }

    /// The exit status of a spawned process, once it has exited.
    pub fn exited(&self, index: usize) -> Option<std::process::ExitStatus> {
        self.children.lock().unwrap()[index]
            .try_wait()
            .ok()
            .flatten()
    }

    /// Send `signal` (`-KILL`, `-TERM`) to a spawned process.
    pub fn signal(&self, index: usize, signal: &str) {
        let pid = self.children.lock().unwrap()[index].id();
        let _ = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status();
    }

    /// An HTTP backend on the bridge at `port` that answers every request
    /// with the address of the peer that sent it (so a reply names the
    /// halb node that forwarded it). Stopped by the returned switch.
    pub fn backend(&self, port: u16) -> Arc<AtomicBool> {
        let listener = self.in_ns("br", move || {
            TcpListener::bind((BRIDGE_IP, port)).expect("bind backend")
        });
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (mine, all) = (stop.clone(), self.stop_backends.clone());
        std::thread::spawn(move || {
            while !mine.load(Ordering::Relaxed) && !all.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, peer)) => {
                        std::thread::spawn(move || answer(stream, peer));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        stop
    }
}

fn answer(mut stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
        if request.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let body = peer.ip().to_string();
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

fn enter(path: &PathBuf) {
    let file = std::fs::File::open(path).expect("open namespace");
    use std::os::fd::AsFd as _;
    move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))
        .expect("enter namespace");
}

/// Poll `condition` every 5 ms for up to `limit`: how long it took.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if condition() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// One HTTP GET on a new connection; the body, or what went wrong.
pub fn http_get(address: &str, path: &str, timeout: Duration) -> Result<String, String> {
    http_get_within(address, path, timeout, timeout)
}

/// [`http_get`] with its own connect timeout: a short one gives up quickly
/// on a SYN sent to a dead node's MAC (the kernel would resend it only
/// after a second), while the answer may take longer.
pub fn http_get_within(
    address: &str,
    path: &str,
    connect: Duration,
    timeout: Duration,
) -> Result<String, String> {
    let address: SocketAddr = address.parse().map_err(|e| format!("{e}"))?;
    let mut stream =
        TcpStream::connect_timeout(&address, connect).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(timeout)).ok();
    stream.set_write_timeout(Some(timeout)).ok();
    let request = format!("GET {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(format!("no response head: {text:?}"));
    };
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("status: {}", head.lines().next().unwrap_or("")));
    }
    Ok(body.to_owned())
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_backends.store(true, Ordering::Relaxed);
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        // SIGTERM first: keepalived stops its own children on it.
        for child in children.iter() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        let started = Instant::now();
        for child in children.iter_mut() {
            while started.elapsed() < Duration::from_secs(3) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for i in 1..=self.nodes {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(&format!("n{i}"))])
                .status();
        }
        for short in ["cl", "br"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(short)])
                .status();
        }
    }
}

/// A halb node running in the lab's namespace `n{n}`, with its config file
/// and its log.
pub struct LabNode {
    pub n: usize,
    /// The lab's handle of the process.
    pub process: usize,
    pub log: TempFile,
    _config: TempFile,
}

impl LabNode {
    /// Starts `halb run` on `config` in namespace `n{n}`.
    pub fn start(lab: &Lab, n: usize, config: &str) -> LabNode {
        let config = TempFile::with_contents("lab-node.toml", config);
        let log = TempFile::unique("lab-node.log");
        let path = config.path.to_string_lossy().into_owned();
        let process = lab.spawn(
            &format!("n{n}"),
            env!("CARGO_BIN_EXE_halb"),
            &["run", "--config", &path],
            &log,
        );
        LabNode {
            n,
            process,
            log,
            _config: config,
        }
    }

    /// The node's `vrrp` status entries (empty while its API does not answer).
    pub fn instances(&self, lab: &Lab) -> Vec<serde_json::Value> {
        let body = lab.in_ns(&format!("n{}", self.n), || {
            http_get("127.0.0.1:9900", "/api/v1/status", Duration::from_secs(2))
        });
        body.ok()
            .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
            .and_then(|status| status["vrrp"].as_array().cloned())
            .unwrap_or_default()
    }

    /// The state of VRRP instance `name`, `""` when unknown.
    pub fn state(&self, lab: &Lab, name: &str) -> String {
        self.instances(lab)
            .iter()
            .find(|i| i["name"] == name)
            .and_then(|i| i["state"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// One request of a [`RequestLoop`]: when it ended, how long it took, and
/// which node served it (or what went wrong).
#[derive(Debug, Clone)]
pub struct Answer {
    pub at: Instant,
    pub took: Duration,
    pub result: Result<String, String>,
}

/// A client in the lab's client namespace on a thread: one new connection
/// per request to `service`, one after another, every answer kept, until
/// finished. Its connect timeout outlasts a resent SYN (the kernel resends
/// after 1 s, then 3 s), so that a SYN dropped during a handover costs
/// time, not the request.
pub struct RequestLoop {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<Answer>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RequestLoop {
    pub fn start(lab: &Arc<Lab>, service: &str) -> RequestLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
        let (stopped, kept) = (stop.clone(), answers.clone());
        let (path, service) = (
            PathBuf::from("/run/netns").join(lab.ns("cl")),
            service.to_owned(),
        );
        let thread = std::thread::spawn(move || {
            enter(&path);
            while !stopped.load(Ordering::Relaxed) {
                let started = Instant::now();
                let result = http_get_within(
                    &service,
                    "/",
                    Duration::from_secs(5),
                    Duration::from_secs(2),
                );
                kept.lock().unwrap().push(Answer {
                    at: Instant::now(),
                    took: started.elapsed(),
                    result,
                });
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        RequestLoop {
            stop,
            answers,
            thread: Some(thread),
        }
    }

    /// The answers so far.
    pub fn answers(&self) -> Vec<Answer> {
        self.answers.lock().unwrap().clone()
    }

    /// Stops after the request under way; every answer.
    pub fn finish(mut self) -> Vec<Answer> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.answers()
    }
}

/// What a client loop saw while a node stopped on SIGTERM: how long until
/// the successor served it, how long until the node exited, and every
/// answer (until 300 ms after the exit).
pub struct Handover {
    /// When SIGTERM was sent.
    pub stopped: Instant,
    pub moved: Option<Duration>,
    pub exited: Option<Duration>,
    pub answers: Vec<Answer>,
}

impl Handover {
    /// Send SIGTERM to the lab's process `stopping` while a request loop
    /// runs against `service`, and watch `successor` take the service.
    pub fn measure(lab: &Arc<Lab>, stopping: usize, service: &str, successor: String) -> Handover {
        let client = RequestLoop::start(lab, service);
        std::thread::sleep(Duration::from_millis(300));
        let stopped = Instant::now();
        lab.signal(stopping, "-TERM");
        // The exit is looked for while waiting for the move: it may come first.
        let mut exited_at = None;
        let moved = wait_until(Duration::from_secs(6), || {
            if exited_at.is_none() && lab.exited(stopping).is_some() {
                exited_at = Some(stopped.elapsed());
            }
            client
                .answers()
                .iter()
                .any(|a| a.at > stopped && a.result.as_ref() == Ok(&successor))
        })
        .map(|_| stopped.elapsed());
        let exited = exited_at.or_else(|| {
            wait_until(Duration::from_secs(10), || lab.exited(stopping).is_some())
                .map(|_| stopped.elapsed())
        });
        std::thread::sleep(Duration::from_millis(300));
        let answers = client.finish();
        Handover {
            stopped,
            moved,
            exited,
            answers,
        }
    }

    /// The requests that failed, with why.
    pub fn failed(&self) -> Vec<&String> {
        self.answers
            .iter()
            .filter_map(|a| a.result.as_ref().err())
            .collect()
    }

    /// The longest a request took.
    pub fn slowest(&self) -> Duration {
        self.answers
            .iter()
            .map(|a| a.took)
            .max()
            .unwrap_or_default()
    }
}

impl Drop for RequestLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
