//! What an alert says: the [`Alert`] events and the JSON document a webhook
//! receives for each of them.

use std::net::SocketAddr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Something an operator should hear about. Serialized with an `event` tag:
/// `{"event":"backend_down","pool":"app","backend":"127.0.0.1:9001","reason":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Alert {
    /// A backend stopped receiving traffic: failed health checks or ejection.
    BackendDown {
        pool: String,
        backend: SocketAddr,
        /// Why, as the health check or outlier detector put it.
        reason: String,
    },
    /// A backend that was down receives traffic again.
    BackendUp { pool: String, backend: SocketAddr },
    /// A pool has no usable backend left (backups included): its requests fail.
    PoolUnavailable { pool: String },
    /// A pool that was unavailable has a usable backend again.
    PoolAvailable { pool: String },
    /// Part of a pool's traffic leaves the node's zone: the local zone's
    /// healthy weight fell below the pool's `overflow` threshold.
    ZoneSpillStarted {
        pool: String,
        /// The share of the traffic still kept in the zone, in percent.
        local_percent: String,
    },
    /// A pool's traffic stays in the node's zone again.
    ZoneSpillEnded { pool: String },
    /// A VRRP instance changed state (this node took or gave up the
    /// virtual IPs, or went to fault).
    VrrpTransition {
        instance: String,
        from: String,
        to: String,
        reason: String,
    },
    /// A reload (SIGHUP, API or file watch) was rejected; the running config stays.
    ReloadFailed {
        /// Every validation error, with its key path.
        errors: Vec<String>,
    },
    /// An injected fault (`POST /api/v1/faults`) started: requests or
    /// connections of the pool are now hurt on purpose.
    FaultStarted {
        id: String,
        pool: String,
        /// Only this backend's share, when the fault names one.
        backend: Option<SocketAddr>,
        /// `latency`, `abort`, `reset`, `timeout` or `bandwidth`.
        kind: String,
        /// The kind's value as given (`"200ms"`, `"503"`, bytes per second).
        value: Option<String>,
        /// The share hit, e.g. `"100"`.
        percent: String,
        /// How long it lasts, e.g. `"3s"`.
        duration: String,
    },
    /// An injected fault ended: expired, deleted, or chaos turned off.
    FaultEnded {
        id: String,
        pool: String,
        kind: String,
        /// `expired`, `deleted`, `chaos disallowed` or `pool removed`.
        reason: String,
        /// Requests or connections it hit.
        applied: u64,
    },
}

/// How urgently a human should look: receivers route on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Things got better; nothing to do.
    Info,
    /// Capacity or control is degraded but traffic still flows.
    Warning,
    /// Requests are failing.
    Critical,
}

impl Alert {
    /// The `event` name in the JSON payload, e.g. `"backend_down"`.
    pub fn event(&self) -> &'static str {
        match self {
            Alert::BackendDown { .. } => "backend_down",
            Alert::BackendUp { .. } => "backend_up",
            Alert::PoolUnavailable { .. } => "pool_unavailable",
            Alert::PoolAvailable { .. } => "pool_available",
            Alert::ReloadFailed { .. } => "reload_failed",
            Alert::VrrpTransition { .. } => "vrrp_transition",
            Alert::FaultStarted { .. } => "fault_started",
            Alert::FaultEnded { .. } => "fault_ended",
            Alert::ZoneSpillStarted { .. } => "zone_spill_started",
            Alert::ZoneSpillEnded { .. } => "zone_spill_ended",
        }
    }

    /// How urgent this alert is: only a pool without backends fails requests.
    pub fn severity(&self) -> Severity {
        match self {
            Alert::PoolUnavailable { .. } => Severity::Critical,
            Alert::BackendDown { .. }
            | Alert::ReloadFailed { .. }
            | Alert::FaultStarted { .. }
            | Alert::ZoneSpillStarted { .. } => Severity::Warning,
            Alert::BackendUp { .. }
            | Alert::PoolAvailable { .. }
            | Alert::FaultEnded { .. }
            | Alert::ZoneSpillEnded { .. } => Severity::Info,
            Alert::VrrpTransition { to, .. } if to == "fault" => Severity::Critical,
            Alert::VrrpTransition { .. } => Severity::Warning,
        }
    }

    /// The JSON body POSTed to webhooks: the alert's fields plus when it
    /// happened, on which node, and how severe it is.
    pub(crate) fn to_json(&self, time: SystemTime, node: &str) -> Vec<u8> {
        let payload = Payload {
            alert: self,
            time: halb_access_log::rfc3339::format(time),
            node,
            severity: self.severity(),
        };
        // Plain strings, numbers and addresses cannot fail to serialize.
        serde_json::to_vec(&payload).expect("alert payload serializes")
    }
}

#[derive(Serialize)]
struct Payload<'a> {
    #[serde(flatten)]
    alert: &'a Alert,
    time: String,
    node: &'a str,
    severity: Severity,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn payload_has_event_fields_time_node_and_severity() {
        let alert = Alert::BackendDown {
            pool: "app".into(),
            backend: "127.0.0.1:9001".parse().unwrap(),
            reason: "connect failed: connection refused".into(),
        };
        let time = UNIX_EPOCH + Duration::from_secs(1_709_251_199);
        let json = String::from_utf8(alert.to_json(time, "lb1")).unwrap();
        assert_eq!(
            json,
            r#"{"event":"backend_down","pool":"app","backend":"127.0.0.1:9001","reason":"connect failed: connection refused","time":"2024-02-29T23:59:59.000Z","node":"lb1","severity":"warning"}"#
        );
    }

    #[test]
    fn event_names_match_the_serde_tag() {
        let alerts = [
            Alert::BackendDown {
                pool: "p".into(),
                backend: "[::1]:80".parse().unwrap(),
                reason: "r".into(),
            },
            Alert::BackendUp {
                pool: "p".into(),
                backend: "[::1]:80".parse().unwrap(),
            },
            Alert::PoolUnavailable { pool: "p".into() },
            Alert::PoolAvailable { pool: "p".into() },
            Alert::ReloadFailed {
                errors: vec!["e".into()],
            },
            Alert::FaultStarted {
                id: "1".into(),
                pool: "p".into(),
                backend: None,
                kind: "abort".into(),
                value: Some("503".into()),
                percent: "100".into(),
                duration: "3s".into(),
            },
            Alert::FaultEnded {
                id: "1".into(),
                pool: "p".into(),
                kind: "abort".into(),
                reason: "expired".into(),
                applied: 7,
            },
        ];
        for alert in alerts {
            let value = serde_json::to_value(&alert).unwrap();
            assert_eq!(value["event"], alert.event());
            let back: Alert = serde_json::from_value(value).unwrap();
            assert_eq!(back, alert);
        }
    }
}
