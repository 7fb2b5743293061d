//! `model.toml`: what a model version is, what it takes and gives, and the
//! sha256 of every file that makes it up.
//!
//! Parsing is strict (`deny_unknown_fields`): a misspelt key is an error, not
//! a silently ignored setting. [`Manifest::validate`] is pure and reports
//! every problem at once; [`Manifest::verify_files`] does the I/O.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::DataType;
use crate::drift::DriftSettings;

/// The name of the manifest file inside a version folder.
pub const MANIFEST_FILE: &str = "model.toml";
/// The name of the ONNX graph inside a version folder.
pub const MODEL_FILE: &str = "model.onnx";
/// The largest `max_batch_size` a manifest may ask for.
pub const MAX_BATCH_LIMIT: u32 = 4096;
/// The largest `queue_capacity` a manifest may ask for.
pub const QUEUE_CAPACITY_LIMIT: u32 = 1 << 20;

/// A model version's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The model's name; must equal its folder's name.
    pub name: String,
    /// The version, a positive integer; must equal its folder's name.
    pub version: u64,
    /// What this version is, for people.
    #[serde(default)]
    pub description: String,
    /// Always `onnx` for now; reported as the model's platform.
    #[serde(default = "default_platform")]
    pub platform: String,
    /// Backends that may run this version, most preferred first. Empty means
    /// the gateway's configured order.
    #[serde(default)]
    pub backends: Vec<BackendKind>,
    /// Class names: `labels[i]` names label value `i`.
    #[serde(default)]
    pub labels: Vec<String>,
    /// The reference profile of the training data (a file listed under
    /// `files`), which live drift is measured against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The inputs the graph takes.
    pub inputs: Vec<TensorSpec>,
    /// The outputs the graph gives.
    pub outputs: Vec<TensorSpec>,
    /// Dynamic batching settings.
    #[serde(default)]
    pub batching: Batching,
    /// How drift is measured, when there is a profile.
    #[serde(default)]
    pub drift: DriftSettings,
    /// Where this version came from.
    #[serde(default)]
    pub provenance: Provenance,
    /// sha256 (hex) of every file in the version folder but the manifest.
    pub files: BTreeMap<String, String>,
}

/// One input or output of the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    /// The tensor's name in the ONNX graph.
    pub name: String,
    /// Its element type.
    pub datatype: DataType,
    /// Its shape; `-1` is a dimension of any size, and the first dimension
    /// is the batch dimension.
    pub shape: Vec<i64>,
    /// Names of the columns of the last dimension (for drift and for people).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

/// The inference engines a manifest can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// ONNX Runtime, through its shared library.
    Ort,
    /// tract, pure Rust.
    Tract,
    /// forest: tree ensembles evaluated natively.
    Forest,
}

/// Dynamic batching, with Triton's meaning of each setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batching {
    /// The most rows one inference call takes.
    #[serde(default = "default_max_batch")]
    pub max_batch_size: u32,
    /// How long the first request of a batch may wait for others, in µs.
    #[serde(default)]
    pub max_queue_delay_us: u64,
    /// Requests that may wait; past it a request is refused (429).
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: u32,
}

/// Where a version came from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The training run that made it.
    #[serde(default)]
    pub training_run: String,
    /// The data it was trained on.
    #[serde(default)]
    pub data: String,
    /// The libraries that trained and exported it.
    #[serde(default)]
    pub trained_with: String,
    /// Evaluation figures recorded at training time.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

/// Why a manifest or its files were refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The manifest is not valid TOML of the expected form.
    #[error("{path} is not a valid manifest: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// The manifest parsed but says impossible things.
    #[error("{path} is invalid: {}", problems.join("; "))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<String>,
    },
    /// A listed file could not be read.
    #[error("cannot read {path} listed in the manifest")]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A listed file's content is not what the manifest says.
    #[error("sha256 mismatch for {path}: manifest says {expected}, file has {actual}")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The manifest's sha256.
        expected: String,
        /// The file's sha256.
        actual: String,
    },
}

fn default_platform() -> String {
    "onnx".to_owned()
}

const fn default_max_batch() -> u32 {
    64
}

const fn default_queue_capacity() -> u32 {
    1024
}

impl Default for Batching {
    fn default() -> Self {
        Batching {
            max_batch_size: default_max_batch(),
            max_queue_delay_us: 0,
            queue_capacity: default_queue_capacity(),
        }
    }
}

