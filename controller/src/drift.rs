//! `controller drift <model>`: the live drift of a model across the fleet.
//!
//! Each gateway reports its window's bin counts (`GET
//! /admin/models/{model}/drift`); the counts of the same version are added
//! up and measured again, so the figures are those of the fleet's traffic
//! as a whole, not an average of per-gateway statistics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use switchyard_api::drift::{DriftReport, FeatureDrift, VersionDrift};
use switchyard_api::profile::FeatureKind;

/// Why the fleet's drift could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    /// A gateway did not answer, or answered with an error.
    #[error("gateway {gateway}: {message}")]
    Gateway {
        /// Its admin URL.
        gateway: String,
        /// What happened.
        message: String,
    },
    /// No gateway to ask.
    #[error("no gateways configured: set SWITCHYARD_GATEWAYS or --gateways")]
    Empty,
}

/// Reads every gateway's drift report of `model` and merges them.
///
/// # Errors
/// [`DriftError`] naming the first gateway that failed (an unknown model
/// answers 404, named in the message).
pub async fn fleet_drift(
    client: &reqwest::Client,
    admins: &[String],
    token: Option<&str>,
    model: &str,
    timeout: Duration,
) -> Result<DriftReport, DriftError> {
    if admins.is_empty() {
        return Err(DriftError::Empty);
    }
    let mut reports = Vec::with_capacity(admins.len());
    for admin in admins {
        let admin = admin.trim_end_matches('/');
        let fail = |message: String| DriftError::Gateway {
            gateway: admin.to_owned(),
            message,
        };
        let mut request = client
            .get(format!("{admin}/admin/models/{model}/drift"))
            .timeout(timeout);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let response = request.send().await.map_err(|e| fail(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or(body);
            return Err(fail(format!("{status}: {message}")));
        }
        let report: DriftReport = response
            .json()
            .await
            .map_err(|e| fail(format!("not a drift report: {e}")))?;
        reports.push(report);
    }
    Ok(merge(model, &reports))
}

/// Adds up the reports of several gateways, version by version.
pub fn merge(model: &str, reports: &[DriftReport]) -> DriftReport {
    let mut by_version: BTreeMap<u64, Vec<VersionDrift>> = BTreeMap::new();
    let mut untracked = Vec::new();
    for r in reports {
        for v in &r.versions {
            by_version.entry(v.version).or_default().push(v.clone());
        }
        untracked.extend(&r.untracked);
    }
    untracked.sort_unstable();
    untracked.dedup();
    DriftReport {
        model: model.to_owned(),
        versions: by_version
            .values()
            .filter_map(|v| VersionDrift::merged(v))
            .collect(),
        untracked,
    }
}

/// The report as a table for people.
pub fn table(report: &DriftReport) -> String {
    let mut out = String::new();
    if report.versions.is_empty() {
        let _ = writeln!(
            out,
            "{}: no loaded version has a reference profile, so no drift is measured",
            report.model
        );
    }
    for v in &report.versions {
        let verdict = match (v.drifted_share, v.dataset_drifted) {
            (Some(share), Some(d)) => format!(
                "{} of {} features drifted ({share:.2}; the dataset drifts at {:.2}){}",
                v.features
                    .iter()
                    .filter(|f| f.drifted == Some(true))
                    .count(),
                v.features.len(),
                v.settings.drift_share,
                if d { " — DATASET DRIFTED" } else { "" }
            ),
            _ => format!(
                "statistics withheld: {}",
                v.reason.as_deref().unwrap_or("window not ready")
            ),
        };
        let _ = writeln!(
            out,
            "{} version {} ({}) — window {:.0} s, {:.0} s observed, {} rows — {verdict}",
            report.model,
            v.version,
            v.slots.join(", "),
            v.window_seconds,
            v.observed_seconds,
            v.rows
        );
        let _ = writeln!(
            out,
            "  {:<24} {:<11} {:<13} {:>8} {:>9}  {:<7} {:>8} {:>8} {:>8} {:>8}  outside profile",
            "feature",
            "kind",
            "decides",
            "value",
            "threshold",
            "drifted",
            "psi",
            "js",
            "ks",
            "wass."
        );
        for f in v.features.iter().chain(v.prediction.as_ref()) {
            row(
                &mut out,
                f,
                v.prediction.as_ref().is_some_and(|p| std::ptr::eq(p, f)),
            );
        }
    }
    if !report.untracked.is_empty() {
        let versions: Vec<String> = report.untracked.iter().map(u64::to_string).collect();
        let _ = writeln!(
            out,
            "untracked (no profile): version {}",
            versions.join(", ")
        );
    }
    out
}

fn row(out: &mut String, f: &FeatureDrift, is_prediction: bool) {
    let num = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |x| format!("{x:.4}"));
    let stats = f.stats;
    let c = &f.counts;
    let outside = match f.kind {
        FeatureKind::Numeric => {
            format!("below {} above {} missing {}", c.below, c.above, c.missing)
        }
        FeatureKind::Categorical => format!("unseen {} missing {}", c.unseen, c.missing),
    };
    let name = if is_prediction {
        format!("(prediction) {}", f.name)
    } else {
        f.name.clone()
    };
    let kind = match f.kind {
        FeatureKind::Numeric => "numeric",
        FeatureKind::Categorical => "categorical",
    };
    let drifted = match f.drifted {
        Some(true) => "YES",
        Some(false) => "no",
        None => "-",
    };
    let _ = writeln!(
        out,
        "  {name:<24} {kind:<11} {:<13} {:>8} {:>9}  {drifted:<7} {:>8} {:>8} {:>8} {:>8}  {outside}",
        f.stat.as_str(),
        num(f.value()),
        f.threshold,
        num(stats.map(|s| s.psi)),
        num(stats.map(|s| s.jensenshannon)),
        num(stats.and_then(|s| s.ks)),
        num(stats.and_then(|s| s.wasserstein)),
    );
}
