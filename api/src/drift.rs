//! Drift of live traffic against a version's reference profile: the
//! settings (the manifest's `[drift]` table), the statistics computed from
//! bin counts, and the report the gateway's admin API answers with.
//!
//! Every statistic is computed from the same bins on both sides, so the
//! gateway's figures can be recomputed exactly offline, and the controller
//! can add up the counts of a fleet and recompute them for the whole.
//!
//! - **PSI**: `Σ (p − r) ln(p / r)` over every bin, both shares floored at
//!   [`PSI_FLOOR`] so an empty bin does not make it infinite.
//! - **Jensen–Shannon distance**: the square root of the JS divergence,
//!   natural logarithm (as scipy's `jensenshannon` and Evidently), so it
//!   lies in `[0, √ln 2 ≈ 0.833]`.
//! - **Kolmogorov–Smirnov** (numeric): the largest gap between the two
//!   cumulative distributions at the bin boundaries, missing values left out.
//! - **Wasserstein, normalized** (numeric): the area between the two
//!   cumulative distributions, values spread evenly inside each bin, values
//!   below or above the reference range at the mean of those values; divided
//!   by the reference standard deviation (as Evidently's
//!   `wasserstein_distance_norm`).
//!
//! Bins: numeric features have the profile's bins plus `below`, `above` and
//! `missing`; categorical ones have one bin per reference value plus
//! `unseen` and `missing`. PSI and Jensen–Shannon count every bin, so a
//! burst of NaN or of never-seen values raises them. KS and Wasserstein see
//! only the values present, so a feature also counts as drifted when its
//! share of missing values moves from the reference's by at least its
//! threshold (0.1: ten percentage points), whatever its deciding statistic.

use serde::{Deserialize, Serialize};

use crate::profile::{FeatureKind, FeatureProfile};

/// The floor of both shares in PSI (the usual 0.01%).
pub const PSI_FLOOR: f64 = 1e-4;
/// Values further below or above the reference range than this many times
/// its width count as if they were that far, for Wasserstein: one absurd or
/// infinite value must not make a whole window's distance infinite. (It
/// still counts in its `below`/`above` bin, so PSI and Jensen–Shannon see
/// it.)
pub const FAR_RANGES: f64 = 10.0;
/// The most time buckets a window may have.
pub const MAX_BUCKETS: u32 = 120;

/// A drift statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stat {
    /// Population stability index.
    Psi,
    /// Jensen–Shannon distance.
    Jensenshannon,
    /// Kolmogorov–Smirnov statistic (numeric only).
    Ks,
    /// Normalized Wasserstein distance (numeric only).
    Wasserstein,
}

impl Stat {
    /// Every statistic, in the order metrics list them.
    pub const ALL: [Stat; 4] = [Stat::Psi, Stat::Jensenshannon, Stat::Ks, Stat::Wasserstein];

    /// The name used in manifests, metric labels and reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Stat::Psi => "psi",
            Stat::Jensenshannon => "jensenshannon",
            Stat::Ks => "ks",
            Stat::Wasserstein => "wasserstein",
        }
    }

    /// Whether it applies to categorical features.
    pub const fn categorical(self) -> bool {
        matches!(self, Stat::Psi | Stat::Jensenshannon)
    }
}

/// The manifest's `[drift]` table: how a version's live window is kept and
/// when a feature counts as drifted. The defaults follow Evidently's for
/// large samples, without p-values (at serving volumes every tiny shift is
/// significant): Wasserstein ≥ 0.1 for numeric features, Jensen–Shannon ≥
/// 0.1 for categorical ones, and the dataset drifted once half the features
/// are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftSettings {
    /// The sliding window's length (`"10m"`, `"1h"`).
    #[serde(default = "default_window")]
    pub window: String,
    /// Time buckets the window is kept in: it slides one bucket at a time.
    #[serde(default = "default_buckets")]
    pub buckets: u32,
    /// Rows the window needs before statistics are reported.
    #[serde(default = "default_min_rows")]
    pub min_rows: u64,
    /// The statistic that decides for numeric features.
    #[serde(default = "default_numeric_stat")]
    pub numeric_stat: Stat,
    /// The statistic that decides for categorical features.
    #[serde(default = "default_categorical_stat")]
    pub categorical_stat: Stat,
    /// A numeric feature drifted when its statistic is at least this.
    #[serde(default = "default_threshold")]
    pub numeric_threshold: f64,
    /// A categorical feature drifted when its statistic is at least this.
    #[serde(default = "default_threshold")]
    pub categorical_threshold: f64,
    /// The dataset drifted when at least this share of features did.
    #[serde(default = "default_drift_share")]
    pub drift_share: f64,
}

