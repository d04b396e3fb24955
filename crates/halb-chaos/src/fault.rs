//! The fault model and the registry of active faults.
//!
//! The admin API adds faults (validated first), lists and removes them;
//! each ends by itself when its duration is up. The data path asks
//! [`Faults::pick`] once per request (HTTP) or connection (TCP): with no
//! fault active that is one relaxed atomic load, nothing else. Faults live
//! in memory only: a restart ends them all.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use serde::Deserialize;
use tokio::sync::{broadcast, watch};

/// The longest a fault may last: a forgotten fault must not outlive the
/// drill it was part of by much.
pub const MAX_FAULT_DURATION: Duration = Duration::from_secs(60 * 60);

/// What a fault does to a request or connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Wait this long before forwarding (HTTP) or connecting (TCP).
    Latency(Duration),
    /// Answer this status without reaching a backend (HTTP); close the
    /// connection with a reset (TCP, where the status is `None`).
    Abort(Option<u16>),
    /// Close the client connection with a TCP reset, answering nothing.
    Reset,
    /// Hold the request or connection without answering until the client
    /// gives up (or the fault ends: then the connection is reset).
    Timeout,
    /// Throttle what goes to the client to this many bytes per second.
    Bandwidth(u64),
}

impl FaultKind {
    /// Every kind's name, as the API spells it.
    pub const NAMES: [&'static str; 5] = ["latency", "abort", "reset", "timeout", "bandwidth"];

    /// The kind's name, as the API spells it.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Latency(_) => "latency",
            FaultKind::Abort(_) => "abort",
            FaultKind::Reset => "reset",
            FaultKind::Timeout => "timeout",
            FaultKind::Bandwidth(_) => "bandwidth",
        }
    }

    /// The kind's value as the API shows it (`"200ms"`, `503`, bytes per
    /// second), or null.
    pub fn value(&self) -> serde_json::Value {
        match self {
            FaultKind::Latency(d) => serde_json::Value::String(format!("{}ms", d.as_millis())),
            FaultKind::Abort(Some(status)) => (*status).into(),
            FaultKind::Bandwidth(rate) => (*rate).into(),
            FaultKind::Abort(None) | FaultKind::Reset | FaultKind::Timeout => {
                serde_json::Value::Null
            }
        }
    }
}

/// Why a fault ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Its duration was up.
    Expired,
    /// `DELETE /api/v1/faults/{id}`.
    Deleted,
    /// A reload turned `[chaos] allow` off.
    Disallowed,
    /// A reload removed its pool.
    PoolRemoved,
}

impl EndReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            EndReason::Expired => "expired",
            EndReason::Deleted => "deleted",
            EndReason::Disallowed => "chaos disallowed",
            EndReason::PoolRemoved => "pool removed",
        }
    }
}

/// One active fault.
#[derive(Debug)]
pub struct Fault {
    /// Names the fault in the API (`DELETE /api/v1/faults/{id}`).
    pub id: String,
    pub pool: String,
    /// Only requests or connections sent to this backend; `None`: all of
    /// the pool's.
    pub backend: Option<SocketAddr>,
    pub kind: FaultKind,
    /// The share of requests or connections hit, 0 < percent <= 100.
    pub percent: f64,
    pub duration: Duration,
    pub started: Instant,
    /// Wall-clock start, for logs and alerts.
    pub started_at: SystemTime,
    pub expires: Instant,
    /// Requests or connections this fault was applied to.
    applied: AtomicU64,
    /// Turns true when the fault ends (held requests let go).
    ended: watch::Sender<bool>,
}

impl Fault {
    /// Time left before the fault ends by itself.
    pub fn remaining(&self) -> Duration {
        self.expires.saturating_duration_since(Instant::now())
    }

    /// How many requests or connections it hit so far.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }

    /// Resolves when the fault ends (expired or removed): a held request
    /// is let go then.
    pub async fn ended(&self) {
        let mut ended = self.ended.subscribe();
        tokio::select! {
            _ = tokio::time::sleep_until(self.expires.into()) => {}
            _ = ended.wait_for(|ended| *ended) => {}
        }
    }

