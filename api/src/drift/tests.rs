use super::*;
use crate::profile::FeatureProfile;

fn uniform_reference(bins: usize) -> FeatureProfile {
    // Uniform on [0, 1]: equal bins, std 1/√12.
    let values: Vec<f64> = (0..=10_000).map(|i| f64::from(i) / 10_000.0).collect();
    FeatureProfile::numeric("x", &values, bins).expect("values")
}

fn counts_of(reference: &FeatureProfile, values: &[f64]) -> FeatureCounts {
    let mut c = FeatureCounts {
        bins: vec![0; reference.shares.len()],
        ..FeatureCounts::default()
    };
    for &v in values {
        if v.is_nan() {
            c.missing += 1;
        } else if v < reference.edges[0] {
            c.below += 1;
            c.below_sum += v;
        } else if v > reference.edges[reference.edges.len() - 1] {
            c.above += 1;
            c.above_sum += v;
        } else {
            let bin = crate::profile::numeric_bin(&reference.edges, v).expect("inside");
            c.bins[bin] += 1;
        }
    }
    c
}

#[test]
fn the_same_distribution_has_no_drift() {
    let reference = uniform_reference(10);
    let live: Vec<f64> = (0..=10_000).map(|i| f64::from(i) / 10_000.0).collect();
    let stats = statistics(&reference, &counts_of(&reference, &live)).expect("counted");
    assert!(stats.psi.abs() < 1e-9, "{stats:?}");
    assert!(stats.jensenshannon < 1e-6, "{stats:?}");
    assert!(stats.ks.expect("numeric") < 1e-9, "{stats:?}");
    assert!(stats.wasserstein.expect("numeric") < 1e-6, "{stats:?}");
}

#[test]
fn a_shifted_uniform_matches_the_exact_distances() {
    // U[0,1] against U[0.5,1.5]: W1 is exactly 0.5 and KS exactly 0.5; the
    // bins reproduce both because the mass is uniform inside each bin.
    let reference = uniform_reference(10);
    let live: Vec<f64> = (0..10_000)
        .map(|i| 0.5 + (f64::from(i) + 0.5) / 10_000.0)
        .collect();
    let stats = statistics(&reference, &counts_of(&reference, &live)).expect("counted");
    let std = reference.std.expect("numeric");
    assert!((stats.ks.expect("ks") - 0.5).abs() < 1e-3, "{stats:?}");
    let w = stats.wasserstein.expect("w") * std;
    assert!((w - 0.5).abs() < 1e-3, "W1 {w}");
    // PSI by hand: five bins at 0 (floored), five at 0.1, above at 0.5.
    let floor = PSI_FLOOR;
    let expected_psi =
        5.0 * (floor - 0.1) * (floor / 0.1f64).ln() + (0.5 - floor) * (0.5 / floor).ln();
    assert!(
        (stats.psi - expected_psi).abs() < 1e-3,
        "{} vs {expected_psi}",
        stats.psi
    );
}

#[test]
fn jensen_shannon_of_disjoint_distributions_is_its_maximum() {
    let reference = FeatureProfile::categorical("c", &[0.0, 0.0]).expect("values");
    let counts = FeatureCounts {
        bins: vec![0],
        unseen: 10,
        ..FeatureCounts::default()
    };
    let stats = statistics(&reference, &counts).expect("counted");
    assert!((stats.jensenshannon - 2f64.ln().sqrt()).abs() < 1e-12);
    assert_eq!(stats.ks, None);
    assert_eq!(stats.wasserstein, None);
}

#[test]
fn nan_and_far_values_stay_finite() {
    let reference = uniform_reference(4);
    let live = [f64::NAN, f64::NAN, 1e300, -1e300, 0.5];
    let stats = statistics(&reference, &counts_of(&reference, &live)).expect("counted");
    assert!(stats.psi.is_finite() && stats.jensenshannon.is_finite());
    assert!(stats.ks.expect("ks").is_finite());
    assert!(stats.wasserstein.expect("w").is_finite());
    let all_nan = counts_of(&reference, &[f64::NAN; 3]);
    let stats = statistics(&reference, &all_nan).expect("counted");
    assert_eq!(stats.ks, None, "no present values, no KS");
    assert!(stats.psi > 1.0, "all missing is drift: {stats:?}");
}

