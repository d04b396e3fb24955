//! Redundant nodes, active-passive (issue 12): real halb processes in
//! network namespaces move a VRRPv3 virtual IP between them, and work in
//! one group with a real keepalived. Timing goals are measured and printed;
//! the assertions hold generous bounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::netns::{
    http_get, node_ip, wait_until, Handover, Lab, LabNode, BRIDGE_IP, VIP,
};
use crate::support::process::TempFile;

const SERVICE: &str = "198.18.0.100:8080";

/// One node's config: a listener on the VIP in front of its own backend
/// (port 9000 + n on the bridge), VRRP on eth0 with 100 ms adverts.
fn node_config(n: usize, priority: u8, instance_extra: &str) -> String {
    format!(
        r#"[admin]
bind = "127.0.0.1:9900"

[[listener]]
name = "web"
bind = "{SERVICE}"
pool = "app"

[[pool]]
name = "app"
connect_timeout = "200ms"
[pool.health_check]
kind = "tcp"
interval = "100ms"
timeout = "100ms"
rise = 1
fall = 1
[[pool.backend]]
address = "{BRIDGE_IP}:{port}"

[vrrp]
interface = "eth0"
[[vrrp.instance]]
name = "front"
vrid = 51
priority = {priority}
advert_interval = "100ms"
virtual_ips = ["{VIP}/24"]
{instance_extra}
"#,
        port = 9000 + n
    )
}

/// Node `n` of a pair, with `priority` and `instance_extra` keys.
fn start(lab: &Lab, n: usize, priority: u8, instance_extra: &str) -> LabNode {
    LabNode::start(lab, n, &node_config(n, priority, instance_extra))
}

/// The node's one instance's status entry (`None` while its API does not
/// answer).
fn front(node: &LabNode, lab: &Lab) -> Option<Value> {
    node.instances(lab).first().cloned()
}

/// Which node's address the backend saw for one request through the VIP.
fn served_by(lab: &Lab, timeout: Duration) -> Result<String, String> {
    lab.in_ns("cl", move || http_get(SERVICE, "/", timeout))
}

/// Two nodes up, node 1 (priority 150) master, node 2 (100) backup.
fn pair(lab: &Lab, extra1: &str, extra2: &str) -> (LabNode, LabNode) {
    lab.backend(9001);
    lab.backend(9002);
    let one = start(lab, 1, 150, extra1);
    let two = start(lab, 2, 100, extra2);
    let settled = wait_until(Duration::from_secs(10), || {
        one.state(lab, "front") == "master" && two.state(lab, "front") == "backup"
    });
    assert!(
        settled.is_some(),
        "no master/backup pair: node 1 {:?}, node 2 {:?}\n{}\n{}",
        one.state(lab, "front"),
        two.state(lab, "front"),
        one.log.read(),
        two.log.read()
    );
    (one, two)
}