    /// The fault as the API shows it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "pool": self.pool,
            "backend": self.backend.map(|b| b.to_string()),
            "kind": self.kind.name(),
            "value": self.kind.value(),
            "percent": self.percent,
            "duration_s": self.duration.as_secs_f64(),
            "remaining_s": (self.remaining().as_secs_f64() * 10.0).round() / 10.0,
            "applied": self.applied(),
        })
    }

    fn hits(&self, pool: &str, backend: Option<SocketAddr>, now: Instant) -> bool {
        self.pool == pool
            && (self.backend.is_none() || self.backend == backend)
            && now < self.expires
            && (self.percent >= 100.0 || fastrand::f64() * 100.0 < self.percent)
    }
}

/// A fault's start or end, for logs, alerts and the dashboard.
#[derive(Debug, Clone)]
pub enum FaultEvent {
    Started(Arc<Fault>),
    Ended(Arc<Fault>, EndReason),
}

/// `POST /api/v1/faults` as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    pub pool: String,
    #[serde(default)]
    pub backend: Option<String>,
    pub kind: String,
    #[serde(default)]
    pub value: Option<serde_json::Value>,
    #[serde(default)]
    pub percent: Option<f64>,
    pub duration: String,
}

/// What a pool offers to a fault: its protocol and backends.
#[derive(Debug, Clone)]
pub struct PoolTarget {
    /// Served over HTTP by at least one listener (else TCP only).
    pub http: bool,
    pub backends: Vec<SocketAddr>,
}

/// Why a fault was refused; each names the field that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    #[error("bad fault: {0}")]
    Body(String),
    #[error("pool: no pool named {0:?}; pools: {1}")]
    UnknownPool(String, String),
    #[error("backend: {0}")]
    Backend(String),
    #[error("kind: unknown kind {0:?}; expected one of latency, abort, reset, timeout, bandwidth")]
    UnknownKind(String),
    #[error("value: {0}")]
    Value(String),
    #[error("percent: {0}")]
    Percent(String),
    #[error("duration: {0}")]
    Duration(String),
    #[error("fault injection is off: set [chaos] allow = true in the config to use it")]
    Disallowed,
}

/// A validated fault, not yet started.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpec {
    pub pool: String,
    pub backend: Option<SocketAddr>,
    pub kind: FaultKind,
    pub percent: f64,
    pub duration: Duration,
}

impl FaultRequest {
    /// Parse a request body, naming the field that is wrong.
    pub fn from_json(body: &[u8]) -> Result<FaultRequest, FaultError> {
        serde_json::from_slice(body).map_err(|e| FaultError::Body(e.to_string()))
    }

    /// Check every field; `pool` looks a pool up by name.
    pub fn validate(
        self,
        pool: impl Fn(&str) -> Option<PoolTarget>,
        pool_names: &[String],
    ) -> Result<FaultSpec, FaultError> {
        let target = pool(&self.pool)
            .ok_or_else(|| FaultError::UnknownPool(self.pool.clone(), pool_names.join(", ")))?;
        let backend = match &self.backend {
            None => None,
            Some(text) => {
                let address: SocketAddr = text.parse().map_err(|_| {
                    FaultError::Backend(format!("{text:?} is not an ip:port address"))
                })?;
                if !target.backends.contains(&address) {
                    return Err(FaultError::Backend(format!(
                        "pool {:?} has no backend {address}",
                        self.pool
                    )));
                }
                Some(address)
            }
        };
        let kind = kind(&self.kind, self.value.as_ref(), target.http)?;
        let percent = self.percent.unwrap_or(100.0);
        if !(percent > 0.0 && percent <= 100.0) {
            return Err(FaultError::Percent(format!(
                "expected more than 0 and at most 100, got {percent}"
            )));
        }
        let duration = halb_config::parse_duration(&self.duration).map_err(FaultError::Duration)?;
        if duration.is_zero() || duration > MAX_FAULT_DURATION {
            return Err(FaultError::Duration(format!(
                "expected more than 0 and at most 1h, got {:?}",
                self.duration
            )));
        }
        Ok(FaultSpec {
            pool: self.pool,
            backend,
            kind,
            percent,
            duration,
        })
    }
}