fn default_window() -> String {
    "10m".to_owned()
}
const fn default_buckets() -> u32 {
    10
}
const fn default_min_rows() -> u64 {
    500
}
const fn default_numeric_stat() -> Stat {
    Stat::Wasserstein
}
const fn default_categorical_stat() -> Stat {
    Stat::Jensenshannon
}
const fn default_threshold() -> f64 {
    0.1
}
const fn default_drift_share() -> f64 {
    0.5
}

impl Default for DriftSettings {
    fn default() -> Self {
        DriftSettings {
            window: default_window(),
            buckets: default_buckets(),
            min_rows: default_min_rows(),
            numeric_stat: default_numeric_stat(),
            categorical_stat: default_categorical_stat(),
            numeric_threshold: default_threshold(),
            categorical_threshold: default_threshold(),
            drift_share: default_drift_share(),
        }
    }
}

impl DriftSettings {
    /// Every problem with these settings, prefixed `drift.`.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match crate::duration::parse_duration(&self.window) {
            Ok(d) if d.as_secs() >= 1 && d.as_secs() <= 7 * 24 * 3600 => {}
            Ok(_) => problems.push(format!(
                "drift.window {:?} must be between 1s and 7 days",
                self.window
            )),
            Err(e) => problems.push(format!("drift.window: {e}")),
        }
        if self.buckets == 0 || self.buckets > MAX_BUCKETS {
            problems.push(format!(
                "drift.buckets {} must be between 1 and {MAX_BUCKETS}",
                self.buckets
            ));
        }
        if !self.categorical_stat.categorical() {
            problems.push(format!(
                "drift.categorical_stat {:?} applies to numeric features only (use psi or jensenshannon)",
                self.categorical_stat.as_str()
            ));
        }
        for (key, v) in [
            ("numeric_threshold", self.numeric_threshold),
            ("categorical_threshold", self.categorical_threshold),
        ] {
            if !v.is_finite() || v <= 0.0 {
                problems.push(format!("drift.{key} {v} must be a positive number"));
            }
        }
        if !(self.drift_share > 0.0 && self.drift_share <= 1.0) {
            problems.push(format!(
                "drift.drift_share {} must be in (0, 1]",
                self.drift_share
            ));
        }
        problems
    }

    /// The window's length; the default when it does not parse (validated
    /// manifests always parse).
    pub fn window_duration(&self) -> std::time::Duration {
        crate::duration::parse_duration(&self.window).unwrap_or(std::time::Duration::from_secs(600))
    }

    /// The deciding statistic and threshold for a kind of feature.
    pub fn rule(&self, kind: FeatureKind) -> (Stat, f64) {
        match kind {
            FeatureKind::Numeric => (self.numeric_stat, self.numeric_threshold),
            FeatureKind::Categorical => (self.categorical_stat, self.categorical_threshold),
        }
    }
}

/// A feature's live counts over a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureCounts {
    /// Per reference bin (numeric) or value (categorical).
    pub bins: Vec<u64>,
    /// Below the first edge (numeric).
    #[serde(default)]
    pub below: u64,
    /// Above the last edge (numeric).
    #[serde(default)]
    pub above: u64,
    /// Values the reference never had (categorical).
    #[serde(default)]
    pub unseen: u64,
    /// NaN.
    #[serde(default)]
    pub missing: u64,
    /// The sum of the values below the first edge (for Wasserstein).
    #[serde(default)]
    pub below_sum: f64,
    /// The sum of the values above the last edge.
    #[serde(default)]
    pub above_sum: f64,
}

impl FeatureCounts {
    /// Every value counted.
    pub fn total(&self) -> u64 {
        self.bins.iter().sum::<u64>() + self.below + self.above + self.unseen + self.missing
    }

