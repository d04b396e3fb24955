//! The validated, immutable configuration. Every value here has passed
//! validation: addresses parse, references resolve, numbers are in range.

use std::net::SocketAddr;
use std::time::Duration;

/// A whole validated halb configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub runtime: Runtime,
    /// `None` when the file has no `[admin]` table: no admin listener runs.
    pub admin: Option<Admin>,
    pub listeners: Vec<Listener>,
    pub pools: Vec<Pool>,
    /// `[log]`
    pub log: Log,
    /// `[access_log]`; `None` when the table is absent: no access log.
    pub access_log: Option<AccessLog>,
    /// `[alerts]`
    pub alerts: Alerts,
    /// `[cluster]`; `None` when the file has none.
    pub cluster: Option<crate::Cluster>,
    /// `[vrrp]`; `None` when absent: this node holds no virtual IPs.
    pub vrrp: Option<Vrrp>,
    /// `[chaos]`
    pub chaos: Chaos,
}

/// `[chaos]`: fault injection through the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Chaos {
    /// `POST /api/v1/faults` answers 403 unless true (default false): a
    /// production node takes no fault by mistake.
    pub allow: bool,
}

/// `[vrrp]`: the VRRPv3 speaker (RFC 5798) that moves virtual IPs between
/// redundant halb nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vrrp {
    /// Adverts go out here and the virtual IPs are added here.
    pub interface: String,
    /// Adverts by unicast to these instead of multicast to 224.0.0.18.
    pub unicast_peers: Vec<std::net::Ipv4Addr>,
    pub instances: Vec<VrrpInstance>,
}

/// `[[vrrp.instance]]`: one virtual router (a VRID and its virtual IPs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpInstance {
    pub name: String,
    /// 1-255, the same on every node of the group.
    pub vrid: u8,
    /// 1-254: the highest usable node holds the virtual IPs.
    pub priority: u8,
    /// A multiple of 10 ms (adverts carry centiseconds), 10 ms to 40.95 s.
    pub advert_interval: Duration,
    /// A higher priority that returns takes the virtual IPs back.
    pub preempt: bool,
    /// Addresses with their prefix length, e.g. 198.18.0.100/24.
    pub virtual_ips: Vec<(std::net::Ipv4Addr, u8)>,
    /// While one of these pools has no usable backend: FAULT.
    pub track_pools: Vec<String>,
    /// Run with (instance name, new state) on every transition.
    pub notify: Option<String>,
}

/// `[log]`: halb's own logs (through `tracing`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Log {
    /// A tracing filter such as `"info"` or `"halb_proxy=debug,info"`;
    /// `RUST_LOG` overrides it. `None` = `"info"`.
    pub level: Option<String>,
}

/// `[access_log]`: one line per request or TCP connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLog {
    pub format: AccessLogFormat,
    /// `path`: a file to append to; `None` = standard output.
    pub path: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    Json,
    Plain,
}

impl AccessLogFormat {
    /// Every format, in the order the docs list them.
    pub const ALL: [AccessLogFormat; 2] = [AccessLogFormat::Json, AccessLogFormat::Plain];

    /// The name used in the config file.
    pub const fn as_str(self) -> &'static str {
        match self {
            AccessLogFormat::Json => "json",
            AccessLogFormat::Plain => "plain",
        }
    }
}

/// `[alerts]`: webhooks told about backend and pool state changes and
/// failed reloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alerts {
    /// `webhooks`: `http[s]://host:port/path` URLs that receive a JSON POST
    /// (port and path optional), as written in the file.
    pub webhooks: Vec<String>,
    /// `timeout`: per delivery attempt.
    pub timeout: Duration,
    /// `max_attempts`: deliveries are retried with backoff up to this many tries.
    pub max_attempts: u32,
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts {
            webhooks: Vec::new(),
            timeout: Duration::from_secs(5),
            max_attempts: 5,
        }
    }
}

impl Config {
    /// The pool a listener routes to. Validation guarantees it exists.
    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }
}

/// `[runtime]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    /// Data-path threads; 0 means one per core (the binary resolves it).
    pub workers: usize,
    /// `drain_timeout`: on SIGTERM/SIGINT, how long in-flight work may take.
    pub drain_timeout: Duration,
    /// `resolve_interval`: how often host-name backends are looked up again.
    pub resolve_interval: Duration,
    /// `zone`: the node's zone; traffic prefers backends in it.
    pub zone: Option<String>,
}

