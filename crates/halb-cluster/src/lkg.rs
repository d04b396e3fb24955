//! The last-known-good shared config: every snapshot a node applied is
//! written to `<state_dir>/shared-config.json` (a temporary file, synced,
//! then renamed over the old one, so a crash leaves the old or the new,
//! never half of one). A node that starts while etcd is unreachable serves
//! it, and reconciles when etcd answers.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::snapshot::Snapshot;

/// The file's name in `state_dir`.
pub const FILE_NAME: &str = "shared-config.json";

/// Why the last-known-good could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LkgError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a halb last-known-good file: {source}")]
    Format {
        path: String,
        source: serde_json::Error,
    },
}

/// Where a node keeps its last-known-good shared config.
#[derive(Debug, Clone)]
pub struct LastKnownGood {
    path: PathBuf,
}

impl LastKnownGood {
    pub fn new(state_dir: &Path) -> LastKnownGood {
        LastKnownGood {
            path: state_dir.join(FILE_NAME),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The snapshot last stored; `None` when there is none yet.
    pub fn load(&self) -> Result<Option<Snapshot>, LkgError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(self.io(source)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| LkgError::Format {
                path: self.path.display().to_string(),
                source,
            })
    }

    /// Replace the stored snapshot, atomically (creating `state_dir` if
    /// needed).
    pub fn store(&self, snapshot: &Snapshot) -> Result<(), LkgError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        let temporary = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(snapshot).expect("a snapshot serializes");
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&temporary, &self.path)?;
            // The rename itself is durable once the directory is synced.
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| self.io(e))
    }

    fn io(&self, source: std::io::Error) -> LkgError {
        LkgError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Entry;

    #[test]
    fn stores_and_loads_atomically() {
        let dir = std::env::temp_dir().join(format!("halb-lkg-{}", std::process::id()));
        let lkg = LastKnownGood::new(&dir.join("state"));
        assert!(lkg.load().unwrap().is_none());
        let mut snapshot = Snapshot {
            revision: 7,
            config: Some(Entry {
                value: "[[listener]]".into(),
                mod_revision: 3,
            }),
            ..Snapshot::default()
        };
        lkg.store(&snapshot).unwrap();
        snapshot.revision = 8;
        lkg.store(&snapshot).unwrap();
        assert_eq!(lkg.load().unwrap(), Some(snapshot));
        let names: Vec<_> = std::fs::read_dir(dir.join("state"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE_NAME], "no temporary file is left");
        std::fs::write(lkg.path(), "{").unwrap();
        assert!(matches!(lkg.load(), Err(LkgError::Format { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