    /// Adds another window's counts (another gateway's) of the same feature.
    pub fn add(&mut self, other: &FeatureCounts) {
        if self.bins.len() < other.bins.len() {
            self.bins.resize(other.bins.len(), 0);
        }
        for (a, b) in self.bins.iter_mut().zip(&other.bins) {
            *a += b;
        }
        self.below += other.below;
        self.above += other.above;
        self.unseen += other.unseen;
        self.missing += other.missing;
        self.below_sum += other.below_sum;
        self.above_sum += other.above_sum;
    }
}

/// The statistics of one feature; `ks` and `wasserstein` for numeric ones.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Population stability index.
    pub psi: f64,
    /// Jensen–Shannon distance.
    pub jensenshannon: f64,
    /// Kolmogorov–Smirnov statistic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ks: Option<f64>,
    /// Normalized Wasserstein distance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasserstein: Option<f64>,
}

impl Stats {
    /// One statistic by name, if it applies.
    pub fn get(&self, stat: Stat) -> Option<f64> {
        match stat {
            Stat::Psi => Some(self.psi),
            Stat::Jensenshannon => Some(self.jensenshannon),
            Stat::Ks => self.ks,
            Stat::Wasserstein => self.wasserstein,
        }
    }
}

/// The statistics of live counts against a reference; `None` when nothing
/// was counted.
pub fn statistics(reference: &FeatureProfile, counts: &FeatureCounts) -> Option<Stats> {
    let total = counts.total();
    if total == 0 {
        return None;
    }
    let n = total as f64;
    let (reference_shares, current_shares) = full_distributions(reference, counts, n);
    let psi = reference_shares
        .iter()
        .zip(&current_shares)
        .map(|(&r, &p)| {
            let (r, p) = (r.max(PSI_FLOOR), p.max(PSI_FLOOR));
            (p - r) * (p / r).ln()
        })
        .sum();
    let jensenshannon = js_distance(&reference_shares, &current_shares);
    let (ks, wasserstein) = match reference.kind {
        FeatureKind::Numeric => numeric_distances(reference, counts).unzip(),
        FeatureKind::Categorical => (None, None),
    };
    Some(Stats {
        psi,
        jensenshannon,
        ks,
        wasserstein,
    })
}

/// Reference and current shares over every bin, in the same order:
/// numeric `[below, bins…, above, missing]`, categorical
/// `[values…, unseen, missing]`.
fn full_distributions(
    reference: &FeatureProfile,
    counts: &FeatureCounts,
    n: f64,
) -> (Vec<f64>, Vec<f64>) {
    let bins = reference.shares.len();
    let share = |c: u64| c as f64 / n;
    let bin_counts = (0..bins).map(|i| counts.bins.get(i).copied().unwrap_or(0));
    match reference.kind {
        FeatureKind::Numeric => {
            let mut r = Vec::with_capacity(bins + 3);
            r.push(0.0);
            r.extend(&reference.shares);
            r.extend([0.0, reference.missing_share]);
            let mut p = Vec::with_capacity(bins + 3);
            p.push(share(counts.below));
            p.extend(bin_counts.map(share));
            p.extend([share(counts.above), share(counts.missing)]);
            (r, p)
        }
        FeatureKind::Categorical => {
            let mut r = reference.shares.clone();
            r.extend([0.0, reference.missing_share]);
            let mut p: Vec<f64> = bin_counts.map(share).collect();
            p.extend([share(counts.unseen), share(counts.missing)]);
            (r, p)
        }
    }
}

fn js_distance(r: &[f64], p: &[f64]) -> f64 {
    let kl_to_mid = |a: &[f64], b: &[f64]| -> f64 {
        a.iter()
            .zip(b)
            .filter(|&(&x, _)| x > 0.0)
            .map(|(&x, &y)| x * (x / ((x + y) / 2.0)).ln())
            .sum()
    };
    let divergence = (kl_to_mid(r, p) + kl_to_mid(p, r)) / 2.0;
    divergence.max(0.0).sqrt()
}