/// The default of `runtime.resolve_interval`.
pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(5);
/// The bounds of `runtime.resolve_interval`.
pub const MIN_RESOLVE_INTERVAL: Duration = Duration::from_millis(100);
pub const MAX_RESOLVE_INTERVAL: Duration = Duration::from_secs(3600);

/// The default of `runtime.drain_timeout`.
pub const DEFAULT_SHUTDOWN_DRAIN: Duration = Duration::from_secs(30);

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            workers: 0,
            drain_timeout: DEFAULT_SHUTDOWN_DRAIN,
            resolve_interval: DEFAULT_RESOLVE_INTERVAL,
            zone: None,
        }
    }
}

/// `[admin]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub bind: SocketAddr,
    /// Bearer token; required when `bind` is not a loopback address.
    pub token: Option<String>,
}

/// `[[listener]]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub bind: SocketAddr,
    pub protocol: Protocol,
    /// Name of the pool; validation guarantees it exists.
    pub pool: String,
    /// `request_head_timeout`: the client must send a whole request head within it (HTTP).
    pub request_head_timeout: Duration,
    /// `idle_timeout`: a client connection with nothing in flight is closed after it.
    pub idle_timeout: Duration,
    /// `max_header_bytes`: a request head larger than this gets 431 (HTTP).
    pub max_header_bytes: usize,
    /// `[[listener.route]]`, in order: the first that matches a request
    /// picks its pool; none matching, `pool` serves it (HTTP only).
    pub routes: Vec<Route>,
    /// PROXY protocol, trusted proxies, connection caps and client limits.
    pub connection: crate::ConnectionPolicy,
    /// `[listener.tls]`: terminate TLS on this listener (HTTP only).
    pub tls: Option<ListenerTls>,
}

/// `[listener.tls]`: the certificate served when no `[[listener.tls.sni]]`
/// entry matches the name the client asks for (or it asks for none).
/// The files are read when the config is applied, and again when they
/// change on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// `cert`: PEM certificate chain, the leaf first.
    pub cert: std::path::PathBuf,
    /// `key`: PEM private key (PKCS#8, PKCS#1 or SEC1) of the leaf.
    pub key: std::path::PathBuf,
    /// `[[listener.tls.sni]]`, in order.
    pub sni: Vec<SniCertificate>,
}

/// `[[listener.tls.sni]]`: the certificate for clients that ask for `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniCertificate {
    /// `name`: a host name (`api.example.com`) or a wildcard of one label
    /// (`*.example.com`); stored lower-case.
    pub name: String,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// `[[listener.route]]`: which requests go to `pool`. Every condition set
/// must hold; at least one is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `name`, or `route[N]` by its place; labels metrics and status.
    pub name: String,
    pub host: Option<HostMatch>,
    pub path: Option<PathMatch>,
    pub header: Option<HeaderMatch>,
    pub pool: String,
}

/// `host`: the request's host (from an absolute-form target, else the Host
/// header), without its port, compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// `api.example.com`; stored lower-case.
    Exact(String),
    /// `*.example.com`: any name that ends with `.example.com`, with at
    /// least one label before it; stored lower-case, with its leading dot.
    Suffix(String),
}

impl HostMatch {
    /// Whether `host` (no port; any case) matches.
    pub fn matches(&self, host: &[u8]) -> bool {
        // A fully qualified name may end with a dot.
        let host = host.strip_suffix(b".").unwrap_or(host);
        match self {
            HostMatch::Exact(name) => host.eq_ignore_ascii_case(name.as_bytes()),
            HostMatch::Suffix(suffix) => {
                host.len() > suffix.len()
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
            }
        }
    }
}

impl std::fmt::Display for HostMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostMatch::Exact(name) => f.write_str(name),
            HostMatch::Suffix(suffix) => write!(f, "*{suffix}"),
        }
    }
}

/// `path_prefix` or `path`, compared with the request's path (the target
/// without its query), byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
}

impl PathMatch {
    pub fn matches(&self, path: &[u8]) -> bool {
        match self {
            PathMatch::Prefix(prefix) => path.starts_with(prefix.as_bytes()),
            PathMatch::Exact(exact) => path == exact.as_bytes(),
        }
    }
}

/// `header = { name = "X-Canary", value = "1" }`: a request header of that
/// name (any case) whose value is `value` exactly; without `value`, the
/// header's presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatch {
    /// Stored lower-case.
    pub name: String,
    pub value: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Tcp,
}

