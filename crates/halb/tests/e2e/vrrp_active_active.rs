//! Active-active virtual IPs (issue 14): two `[[vrrp.instance]]` groups on
//! one interface, each node master of one VIP and backup of the other, as
//! DNS giving clients both VIPs would use them. A node that dies leaves
//! both VIPs to the survivor; when it returns, each VIP goes home. Timing
//! goals are measured and printed; the assertions hold generous bounds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::netns::{
    http_get, http_get_within, node_ip, wait_until, Handover, Lab, LabNode, BRIDGE_IP,
};

/// Group A's VIP, at home on node 1; group B's, at home on node 2.
const VIP_A: &str = "198.18.0.100";
const VIP_B: &str = "198.18.0.101";

/// Node `n`'s priority in group A and in group B: mirrored.
fn priorities(n: usize) -> (u8, u8) {
    if n == 1 {
        (150, 100)
    } else {
        (100, 150)
    }
}

/// One node's config: a listener on each VIP in front of the node's own
/// backend (port 9000 + n on the bridge), two instances on eth0 with
/// 100 ms adverts and preempt (the default).
fn node_config(n: usize) -> String {
    let (a, b) = priorities(n);
    format!(
        r#"[admin]
bind = "127.0.0.1:9900"

[[listener]]
name = "a"
bind = "{VIP_A}:8080"
pool = "app"

[[listener]]
name = "b"
bind = "{VIP_B}:8080"
pool = "app"

[[pool]]
name = "app"
connect_timeout = "200ms"
[[pool.backend]]
address = "{BRIDGE_IP}:{port}"

[vrrp]
interface = "eth0"

[[vrrp.instance]]
name = "a"
vrid = 51
priority = {a}
advert_interval = "100ms"
virtual_ips = ["{VIP_A}/24"]

[[vrrp.instance]]
name = "b"
vrid = 52
priority = {b}
advert_interval = "100ms"
virtual_ips = ["{VIP_B}/24"]
"#,
        port = 9000 + n
    )
}

/// The states of the two groups on a node.
trait BothGroups {
    /// `(state of a, state of b)`.
    fn states(&self, lab: &Lab) -> (String, String);
}

impl BothGroups for LabNode {
    fn states(&self, lab: &Lab) -> (String, String) {
        (self.state(lab, "a"), self.state(lab, "b"))
    }
}

/// Which node's address the backend saw for one request through `vip`.
fn served_by(lab: &Lab, vip: &str, timeout: Duration) -> Result<String, String> {
    let service = format!("{vip}:8080");
    lab.in_ns("cl", move || http_get(&service, "/", timeout))
}

/// One request with a 50 ms connect timeout: a SYN to a dead node's MAC
/// fails fast, so that polling finds the first served request closely.
fn probe(lab: &Lab, vip: &str) -> Result<String, String> {
    let service = format!("{vip}:8080");
    lab.in_ns("cl", move || {
        http_get_within(
            &service,
            "/",
            Duration::from_millis(50),
            Duration::from_secs(1),
        )
    })
}

/// Both nodes up, each VIP on its home node and served by it.
fn pair(lab: &Lab) -> (LabNode, LabNode) {
    lab.backend(9001);
    lab.backend(9002);
    let one = LabNode::start(lab, 1, &node_config(1));
    let two = LabNode::start(lab, 2, &node_config(2));
    let settled = wait_until(Duration::from_secs(10), || {
        one.states(lab) == ("master".into(), "backup".into())
            && two.states(lab) == ("backup".into(), "master".into())
    });
    assert!(
        settled.is_some(),
        "no mirrored pair: node 1 {:?}, node 2 {:?}\n{}\n{}",
        one.states(lab),
        two.states(lab),
        one.log.read(),
        two.log.read()
    );
    assert!(
        wait_until(Duration::from_secs(3), || lab.holders(VIP_A) == [1]
            && lab.holders(VIP_B) == [2])
        .is_some(),
        "VIP A on {:?}, VIP B on {:?}",
        lab.holders(VIP_A),
        lab.holders(VIP_B)
    );
    (one, two)
}

/// When a request finished, and who served it (or what went wrong).
type Answer = (Instant, Result<String, String>);

/// A client of one VIP on a thread: one new connection after another,
/// every answer kept, until finished.
struct Client {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<Answer>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Client {
    fn start(lab: &Arc<Lab>, vip: &'static str) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
        let (lab, stopped, kept) = (lab.clone(), stop.clone(), answers.clone());
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let answer = served_by(&lab, vip, Duration::from_millis(500));
                kept.lock().unwrap().push((Instant::now(), answer));
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Client {
            stop,
            answers,
            thread: Some(thread),
        }
    }

