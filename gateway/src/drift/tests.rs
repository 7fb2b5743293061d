use std::time::{Duration, Instant};

use switchyard_api::drift::statistics;
use switchyard_api::profile::numeric_bin;

use super::*;

const MANIFEST: &str = r#"
name = "m"
version = 1
profile = "profile.json"
[[inputs]]
name = "input"
datatype = "FP32"
shape = [-1, 2]
features = ["x", "colour"]
[[outputs]]
name = "label"
datatype = "INT64"
shape = [-1]
[drift]
window = "10s"
buckets = 10
min_rows = 4
[files]
"model.onnx" = "0000000000000000000000000000000000000000000000000000000000000000"
"profile.json" = "0000000000000000000000000000000000000000000000000000000000000000"
"#;

fn setup() -> (Manifest, Profile) {
    let manifest = Manifest::parse(MANIFEST).expect("manifest");
    let train: Vec<f64> = (0..1000).map(|i| f64::from(i) / 100.0).collect();
    let mut x = FeatureProfile::numeric("x", &train, 10).expect("x");
    x.input = Some("input".into());
    let mut colour = FeatureProfile::categorical("colour", &[0.0, 1.0, 1.0, 2.0]).expect("c");
    colour.input = Some("input".into());
    colour.column = 1;
    let mut label = FeatureProfile::categorical("label", &[0.0, 1.0]).expect("label");
    label.output = Some("label".into());
    let profile = Profile {
        format: 1,
        rows: 1000,
        source: String::new(),
        features: vec![x, colour],
        prediction: Some(label),
    };
    assert!(profile.validate().is_empty(), "{:?}", profile.validate());
    assert!(profile.check_against(&manifest).is_empty());
    (manifest, profile)
}

fn rows(values: &[(f32, f32)]) -> Vec<Tensor> {
    vec![Tensor {
        name: "input".into(),
        shape: vec![values.len(), 2],
        data: TensorData::F32(values.iter().flat_map(|&(a, b)| [a, b]).collect()),
    }]
}

fn expected_counts(profile: &FeatureProfile, values: &[f64]) -> FeatureCounts {
    let mut c = FeatureCounts {
        bins: vec![0; profile.shares.len()],
        ..FeatureCounts::default()
    };
    for &v in values {
        match profile.kind {
            FeatureKind::Numeric => {
                let (lo, hi) = (profile.edges[0], profile.edges[profile.edges.len() - 1]);
                let far = FAR_RANGES * (hi - lo);
                if v.is_nan() {
                    c.missing += 1;
                } else if v < lo {
                    c.below += 1;
                    c.below_sum += v.max(lo - far);
                } else if v > hi {
                    c.above += 1;
                    c.above_sum += v.min(hi + far);
                } else {
                    c.bins[numeric_bin(&profile.edges, v).expect("in range")] += 1;
                }
            }
            FeatureKind::Categorical => {
                if v.is_nan() {
                    c.missing += 1;
                } else if let Some(i) = profile.values.iter().position(|&x| x == v) {
                    c.bins[i] += 1;
                } else {
                    c.unseen += 1;
                }
            }
        }
    }
    c
}

#[test]
fn counts_and_statistics_match_an_offline_computation() {
    let (manifest, profile) = setup();
    let tracker = DriftTracker::new(profile.clone(), &manifest);
    let now = Instant::now();
    let live = [
        (0.5, 1.0),
        (3.0, 1.0),
        (9.99, 2.0),
        (f32::NAN, 0.0),
        (-4.0, 7.0),
        (f32::INFINITY, f32::NAN),
        (12.0, 1.0),
    ];
    tracker.record_inputs(&rows(&live[..3]), 3, now);
    tracker.record_inputs(&rows(&live[3..]), 4, now);
    let report = tracker.report(1, now);
    assert!(report.ready, "{report:?}");
    assert_eq!(report.rows, 7);
    let xs: Vec<f64> = live.iter().map(|&(a, _)| f64::from(a)).collect();
    let cs: Vec<f64> = live.iter().map(|&(_, b)| f64::from(b)).collect();
    for (feature, values) in report.features.iter().zip([&xs, &cs]) {
        let reference = &feature.reference;
        let expected = expected_counts(reference, values);
        assert_eq!(feature.counts, expected, "{}", feature.name);
        let offline = statistics(reference, &expected).expect("counted");
        let live = feature.stats.expect("ready");
        assert!((live.psi - offline.psi).abs() < 1e-12);
        assert!((live.jensenshannon - offline.jensenshannon).abs() < 1e-12);
        assert_eq!(live.ks, offline.ks);
        assert_eq!(live.wasserstein, offline.wasserstein);
        assert!(live.psi.is_finite() && live.jensenshannon.is_finite());
        assert!(live.wasserstein.is_none_or(f64::is_finite), "{live:?}");
    }
    assert_eq!(report.features[1].counts.unseen, 1, "7 was never seen");
    assert_eq!(report.features[1].counts.missing, 1);
    assert_eq!(report.features[0].counts.missing, 1);
}