impl Protocol {
    /// Every protocol, in the order the docs list them.
    pub const ALL: [Protocol; 2] = [Protocol::Http, Protocol::Tcp];

    /// The name used in the config file.
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Tcp => "tcp",
        }
    }
}

/// `[[pool]]`
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub name: String,
    pub algorithm: Algorithm,
    /// Only meaningful for `Algorithm::Maglev`.
    pub hash_key: HashKey,
    /// Extra attempts on another backend for a request that is safe to retry.
    pub retries: u32,
    pub connect_timeout: Duration,
    /// Per try: the backend must answer with a response head within it.
    pub timeout: Duration,
    pub health_check: HealthCheck,
    /// `on_down`: close a backend's open connections when it is marked down.
    pub on_down: crate::OnDown,
    pub outlier_detection: OutlierDetection,
    /// `[pool.retry_budget]`: retries allowed beyond the first tries.
    pub retry_budget: RetryBudget,
    /// `drain_timeout`: how long in-flight work on a draining backend may
    /// take; TCP connections still open then are closed.
    pub drain_timeout: Duration,
    /// `slow_start`: a backend that comes back ramps from a small share to
    /// its full weight over this window; `None` = at once.
    pub slow_start: Option<Duration>,
    /// `panic_threshold` (percent): when honouring outlier ejections would
    /// leave fewer than this share of the pool's checked-up primaries,
    /// ejections are ignored and traffic spreads over all of them.
    pub panic_threshold: u32,
    /// `overflow` (percent, 1..=100): a priority level, or the local zone
    /// of one, with at least this share of its weight healthy takes all
    /// the traffic offered to it; below, the next level (or the other
    /// zones) takes the surplus.
    pub overflow: u32,
    /// `[pool.sticky]`: session affinity; `None` = none.
    pub sticky: Option<crate::Sticky>,
    /// Backends by IP address, and (at run time) those a host name resolved to.
    pub backends: Vec<Backend>,
    /// Backends by host name (`address = "app.internal:8080"`): every
    /// address the name resolves to is a backend with these settings.
    pub named_backends: Vec<NamedBackend>,
    /// `send_proxy`: a PROXY header first on each backend connection
    /// (TCP listeners); `None` = none.
    pub send_proxy: Option<crate::SendProxy>,
    /// `tls` / `[pool.tls]`: backend connections are TLS; `None` = plain.
    pub tls: Option<crate::PoolTls>,
}

/// `[pool.retry_budget]`: retries may be at most `percent` % of the
/// requests of the last 10 s, plus `min_per_second` retries per second
/// always allowed (as Finagle and linkerd do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryBudget {
    pub percent: u32,
    pub min_per_second: u32,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            percent: 20,
            min_per_second: 10,
        }
    }
}

/// Pool-level defaults for the keys above.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_PANIC_THRESHOLD: u32 = 50;

/// The default of `[[pool]] overflow` (percent): a level or zone with at
/// least 70 % of its weight healthy takes all its traffic. Envoy's
/// overprovisioning factor of 1.4 puts the line at 1 / 1.4 ≈ 71.4 %; 70 is
/// that line rounded to a number an operator can reason with.
pub const DEFAULT_OVERFLOW: u32 = 70;

/// The highest `[[pool.backend]] priority`.
pub const MAX_PRIORITY: u8 = 9;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    RoundRobin,
    WeightedRoundRobin,
    LeastConnections,
    RandomTwoChoices,
    PeakEwma,
    Maglev,
}

impl Algorithm {
    /// Every algorithm, in the order the docs list them.
    pub const ALL: [Algorithm; 6] = [
        Algorithm::RoundRobin,
        Algorithm::WeightedRoundRobin,
        Algorithm::LeastConnections,
        Algorithm::RandomTwoChoices,
        Algorithm::PeakEwma,
        Algorithm::Maglev,
    ];

    /// The name used in the config file.
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::WeightedRoundRobin => "weighted_round_robin",
            Algorithm::LeastConnections => "least_connections",
            Algorithm::RandomTwoChoices => "random_two_choices",
            Algorithm::PeakEwma => "peak_ewma",
            Algorithm::Maglev => "maglev",
        }
    }
}

/// What Maglev hashes to pick a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    ClientIp,
    /// `header:NAME`; the name is stored lower-case.
    Header(String),
    /// `cookie:NAME`
    Cookie(String),
    Path,
}