fn kind(
    name: &str,
    value: Option<&serde_json::Value>,
    http: bool,
) -> Result<FaultKind, FaultError> {
    let value = value.filter(|v| !v.is_null());
    let none = |kind: FaultKind| match value {
        None => Ok(kind),
        Some(v) => Err(FaultError::Value(format!(
            "a {name} fault takes no value, got {v}"
        ))),
    };
    match name {
        "latency" => match value {
            Some(serde_json::Value::String(text)) => {
                let delay = halb_config::parse_duration(text).map_err(FaultError::Value)?;
                if delay > MAX_FAULT_DURATION {
                    return Err(FaultError::Value(format!(
                        "a latency of at most 1h, got {text:?}"
                    )));
                }
                Ok(FaultKind::Latency(delay))
            }
            Some(other) => Err(FaultError::Value(format!(
                "a latency fault takes a duration such as \"200ms\", got {other}"
            ))),
            None => Err(FaultError::Value(
                "a latency fault needs a value, a duration such as \"200ms\"".to_owned(),
            )),
        },
        "abort" => match value.map(serde_json::Value::as_u64) {
            Some(Some(status @ 200..=599)) => Ok(FaultKind::Abort(Some(status as u16))),
            Some(_) => Err(FaultError::Value(format!(
                "an abort fault takes an HTTP status from 200 to 599, got {}",
                value.map(ToString::to_string).unwrap_or_default()
            ))),
            None if http => Err(FaultError::Value(
                "an abort fault on an HTTP pool needs a value, the status to answer (e.g. 503)"
                    .to_owned(),
            )),
            None => Ok(FaultKind::Abort(None)),
        },
        "reset" => none(FaultKind::Reset),
        "timeout" => none(FaultKind::Timeout),
        "bandwidth" => match value.map(serde_json::Value::as_u64) {
            Some(Some(rate)) if rate > 0 => Ok(FaultKind::Bandwidth(rate)),
            Some(_) => Err(FaultError::Value(format!(
                "a bandwidth fault takes bytes per second, a whole number above 0, got {}",
                value.map(ToString::to_string).unwrap_or_default()
            ))),
            None => Err(FaultError::Value(
                "a bandwidth fault needs a value, bytes per second".to_owned(),
            )),
        },
        other => Err(FaultError::UnknownKind(other.to_owned())),
    }
}

/// The active faults: written by the admin API (one writer at a time),
/// read without a lock by the data path.
#[derive(Debug)]
pub struct Faults {
    /// How many faults are active: the data path's fast path.
    active: AtomicUsize,
    snapshot: ArcSwap<Vec<Arc<Fault>>>,
    /// `[chaos] allow`: set at start and by each reload.
    allowed: AtomicBool,
    /// Serializes writers (the snapshot is read-copy-update).
    writer: Mutex<Ended>,
    events: broadcast::Sender<FaultEvent>,
    me: Weak<Faults>,
}

/// Counts of faults that ended, kept for `halb_faults_applied_total`.
#[derive(Debug, Default)]
struct Ended {
    applied: BTreeMap<(String, &'static str), u64>,
}

impl Faults {
    /// An empty registry with fault injection off.
    pub fn new() -> Arc<Faults> {
        Arc::new_cyclic(|me| Faults {
            active: AtomicUsize::new(0),
            snapshot: ArcSwap::from_pointee(Vec::new()),
            allowed: AtomicBool::new(false),
            writer: Mutex::new(Ended::default()),
            events: broadcast::channel(64).0,
            me: me.clone(),
        })
    }

    /// The fault to apply to a request or connection of `pool` sent to
    /// `backend`, if any (each fault rolls for its percent).
    #[inline]
    pub fn pick(&self, pool: &str, backend: Option<SocketAddr>) -> Option<Arc<Fault>> {
        if self.active.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.pick_active(pool, backend)
    }

    #[cold]
    fn pick_active(&self, pool: &str, backend: Option<SocketAddr>) -> Option<Arc<Fault>> {
        let now = Instant::now();
        let fault = self
            .snapshot
            .load()
            .iter()
            .find(|fault| fault.hits(pool, backend, now))
            .cloned()?;
        fault.applied.fetch_add(1, Ordering::Relaxed);
        Some(fault)
    }

    /// Whether `[chaos] allow` is on.
    pub fn allowed(&self) -> bool {
        self.allowed.load(Ordering::Relaxed)
    }

    /// Follow `[chaos] allow` (start, reload): turning it off ends every
    /// active fault at once.
    pub fn set_allowed(&self, allowed: bool) {
        let was = self.allowed.swap(allowed, Ordering::Relaxed);
        if was && !allowed {
            for fault in self.list() {
                self.end(&fault.id, EndReason::Disallowed);
            }
        }
    }

    /// End the faults of pools that no longer exist (reload).
    pub fn retain_pools(&self, pools: &[&str]) {
        for fault in self.list() {
            if !pools.contains(&fault.pool.as_str()) {
                self.end(&fault.id, EndReason::PoolRemoved);
            }
        }
    }

