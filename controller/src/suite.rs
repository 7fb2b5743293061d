//! `smoke-tests/<model>.toml`: a model's smoke suite and its rollout
//! settings, so a pipeline calls just `controller promote <model>`.
//!
//! ```toml
//! [rollout]                 # all optional; flags override
//! strategy = "canary"       # blue-green | canary | shadow
//! steps = [10, 50, 100]
//! bake = "30s"
//!
//! [analysis]                # thresholds, absolute (see docs/controller.md)
//! max_error_rate = 0.01
//! max_p99_ms = 50.0
//! min_requests = 20
//! min_shadow_agreement = 0.95
//!
//! [smoke]
//! latency_budget_ms = 200.0
//! min_cases = 1
//!
//! [[smoke.cases]]
//! name = "row-0"
//! versions = [2, 3]         # the versions whose golden outputs these are; empty: any
//! inputs = { input = { datatype = "FP32", shape = [1, 20], data = [0.1, ...] } }
//! expect = { label = { data = [1] }, probabilities = { data = [0.2, 0.8], tolerance = 1e-4 } }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
pub use switchyard_api::duration::parse_duration;
use switchyard_api::{DataType, Manifest};

/// A model's smoke-tests file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteFile {
    /// Rollout defaults for this model.
    #[serde(default)]
    pub rollout: RolloutDefaults,
    /// Analysis thresholds for this model.
    #[serde(default)]
    pub analysis: Thresholds,
    /// The smoke suite.
    #[serde(default)]
    pub smoke: Smoke,
    /// PromQL checks answered by a Prometheus server after each bake.
    #[serde(default)]
    pub queries: Vec<crate::prometheus::QueryCheck>,
}

/// Rollout settings a model's file may set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutDefaults {
    /// `blue-green`, `canary` or `shadow`.
    pub strategy: Option<String>,
    /// Canary weight steps for green, in percent, ending at 100.
    pub steps: Option<Vec<u32>>,
    /// Bake time after each step, e.g. `30s`.
    pub bake: Option<String>,
    /// Percent of live traffic mirrored in the shadow phase.
    pub shadow_percent: Option<u32>,
}

/// Analysis thresholds. They are absolute, not relative to the live
/// version, so a fix can roll out while the live version is failing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Largest share of green's answers that may be server errors.
    pub max_error_rate: f64,
    /// Largest p99 latency of green's answers, in milliseconds.
    pub max_p99_ms: f64,
    /// Fewest requests green must have answered in a window for the
    /// window to count; fewer is inconclusive, never a pass.
    pub min_requests: u64,
    /// Smallest share of shadow answers that must agree with live ones.
    pub min_shadow_agreement: f64,
    /// What an inconclusive check does: fail (roll back) or pause.
    pub on_inconclusive: Inconclusive,
    /// Largest share of green's features that may have drifted from its
    /// training data (`switchyard_drift_drifted_features_ratio`). Off when
    /// absent; when set, a version without a profile or a window with too
    /// few rows is inconclusive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_drift_share: Option<f64>,
}

/// What an inconclusive analysis does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Inconclusive {
    /// Roll back.
    Fail,
    /// Stop and wait for `controller resume` or `abort`.
    Pause,
}

/// The smoke suite.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Smoke {
    /// Every case must answer within this, in milliseconds.
    pub latency_budget_ms: f64,
    /// Fewest cases that must apply to the version under test.
    pub min_cases: usize,
    /// The cases.
    pub cases: Vec<Case>,
}

/// One smoke case.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// A name for reports.
    pub name: String,
    /// Versions this case's expectations belong to; empty for any.
    #[serde(default)]
    pub versions: Vec<u64>,
    /// Inputs by name.
    pub inputs: BTreeMap<String, TensorValue>,
    /// Expected outputs by name.
    pub expect: BTreeMap<String, Expected>,
}

/// A tensor in a case.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorValue {
    /// Its type.
    pub datatype: DataType,
    /// Its shape.
    pub shape: Vec<u64>,
    /// Its values, flat.
    pub data: Vec<f64>,
}

/// An expected output: integers must match exactly, floats within the
/// tolerance.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    /// The values, flat.
    pub data: Vec<f64>,
    /// Absolute tolerance for float outputs; 0 means exact.
    #[serde(default)]
    pub tolerance: f64,
}

/// Why a suite file can't be used.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    /// It could not be read.
    #[error("cannot read smoke suite {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// It does not parse.
    #[error("smoke suite {path} does not parse: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// It does not fit the model.
    #[error("smoke suite {path} does not match {model} version {version}: {}", problems.join("; "))]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// The model.
        model: String,
        /// The version.
        version: u64,
        /// Every problem.
        problems: Vec<String>,
    },
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_error_rate: 0.01,
            max_p99_ms: 250.0,
            min_requests: 20,
            min_shadow_agreement: 0.95,
            on_inconclusive: Inconclusive::Fail,
            max_drift_share: None,
        }
    }
}

impl Default for Smoke {
    fn default() -> Self {
        Smoke {
            latency_budget_ms: 500.0,
            min_cases: 1,
            cases: Vec::new(),
        }
    }
}