/// The form used in the config file: `client_ip`, `path`, `header:NAME`, `cookie:NAME`.
impl std::fmt::Display for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HashKey::ClientIp => f.write_str("client_ip"),
            HashKey::Header(name) => write!(f, "header:{name}"),
            HashKey::Cookie(name) => write!(f, "cookie:{name}"),
            HashKey::Path => f.write_str("path"),
        }
    }
}

/// `[pool.health_check]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: HealthCheckKind,
    /// HTTP only.
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// Check this port instead of the backend's own.
    pub port: Option<u16>,
    /// HTTP only: `GET` or `HEAD`.
    pub method: String,
    /// HTTP only: the Host header sent; default the backend's address.
    pub host: Option<String>,
    /// HTTP only: the range of statuses that pass, inclusive.
    pub expect_status: (u16, u16),
    /// HTTP only: the body (first 64 KiB) must contain this.
    pub expect_body: Option<String>,
    /// `postgres`, `redis` and `mysql` only: the role and the credentials.
    pub database: Option<crate::DatabaseCheck>,
}

/// What a pool gets without a `[pool.health_check]` table: no active checks
/// (`kind = None`), the other fields at their documented defaults. A table
/// that is present but has no `kind` means `Tcp` instead.
impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            kind: HealthCheckKind::None,
            path: "/".to_owned(),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            port: None,
            method: "GET".to_owned(),
            host: None,
            expect_status: (200, 399),
            expect_body: None,
            database: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthCheckKind {
    None,
    Tcp,
    Http,
    /// PostgreSQL: logs in and asks `SELECT pg_is_in_recovery()`.
    Postgres,
    /// Redis: `ROLE`.
    Redis,
    /// MySQL or MariaDB: logs in and asks `SELECT @@global.read_only`.
    Mysql,
}

impl HealthCheckKind {
    /// Every kind, in the order the docs list them.
    pub const ALL: [HealthCheckKind; 6] = [
        HealthCheckKind::Http,
        HealthCheckKind::Tcp,
        HealthCheckKind::Postgres,
        HealthCheckKind::Redis,
        HealthCheckKind::Mysql,
        HealthCheckKind::None,
    ];

    /// Whether the check speaks a database's protocol (and has a role).
    pub const fn is_database(self) -> bool {
        matches!(
            self,
            HealthCheckKind::Postgres | HealthCheckKind::Redis | HealthCheckKind::Mysql
        )
    }

    /// The name used in the config file.
    pub const fn as_str(self) -> &'static str {
        match self {
            HealthCheckKind::None => "none",
            HealthCheckKind::Tcp => "tcp",
            HealthCheckKind::Http => "http",
            HealthCheckKind::Postgres => "postgres",
            HealthCheckKind::Redis => "redis",
            HealthCheckKind::Mysql => "mysql",
        }
    }
}

/// `[pool.outlier_detection]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierDetection {
    /// Failures in a row that eject a backend; 0 disables outlier detection.
    pub consecutive_failures: u32,
    pub base_ejection: Duration,
    /// At most this share (0..=100) of a pool's backends is ejected at once.
    pub max_ejection_percent: u32,
    /// An ejection lasts `base_ejection` × the backend's ejection count, at most this.
    pub max_ejection: Duration,
    /// Whether a 5xx response counts as a failure (connect errors, resets
    /// and timeouts always do).
    pub count_5xx: bool,
}

/// The documented defaults, which apply whether the table is present or not.
impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection_percent: 50,
            max_ejection: Duration::from_secs(300),
            count_5xx: true,
        }
    }
}

/// `[[pool.backend]]` whose address is a host name and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NamedBackend {
    /// Lower case, as names compare.
    pub host: String,
    pub port: u16,
    pub weight: u32,
    pub backup: bool,
    pub priority: u8,
    pub zone: Option<String>,
}

/// The highest `weight` a backend can have.
pub const MAX_BACKEND_WEIGHT: u32 = 1000;

/// `[[pool.backend]]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub address: SocketAddr,
    /// 0..=1000; 0 receives no new traffic.
    pub weight: u32,
    /// Used only when no primary backend is usable.
    pub backup: bool,
    /// `priority`: the backend's level, 0 (first) to 9; see `docs/zones.md`.
    pub priority: u8,
    /// `zone`: where the backend runs; `None` when not set.
    pub zone: Option<String>,
}