impl Manifest {
    /// Reads and parses `dir/model.toml`, then validates it against the
    /// folder it sits in (`<model>/<version>/`).
    ///
    /// # Errors
    /// [`ManifestError::Read`], [`ManifestError::Parse`] or
    /// [`ManifestError::Invalid`] naming the file.
    pub fn load(dir: &Path) -> Result<Manifest, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let manifest = Manifest::read(dir)?;
        let mut problems = manifest.validate();
        let folder_version = dir.file_name().and_then(|v| v.to_str());
        if folder_version != Some(manifest.version.to_string().as_str()) {
            problems.push(format!(
                "version {} does not match its folder {:?}",
                manifest.version,
                folder_version.unwrap_or_default()
            ));
        }
        let folder_model = dir
            .parent()
            .and_then(Path::file_name)
            .and_then(|m| m.to_str());
        if folder_model != Some(manifest.name.as_str()) {
            problems.push(format!(
                "name {:?} does not match its folder {:?}",
                manifest.name,
                folder_model.unwrap_or_default()
            ));
        }
        if problems.is_empty() {
            Ok(manifest)
        } else {
            Err(ManifestError::Invalid { path, problems })
        }
    }

    /// Reads and parses `dir/model.toml` without validating it (for a
    /// folder that is not yet `<model>/<version>/`, such as a staging one).
    ///
    /// # Errors
    /// [`ManifestError::Read`] or [`ManifestError::Parse`] naming the file.
    pub fn read(dir: &Path) -> Result<Manifest, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Read {
            path: path.clone(),
            source,
        })?;
        Manifest::parse(&text).map_err(|message| ManifestError::Parse { path, message })
    }

    /// Parses manifest text without validating it.
    ///
    /// # Errors
    /// The TOML parser's message, which names the line and key.
    pub fn parse(text: &str) -> Result<Manifest, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }

    /// Every problem with this manifest that can be seen without I/O.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !is_safe_name(&self.name) {
            problems.push(format!(
                "name {:?} must be 1-64 characters of [A-Za-z0-9_.-], not starting with '.'",
                self.name
            ));
        }
        if self.version == 0 {
            problems.push("version must be a positive integer".to_owned());
        }
        if self.platform != "onnx" {
            problems.push(format!(
                "platform {:?} is not supported (only \"onnx\")",
                self.platform
            ));
        }
        if self.inputs.is_empty() {
            problems.push("at least one input is required".to_owned());
        }
        if self.outputs.is_empty() {
            problems.push("at least one output is required".to_owned());
        }
        let mut seen = HashSet::new();
        for (kind, spec) in self
            .inputs
            .iter()
            .map(|s| ("input", s))
            .chain(self.outputs.iter().map(|s| ("output", s)))
        {
            if !seen.insert(spec.name.as_str()) {
                problems.push(format!("{kind} {:?} is declared twice", spec.name));
            }
            spec.check(kind, &mut problems);
        }
        let b = &self.batching;
        if b.max_batch_size == 0 || b.max_batch_size > MAX_BATCH_LIMIT {
            problems.push(format!(
                "batching.max_batch_size {} must be between 1 and {MAX_BATCH_LIMIT}",
                b.max_batch_size
            ));
        }
        if b.queue_capacity == 0 || b.queue_capacity > QUEUE_CAPACITY_LIMIT {
            problems.push(format!(
                "batching.queue_capacity {} must be between 1 and {QUEUE_CAPACITY_LIMIT}",
                b.queue_capacity
            ));
        }
        if b.max_queue_delay_us > 1_000_000 {
            problems.push(format!(
                "batching.max_queue_delay_us {} is over one second",
                b.max_queue_delay_us
            ));
        }
        if let Some(profile) = &self.profile
            && !self.files.contains_key(profile)
        {
            problems.push(format!(
                "profile {profile:?} must be listed under files with its sha256"
            ));
        }
        problems.extend(self.drift.validate());
        if !self.files.contains_key(MODEL_FILE) {
            problems.push(format!("files must list {MODEL_FILE:?} with its sha256"));
        }
        for (file, sha) in &self.files {
            if !is_safe_name(file) || file == MANIFEST_FILE {
                problems.push(format!(
                    "files: {file:?} is not a plain file name in the version folder"
                ));
            }
            if sha.len() != 64
                || !sha
                    .bytes()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            {
                problems.push(format!(
                    "files: sha256 of {file:?} must be 64 lower-case hex digits"
                ));
            }
        }
        problems
    }

    /// Checks the sha256 of every file the manifest lists, in `dir`.
    ///
    /// # Errors
    /// The first file that cannot be read or whose hash differs, by name.
    pub fn verify_files(&self, dir: &Path) -> Result<(), ManifestError> {
        for (file, expected) in &self.files {
            let path = dir.join(file);
            let actual = sha256_file(&path).map_err(|source| ManifestError::File {
                path: path.clone(),
                source,
            })?;
            if &actual != expected {
                return Err(ManifestError::Checksum {
                    path,
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        Ok(())
    }

    /// The input with this name.
    pub fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|s| s.name == name)
    }

    /// The output with this name.
    pub fn output(&self, name: &str) -> Option<&TensorSpec> {
        self.outputs.iter().find(|s| s.name == name)
    }
}

impl TensorSpec {
    fn check(&self, kind: &str, problems: &mut Vec<String>) {
        if self.name.is_empty() {
            problems.push(format!("an {kind} has an empty name"));
        }
        if self.shape.is_empty() {
            problems.push(format!(
                "{kind} {:?}: shape must have a batch dimension first",
                self.name
            ));
        }
        if let Some(d) = self.shape.iter().find(|&&d| d == 0 || d < -1) {
            problems.push(format!(
                "{kind} {:?}: dimension {d} must be positive or -1 (any size)",
                self.name
            ));
        }
        if self.shape.first().is_some_and(|&d| d != -1) {
            problems.push(format!(
                "{kind} {:?}: the first (batch) dimension must be -1",
                self.name
            ));
        }
        if !self.features.is_empty() {
            let last = self.shape.last().copied().unwrap_or(0);
            let columns = if self.shape.len() == 1 { 1 } else { last };
            if columns != self.features.len() as i64 {
                problems.push(format!(
                    "{kind} {:?}: {} feature names for a last dimension of {last}",
                    self.name,
                    self.features.len()
                ));
            }
        }
    }

    /// Elements per row: the product of every dimension but the first, or
    /// `None` if one of them has any size.
    pub fn row_elements(&self) -> Option<usize> {
        self.shape.iter().skip(1).try_fold(1usize, |acc, &d| {
            usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
        })
    }
}

/// A name safe to use as a folder or file name and a metric label.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

/// The sha256 of a file, as lower-case hex.
///
/// # Errors
/// Any error reading the file.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests;