    /// Start a validated fault; it ends by itself after its duration. Must
    /// be called inside a tokio runtime.
    pub fn add(&self, spec: FaultSpec) -> Result<Arc<Fault>, FaultError> {
        if !self.allowed() {
            return Err(FaultError::Disallowed);
        }
        let started = Instant::now();
        let fault = Arc::new(Fault {
            id: format!("{:012x}", fastrand::u64(..) >> 16),
            pool: spec.pool,
            backend: spec.backend,
            kind: spec.kind,
            percent: spec.percent,
            duration: spec.duration,
            started,
            started_at: SystemTime::now(),
            expires: started + spec.duration,
            applied: AtomicU64::new(0),
            ended: watch::Sender::new(false),
        });
        {
            let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            let mut faults = Vec::clone(&self.snapshot.load());
            faults.push(fault.clone());
            self.active.store(faults.len(), Ordering::Relaxed);
            self.snapshot.store(Arc::new(faults));
        }
        tracing::warn!(
            id = %fault.id,
            pool = %fault.pool,
            backend = ?fault.backend,
            kind = fault.kind.name(),
            value = %fault.kind.value(),
            percent = fault.percent,
            duration = ?fault.duration,
            "fault started"
        );
        let _ = self.events.send(FaultEvent::Started(fault.clone()));
        let me = self.me.clone();
        let expiring = fault.clone();
        tokio::spawn(async move {
            expiring.ended().await;
            if let Some(faults) = me.upgrade() {
                faults.end(&expiring.id, EndReason::Expired);
            }
        });
        Ok(fault)
    }

    /// End a fault now; `None` if there is no active fault with that id.
    pub fn end(&self, id: &str, reason: EndReason) -> Option<Arc<Fault>> {
        let fault = {
            let mut ended = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            let mut faults = Vec::clone(&self.snapshot.load());
            let at = faults.iter().position(|fault| fault.id == id)?;
            let fault = faults.remove(at);
            self.active.store(faults.len(), Ordering::Relaxed);
            self.snapshot.store(Arc::new(faults));
            *ended
                .applied
                .entry((fault.pool.clone(), fault.kind.name()))
                .or_default() += fault.applied();
            fault
        };
        fault.ended.send_replace(true);
        tracing::warn!(
            id = %fault.id,
            pool = %fault.pool,
            kind = fault.kind.name(),
            reason = reason.as_str(),
            applied = fault.applied(),
            "fault ended"
        );
        let _ = self.events.send(FaultEvent::Ended(fault.clone(), reason));
        Some(fault)
    }

    /// The active faults, oldest first.
    pub fn list(&self) -> Vec<Arc<Fault>> {
        let now = Instant::now();
        self.snapshot
            .load()
            .iter()
            .filter(|fault| fault.expires > now)
            .cloned()
            .collect()
    }

    /// Every fault start and end from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<FaultEvent> {
        self.events.subscribe()
    }