#[test]
fn two_nodes_one_master_serves_through_the_virtual_ip() {
    let lab = Lab::new(2);
    let (one, two) = pair(&lab, "", "");
    assert_eq!(lab.holders(VIP), [1], "exactly one holder");
    assert_eq!(served_by(&lab, Duration::from_secs(2)), Ok(node_ip(1)));
    let master = front(&one, &lab).unwrap();
    assert_eq!(master["name"], "front");
    assert_eq!(master["priority"], 150);
    assert_eq!(master["effective_priority"], 150);
    assert_eq!(master["master"], node_ip(1));
    assert!(master["adverts_sent"].as_u64().unwrap() > 0);
    let backup = front(&two, &lab).unwrap();
    assert_eq!(backup["master"], node_ip(1));
    assert!(backup["adverts_received"].as_u64().unwrap() > 0);
    assert_eq!(backup["adverts_bad"], 0);
    let metrics = lab.in_ns("n2", || {
        http_get("127.0.0.1:9900", "/metrics", Duration::from_secs(2)).unwrap()
    });
    assert!(
        metrics.contains("halb_vrrp_state{instance=\"front\",state=\"backup\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_cut_link_moves_the_virtual_ip_to_the_backup() {
    let lab = Lab::new(2);
    let (_one, two) = pair(&lab, "", "");
    let cut = Instant::now();
    lab.set_link(1, false);
    let to_vip = wait_until(Duration::from_secs(3), || lab.holds(2, VIP));
    let to_served = wait_until(Duration::from_secs(3), || {
        served_by(&lab, Duration::from_millis(300)) == Ok(node_ip(2))
    })
    .map(|_| cut.elapsed());
    println!("link cut: VIP on the backup after {to_vip:?}, first request served by it after {to_served:?}");
    let to_vip = to_vip.expect("the backup took the VIP");
    assert!(to_vip < Duration::from_secs(2), "{to_vip:?}");
    assert!(to_served.expect("served by the backup") < Duration::from_secs(3));
    assert_eq!(two.state(&lab, "front"), "master");

    // The link returns: node 1 preempts, node 2 gives the VIP up, and the
    // client follows node 1 at once.
    let back = Instant::now();
    lab.set_link(1, true);
    let mut both_since: Option<Instant> = None;
    let mut both_longest = Duration::ZERO;
    let returned = wait_until(Duration::from_secs(5), || {
        let holders = lab.holders(VIP);
        if holders.len() > 1 {
            let since = *both_since.get_or_insert_with(Instant::now);
            both_longest = both_longest.max(since.elapsed());
        } else {
            both_since = None;
        }
        holders == [1] && served_by(&lab, Duration::from_millis(300)) == Ok(node_ip(1))
    })
    .map(|_| back.elapsed());
    println!("link back: node 1 holds the VIP alone and serves after {returned:?}; two holders for at most {both_longest:?}");
    assert!(
        returned.is_some(),
        "node 1 serves again: holders {:?}, client neighbours:\n{}\n{}\n{}",
        lab.holders(VIP),
        lab.neighbours("cl"),
        _one.log.read(),
        two.log.read()
    );
    assert!(both_longest < Duration::from_secs(1), "{both_longest:?}");
    assert_eq!(two.state(&lab, "front"), "backup");
    assert_eq!(lab.holders(VIP), [1]);
}

#[test]
fn a_killed_master_is_replaced_and_leaves_no_virtual_ip() {
    let lab = Lab::new(2);
    let (one, _two) = pair(&lab, "", "");
    let killed = Instant::now();
    lab.signal(one.process, "-KILL");
    let served = wait_until(Duration::from_secs(3), || {
        served_by(&lab, Duration::from_millis(300)) == Ok(node_ip(2))
    })
    .map(|_| killed.elapsed());
    let gone = wait_until(Duration::from_secs(4), || !lab.holds(1, VIP)).map(|_| killed.elapsed());
    println!("SIGKILL: served by the other node after {served:?}; the dead node's VIP gone after {gone:?}");
    assert!(served.expect("served by node 2") < Duration::from_secs(2));
    assert!(gone.expect("VIP expired on the dead node") < Duration::from_secs(2));
}

#[test]
fn sigterm_of_the_master_under_a_request_loop_fails_no_request() {
    let lab = Arc::new(Lab::new(2));
    let (one, two) = pair(&lab, "", "");
    let handover = Handover::measure(&lab, one.process, SERVICE, node_ip(2));
    let Handover {
        moved,
        exited,
        ref answers,
        ..
    } = handover;
    let (failed, slowest) = (handover.failed(), handover.slowest());
    println!(
        "SIGTERM of the master: served by node 2 after {moved:?}; {} of {} requests failed {failed:?}; \
         slowest request {slowest:?}; node 1 exited after {exited:?}",
        failed.len(),
        answers.len()
    );
    assert!(
        moved.is_some(),
        "node 2 serves: holders {:?}\n{}\n{}",
        lab.holders(VIP),
        one.log.read(),
        two.log.read()
    );
    assert!(answers.len() > 20, "{} requests", answers.len());
    assert!(failed.is_empty(), "{failed:?}\n{}", one.log.read());
    assert!(exited.is_some(), "node 1 stops\n{}", one.log.read());
    assert_eq!(lab.exited(one.process).and_then(|s| s.code()), Some(0));
    assert_eq!(two.state(&lab, "front"), "master");
    assert_eq!(lab.holders(VIP), [2]);
}

#[test]
fn a_tracked_pool_without_backends_is_a_fault() {
    let lab = Lab::new(2);
    lab.backend(9002);
    let backend_one = lab.backend(9001);
    let track = r#"track_pools = ["app"]"#;
    let one = start(&lab, 1, 150, track);
    let two = start(&lab, 2, 100, track);
    assert!(
        wait_until(Duration::from_secs(10), || one.state(&lab, "front")
            == "master"
            && two.state(&lab, "front") == "backup")
        .is_some()
    );
    let died = Instant::now();
    backend_one.store(true, std::sync::atomic::Ordering::Relaxed);
    let moved = wait_until(Duration::from_secs(5), || lab.holders(VIP) == [2]);
    println!("track_pools: the VIP moved {moved:?} after the master's only backend died");
    assert!(moved.expect("VIP on node 2") < Duration::from_secs(3));
    let fault = front(&one, &lab).unwrap();
    assert_eq!(fault["state"], "fault");
    assert_eq!(fault["effective_priority"], 0);
    assert!(
        fault["reason"].as_str().unwrap_or("").contains("\"app\""),
        "{fault}"
    );
    assert!(died.elapsed() < Duration::from_secs(6));
    assert_eq!(served_by(&lab, Duration::from_secs(2)), Ok(node_ip(2)));

    // The backend returns: node 1 is usable again and preempts.
    lab.backend(9001);
    let back = wait_until(Duration::from_secs(5), || lab.holders(VIP) == [1]);
    assert!(back.is_some(), "VIP back on node 1: {:?}", lab.holders(VIP));
    assert_eq!(one.state(&lab, "front"), "master");
}

#[test]
fn without_preempt_a_returning_higher_node_stays_backup() {
    let lab = Lab::new(2);
    let (one, two) = pair(&lab, "preempt = false", "preempt = false");
    lab.signal(one.process, "-KILL");
    assert!(
        wait_until(Duration::from_secs(3), || two.state(&lab, "front")
            == "master")
        .is_some()
    );
    assert!(wait_until(Duration::from_secs(3), || lab.holders(VIP) == [2]).is_some());
    let again = start(&lab, 1, 150, "preempt = false");
    assert!(
        wait_until(Duration::from_secs(10), || again.state(&lab, "front")
            == "backup")
        .is_some()
    );
    // Longer than a master-down interval: it stays backup.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(again.state(&lab, "front"), "backup");
    assert_eq!(two.state(&lab, "front"), "master");
    assert_eq!(lab.holders(VIP), [2]);
}

/// keepalived from Debian in node `n`'s namespace, VRRPv3, 100 ms adverts.
fn keepalived(lab: &Lab, n: usize, priority: u8) -> (usize, TempFile, Vec<TempFile>) {
    let config = TempFile::with_contents(
        "keepalived.conf",
        &format!(
            r#"global_defs {{
  vrrp_version 3
}}
vrrp_instance front {{
  state BACKUP
  interface eth0
  virtual_router_id 51
  priority {priority}
  advert_int 0.1
  virtual_ipaddress {{
    {VIP}/24
  }}
}}
"#
        ),
    );
    let pid = TempFile::unique("keepalived.pid");
    let vrrp_pid = TempFile::unique("keepalived-vrrp.pid");
    let log = TempFile::unique("keepalived.log");
    let args = [
        "-n",
        "-l",
        "-P",
        "-f",
        &config.path.to_string_lossy(),
        "-p",
        &pid.path.to_string_lossy(),
        "-r",
        &vrrp_pid.path.to_string_lossy(),
    ]
    .map(|s| s.to_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let process = lab.spawn(&format!("n{n}"), "keepalived", &args, &log);
    (process, log, vec![config, pid, vrrp_pid])
}

#[test]
fn keepalived_with_a_higher_priority_is_master_and_halb_takes_over_when_it_goes() {
    let lab = Lab::new(2);
    lab.backend(9002);
    let (_keepalived, log, _files) = keepalived(&lab, 1, 200);
    assert!(
        wait_until(Duration::from_secs(10), || lab.holds(1, VIP)).is_some(),
        "keepalived became master\n{}",
        log.read()
    );
    let halb = start(&lab, 2, 100, "");
    assert!(
        wait_until(Duration::from_secs(10), || halb.state(&lab, "front")
            == "backup")
        .is_some()
    );
    std::thread::sleep(Duration::from_millis(500));
    let status = front(&halb, &lab).unwrap();
    assert_eq!(status["state"], "backup", "{status}");
    assert_eq!(status["master"], node_ip(1));
    assert_eq!(
        status["adverts_bad"], 0,
        "keepalived's adverts pass every check"
    );
    assert_eq!(lab.holders(VIP), [1]);

    let cut = Instant::now();
    lab.set_link(1, false);
    let took = wait_until(Duration::from_secs(3), || lab.holds(2, VIP));
    let served = wait_until(Duration::from_secs(3), || {
        served_by(&lab, Duration::from_millis(300)) == Ok(node_ip(2))
    })
    .map(|_| cut.elapsed());
    println!(
        "keepalived master's link cut: halb holds the VIP after {took:?}, serves after {served:?}"
    );
    assert!(took.expect("halb took over") < Duration::from_secs(2));
    assert!(served.is_some());
}

#[test]
fn keepalived_with_a_lower_priority_stays_backup_behind_halb() {
    let lab = Lab::new(2);
    lab.backend(9001);
    let halb = start(&lab, 1, 150, "");
    assert!(
        wait_until(Duration::from_secs(10), || halb.state(&lab, "front")
            == "master")
        .is_some()
    );
    let (_keepalived, log, _files) = keepalived(&lab, 2, 50);
    // keepalived would take the VIP after its master-down interval (about
    // 0.5 s) if it refused halb's adverts; give it several.
    assert!(
        wait_until(Duration::from_secs(10), || log
            .read()
            .contains("Entering BACKUP STATE"))
        .is_some(),
        "{}",
        log.read()
    );
    std::thread::sleep(Duration::from_secs(2));
    let text = log.read();
    assert!(!text.contains("Entering MASTER STATE"), "{text}");
    assert!(!text.to_lowercase().contains("checksum"), "{text}");
    assert_eq!(lab.holders(VIP), [1]);
    assert_eq!(halb.state(&lab, "front"), "master");
    assert_eq!(served_by(&lab, Duration::from_secs(2)), Ok(node_ip(1)));
}
