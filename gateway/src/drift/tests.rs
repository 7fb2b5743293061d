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
fn requests_of_any_size_count_like_one_value_at_a_time() {
    // Many-row requests are tallied on the stack first, one-row requests
    // count straight in; few edges are compared one by one, many are
    // searched: every way must agree with the offline binning, edges,
    // out-of-range sums and missing values included. Edges an FP32 value
    // can sit on exactly: 10 bins, then 100.
    let few = vec![0.0, 1.0, 2.5, 3.0, 4.25, 5.0, 6.5, 7.0, 8.75, 9.0, 10.0];
    let many: Vec<f64> = (0..=100).map(|i| f64::from(i) / 8.0).collect();
    for edges in [few, many] {
        let (manifest, mut profile) = setup();
        let x = &mut profile.features[0];
        x.shares = vec![1.0 / (edges.len() - 1) as f64; edges.len() - 1];
        x.edges.clone_from(&edges);
        assert!(profile.validate().is_empty(), "{:?}", profile.validate());
        count_random_requests(&manifest, profile, &edges);
    }
}

fn count_random_requests(manifest: &Manifest, profile: Profile, edges: &[f64]) {
    let tracker = DriftTracker::new(profile, manifest);
    let now = Instant::now();
    let (lo, hi) = (edges[0], edges[edges.len() - 1]);
    let mut seed = 0x9e37_79b9_u32;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    let mut live = Vec::new();
    for rows_in_request in [1usize, 2, 3, 64, 1, 100, 7, 64, 500] {
        let request: Vec<(f32, f32)> = (0..rows_in_request)
            .map(|_| {
                let r = next();
                #[allow(clippy::cast_possible_truncation)] // FP32-exact by construction
                let x = match r % 23 {
                    0 => f32::NAN,
                    1..=6 => edges[(r >> 8) as usize % edges.len()] as f32,
                    _ => {
                        let span = 1.6 * (hi - lo);
                        (lo - 0.3 * (hi - lo) + span * f64::from(r >> 8) / f64::from(1u32 << 24))
                            as f32
                    }
                };
                let colour = if r % 17 == 0 {
                    f32::NAN
                } else {
                    ((r >> 8) % 4) as f32
                };
                (x, colour)
            })
            .collect();
        tracker.record_inputs(&rows(&request), request.len(), now);
        live.extend(request);
    }
    let report = tracker.report(1, now);
    assert_eq!(report.rows, live.len() as u64);
    let xs: Vec<f64> = live.iter().map(|&(a, _)| f64::from(a)).collect();
    let cs: Vec<f64> = live.iter().map(|&(_, b)| f64::from(b)).collect();
    for (feature, values) in report.features.iter().zip([&xs, &cs]) {
        let expected = expected_counts(&feature.reference, values);
        let got = &feature.counts;
        assert_eq!(got.bins, expected.bins, "{}", feature.name);
        assert_eq!(
            (got.below, got.above, got.unseen, got.missing),
            (
                expected.below,
                expected.above,
                expected.unseen,
                expected.missing
            ),
            "{}",
            feature.name
        );
        // Sums are added per request, so their rounding may differ.
        assert!((got.below_sum - expected.below_sum).abs() < 1e-6, "{got:?}");
        assert!((got.above_sum - expected.above_sum).abs() < 1e-6, "{got:?}");
    }
    let x = &report.features[0].counts;
    assert!(x.below > 0 && x.above > 0 && x.missing > 0, "{x:?}");
    assert!(x.bins.iter().all(|&n| n > 0), "{x:?}");
    assert!(xs.contains(&hi) && xs.contains(&edges[1]));
    assert!(report.features[1].counts.unseen > 0);
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