#[test]
fn predictions_are_counted() {
    let (manifest, profile) = setup();
    let tracker = DriftTracker::new(profile, &manifest);
    let now = Instant::now();
    let label = Tensor {
        name: "label".into(),
        shape: vec![3],
        data: TensorData::I64(vec![1, 1, 5]),
    };
    tracker.record_outputs(&[label], 3, now);
    let report = tracker.report(1, now);
    let prediction = report.prediction.expect("profiled");
    assert_eq!(prediction.counts.bins, vec![0, 2]);
    assert_eq!(prediction.counts.unseen, 1);
}

#[test]
fn the_window_slides_and_old_buckets_leave_it() {
    let (manifest, profile) = setup();
    let tracker = DriftTracker::new(profile, &manifest);
    let start = Instant::now();
    let at = |s: f64| start + Duration::from_secs_f64(s);
    tracker.record_inputs(&rows(&[(1.0, 1.0); 3]), 3, at(0.5));
    tracker.record_inputs(&rows(&[(2.0, 1.0); 2]), 2, at(5.5));
    assert_eq!(tracker.report(1, at(6.0)).rows, 5);
    // 10 s window in 1 s buckets: at 10.7 s the bucket of 0.5 s has left.
    assert_eq!(tracker.report(1, at(10.7)).rows, 2);
    // A write a full window later reuses the first bucket, zeroed first.
    tracker.record_inputs(&rows(&[(3.0, 1.0); 1]), 1, at(20.2));
    let report = tracker.report(1, at(20.3));
    assert_eq!(report.rows, 1);
    assert_eq!(report.features[0].counts.total(), 1);
    assert!(!report.ready, "1 row is under min_rows");
    assert!(report.reason.expect("reason").contains("1 of the 4"));
}

#[test]
fn a_new_window_starts_empty_and_says_so() {
    let (manifest, profile) = setup();
    let tracker = DriftTracker::new(profile, &manifest);
    let report = tracker.report(1, Instant::now());
    assert_eq!(report.rows, 0);
    assert!(!report.ready);
    assert!(report.features.iter().all(|f| f.stats.is_none()));
    let reason = report.reason.expect("reason");
    assert!(reason.contains("0 of the 4"), "{reason}");
}

#[test]
fn concurrent_writers_lose_no_counts() {
    let (manifest, profile) = setup();
    let tracker = std::sync::Arc::new(DriftTracker::new(profile, &manifest));
    let now = Instant::now();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let t = tracker.clone();
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    t.record_inputs(&rows(&[(1.0, 1.0), (5.0, 2.0)]), 2, now);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer");
    }
    let report = tracker.report(1, now);
    assert_eq!(report.rows, 8000);
    assert_eq!(report.features[0].counts.total(), 8000);
    assert_eq!(report.features[1].counts.bins, vec![0, 4000, 4000]);
}

#[test]
fn a_profile_that_does_not_fit_names_the_feature() {
    let (manifest, mut profile) = setup();
    profile.features[1].name = "color".into();
    profile.features[0].column = 5;
    let problems = profile.check_against(&manifest).join("; ");
    assert!(
        problems.contains("\"color\"") && problems.contains("\"colour\""),
        "{problems}"
    );
    assert!(problems.contains("column 5 is outside"), "{problems}");
    profile.features[0].input = Some("pixels".into());
    let problems = profile.check_against(&manifest).join("; ");
    assert!(problems.contains("no input \"pixels\""), "{problems}");
}