    fn answers(&self) -> Vec<Answer> {
        self.answers.lock().unwrap().clone()
    }

    fn finish(mut self) -> Vec<Answer> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.answers()
    }
}

/// Watches the holders of both VIPs on a thread until stopped: the longest
/// time either had two holders at once, and every holder set VIP B had.
struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(Duration, Vec<Vec<usize>>)>>,
}

impl Watcher {
    fn start(lab: &Arc<Lab>) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let (lab, stopped) = (lab.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut longest = Duration::ZERO;
            let mut since: [Option<Instant>; 2] = [None, None];
            let mut b_holders: Vec<Vec<usize>> = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                for (slot, vip) in [VIP_A, VIP_B].into_iter().enumerate() {
                    let holders = lab.holders(vip);
                    if holders.len() > 1 {
                        let at = *since[slot].get_or_insert_with(Instant::now);
                        longest = longest.max(at.elapsed());
                    } else {
                        since[slot] = None;
                    }
                    if slot == 1 && b_holders.last() != Some(&holders) {
                        b_holders.push(holders);
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (longest, b_holders)
        });
        Watcher {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (Duration, Vec<Vec<usize>>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

#[test]
fn the_survivor_serves_both_vips_and_each_goes_home_when_its_node_returns() {
    let lab = Arc::new(Lab::new(2));
    let (one, two) = pair(&lab);
    assert_eq!(
        served_by(&lab, VIP_A, Duration::from_secs(2)),
        Ok(node_ip(1))
    );
    assert_eq!(
        served_by(&lab, VIP_B, Duration::from_secs(2)),
        Ok(node_ip(2))
    );
    let a_on_two = two
        .instances(&lab)
        .into_iter()
        .find(|i| i["name"] == "a")
        .unwrap();
    assert_eq!(a_on_two["vrid"], 51);
    assert_eq!(a_on_two["master"], node_ip(1));
    assert_eq!(a_on_two["adverts_bad"], 0, "{a_on_two}");

    // SIGKILL node 1: node 2 takes VIP A and serves both. A client of
    // VIP B runs throughout: node 2 serves it all along.
    let b_client = Client::start(&lab, VIP_B);
    std::thread::sleep(Duration::from_millis(100));
    let killed = Instant::now();
    lab.signal(one.process, "-KILL");
    let served_a = wait_until(Duration::from_secs(3), || {
        probe(&lab, VIP_A) == Ok(node_ip(2))
    })
    .map(|_| killed.elapsed());
    let served_b = served_by(&lab, VIP_B, Duration::from_secs(2));
    println!("SIGKILL of node 1: first request through VIP A served by node 2 after {served_a:?}");
    let served_a = served_a.unwrap_or_else(|| {
        panic!(
            "node 2 serves VIP A: holders {:?}, node 2 {:?}, client neighbours:\n{}\n{}",
            lab.holders(VIP_A),
            two.states(&lab),
            lab.neighbours("cl"),
            two.log.read()
        )
    });
    assert!(served_a < Duration::from_secs(2), "{served_a:?}");
    assert_eq!(served_b, Ok(node_ip(2)), "VIP B stays served by node 2");
    assert_eq!(two.states(&lab), ("master".into(), "master".into()));
    assert!(
        wait_until(Duration::from_secs(3), || lab.holders(VIP_A) == [2]).is_some(),
        "the dead node's copy of VIP A expires: {:?}",
        lab.holders(VIP_A)
    );
    assert_eq!(lab.holders(VIP_B), [2]);

    // Node 1 returns: VIP A goes home, VIP B stays on node 2.
    let watcher = Watcher::start(&lab);
    let back = Instant::now();
    let again = LabNode::start(&lab, 1, &node_config(1));
    let home = wait_until(Duration::from_secs(10), || {
        lab.holders(VIP_A) == [1] && probe(&lab, VIP_A) == Ok(node_ip(1))
    })
    .map(|_| back.elapsed());
    // Longer than a master-down interval: nothing moves any more.
    std::thread::sleep(Duration::from_secs(1));
    let (both_longest, b_holders) = watcher.finish();
    let b_answers = b_client.finish();
    let b_elsewhere: Vec<&Answer> = b_answers
        .iter()
        .filter(|(_, a)| *a != Ok(node_ip(2)))
        .collect();
    println!(
        "node 1 restarted: VIP A home and served by it {home:?} after the start; \
         two holders of a VIP for at most {both_longest:?}; VIP B holders {b_holders:?}, \
         {} requests through VIP B, {} not served by node 2",
        b_answers.len(),
        b_elsewhere.len()
    );
    assert!(
        home.is_some(),
        "VIP A back on node 1: holders {:?}, node 1 {:?}, node 2 {:?}\n{}\n{}",
        lab.holders(VIP_A),
        again.states(&lab),
        two.states(&lab),
        again.log.read(),
        two.log.read()
    );
    assert!(both_longest < Duration::from_secs(1), "{both_longest:?}");
    assert_eq!(b_holders, [vec![2]], "VIP B never left node 2");
    assert!(
        b_answers.len() > 20 && b_elsewhere.is_empty(),
        "node 2 served every request through VIP B ({} requests): {b_elsewhere:?}",
        b_answers.len()
    );
    assert_eq!(again.states(&lab), ("master".into(), "backup".into()));
    assert_eq!(two.states(&lab), ("backup".into(), "master".into()));
    assert_eq!(lab.holders(VIP_A), [1]);
    assert_eq!(lab.holders(VIP_B), [2]);
    assert_eq!(
        served_by(&lab, VIP_A, Duration::from_secs(2)),
        Ok(node_ip(1))
    );
    assert_eq!(
        served_by(&lab, VIP_B, Duration::from_secs(2)),
        Ok(node_ip(2))
    );
}

#[test]
fn sigterm_hands_a_nodes_vip_and_its_traffic_to_the_other_node() {
    let lab = Arc::new(Lab::new(2));
    let (one, two) = pair(&lab);

    let handover = Handover::measure(&lab, two.process, &format!("{VIP_B}:8080"), node_ip(1));
    let Handover {
        stopped,
        moved,
        exited,
        ref answers,
    } = handover;
    let (failed, slowest) = (handover.failed(), handover.slowest());
    // Until node 2 has given VIP B up, either node may serve it; after,
    // only node 1.
    let gone = stopped + exited.unwrap_or_default();
    let after: Vec<&Result<String, String>> = answers
        .iter()
        .filter(|a| a.at > gone)
        .map(|a| &a.result)
        .collect();
    println!(
        "SIGTERM of node 2: VIP B served by node 1 after {moved:?}; {} of {} requests failed {failed:?}; \
         slowest request {slowest:?}; node 2 exited after {exited:?}",
        failed.len(),
        answers.len()
    );
    assert!(
        moved.expect("node 1 serves VIP B") < Duration::from_secs(4),
        "{moved:?}"
    );
    assert!(
        after.iter().all(|a| **a == Ok(node_ip(1))),
        "every request after node 2 exited is node 1's: {after:?}"
    );
    // No connection is open on node 2 when the client's ARP entry moves:
    // a new one waits for its resent SYN instead of being reset.
    assert!(failed.is_empty(), "{failed:?}\n{}", two.log.read());
    assert!(exited.is_some(), "node 2 stops\n{}", two.log.read());
    assert_eq!(lab.exited(two.process).and_then(|s| s.code()), Some(0));
    assert_eq!(one.states(&lab), ("master".into(), "master".into()));
    assert_eq!(lab.holders(VIP_A), [1]);
    assert_eq!(lab.holders(VIP_B), [1]);
    assert_eq!(
        served_by(&lab, VIP_A, Duration::from_secs(2)),
        Ok(node_ip(1))
    );
}

#[test]
fn a_node_holding_both_vips_gives_them_up_together_at_sigterm() {
    let lab = Arc::new(Lab::new(2));
    let (one, two) = pair(&lab);
    lab.signal(one.process, "-KILL");
    assert!(
        wait_until(Duration::from_secs(3), || two.states(&lab)
            == ("master".into(), "master".into()))
        .is_some(),
        "node 2 holds both: {:?}",
        two.states(&lab)
    );
    // No other node hears the priority-0 adverts, so each instance waits
    // its whole handover bound (1 s plus a 200 ms grace): together, not
    // one after another.
    let stopped = Instant::now();
    lab.signal(two.process, "-TERM");
    let exited = wait_until(Duration::from_secs(10), || {
        lab.exited(two.process).is_some()
    })
    .map(|_| stopped.elapsed());
    println!("SIGTERM of the node holding both VIPs, alone: exited after {exited:?}");
    let exited = exited.unwrap_or_else(|| panic!("node 2 stops\n{}", two.log.read()));
    assert!(exited < Duration::from_millis(2200), "{exited:?}");
    assert_eq!(lab.exited(two.process).and_then(|s| s.code()), Some(0));
    assert!(!lab.holds(2, VIP_A) && !lab.holds(2, VIP_B));
}
