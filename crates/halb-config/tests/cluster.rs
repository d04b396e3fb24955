//! `[cluster]`, `[cluster.etcd]` and the split between a node's own file
//! and the fleet's shared config.

mod support;

use halb_config::{parse, parse_shared};
use support::{assert_error, errors, only_error, MINIMAL};

const NODE: &str = r#"[admin]
bind = "127.0.0.1:9900"

[cluster]
node = "lb1"
state_dir = "/var/lib/halb"

[cluster.etcd]
endpoints = ["http://127.0.0.1:2379", "http://10.0.0.2"]
prefix = "/prod/halb"
"#;

#[test]
fn a_node_file_with_etcd_holds_only_local_sections() {
    let config = parse(NODE).unwrap();
    assert!(config.listeners.is_empty() && config.pools.is_empty());
    let etcd = config.etcd().unwrap();
    assert_eq!(etcd.prefix, "/prod/halb");
    let endpoints: Vec<String> = etcd.endpoints.iter().map(ToString::to_string).collect();
    assert_eq!(endpoints, ["http://127.0.0.1:2379", "http://10.0.0.2:2379"]);
    assert_eq!(config.cluster.unwrap().node.as_deref(), Some("lb1"));
}

#[test]
fn defaults_of_cluster() {
    let config = parse("[cluster.etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\n").unwrap();
    let cluster = config.cluster.unwrap();
    assert_eq!(cluster.node, None);
    assert_eq!(cluster.state_dir.to_str(), Some("/var/lib/halb"));
    assert_eq!(cluster.etcd.unwrap().prefix, "/halb");
    // `[cluster]` without etcd: the file still holds everything.
    let config = parse(&format!("[cluster]\nnode = \"a\"\n{MINIMAL}")).unwrap();
    assert!(config.etcd().is_none());
    assert_eq!(config.listeners.len(), 1);
}

#[test]
fn shared_sections_in_a_node_file_with_etcd_are_errors() {
    let errors = errors(&format!("{NODE}\n[alerts]\ntimeout = \"1s\"\n{MINIMAL}"));
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["alerts", "listener", "pool"], "{errors:#?}");
    assert_error(
        &errors[1],
        "listener",
        Some(14),
        "[[listener]] is shared: with [cluster.etcd] set it comes from etcd",
    );
    assert!(
        errors[1].message.contains("halb config push"),
        "{}",
        errors[1]
    );
}

#[test]
fn bad_cluster_keys_name_their_path() {
    let errors = errors(
        "[cluster]\nnode = \"lb/1\"\nstate_dir = \"var/lib\"\nnodes = 1\n\
         [cluster.etcd]\nendpoints = [\"https://e:2379\", \"http://e:2379/v3\", 5]\nprefix = \"halb/\"\n",
    );
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "cluster.node",
            "cluster.state_dir",
            "cluster.nodes",
            // A wrong type is found while reading, before the values are checked.
            "cluster.etcd.endpoints[2]",
            "cluster.etcd.endpoints[0]",
            "cluster.etcd.endpoints[1]",
            "cluster.etcd.prefix",
        ],
        "{errors:#?}"
    );
    assert!(errors[0].message.contains("letters, digits"));
    assert!(errors[1].message.contains("absolute path"));
    assert!(
        errors[2].message.contains("did you mean `node`"),
        "{}",
        errors[2]
    );
    assert!(errors[4].message.contains("TLS"));
    assert!(errors[6].message.contains("must start with \"/\""));
    let error = only_error("[cluster.etcd]\nendpoints = []\n");
    assert_error(&error, "cluster.etcd.endpoints", Some(2), "no endpoints");
}

#[test]
fn the_shared_config_has_listeners_pools_and_alerts_only() {
    let shared = parse_shared(&format!(
        "[alerts]\ntimeout = \"1s\"\n{MINIMAL}\n[[pool]]\nname = \"dynamic\"\n"
    ))
    .unwrap();
    assert_eq!(shared.listeners.len(), 1);
    assert_eq!(shared.pools[1].name, "dynamic");
    assert!(
        shared.pools[1].backends.is_empty(),
        "backends may all be dynamic"
    );

    let errors = parse_shared(&format!(
        "[runtime]\nworkers = 2\n[admin]\nbind = \"127.0.0.1:1\"\n[cluster]\nnode = \"x\"\n{MINIMAL}"
    ))
    .unwrap_err()
    .0;
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["runtime", "admin", "cluster"], "{errors:#?}");
    assert!(errors[1].message.contains("node-local"), "{}", errors[1]);
    // The same rules as a file: a dangling pool is an error here too.
    let errors = parse_shared("[[listener]]\nname = \"w\"\nbind = \"127.0.0.1:1\"\npool = \"p\"\n")
        .unwrap_err()
        .0;
    assert_error(&errors[0], "listener[0].pool", Some(4), "not defined");
}

const VRRP: &str = r#"
[vrrp]
interface = "lo"

[[vrrp.instance]]
name = "front"
vrid = 51
priority = 150
virtual_ips = ["198.18.0.100/24"]
track_pools = ["app"]
"#;

#[test]
fn vrrp_is_node_local_and_tracks_pools_that_come_from_etcd() {
    let config = parse(&format!("{NODE}{VRRP}")).unwrap();
    let vrrp = config.vrrp.unwrap();
    assert_eq!(vrrp.instances[0].track_pools, ["app"]);
    let errors = parse_shared(&format!("{MINIMAL}{VRRP}")).unwrap_err().0;
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].path, "vrrp");
    assert!(
        errors[0].message.contains("[vrrp] is node-local"),
        "{}",
        errors[0]
    );
}