/// Kolmogorov–Smirnov and normalized Wasserstein of a numeric feature, both
/// over the values that are not missing; `None` when all are missing.
fn numeric_distances(reference: &FeatureProfile, counts: &FeatureCounts) -> Option<(f64, f64)> {
    let edges = &reference.edges;
    let present = counts.total() - counts.missing - counts.unseen;
    let ref_present = 1.0 - reference.missing_share;
    if present == 0 || ref_present <= 0.0 || edges.len() < 2 {
        return None;
    }
    let m = present as f64;
    let below = counts.below as f64 / m;
    let above = counts.above as f64 / m;

    // Cumulative distributions at each edge; the gap moves linearly inside
    // a bin because both spread their mass evenly there.
    let mut f_ref = 0.0;
    let mut f_cur = below;
    let mut ks = (f_ref - f_cur).abs();
    let mut area = 0.0;
    if counts.below > 0 {
        let mean_below = counts.below_sum / counts.below as f64;
        area += below * (edges[0] - mean_below).max(0.0);
    }
    for (i, w) in edges.windows(2).enumerate() {
        let width = w[1] - w[0];
        let gap_left = f_ref - f_cur;
        f_ref += reference.shares.get(i).copied().unwrap_or(0.0) / ref_present;
        f_cur += counts.bins.get(i).copied().unwrap_or(0) as f64 / m;
        let gap_right = f_ref - f_cur;
        ks = ks.max(gap_right.abs());
        area += width * linear_abs_area(gap_left, gap_right);
    }
    // Past the last edge the reference is complete and the current
    // distribution is missing exactly the share above.
    ks = ks.max(above);
    if counts.above > 0 {
        let mean_above = counts.above_sum / counts.above as f64;
        area += above * (mean_above - edges[edges.len() - 1]).max(0.0);
    }
    let scale = reference.std.filter(|&s| s > 0.0).unwrap_or(1.0);
    Some((ks, area / scale))
}

/// The mean of `|g(t)|` over `t ∈ [0, 1]` for `g` linear from `a` to `b`.
fn linear_abs_area(a: f64, b: f64) -> f64 {
    if a * b >= 0.0 {
        (a.abs() + b.abs()) / 2.0
    } else {
        (a * a + b * b) / (2.0 * (a.abs() + b.abs()))
    }
}

/// The drift of one feature (or of the prediction) in a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    /// The feature's name.
    pub name: String,
    /// How it is binned.
    pub kind: FeatureKind,
    /// The statistic that decides whether it drifted.
    pub stat: Stat,
    /// Its threshold.
    pub threshold: f64,
    /// Every statistic; absent while the window is not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
    /// Whether it drifted; absent while the window is not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drifted: Option<bool>,
    /// How far the share of missing values moved from the reference's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_shift: Option<f64>,
    /// The window's counts.
    pub counts: FeatureCounts,
    /// The reference it is measured against.
    pub reference: FeatureProfile,
}

impl FeatureDrift {
    /// Measures counts against a reference under the settings; statistics
    /// only when `ready`.
    pub fn measure(
        reference: &FeatureProfile,
        counts: FeatureCounts,
        settings: &DriftSettings,
        ready: bool,
    ) -> FeatureDrift {
        let (stat, threshold) = settings.rule(reference.kind);
        let stats = if ready {
            statistics(reference, &counts)
        } else {
            None
        };
        let total = counts.total();
        let missing_shift = (ready && total > 0)
            .then(|| (counts.missing as f64 / total as f64 - reference.missing_share).abs());
        let drifted = missing_shift.map(|shift| {
            shift >= threshold
                || stats
                    .and_then(|s| s.get(stat))
                    .is_some_and(|v| v >= threshold)
        });
        FeatureDrift {
            name: reference.name.clone(),
            kind: reference.kind,
            stat,
            threshold,
            stats,
            drifted,
            missing_shift,
            counts,
            reference: reference.clone(),
        }
    }

    /// The deciding statistic's value.
    pub fn value(&self) -> Option<f64> {
        self.stats.and_then(|s| s.get(self.stat))
    }
}

