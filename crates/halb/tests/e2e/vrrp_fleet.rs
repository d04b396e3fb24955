//! A VRRP pair whose shared config comes from etcd: the nodes' own files
//! hold `[vrrp]` and `[cluster.etcd]` only, the tracked pool comes from
//! the shared document, and `halb cluster status` shows each node's VRRP
//! state (DESIGN: "every node: config revision applied, VRRP states").
//! etcd runs on the bridge of a lab of network namespaces.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::netns::{http_get, node_ip, Lab, BRIDGE_IP, VIP};
use crate::support::process::TempFile;

const ETCD: &str = "198.18.0.1:23790";

fn node_file(n: usize, priority: u8, state_dir: &std::path::Path) -> String {
    format!(
        r#"[admin]
bind = "127.0.0.1:9900"

[cluster]
node = "lb{n}"
state_dir = "{}"

[cluster.etcd]
endpoints = ["http://{ETCD}"]

[vrrp]
interface = "eth0"
[[vrrp.instance]]
name = "front"
vrid = 52
priority = {priority}
advert_interval = "100ms"
virtual_ips = ["{VIP}/24"]
track_pools = ["app"]
"#,
        state_dir.display()
    )
}

const SHARED: &str = r#"
[[listener]]
name = "web"
bind = "198.18.0.100:8080"
pool = "app"

[[pool]]
name = "app"
[pool.health_check]
kind = "tcp"
interval = "100ms"
[[pool.backend]]
address = "198.18.0.1:9001"
"#;

/// `halb ARGS` inside the bridge namespace (where etcd listens).
fn halb_in_bridge(lab: &Lab, args: &[&str]) -> String {
    let output = Command::new("ip")
        .args(["netns", "exec", &lab.ns("br"), env!("CARGO_BIN_EXE_halb")])
        .args(args)
        .output()
        .expect("run halb");
    assert!(
        output.status.success(),
        "halb {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn cluster_status_shows_each_nodes_vrrp_state() {
    let lab = Lab::new(2);
    lab.backend(9001);
    let data = TempFile::unique("etcd.data");
    let etcd_log = TempFile::unique("etcd.log");
    let url = format!("http://{ETCD}");
    let peer = format!("http://{BRIDGE_IP}:23800");
    lab.spawn(
        "br",
        "etcd",
        &[
            "--data-dir",
            &data.path.display().to_string(),
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("default={peer}"),
        ],
        &etcd_log,
    );
    let shared = TempFile::with_contents("shared.toml", SHARED);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pushed = Command::new("ip")
            .args(["netns", "exec", &lab.ns("br"), env!("CARGO_BIN_EXE_halb")])
            .args([
                "config",
                "push",
                "--etcd",
                &url,
                &shared.path.display().to_string(),
            ])
            .output()
            .expect("run halb config push");
        if pushed.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "etcd did not take the push: {}\n{}",
            String::from_utf8_lossy(&pushed.stderr),
            etcd_log.read()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let states = [TempFile::unique("state1"), TempFile::unique("state2")];
    let mut logs = Vec::new();
    let mut configs = Vec::new();
    for (i, priority) in [(1, 150), (2, 100)] {
        std::fs::create_dir_all(&states[i - 1].path).unwrap();
        let config =
            TempFile::with_contents("node.toml", &node_file(i, priority, &states[i - 1].path));
        let log = TempFile::unique("node.log");
        let path = config.path.display().to_string();
        lab.spawn(
            &format!("n{i}"),
            env!("CARGO_BIN_EXE_halb"),
            &["run", "--config", &path],
            &log,
        );
        logs.push(log);
        configs.push(config);
    }

    let deadline = Instant::now() + Duration::from_secs(15);
    let fleet = loop {
        let out = halb_in_bridge(&lab, &["cluster", "status", "--etcd", &url, "--json"]);
        let fleet: Value = serde_json::from_str(&out).expect("JSON");
        let state = |node: &str| {
            (fleet["nodes"].as_array().into_iter().flatten())
                .find(|n| n["node"] == node)
                .and_then(|n| n["vrrp"].get(0).cloned())
                .map(|v| v["state"].as_str().unwrap_or_default().to_owned())
        };
        if state("lb1").as_deref() == Some("master") && state("lb2").as_deref() == Some("backup") {
            break fleet;
        }
        assert!(
            Instant::now() < deadline,
            "not master/backup in the registry: {fleet:#}\n{}\n{}",
            logs[0].read(),
            logs[1].read()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for node in fleet["nodes"].as_array().into_iter().flatten() {
        assert_eq!(node["converged"], true, "{fleet:#}");
        assert_eq!(node["vrrp"][0]["name"], "front");
    }
    // The VIP serves from the shared config's listener through node 1.
    let served = lab.in_ns("cl", || {
        http_get(&format!("{VIP}:8080"), "/", Duration::from_secs(2))
    });
    assert_eq!(served, Ok(node_ip(1)));
    let table = halb_in_bridge(&lab, &["cluster", "status", "--etcd", &url]);
    assert!(table.contains("front=master"), "{table}");
    assert!(table.contains("front=backup"), "{table}");
    let _ = std::fs::remove_dir_all(&data.path);
    for state in &states {
        let _ = std::fs::remove_dir_all(&state.path);
    }
}
