//! The model source seam: where versions come from.
//!
//! A [`ModelSource`] lists models and versions and hands out a local folder
//! holding one version's files; the loader verifies whatever it is given.
//! [`FolderSource`] reads `models/<model>/<version>/`. To add a source
//! (a registry, object storage): one module implementing the trait, whose
//! `fetch` materialises the version in a local folder.

use std::path::{Path, PathBuf};

use switchyard_api::manifest::{MANIFEST_FILE, is_safe_name};

/// Why a source could not list or fetch.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The model has no folder.
    #[error("model {0:?} is not in the repository")]
    UnknownModel(String),
    /// The version has no folder.
    #[error("version {version} of model {model:?} is not in the repository")]
    UnknownVersion {
        /// The model.
        model: String,
        /// The version.
        version: u64,
    },
    /// The repository could not be read.
    #[error("cannot read the repository at {path}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Where model versions come from.
pub trait ModelSource: Send + Sync + std::fmt::Debug {
    /// Every model, sorted.
    ///
    /// # Errors
    /// [`SourceError::Io`] when the source can't be read.
    fn models(&self) -> Result<Vec<String>, SourceError>;

    /// A model's versions, ascending.
    ///
    /// # Errors
    /// [`SourceError::UnknownModel`], or I/O.
    fn versions(&self, model: &str) -> Result<Vec<u64>, SourceError>;

    /// A local folder holding the version's files.
    ///
    /// # Errors
    /// [`SourceError::UnknownVersion`], or I/O.
    fn fetch(&self, model: &str, version: u64) -> Result<PathBuf, SourceError>;
}

/// A repository folder: `<root>/<model>/<version>/model.toml`.
#[derive(Debug, Clone)]
pub struct FolderSource {
    root: PathBuf,
}

impl FolderSource {
    /// A source reading `root`.
    pub fn new(root: impl Into<PathBuf>) -> FolderSource {
        FolderSource { root: root.into() }
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn io(&self, source: std::io::Error) -> SourceError {
        SourceError::Io {
            path: self.root.clone(),
            source,
        }
    }
}

impl ModelSource for FolderSource {
    fn models(&self) -> Result<Vec<String>, SourceError> {
        let mut models = Vec::new();
        for entry in std::fs::read_dir(&self.root).map_err(|e| self.io(e))? {
            let entry = entry.map_err(|e| self.io(e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            // A folder counts as a model once it holds a version, so stray
            // folders (caches, work in progress) don't count against readiness.
            if is_safe_name(&name) && entry.path().is_dir() && !self.versions(&name)?.is_empty() {
                models.push(name);
            }
        }
        models.sort();
        Ok(models)
    }

    fn versions(&self, model: &str) -> Result<Vec<u64>, SourceError> {
        if !is_safe_name(model) {
            return Err(SourceError::UnknownModel(model.to_owned()));
        }
        let dir = self.root.join(model);
        let entries = std::fs::read_dir(&dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SourceError::UnknownModel(model.to_owned()),
            _ => self.io(e),
        })?;
        let mut versions = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.io(e))?;
            let version = entry
                .file_name()
                .to_str()
                .and_then(|v| v.parse::<u64>().ok());
            if let Some(v) = version.filter(|&v| v > 0)
                && entry.path().join(MANIFEST_FILE).is_file()
            {
                versions.push(v);
            }
        }
        versions.sort_unstable();
        Ok(versions)
    }

    fn fetch(&self, model: &str, version: u64) -> Result<PathBuf, SourceError> {
        if !self.versions(model)?.contains(&version) {
            return Err(SourceError::UnknownVersion {
                model: model.to_owned(),
                version,
            });
        }
        Ok(self.root.join(model).join(version.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_models_and_numeric_versions_with_a_manifest() {
        let root = tempfile::tempdir().unwrap();
        for dir in [
            "m/1",
            "m/2",
            "m/10",
            "m/not-a-version",
            "m/0",
            "m/3",
            ".hidden/1",
            "__pycache__",
        ] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        for dir in ["m/1", "m/2", "m/10", "m/not-a-version", "m/0", ".hidden/1"] {
            std::fs::write(root.path().join(dir).join(MANIFEST_FILE), "").unwrap();
        }
        let source = FolderSource::new(root.path());
        assert_eq!(source.models().unwrap(), vec!["m".to_owned()]);
        assert_eq!(source.versions("m").unwrap(), vec![1, 2, 10]);
        assert!(matches!(
            source.versions("nope"),
            Err(SourceError::UnknownModel(_))
        ));
        assert!(matches!(
            source.versions("../etc"),
            Err(SourceError::UnknownModel(_))
        ));
        assert!(matches!(
            source.fetch("m", 3),
            Err(SourceError::UnknownVersion { .. })
        ));
        assert_eq!(source.fetch("m", 10).unwrap(), root.path().join("m/10"));
    }
}
