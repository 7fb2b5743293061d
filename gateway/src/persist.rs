//! The gateway's routing on disk, so a restart serves the same versions
//! with the same weights. Written whole to a temporary file, synced, then
//! renamed over the old one: a crash leaves either the old file or the new.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use switchyard_api::admin::{Slot, Weights};

/// The saved routing of every model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedRouting {
    /// Routes by model.
    pub models: BTreeMap<String, SavedRoute>,
}

/// One model's saved route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedRoute {
    /// The blue slot's version.
    pub blue: Option<u64>,
    /// The green slot's version.
    pub green: Option<u64>,
    /// The weights.
    pub weights: Weights,
    /// The live slot.
    pub live: Slot,
    /// The shadow share.
    pub shadow_percent: u32,
}

/// Why the routing could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// I/O on the state file.
    #[error("cannot {action} {path}")]
    Io {
        /// read or write.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not routing JSON.
    #[error("{path} is corrupt: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
}

/// The routing file in the state folder.
#[derive(Debug, Clone)]
pub struct StateStore {
    path: PathBuf,
}

impl StateStore {
    /// The store at `<dir>/routing.json`.
    pub fn new(dir: &Path) -> StateStore {
        StateStore {
            path: dir.join("routing.json"),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved routing, or `None` when nothing was saved yet.
    ///
    /// # Errors
    /// I/O, or a file that does not parse.
    pub fn read(&self) -> Result<Option<SavedRouting>, PersistError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(PersistError::Io {
                    action: "read",
                    path: self.path.clone(),
                    source,
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| PersistError::Corrupt {
                path: self.path.clone(),
                message: e.to_string(),
            })
    }

    /// Replaces the saved routing atomically and durably.
    ///
    /// # Errors
    /// I/O on the folder or file.
    pub fn write(&self, routing: &SavedRouting) -> Result<(), PersistError> {
        let io = |source| PersistError::Io {
            action: "write",
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let tmp = self.path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        let body = serde_json::to_vec_pretty(routing).unwrap_or_default();
        file.write_all(&body).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        // The rename is durable only once the folder's entry is synced.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_round_trips_and_corruption_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(&dir.path().join("state"));
        assert_eq!(store.read().unwrap(), None);
        let mut routing = SavedRouting::default();
        routing.models.insert(
            "boosted".into(),
            SavedRoute {
                blue: Some(1),
                green: Some(2),
                weights: Weights {
                    blue: 25,
                    green: 75,
                },
                live: Slot::Green,
                shadow_percent: 0,
            },
        );
        store.write(&routing).unwrap();
        assert_eq!(store.read().unwrap(), Some(routing));
        assert!(!store.path().with_extension("json.tmp").exists());

        std::fs::write(store.path(), "{\"models\": {").unwrap();
        let err = store.read().unwrap_err().to_string();
        assert!(err.contains("routing.json is corrupt"), "{err}");
    }
}
