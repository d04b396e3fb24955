//! The config file as read, before validation: every value has the right
//! TOML type and remembers its line, but nothing has been checked against
//! the rules yet (ranges, references, formats).

/// Where a table is: its key path (`pool[0].health_check`) and the line of
/// its header (or of its key, for inline and dotted tables).
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub path: String,
    pub line: Option<usize>,
}

impl Header {
    /// The key path of `key` inside this table.
    pub fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

/// A value as written, with the line of its key.
#[derive(Debug, Clone)]
pub(crate) struct Field<T> {
    pub value: T,
    pub line: Option<usize>,
}

/// One key of a table, as read.
#[derive(Debug, Clone)]
pub(crate) enum Slot<T> {
    /// The key is not in the file.
    Missing,
    /// The key is there but unusable; the error is already reported, so
    /// validation must neither complain again nor apply a default.
    Invalid,
    Set(Field<T>),
}

impl<T> Slot<T> {
    /// Transform a present value, keeping its line.
    pub fn map<U>(self, f: impl FnOnce(&T) -> U) -> Slot<U> {
        match self {
            Slot::Missing => Slot::Missing,
            Slot::Invalid => Slot::Invalid,
            Slot::Set(field) => Slot::Set(Field {
                value: f(&field.value),
                line: field.line,
            }),
        }
    }
}

/// `[runtime]`; all keys `Missing` when the table is absent.
#[derive(Debug)]
pub(crate) struct RawRuntime {
    pub at: Header,
    pub workers: Slot<i64>,
    pub drain_timeout: Slot<String>,
    pub resolve_interval: Slot<String>,
    pub zone: Slot<String>,
}

/// `[log]`
#[derive(Debug)]
pub(crate) struct RawLog {
    pub at: Header,
    pub level: Slot<String>,
}

/// `[access_log]`
#[derive(Debug)]
pub(crate) struct RawAccessLog {
    pub at: Header,
    pub format: Slot<String>,
    pub path: Slot<String>,
}

/// `[alerts]`
#[derive(Debug)]
pub(crate) struct RawAlerts {
    pub at: Header,
    /// One slot per element, so that `webhooks[i]` keeps its index and line
    /// even when another element has the wrong type.
    pub webhooks: Slot<Vec<Slot<String>>>,
    pub timeout: Slot<String>,
    pub max_attempts: Slot<i64>,
}

/// `[admin]`
#[derive(Debug)]
pub(crate) struct RawAdmin {
    pub at: Header,
    pub bind: Slot<String>,
    pub token: Slot<String>,
}

/// `[[listener]]`
#[derive(Debug)]
pub(crate) struct RawListener {
    pub at: Header,
    pub name: Slot<String>,
    pub bind: Slot<String>,
    pub protocol: Slot<String>,
    pub pool: Slot<String>,
    /// Durations stay strings until validation parses them.
    pub request_head_timeout: Slot<String>,
    pub idle_timeout: Slot<String>,
    pub max_header_bytes: Slot<i64>,
    pub routes: Slot<Vec<RawRoute>>,
    pub connection: RawConnection,
    pub tls: Slot<RawListenerTls>,
}

/// The connection keys of `[[listener]]` and its `[listener.limits]`.
#[derive(Debug)]
pub(crate) struct RawConnection {
    pub proxy_protocol: Slot<bool>,
    pub trusted_proxies: Slot<Vec<Slot<String>>>,
    pub max_connections: Slot<i64>,
    pub body_timeout: Slot<String>,
    pub limits: Slot<RawLimits>,
}

/// `[listener.limits]`
#[derive(Debug)]
pub(crate) struct RawLimits {
    pub at: Header,
    pub per_ip_connections: Slot<i64>,
    pub per_ip_rate: Slot<i64>,
}

/// `[listener.tls]`
#[derive(Debug)]
pub(crate) struct RawListenerTls {
    pub at: Header,
    pub cert: Slot<String>,
    pub key: Slot<String>,
    pub sni: Slot<Vec<RawSniCertificate>>,
}

/// `[[listener.tls.sni]]`
#[derive(Debug)]
pub(crate) struct RawSniCertificate {
    pub at: Header,
    pub name: Slot<String>,
    pub cert: Slot<String>,
    pub key: Slot<String>,
}

/// `[[listener.route]]`
#[derive(Debug)]
pub(crate) struct RawRoute {
    pub at: Header,
    pub name: Slot<String>,
    pub host: Slot<String>,
    pub path_prefix: Slot<String>,
    pub path: Slot<String>,
    pub header: Slot<RawRouteHeader>,
    pub pool: Slot<String>,
}

/// `header = { name = "...", value = "..." }` of a route.
#[derive(Debug)]
pub(crate) struct RawRouteHeader {
    pub at: Header,
    pub name: Slot<String>,
    pub value: Slot<String>,
}

/// `[[pool]]`
#[derive(Debug)]
pub(crate) struct RawPool {
    pub at: Header,
    pub name: Slot<String>,
    pub algorithm: Slot<String>,
    pub hash_key: Slot<String>,
    pub retries: Slot<i64>,
    pub connect_timeout: Slot<String>,
    pub timeout: Slot<String>,
    pub health_check: Slot<RawHealthCheck>,
    pub on_down: Slot<String>,
    pub outlier_detection: Slot<RawOutlierDetection>,
    pub retry_budget: Slot<RawRetryBudget>,
    pub drain_timeout: Slot<String>,
    pub slow_start: Slot<String>,
    pub panic_threshold: Slot<i64>,
    pub overflow: Slot<i64>,
    pub sticky: Slot<RawSticky>,
    pub backends: Slot<Vec<RawBackend>>,
    pub send_proxy: Slot<String>,
    pub tls: Slot<RawPoolTls>,
}

/// `[pool] tls = true|false`, or the `[pool.tls]` table.
#[derive(Debug)]
pub(crate) struct RawPoolTls {
    pub at: Header,
    /// `tls = true|false`; `None` when written as a table.
    pub switch: Option<bool>,
    pub ca: Slot<String>,
    pub sni: Slot<String>,
    pub verify: Slot<bool>,
    pub cert: Slot<String>,
    pub key: Slot<String>,
}

/// `[pool.sticky]`
#[derive(Debug)]
pub(crate) struct RawSticky {
    pub at: Header,
    pub kind: Slot<String>,
    pub cookie: Slot<String>,
    pub key: Slot<String>,
    pub ttl: Slot<String>,
    pub size: Slot<i64>,
    pub secret: Slot<String>,
}

/// `[pool.health_check]`
#[derive(Debug)]
pub(crate) struct RawHealthCheck {
    pub at: Header,
    pub kind: Slot<String>,
    pub path: Slot<String>,
    pub interval: Slot<String>,
    pub timeout: Slot<String>,
    pub rise: Slot<i64>,
    pub fall: Slot<i64>,
    pub port: Slot<i64>,
    pub method: Slot<String>,
    pub host: Slot<String>,
    pub expect_status: Slot<RawStatus>,
    pub expect_body: Slot<String>,
    /// Database checks: see `validate::db`.
    pub role: Slot<String>,
    pub user: Slot<String>,
    pub password: Slot<String>,
    pub password_env: Slot<String>,
    pub database: Slot<String>,
}

/// `expect_status` as written: an integer (`200`) or a string (`"200"`,
/// `"200-399"`); validation parses the string.
#[derive(Debug, Clone)]
pub(crate) enum RawStatus {
    Code(i64),
    Text(String),
}

/// `[pool.outlier_detection]`
#[derive(Debug)]
pub(crate) struct RawOutlierDetection {
    pub at: Header,
    pub consecutive_failures: Slot<i64>,
    pub base_ejection: Slot<String>,
    pub max_ejection_percent: Slot<i64>,
    pub max_ejection: Slot<String>,
    pub count_5xx: Slot<bool>,
}

/// `[pool.retry_budget]`
#[derive(Debug)]
pub(crate) struct RawRetryBudget {
    pub at: Header,
    pub percent: Slot<i64>,
    pub min_per_second: Slot<i64>,
}

/// `[[pool.backend]]`
#[derive(Debug)]
pub(crate) struct RawBackend {
    pub at: Header,
    pub address: Slot<String>,
    pub weight: Slot<i64>,
    pub backup: Slot<bool>,
    pub priority: Slot<i64>,
    pub zone: Slot<String>,
}

/// `[vrrp]`
#[derive(Debug)]
pub(crate) struct RawVrrp {
    pub at: Header,
    pub interface: Slot<String>,
    pub unicast_peers: Slot<Vec<Slot<String>>>,
    pub instances: Slot<Vec<RawVrrpInstance>>,
}

/// `[[vrrp.instance]]`
#[derive(Debug)]
pub(crate) struct RawVrrpInstance {
    pub at: Header,
    pub name: Slot<String>,
    pub vrid: Slot<i64>,
    pub priority: Slot<i64>,
    pub advert_interval: Slot<String>,
    pub preempt: Slot<bool>,
    pub virtual_ips: Slot<Vec<Slot<String>>>,
    pub track_pools: Slot<Vec<Slot<String>>>,
    pub notify: Slot<String>,
}

/// The whole file as read.
#[derive(Debug)]
pub(crate) struct RawConfig {
    pub root: Header,
    pub runtime: RawRuntime,
    /// `Missing` when the file has no `[log]`; likewise the two below.
    pub log: Slot<RawLog>,
    pub access_log: Slot<RawAccessLog>,
    pub alerts: Slot<RawAlerts>,
    pub vrrp: Slot<RawVrrp>,
    /// `Missing` when the file has no `[admin]`.
    pub admin: Slot<RawAdmin>,
    pub listeners: Slot<Vec<RawListener>>,
    pub pools: Slot<Vec<RawPool>>,
    /// `Missing` when the file has no `[cluster]`.
    pub cluster: Slot<RawCluster>,
    /// `Missing` when the file has no `[chaos]`.
    pub chaos: Slot<RawChaos>,
}

/// `[chaos]`
#[derive(Debug)]
pub(crate) struct RawChaos {
    pub at: Header,
    pub allow: Slot<bool>,
}

/// `[cluster]`
#[derive(Debug)]
pub(crate) struct RawCluster {
    pub at: Header,
    pub node: Slot<String>,
    pub state_dir: Slot<String>,
    pub etcd: Slot<RawEtcd>,
    pub peers: Slot<RawPeers>,
}

/// `[cluster.peers]`
#[derive(Debug)]
pub(crate) struct RawPeers {
    pub at: Header,
    pub bind: Slot<String>,
    pub peers: Slot<Vec<Slot<String>>>,
    pub secret: Slot<String>,
}

/// `[cluster.etcd]`
#[derive(Debug)]
pub(crate) struct RawEtcd {
    pub at: Header,
    pub endpoints: Slot<Vec<Slot<String>>>,
    pub prefix: Slot<String>,
}