    /// Requests or connections hit so far, by pool and kind (ended faults
    /// included): `halb_faults_applied_total`.
    pub fn applied_totals(&self) -> BTreeMap<(String, &'static str), u64> {
        let mut totals = self
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .applied
            .clone();
        for fault in self.snapshot.load().iter() {
            *totals
                .entry((fault.pool.clone(), fault.kind.name()))
                .or_default() += fault.applied();
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pools(name: &str) -> Option<PoolTarget> {
        (name == "app").then(|| PoolTarget {
            http: true,
            backends: vec!["127.0.0.1:9001".parse().unwrap()],
        })
    }

    fn check(body: &str) -> Result<FaultSpec, FaultError> {
        FaultRequest::from_json(body.as_bytes())?.validate(pools, &["app".to_owned()])
    }

    #[test]
    fn a_good_fault_validates() {
        let spec = check(
            r#"{"pool":"app","backend":"127.0.0.1:9001","kind":"abort","value":503,"percent":50,"duration":"3s"}"#,
        )
        .unwrap();
        assert_eq!(spec.kind, FaultKind::Abort(Some(503)));
        assert_eq!(spec.percent, 50.0);
        assert_eq!(spec.duration, Duration::from_secs(3));
        let spec =
            check(r#"{"pool":"app","kind":"latency","value":"200ms","duration":"1h"}"#).unwrap();
        assert_eq!(spec.kind, FaultKind::Latency(Duration::from_millis(200)));
        assert_eq!(spec.percent, 100.0);
    }

    #[test]
    fn bad_faults_name_the_field() {
        for (body, field) in [
            (r#"{"pool":"web","kind":"reset","duration":"1s"}"#, "pool:"),
            (
                r#"{"pool":"app","backend":"127.0.0.1:1","kind":"reset","duration":"1s"}"#,
                "backend:",
            ),
            (r#"{"pool":"app","kind":"melt","duration":"1s"}"#, "kind:"),
            (r#"{"pool":"app","kind":"abort","duration":"1s"}"#, "value:"),
            (
                r#"{"pool":"app","kind":"abort","value":99,"duration":"1s"}"#,
                "value:",
            ),
            (
                r#"{"pool":"app","kind":"latency","value":5,"duration":"1s"}"#,
                "value:",
            ),
            (
                r#"{"pool":"app","kind":"reset","duration":"2h"}"#,
                "duration:",
            ),
            (
                r#"{"pool":"app","kind":"reset","percent":0,"duration":"1s"}"#,
                "percent:",
            ),
            (
                r#"{"pool":"app","kind":"reset","percent":101,"duration":"1s"}"#,
                "percent:",
            ),
            (
                r#"{"pool":"app","kind":"reset","duration":"1s","color":"red"}"#,
                "unknown field `color`",
            ),
            (
                r#"{"pool":"app","kind":"reset"}"#,
                "missing field `duration`",
            ),
        ] {
            let error = check(body).unwrap_err().to_string();
            assert!(error.contains(field), "{body}: {error}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn faults_apply_then_expire() {
        let faults = Faults::new();
        let spec = check(r#"{"pool":"app","kind":"reset","duration":"2s"}"#).unwrap();
        assert_eq!(
            faults.add(spec.clone()).unwrap_err(),
            FaultError::Disallowed
        );
        faults.set_allowed(true);
        assert!(faults.pick("app", None).is_none());
        let mut events = faults.subscribe();
        let fault = faults.add(spec).unwrap();
        assert!(matches!(events.recv().await, Ok(FaultEvent::Started(_))));
        assert_eq!(faults.pick("app", None).unwrap().id, fault.id);
        assert!(faults.pick("other", None).is_none());
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(matches!(
            events.recv().await,
            Ok(FaultEvent::Ended(_, EndReason::Expired))
        ));
        assert!(faults.list().is_empty());
        assert!(faults.pick("app", None).is_none());
        assert_eq!(faults.applied_totals()[&("app".to_owned(), "reset")], 1);
    }

    #[tokio::test]
    async fn backend_faults_hit_their_backend_only() {
        let faults = Faults::new();
        faults.set_allowed(true);
        let spec =
            check(r#"{"pool":"app","backend":"127.0.0.1:9001","kind":"timeout","duration":"10s"}"#)
                .unwrap();
        let fault = faults.add(spec).unwrap();
        assert!(faults
            .pick("app", Some("127.0.0.1:9002".parse().unwrap()))
            .is_none());
        assert!(faults
            .pick("app", Some("127.0.0.1:9001".parse().unwrap()))
            .is_some());
        assert!(faults.end(&fault.id, EndReason::Deleted).is_some());
        assert!(faults.end(&fault.id, EndReason::Deleted).is_none());
        assert!(faults
            .pick("app", Some("127.0.0.1:9001".parse().unwrap()))
            .is_none());
    }

    #[tokio::test]
    async fn disallowing_ends_every_fault() {
        let faults = Faults::new();
        faults.set_allowed(true);
        let spec =
            check(r#"{"pool":"app","kind":"latency","value":"1s","duration":"10s"}"#).unwrap();
        faults.add(spec).unwrap();
        faults.set_allowed(false);
        assert!(faults.list().is_empty());
    }

    #[test]
    fn percent_hits_about_that_share() {
        let fault = Fault {
            id: "x".to_owned(),
            pool: "app".to_owned(),
            backend: None,
            kind: FaultKind::Reset,
            percent: 50.0,
            duration: Duration::from_secs(10),
            started: Instant::now(),
            started_at: SystemTime::now(),
            expires: Instant::now() + Duration::from_secs(10),
            applied: AtomicU64::new(0),
            ended: watch::Sender::new(false),
        };
        let now = Instant::now();
        let hits = (0..10_000).filter(|_| fault.hits("app", None, now)).count();
        assert!((4_000..6_000).contains(&hits), "{hits}");
    }
}
