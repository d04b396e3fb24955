//! What the admin endpoint asks of the node's owner, and the config
//! bookkeeping it shows. The owner (the binary's main loop) applies every
//! change; the admin endpoint only sends typed commands.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use halb_proxy::ReloadSummary;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

/// A command for the node's owner.
#[derive(Debug)]
pub enum Command {
    /// Reload the config file; the outcome comes back on `reply`.
    Reload {
        reply: oneshot::Sender<ReloadOutcome>,
    },
    /// Balance with this weight for one backend until the next reload
    /// (HAProxy's `set weight`); `Err` says why not (an unknown pool or
    /// backend).
    SetWeight {
        pool: String,
        backend: SocketAddr,
        weight: u32,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// The channel commands travel on.
pub type Commands = mpsc::Sender<Command>;

/// What a reload did.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReloadOutcome {
    /// The new config runs.
    Applied {
        config_hash: String,
        listeners_added: Vec<String>,
        listeners_removed: Vec<String>,
        pools_added: Vec<String>,
        pools_changed: Vec<String>,
        pools_removed: Vec<String>,
        backends_added: Vec<String>,
        backends_removed: Vec<String>,
        /// Every change, in words.
        changes: Vec<String>,
    },
    /// The file was refused; the running config stays.
    Rejected { errors: Vec<String> },
}

impl ReloadOutcome {
    pub fn applied(config_hash: String, summary: ReloadSummary) -> Self {
        ReloadOutcome::Applied {
            config_hash,
            listeners_added: summary.listeners_added,
            listeners_removed: summary.listeners_removed,
            pools_added: summary.pools_added,
            pools_changed: summary.pools_changed,
            pools_removed: summary.pools_removed,
            backends_added: summary.backends_added,
            backends_removed: summary.backends_removed,
            changes: summary.changes,
        }
    }
}

/// The loaded config's identity and the reloads so far.
#[derive(Debug, Default)]
pub struct ConfigInfo {
    hash: Mutex<String>,
    last_error: Mutex<Vec<String>>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    /// Where the config comes from and which version runs.
    source: Mutex<SourceInfo>,
}

/// The status API's `node`, `config_source` and `config_revision`, and
/// what the source says of itself (etcd: the store's health).
#[derive(Debug, Clone, Default)]
pub struct SourceInfo {
    pub node: Option<String>,
    /// `file`, `inline` or `etcd`.
    pub source: String,
    /// A file's hash, or the etcd revision of the shared config.
    pub revision: String,
    pub report: Option<Arc<dyn SourceReport>>,
}

/// A config source's own report, for the status API and `/metrics`.
pub trait SourceReport: Send + Sync + std::fmt::Debug {
    /// The status API's `cluster` object.
    fn status(&self) -> serde_json::Value;
    /// Whether the store answers (`None`: the source has no store).
    fn store_up(&self) -> Option<bool> {
        None
    }
}

/// `config` in the status document.
#[derive(Debug, Serialize)]
pub struct ConfigStatus {
    pub hash: String,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// Errors of the last refused reload, if the last reload was refused.
    pub last_error: Vec<String>,
}

impl ConfigInfo {
    /// A config file's identity (`config_source` = `file`, revision = its hash).
    pub fn new(hash: String) -> Self {
        ConfigInfo {
            source: Mutex::new(SourceInfo {
                source: "file".to_owned(),
                revision: hash.clone(),
                ..SourceInfo::default()
            }),
            hash: Mutex::new(hash),
            ..ConfigInfo::default()
        }
    }

    /// Record a reload's outcome.
    pub fn record(&self, outcome: &ReloadOutcome) {
        match outcome {
            ReloadOutcome::Applied { config_hash, .. } => {
                self.reloads_ok.fetch_add(1, Relaxed);
                *self.hash.lock().unwrap_or_else(|e| e.into_inner()) = config_hash.clone();
                let mut source = self.source.lock().unwrap_or_else(|e| e.into_inner());
                if source.source != "etcd" {
                    // A file's version is its hash; etcd's is set by its source.
                    source.revision = config_hash.clone();
                }
                drop(source);
                self.last_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
            }
            ReloadOutcome::Rejected { errors } => {
                self.reloads_failed.fetch_add(1, Relaxed);
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = errors.clone();
            }
        }
    }

    /// Set where the config comes from (and which version runs).
    pub fn set_source(&self, source: SourceInfo) {
        *self.source.lock().unwrap_or_else(|e| e.into_inner()) = source;
    }

    /// A new version of the same source runs.
    pub fn set_revision(&self, revision: String) {
        self.source
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .revision = revision;
    }

    pub fn source(&self) -> SourceInfo {
        self.source
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn hash(&self) -> String {
        self.hash.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn reloads_ok(&self) -> u64 {
        self.reloads_ok.load(Relaxed)
    }

    pub fn reloads_failed(&self) -> u64 {
        self.reloads_failed.load(Relaxed)
    }

    pub fn status(&self) -> ConfigStatus {
        ConfigStatus {
            hash: self.hash(),
            reloads_ok: self.reloads_ok(),
            reloads_failed: self.reloads_failed(),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}
