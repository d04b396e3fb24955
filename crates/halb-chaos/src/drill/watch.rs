//! Watching the nodes: each node's status API polled every 50 ms, and every
//! change of a backend's state, a VRRP instance's state, a fault or the
//! node's own reachability recorded with the time it was first seen.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::http::Conn;
use crate::scenario::Node;

/// How often each node is asked.
pub const POLL: Duration = Duration::from_millis(50);

/// A state change seen on a node.
#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    pub node: String,
    /// `backend app/127.0.0.1:9001`, `vrrp front`, `fault f-3`, `admin`.
    pub what: String,
    pub from: String,
    pub to: String,
    /// Seconds after the start of the load (negative: before it).
    pub at_s: f64,
    /// Seconds since the step before it ran; `None` when no step had.
    pub after_step_s: Option<f64>,
    /// Index of that step in the report's `steps`.
    pub step: Option<usize>,
}

/// The states a node's status names, by what they are of.
fn states(status: &serde_json::Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for pool in status["pools"].as_array().into_iter().flatten() {
        let name = pool["name"].as_str().unwrap_or("?");
        for b in pool["backends"].as_array().into_iter().flatten() {
            out.insert(
                format!("backend {name}/{}", b["address"].as_str().unwrap_or("?")),
                b["state"].as_str().unwrap_or("?").to_owned(),
            );
        }
    }
    for i in status["vrrp"].as_array().into_iter().flatten() {
        out.insert(
            format!("vrrp {}", i["name"].as_str().unwrap_or("?")),
            i["state"].as_str().unwrap_or("?").to_owned(),
        );
    }
    for f in status["faults"].as_array().into_iter().flatten() {
        let value = match &f["value"] {
            serde_json::Value::Null => String::new(),
            serde_json::Value::String(s) => format!(" {s}"),
            v => format!(" {v}"),
        };
        out.insert(
            format!("fault {}", f["id"].as_str().unwrap_or("?")),
            format!(
                "{}{value} on {}",
                f["kind"].as_str().unwrap_or("?"),
                f["pool"].as_str().unwrap_or("?")
            ),
        );
    }
    out
}

/// Polls `node` until `until`, pushing each change into `seen` with its
/// time relative to `start`.
pub async fn watch(node: Node, start: Instant, until: Instant, seen: Arc<Mutex<Vec<Detection>>>) {
    let mut conn = Conn::new(node.authority());
    let auth = node.token.as_ref().map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| ("authorization", a))
        .into_iter()
        .collect();
    let mut last: Option<BTreeMap<String, String>> = None;
    let mut reachable: Option<String> = None;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while Instant::now() < until {
        tick.tick().await;
        let asked = Instant::now();
        let answer = conn
            .send(
                "GET",
                "/api/v1/status",
                &headers,
                None,
                Duration::from_millis(500),
            )
            .await;
        let at_s = if asked >= start {
            (asked - start).as_secs_f64()
        } else {
            -(start - asked).as_secs_f64()
        };
        let record = |what: &str, from: &str, to: &str| Detection {
            node: node.name.clone(),
            what: what.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
            at_s,
            after_step_s: None,
            step: None,
        };
        let (now_reachable, now) = match &answer {
            Ok((200, body)) => match serde_json::from_slice::<serde_json::Value>(body) {
                Ok(status) => ("up".to_owned(), Some(states(&status))),
                Err(_) => ("bad status answer".to_owned(), None),
            },
            Ok((code, _)) => (format!("HTTP {code}"), None),
            Err(failure) => (format!("unreachable ({})", failure.as_str()), None),
        };
        let mut changes = Vec::new();
        if let Some(before) = &reachable {
            if *before != now_reachable {
                changes.push(record("admin", before, &now_reachable));
            }
        }
        reachable = Some(now_reachable);
        if let Some(now) = now {
            if let Some(before) = &last {
                for (what, state) in &now {
                    match before.get(what) {
                        Some(old) if old == state => {}
                        Some(old) => changes.push(record(what, old, state)),
                        None if what.starts_with("fault ") => {
                            changes.push(record(what, "none", &format!("active: {state}")))
                        }
                        None => changes.push(record(what, "absent", state)),
                    }
                }
                for (what, state) in before {
                    if !now.contains_key(what) {
                        if what.starts_with("fault ") {
                            changes.push(record(what, &format!("active: {state}"), "ended"));
                        } else {
                            changes.push(record(what, state, "absent"));
                        }
                    }
                }
            }
            last = Some(now);
        }
        if !changes.is_empty() {
            seen.lock().expect("not poisoned").extend(changes);
        }
    }
}