/// The drift of one live version, over its window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionDrift {
    /// The version.
    pub version: u64,
    /// The slots it is loaded in.
    pub slots: Vec<String>,
    /// The configured window, in seconds.
    pub window_seconds: f64,
    /// How much of the window has been observed (less after a load or a
    /// restart: windows start empty).
    pub observed_seconds: f64,
    /// Rows counted in the window.
    pub rows: u64,
    /// Rows needed before statistics are reported.
    pub min_rows: u64,
    /// Whether statistics are reported.
    pub ready: bool,
    /// Why not, when they are withheld.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Share of the features that drifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drifted_share: Option<f64>,
    /// Whether the dataset as a whole drifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_drifted: Option<bool>,
    /// The settings in force.
    pub settings: DriftSettings,
    /// Per feature.
    pub features: Vec<FeatureDrift>,
    /// The predictions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<FeatureDrift>,
}

impl VersionDrift {
    /// Builds a report from counts: decides readiness, measures each
    /// feature, and sums up.
    pub fn measure(
        version: u64,
        settings: &DriftSettings,
        rows: u64,
        observed_seconds: f64,
        features: Vec<(&FeatureProfile, FeatureCounts)>,
        prediction: Option<(&FeatureProfile, FeatureCounts)>,
    ) -> VersionDrift {
        let window_seconds = settings.window_duration().as_secs_f64();
        let ready = rows >= settings.min_rows.max(1);
        let reason = (!ready).then(|| {
            format!(
                "too few rows: {rows} of the {} needed in the window ({observed_seconds:.0} s of {window_seconds:.0} s observed)",
                settings.min_rows.max(1)
            )
        });
        let features: Vec<FeatureDrift> = features
            .into_iter()
            .map(|(r, c)| FeatureDrift::measure(r, c, settings, ready))
            .collect();
        let prediction = prediction.map(|(r, c)| FeatureDrift::measure(r, c, settings, ready));
        let decided: Vec<bool> = features.iter().filter_map(|f| f.drifted).collect();
        let drifted_share = (ready && !decided.is_empty())
            .then(|| decided.iter().filter(|&&d| d).count() as f64 / decided.len() as f64);
        VersionDrift {
            version,
            slots: Vec::new(),
            window_seconds,
            observed_seconds,
            rows,
            min_rows: settings.min_rows,
            ready,
            reason,
            drifted_share,
            dataset_drifted: drifted_share.map(|s| s >= settings.drift_share),
            settings: settings.clone(),
            features,
            prediction,
        }
    }
}

impl VersionDrift {
    /// Adds up reports of the same version (from both slots of a gateway,
    /// or from every gateway of a fleet) and measures the sum again: the
    /// statistics of the whole, not an average of the parts. `None` for no
    /// reports.
    pub fn merged(reports: &[VersionDrift]) -> Option<VersionDrift> {
        let (first, rest) = reports.split_first()?;
        if rest.is_empty() {
            // Already measured: measuring the same counts again is waste on
            // every scrape.
            return Some(first.clone());
        }
        let mut features: Vec<FeatureCounts> =
            first.features.iter().map(|f| f.counts.clone()).collect();
        let mut prediction = first.prediction.as_ref().map(|p| p.counts.clone());
        let mut rows = first.rows;
        let mut observed = first.observed_seconds;
        let mut slots = first.slots.clone();
        for r in rest {
            rows += r.rows;
            observed = observed.max(r.observed_seconds);
            slots.extend(r.slots.iter().cloned());
            for (sum, f) in features.iter_mut().zip(&r.features) {
                sum.add(&f.counts);
            }
            if let (Some(sum), Some(p)) = (prediction.as_mut(), r.prediction.as_ref()) {
                sum.add(&p.counts);
            }
        }
        slots.sort();
        slots.dedup();
        let mut merged = VersionDrift::measure(
            first.version,
            &first.settings,
            rows,
            observed,
            first
                .features
                .iter()
                .map(|f| &f.reference)
                .zip(features)
                .collect(),
            first
                .prediction
                .as_ref()
                .map(|p| &p.reference)
                .zip(prediction),
        );
        merged.slots = slots;
        Some(merged)
    }
}

/// The gateway's answer to `GET /admin/models/{model}/drift`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    /// The model.
    pub model: String,
    /// Each loaded version that has a profile.
    pub versions: Vec<VersionDrift>,
    /// Loaded versions without a profile (not tracked).
    #[serde(default)]
    pub untracked: Vec<u64>,
}

#[cfg(test)]
mod tests;