#[test]
fn too_few_rows_withholds_statistics_with_a_reason() {
    let reference = uniform_reference(4);
    let settings = DriftSettings {
        min_rows: 100,
        ..DriftSettings::default()
    };
    let counts = counts_of(&reference, &[0.1, 0.2]);
    let report = VersionDrift::measure(3, &settings, 2, 12.0, vec![(&reference, counts)], None);
    assert!(!report.ready);
    assert_eq!(report.drifted_share, None);
    assert!(report.features[0].stats.is_none());
    let reason = report.reason.expect("a reason");
    assert!(reason.contains("2 of the 100"), "{reason}");
}

#[test]
fn the_dataset_drifts_when_half_the_features_do() {
    let reference = uniform_reference(10);
    let same: Vec<f64> = (0..1000).map(|i| (f64::from(i) + 0.5) / 1000.0).collect();
    let shifted: Vec<f64> = same.iter().map(|v| v + 0.3).collect();
    let settings = DriftSettings {
        min_rows: 10,
        ..DriftSettings::default()
    };
    let report = VersionDrift::measure(
        1,
        &settings,
        1000,
        60.0,
        vec![
            (&reference, counts_of(&reference, &same)),
            (&reference, counts_of(&reference, &shifted)),
        ],
        None,
    );
    assert_eq!(report.features[0].drifted, Some(false));
    assert_eq!(report.features[1].drifted, Some(true));
    assert_eq!(report.drifted_share, Some(0.5));
    assert_eq!(report.dataset_drifted, Some(true));
}

#[test]
fn settings_are_validated() {
    let bad = DriftSettings {
        window: "0s".to_owned(),
        buckets: 0,
        categorical_stat: Stat::Ks,
        numeric_threshold: -1.0,
        drift_share: 1.5,
        ..DriftSettings::default()
    };
    let problems = bad.validate().join("\n");
    for needle in [
        "drift.window",
        "drift.buckets",
        "drift.categorical_stat",
        "drift.numeric_threshold",
        "drift.drift_share",
    ] {
        assert!(
            problems.contains(needle),
            "{needle} missing from {problems}"
        );
    }
    assert!(DriftSettings::default().validate().is_empty());
}

#[test]
fn counts_of_a_fleet_add_up() {
    let mut a = FeatureCounts {
        bins: vec![1, 2],
        below: 1,
        below_sum: -3.0,
        ..FeatureCounts::default()
    };
    let b = FeatureCounts {
        bins: vec![3, 4],
        missing: 2,
        ..FeatureCounts::default()
    };
    a.add(&b);
    assert_eq!(a.bins, vec![4, 6]);
    assert_eq!((a.below, a.missing, a.total()), (1, 2, 13));
}

#[test]
fn a_feature_gone_missing_drifts_whatever_its_statistic() {
    let reference = uniform_reference(10);
    let settings = DriftSettings {
        min_rows: 10,
        ..DriftSettings::default()
    };
    // All missing: no Wasserstein at all, still drifted.
    let gone = counts_of(&reference, &[f64::NAN; 100]);
    let f = FeatureDrift::measure(&reference, gone, &settings, true);
    assert_eq!(f.value(), None);
    assert_eq!(f.missing_shift, Some(1.0));
    assert_eq!(f.drifted, Some(true));
    // A fifth missing, the rest like the reference: Wasserstein is small,
    // the missing share moved 0.2.
    let mut values: Vec<f64> = (0..80).map(|i| (f64::from(i) + 0.5) / 80.0).collect();
    values.extend([f64::NAN; 20]);
    let f = FeatureDrift::measure(&reference, counts_of(&reference, &values), &settings, true);
    assert!(f.value().expect("present values") < 0.1, "{:?}", f.stats);
    assert_eq!(f.drifted, Some(true));
    // A few missing stay under the threshold.
    let mut values: Vec<f64> = (0..97).map(|i| (f64::from(i) + 0.5) / 97.0).collect();
    values.extend([f64::NAN; 3]);
    let f = FeatureDrift::measure(&reference, counts_of(&reference, &values), &settings, true);
    assert_eq!(f.drifted, Some(false));
}
