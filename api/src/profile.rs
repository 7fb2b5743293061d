//! `profile.json`: the reference profile of a model version's training data,
//! the yardstick live drift is measured against.
//!
//! Per input feature it holds bins — quantile edges with the share of
//! training rows in each (numeric), or the share of each value
//! (categorical) — and the same for the model's predictions. The file sits
//! in the version folder, is named by the manifest's `profile` key and is
//! covered by its sha256 like every other file.
//!
//! Binning rule, the same everywhere (the exporter, the gateway, the
//! offline check): with edges `e_0 < … < e_k`, bin `i` holds
//! `e_i <= v < e_{i+1}`, and the last bin also holds `v == e_k`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Manifest;

/// The file name the example tooling gives a profile.
pub const PROFILE_FILE: &str = "profile.json";
/// The profile format this code reads.
pub const PROFILE_FORMAT: u32 = 1;
/// The most bins (or values) a feature may have: bounds the work per row
/// and the size of every window.
pub const MAX_BINS: usize = 256;
/// Shares must add up to one within this.
const SHARE_TOLERANCE: f64 = 1e-6;

/// A version's reference profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Always [`PROFILE_FORMAT`].
    pub format: u32,
    /// Training rows the profile was computed from.
    pub rows: u64,
    /// What data, for people.
    #[serde(default)]
    pub source: String,
    /// One entry per profiled input feature.
    pub features: Vec<FeatureProfile>,
    /// The distribution of the model's predictions on the training rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<FeatureProfile>,
}

/// How a feature is binned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureKind {
    /// Continuous: quantile bins, plus below, above and missing.
    Numeric,
    /// A few distinct (integer-coded) values, plus unseen and missing.
    Categorical,
}

/// One feature's (or the prediction's) reference distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureProfile {
    /// The feature's name, as the manifest's `features` names it.
    pub name: String,
    /// The input it is a column of (features).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// The output it is a column of (the prediction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Its index in the last dimension of that tensor.
    #[serde(default)]
    pub column: usize,
    /// How it is binned.
    pub kind: FeatureKind,
    /// Bin edges, ascending (numeric).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<f64>,
    /// Distinct values, ascending (categorical).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<f64>,
    /// Share of the training rows in each bin or value.
    pub shares: Vec<f64>,
    /// Share of the training rows where it was missing (NaN).
    #[serde(default)]
    pub missing_share: f64,
    /// Mean of the training column (numeric).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    /// Population standard deviation of the training column (numeric).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<f64>,
}

/// Why a profile was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file could not be read.
    #[error("cannot read profile {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not the JSON of a profile.
    #[error("profile {path} is not valid: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What the parser said.
        message: String,
    },
    /// It parsed but is inconsistent, or does not fit the model.
    #[error("profile {path} does not fit the model: {}", problems.join("; "))]
    Invalid {
        /// The file.
        path: String,
        /// Every problem found.
        problems: Vec<String>,
    },
}

impl Profile {
    /// Reads a profile and checks it against the manifest of its version.
    ///
    /// # Errors
    /// [`ProfileError`] naming the file and, for a mismatch, the feature.
    pub fn load(path: &Path, manifest: &Manifest) -> Result<Profile, ProfileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: shown.clone(),
            source,
        })?;
        let profile: Profile = serde_json::from_str(&text).map_err(|e| ProfileError::Parse {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        let mut problems = profile.validate();
        problems.extend(profile.check_against(manifest));
        if problems.is_empty() {
            Ok(profile)
        } else {
            Err(ProfileError::Invalid {
                path: shown,
                problems,
            })
        }
    }

    /// Every inconsistency within the profile itself.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.format != PROFILE_FORMAT {
            problems.push(format!(
                "format {} is not supported (this gateway reads format {PROFILE_FORMAT})",
                self.format
            ));
        }
        let mut names = std::collections::HashSet::new();
        for f in &self.features {
            if !names.insert(f.name.as_str()) {
                problems.push(format!("feature {:?} is profiled twice", f.name));
            }
            if f.input.is_none() {
                problems.push(format!("feature {:?} names no input", f.name));
            }
            f.check(&mut problems);
        }
        if let Some(p) = &self.prediction {
            if p.output.is_none() {
                problems.push(format!("prediction {:?} names no output", p.name));
            }
            p.check(&mut problems);
        }
        problems
    }

    /// Every way the profile does not fit the manifest's signature: each
    /// profiled feature must be the manifest's feature of that name, at
    /// that column of that input.
    pub fn check_against(&self, manifest: &Manifest) -> Vec<String> {
        let mut problems = Vec::new();
        for f in &self.features {
            let Some(input) = f.input.as_deref() else {
                continue;
            };
            let Some(spec) = manifest.input(input) else {
                problems.push(format!(
                    "feature {:?}: the model has no input {input:?}",
                    f.name
                ));
                continue;
            };
            let columns = spec_columns(&spec.shape);
            if columns.is_some_and(|c| f.column >= c) {
                problems.push(format!(
                    "feature {:?}: column {} is outside input {input:?} ({} columns)",
                    f.name,
                    f.column,
                    columns.unwrap_or_default()
                ));
            } else if let Some(expected) = spec.features.get(f.column) {
                if expected != &f.name {
                    problems.push(format!(
                        "feature {:?}: column {} of input {input:?} is {expected:?} in the manifest",
                        f.name, f.column
                    ));
                }
            } else if !spec.features.is_empty() {
                problems.push(format!(
                    "feature {:?}: the manifest names no feature at column {} of input {input:?}",
                    f.name, f.column
                ));
            }
        }
        if let Some(p) = &self.prediction
            && let Some(output) = p.output.as_deref()
        {
            match manifest.output(output) {
                None => problems.push(format!(
                    "prediction {:?}: the model has no output {output:?}",
                    p.name
                )),
                Some(spec) => {
                    if spec_columns(&spec.shape).is_some_and(|c| p.column >= c) {
                        problems.push(format!(
                            "prediction {:?}: column {} is outside output {output:?}",
                            p.name, p.column
                        ));
                    }
                }
            }
        }
        problems
    }
}

