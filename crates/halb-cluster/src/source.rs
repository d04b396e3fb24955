//! Config sources: where a node's config comes from, each version tagged
//! with its identity (a file's hash, etcd's revision), so a node can tell
//! what it runs, skip what it has already seen, and report both.

use std::path::{Path, PathBuf};

use halb_config::Config;
use serde::Serialize;

use crate::snapshot::text_hash;

/// Which version of which source a config is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Identity {
    /// A config file, by the hash of its text.
    File { hash: String },
    /// Built in memory (the demo), by the hash of its text.
    Inline { hash: String },
    /// etcd: the shared document's revision and hash, the dynamic
    /// backends' hash, and the store revision the view is current to.
    Etcd {
        config_revision: i64,
        document: String,
        backends: String,
        revision: i64,
    },
}

impl Identity {
    /// `file`, `inline` or `etcd` (the status API's `config_source`).
    pub fn source(&self) -> &'static str {
        match self {
            Identity::File { .. } => "file",
            Identity::Inline { .. } => "inline",
            Identity::Etcd { .. } => "etcd",
        }
    }

    /// The status API's `config_revision`: a file's hash, or the etcd
    /// revision of `<prefix>/config`.
    pub fn revision(&self) -> String {
        match self {
            Identity::File { hash } | Identity::Inline { hash } => hash.clone(),
            Identity::Etcd {
                config_revision, ..
            } => config_revision.to_string(),
        }
    }

    /// One hash of everything the config was made of.
    pub fn hash(&self) -> String {
        match self {
            Identity::File { hash } | Identity::Inline { hash } => hash.clone(),
            Identity::Etcd {
                document, backends, ..
            } => format!("{document}-{backends}"),
        }
    }

    /// Whether two versions hold the same config (for etcd, the store
    /// revision aside: other keys move it).
    pub fn same_content(&self, other: &Identity) -> bool {
        self.hash() == other.hash() && self.revision() == other.revision()
    }
}

/// A validated config and which version it is.
#[derive(Debug, Clone)]
pub struct Versioned {
    pub config: Config,
    pub identity: Identity,
}

/// A config file: read and validated on demand (start, SIGHUP, the reload
/// API, `--watch`).
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
}

impl FileSource {
    pub fn new(path: &Path) -> FileSource {
        FileSource {
            path: path.to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read and validate the file; every error as a line naming the file
    /// and the key. The `Err` carries the text's hash when it was read, so
    /// a refused version is seen once.
    pub fn load(&self) -> Result<Versioned, (Option<String>, Vec<String>)> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| {
            (
                None,
                vec![format!("cannot read {}: {e}", self.path.display())],
            )
        })?;
        let hash = text_hash(&text);
        match halb_config::parse(&text) {
            Ok(config) => Ok(Versioned {
                config,
                identity: Identity::File { hash },
            }),
            Err(errors) => Err((
                Some(hash),
                (errors.0.iter())
                    .map(|e| format!("{}: {e}", self.path.display()))
                    .collect(),
            )),
        }
    }

    /// The hash of the file's text now (`None` if it cannot be read).
    pub fn current_hash(&self) -> Option<String> {
        std::fs::read_to_string(&self.path)
            .ok()
            .map(|text| text_hash(&text))
    }
}

/// A config built in memory (the demo).
pub fn inline(text: &str) -> Result<Versioned, halb_config::ConfigErrors> {
    Ok(Versioned {
        config: halb_config::parse(text)?,
        identity: Identity::Inline {
            hash: text_hash(text),
        },
    })
}