impl SuiteFile {
    /// The file of `model` in `dir`, or an empty one if there is none.
    ///
    /// # Errors
    /// [`SuiteError`] naming the file.
    pub fn load(dir: &Path, model: &str) -> Result<(SuiteFile, PathBuf), SuiteError> {
        let path = dir.join(format!("{model}.toml"));
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((SuiteFile::default(), path));
            }
            Err(source) => return Err(SuiteError::Read { path, source }),
        };
        let file = toml::from_str(&text).map_err(|e: toml::de::Error| SuiteError::Parse {
            path: path.clone(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        Ok((file, path))
    }

    /// The cases that apply to `version`.
    pub fn cases_for(&self, version: u64) -> Vec<&Case> {
        self.smoke
            .cases
            .iter()
            .filter(|c| c.versions.is_empty() || c.versions.contains(&version))
            .collect()
    }

    /// Every way the suite does not fit a version's signature, checked
    /// before anything is loaded.
    pub fn problems(&self, manifest: &Manifest) -> Vec<String> {
        let mut problems: Vec<String> = self
            .queries
            .iter()
            .flat_map(crate::prometheus::QueryCheck::problems)
            .collect();
        let cases = self.cases_for(manifest.version);
        if cases.len() < self.smoke.min_cases {
            problems.push(format!(
                "{} cases apply to version {}, fewer than min_cases {}",
                cases.len(),
                manifest.version,
                self.smoke.min_cases
            ));
        }
        for case in cases {
            for spec in &manifest.inputs {
                if !case.inputs.contains_key(&spec.name) {
                    problems.push(format!("case {:?} lacks input {:?}", case.name, spec.name));
                }
            }
            for (name, t) in &case.inputs {
                match manifest.input(name) {
                    None => problems.push(format!(
                        "case {:?} gives input {name:?}, which the model does not have",
                        case.name
                    )),
                    Some(spec) => {
                        if spec.datatype != t.datatype {
                            problems.push(format!(
                                "case {:?} input {name:?} is {} but the model takes {}",
                                case.name, t.datatype, spec.datatype
                            ));
                        }
                        let fits = t.shape.len() == spec.shape.len()
                            && t.shape
                                .iter()
                                .zip(&spec.shape)
                                .skip(1)
                                .all(|(&d, &s)| s < 0 || d as i64 == s);
                        let count: u64 = t.shape.iter().product();
                        if !fits || count as usize != t.data.len() {
                            problems.push(format!(
                                "case {:?} input {name:?} has shape {:?} with {} values; the model takes {:?}",
                                case.name,
                                t.shape,
                                t.data.len(),
                                spec.shape
                            ));
                        }
                    }
                }
            }
            for name in case.expect.keys() {
                if manifest.output(name).is_none() {
                    problems.push(format!(
                        "case {:?} expects output {name:?}, which the model does not have",
                        case.name
                    ));
                }
            }
        }
        problems
    }
}

impl RolloutDefaults {
    /// The bake time, if set.
    ///
    /// # Errors
    /// A message naming the bad value.
    pub fn bake(&self) -> Result<Option<Duration>, String> {
        self.bake.as_deref().map(parse_duration).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"
name = "m"
version = 2
[[inputs]]
name = "input"
datatype = "FP32"
shape = [-1, 2]
[[outputs]]
name = "label"
datatype = "INT64"
shape = [-1]
[files]
"model.onnx" = "0000000000000000000000000000000000000000000000000000000000000000"
"#;

    fn suite(text: &str) -> SuiteFile {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_fitting_suite_has_no_problems_and_defaults_are_safe() {
        let s = suite(
            r#"
[[smoke.cases]]
name = "a"
inputs = { input = { datatype = "FP32", shape = [1, 2], data = [1.0, 2.0] } }
expect = { label = { data = [1] } }
"#,
        );
        let m = Manifest::parse(MANIFEST).unwrap();
        assert!(s.problems(&m).is_empty(), "{:?}", s.problems(&m));
        assert_eq!(s.analysis.on_inconclusive, Inconclusive::Fail);
        assert!(s.analysis.min_requests > 0, "no data is never a pass");
    }

    #[test]
    fn a_suite_that_does_not_fit_is_refused_naming_each_problem() {
        let s = suite(
            r#"
[[smoke.cases]]
name = "bad"
versions = [2]
inputs = { features = { datatype = "FP64", shape = [1, 3], data = [1.0] } }
expect = { score = { data = [1] } }
"#,
        );
        let m = Manifest::parse(MANIFEST).unwrap();
        let all = s.problems(&m).join("\n");
        for needle in [
            "lacks input \"input\"",
            "gives input \"features\"",
            "expects output \"score\"",
        ] {
            assert!(all.contains(needle), "{all}");
        }
        let mut other = Manifest::parse(MANIFEST).unwrap();
        other.version = 3;
        assert!(s.problems(&other).join("").contains("fewer than min_cases"));
        assert!(
            toml::from_str::<SuiteFile>("[smoke]\ncase = []").is_err(),
            "unknown keys are errors"
        );
    }
}