/// Columns of a tensor's last dimension (1 for a batch of scalars), or
/// `None` when it has any size.
fn spec_columns(shape: &[i64]) -> Option<usize> {
    if shape.len() <= 1 {
        return Some(1);
    }
    shape.last().and_then(|&d| usize::try_from(d).ok())
}

impl FeatureProfile {
    fn check(&self, problems: &mut Vec<String>) {
        let name = &self.name;
        let (bins, what) = match self.kind {
            FeatureKind::Numeric => {
                if self.edges.len() < 2 {
                    problems.push(format!(
                        "{name:?}: a numeric feature needs at least 2 edges"
                    ));
                }
                if !self.edges.iter().all(|e| e.is_finite())
                    || !self.edges.windows(2).all(|w| w[0] < w[1])
                {
                    problems.push(format!(
                        "{name:?}: edges must be finite and strictly ascending"
                    ));
                }
                if !self.values.is_empty() {
                    problems.push(format!("{name:?}: a numeric feature has no values"));
                }
                if self.std.is_some_and(|s| !s.is_finite() || s < 0.0)
                    || self.mean.is_some_and(|m| !m.is_finite())
                {
                    problems.push(format!("{name:?}: mean and std must be finite"));
                }
                (self.edges.len().saturating_sub(1), "bins")
            }
            FeatureKind::Categorical => {
                if self.values.is_empty() {
                    problems.push(format!(
                        "{name:?}: a categorical feature needs at least one value"
                    ));
                }
                if !self.values.iter().all(|v| v.is_finite())
                    || !self.values.windows(2).all(|w| w[0] < w[1])
                {
                    problems.push(format!(
                        "{name:?}: values must be finite, distinct and ascending"
                    ));
                }
                if !self.edges.is_empty() {
                    problems.push(format!("{name:?}: a categorical feature has no edges"));
                }
                (self.values.len(), "values")
            }
        };
        if bins > MAX_BINS {
            problems.push(format!("{name:?}: {bins} {what}, more than {MAX_BINS}"));
        }
        if self.shares.len() != bins {
            problems.push(format!(
                "{name:?}: {} shares for {bins} {what}",
                self.shares.len()
            ));
        }
        let valid = |s: f64| s.is_finite() && (0.0..=1.0).contains(&s);
        if !self.shares.iter().all(|&s| valid(s)) || !valid(self.missing_share) {
            problems.push(format!("{name:?}: shares must be between 0 and 1"));
        }
        let total: f64 = self.shares.iter().sum::<f64>() + self.missing_share;
        if (total - 1.0).abs() > SHARE_TOLERANCE {
            problems.push(format!(
                "{name:?}: shares and missing_share add up to {total}, not 1"
            ));
        }
    }

