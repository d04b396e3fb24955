//! halb's configuration: a TOML file is parsed, validated as a whole (every
//! error reported with its key path and line), and turned into an immutable
//! [`Config`]. Nothing starts on a bad config; a bad reload keeps the running one.

#![forbid(unsafe_code)]

mod cluster;
mod connection;
mod db;
mod diff;
mod duration;
mod model;
mod pool_tls;
mod raw;
mod resolved;
mod sticky;
mod suggest;
mod validate;
mod walk;
mod webhook;

pub use cluster::{
    check_etcd_prefix, check_node_name, Cluster, Etcd, EtcdEndpoint, Peers, DEFAULT_ETCD_PORT,
    DEFAULT_ETCD_PREFIX, DEFAULT_STATE_DIR, MIN_PEER_SECRET,
};
pub use connection::{Cidr, ClientLimits, ConnectionPolicy, SendProxy};
pub use db::{DatabaseCheck, OnDown, Password, Role, DEFAULT_MYSQL_USER, DEFAULT_POSTGRES_USER};
pub use diff::{diff, Change};
pub use duration::{parse_duration, MAX_DURATION};
pub use model::*;
pub use pool_tls::{PoolTls, SYSTEM_CA_BUNDLE};
pub use resolved::Answers;
pub use sticky::{
    Sticky, StickyKind, DEFAULT_STICKY_COOKIE, DEFAULT_STICKY_SIZE, DEFAULT_STICKY_TTL,
};
pub use validate::check_zone_name;
pub use webhook::WebhookUrl;

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Key path such as `pool[0].backend[1].weight` (empty for a syntax error
    /// that has no path).
    pub path: String,
    /// 1-based line in the file, where known.
    pub line: Option<usize>,
    pub message: String,
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_errors(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

fn display_errors(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.path.is_empty(), self.line) {
            (false, Some(line)) => write!(f, "{} (line {}): {}", self.path, line, self.message),
            (false, None) => write!(f, "{}: {}", self.path, self.message),
            (true, Some(line)) => write!(f, "line {}: {}", line, self.message),
            (true, None) => write!(f, "{}", self.message),
        }
    }
}

/// Parse and validate a whole config file.
///
/// On failure, every problem is reported, in file order: a TOML syntax
/// error alone (nothing else can be trusted then), otherwise each unknown
/// key, wrong type, bad value, missing key and dangling reference with its
/// key path and line.
///
/// A file with `[cluster.etcd]` is a node's own file: it holds only
/// node-local sections, and one that also defines listeners, pools or
/// alerts is an error saying where those belong.
pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
    parse_as(text, Document::Node)
}

/// Parse and validate the fleet's shared config (etcd's `<prefix>/config`):
/// only `[[listener]]`, `[[pool]]` and `[alerts]`, validated by the same
/// rules as a file; a pool may have no `[[pool.backend]]`, since backends
/// can register at run time. Node-local sections are errors.
pub fn parse_shared(text: &str) -> Result<Shared, ConfigErrors> {
    parse_as(text, Document::Shared).map(|config| Shared {
        listeners: config.listeners,
        pools: config.pools,
        alerts: config.alerts,
    })
}

/// The sections a fleet shares (from etcd's `<prefix>/config`).
#[derive(Debug, Clone, PartialEq)]
pub struct Shared {
    pub listeners: Vec<Listener>,
    pub pools: Vec<Pool>,
    pub alerts: Alerts,
}

impl Config {
    /// This node's config with the fleet's shared sections in place of its
    /// own (a node with `[cluster.etcd]` has none of its own).
    pub fn with_shared(&self, shared: Shared) -> Config {
        Config {
            listeners: shared.listeners,
            pools: shared.pools,
            alerts: shared.alerts,
            ..self.clone()
        }
    }

    /// The etcd settings, when the shared sections come from etcd.
    pub fn etcd(&self) -> Option<&Etcd> {
        self.cluster.as_ref().and_then(|c| c.etcd.as_ref())
    }
}

/// Which kind of document a text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Document {
    /// A node's file (`halb run --config`).
    Node,
    /// The fleet's shared config.
    Shared,
}

fn parse_as(text: &str, document: Document) -> Result<Config, ConfigErrors> {
    let (raw, errors) = walk::read(text).map_err(|error| ConfigErrors(vec![error]))?;
    validate::validate(raw, errors, document).map_err(|mut errors| {
        // File order; errors without a line (e.g. "no listeners") go last.
        errors.sort_by_key(|error| error.line.unwrap_or(usize::MAX));
        ConfigErrors(errors)
    })
}