    /// Builds a numeric feature's profile from its training column: edges at
    /// the distinct quantiles `0, 1/bins, …, 1` (linear interpolation, as
    /// numpy's default), shares under the binning rule. NaN counts as
    /// missing. `None` when no value is finite.
    pub fn numeric(name: &str, values: &[f64], bins: usize) -> Option<FeatureProfile> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let quantile = |q: f64| {
            let pos = q * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
        };
        let bins = bins.clamp(1, MAX_BINS);
        let mut edges: Vec<f64> = (0..=bins)
            .map(|i| quantile(i as f64 / bins as f64))
            .collect();
        edges.dedup();
        if edges.len() < 2 {
            // A constant column: one bin of width one around it.
            let v = edges[0];
            edges = vec![v - 0.5, v + 0.5];
        }
        let mut counts = vec![0u64; edges.len() - 1];
        for &v in &sorted {
            if let Some(i) = numeric_bin(&edges, v) {
                counts[i] += 1;
            }
        }
        let total = values.len() as f64;
        let mean = sorted.iter().sum::<f64>() / n as f64;
        let var = sorted.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        Some(FeatureProfile {
            name: name.to_owned(),
            input: None,
            output: None,
            column: 0,
            kind: FeatureKind::Numeric,
            edges,
            values: Vec::new(),
            shares: counts.iter().map(|&c| c as f64 / total).collect(),
            missing_share: (values.len() - n) as f64 / total,
            mean: Some(mean),
            std: Some(var.sqrt()),
        })
    }

    /// Builds a categorical feature's profile from its training column.
    /// `None` when no value is finite or there are more than [`MAX_BINS`]
    /// distinct values.
    pub fn categorical(name: &str, values: &[f64]) -> Option<FeatureProfile> {
        let mut distinct: Vec<(f64, u64)> = Vec::new();
        let mut finite = 0u64;
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        for v in sorted {
            finite += 1;
            match distinct.last_mut() {
                Some((last, count)) if *last == v => *count += 1,
                _ => distinct.push((v, 1)),
            }
        }
        if finite == 0 || distinct.len() > MAX_BINS {
            return None;
        }
        let total = values.len() as f64;
        Some(FeatureProfile {
            name: name.to_owned(),
            input: None,
            output: None,
            column: 0,
            kind: FeatureKind::Categorical,
            edges: Vec::new(),
            values: distinct.iter().map(|&(v, _)| v).collect(),
            shares: distinct.iter().map(|&(_, c)| c as f64 / total).collect(),
            missing_share: (values.len() as u64 - finite) as f64 / total,
            mean: None,
            std: None,
        })
    }
}

/// The bin of a finite value under the binning rule, or `None` when it lies
/// outside the edges.
pub fn numeric_bin(edges: &[f64], v: f64) -> Option<usize> {
    let (first, last) = (*edges.first()?, *edges.last()?);
    if !(first..=last).contains(&v) {
        return None;
    }
    // Edges at or below v; v == last falls into the last bin.
    let at_or_below = edges.partition_point(|&e| e <= v);
    Some((at_or_below - 1).min(edges.len() - 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binning_rule_holds_at_the_edges() {
        let edges = [0.0, 1.0, 2.0, 4.0];
        assert_eq!(numeric_bin(&edges, -0.1), None);
        assert_eq!(numeric_bin(&edges, 0.0), Some(0));
        assert_eq!(numeric_bin(&edges, 0.99), Some(0));
        assert_eq!(numeric_bin(&edges, 1.0), Some(1));
        assert_eq!(numeric_bin(&edges, 3.0), Some(2));
        assert_eq!(numeric_bin(&edges, 4.0), Some(2));
        assert_eq!(numeric_bin(&edges, 4.01), None);
    }

    #[test]
    fn numeric_profile_has_quantile_edges_and_true_shares() {
        let values: Vec<f64> = (0..=100).map(f64::from).chain([f64::NAN]).collect();
        let p = FeatureProfile::numeric("x", &values, 4).expect("finite values");
        assert_eq!(p.edges, vec![0.0, 25.0, 50.0, 75.0, 100.0]);
        // 0..24, 25..49, 50..74, 75..100 (the last bin keeps its top edge).
        let total = 102.0;
        assert_eq!(
            p.shares,
            vec![25.0 / total, 25.0 / total, 25.0 / total, 26.0 / total]
        );
        assert!((p.missing_share - 1.0 / total).abs() < 1e-12);
        assert_eq!(p.mean, Some(50.0));
        assert!(p.validate_alone().is_empty());
    }

    #[test]
    fn categorical_profile_counts_each_value() {
        let p = FeatureProfile::categorical("c", &[1.0, 0.0, 1.0, 1.0]).expect("values");
        assert_eq!(p.values, vec![0.0, 1.0]);
        assert_eq!(p.shares, vec![0.25, 0.75]);
        assert!(p.validate_alone().is_empty());
    }

    #[test]
    fn inconsistent_feature_is_described() {
        let mut p = FeatureProfile::numeric("x", &[1.0, 2.0, 3.0], 2).expect("values");
        p.shares.push(0.5);
        p.edges.swap(0, 1);
        let problems = p.validate_alone();
        assert!(problems.iter().any(|m| m.contains("strictly ascending")));
        assert!(problems.iter().any(|m| m.contains("3 shares for 2 bins")));
    }

    impl FeatureProfile {
        fn validate_alone(&self) -> Vec<String> {
            let mut problems = Vec::new();
            self.check(&mut problems);
            problems
        }
    }
}
