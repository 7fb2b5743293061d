//! Live drift end to end: a real gateway serving a version with a
//! reference profile, traffic like the training data and traffic with two
//! shifted features, the statistics read back from `/metrics` and the admin
//! API, a profile that does not fit refused at load, and a restart that
//! starts the window empty.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use serde_json::{Value, json};
use switchyard_api::Manifest;
use switchyard_api::drift::{DriftReport, statistics};
use switchyard_api::manifest::sha256_file;
use switchyard_api::profile::{FeatureProfile, Profile};

const FEATURES: usize = 20;
const SHIFTED: [usize; 2] = [0, 1];

/// Deterministic, roughly normal values: the sum of twelve uniforms.
struct Normal(u64);

impl Normal {
    fn uniform(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    fn next(&mut self) -> f64 {
        (0..12).map(|_| self.uniform()).sum::<f64>() - 6.0
    }

    fn rows(&mut self, n: usize, shift: f64) -> Vec<f32> {
        let mut data = Vec::with_capacity(n * FEATURES);
        for _ in 0..n {
            for f in 0..FEATURES {
                let v = self.next() + if SHIFTED.contains(&f) { shift } else { 0.0 };
                data.push(v as f32);
            }
        }
        data
    }
}

/// Adds `linear/<version>`: version 1's graph with a profile of the
/// reference rows, optionally spoiled by `spoil`.
fn add_profiled_version(models: &Path, version: u64, spoil: impl Fn(&mut Profile)) {
    let from = models.join("linear/1");
    let dir = models.join(format!("linear/{version}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(from.join("model.onnx"), dir.join("model.onnx")).unwrap();
    let mut manifest =
        Manifest::parse(&std::fs::read_to_string(from.join("model.toml")).unwrap()).unwrap();
    let names = manifest.inputs[0].features.clone();
    assert_eq!(names.len(), FEATURES);

    let reference = Normal(7).rows(5000, 0.0);
    let mut features = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let column: Vec<f64> = reference
            .iter()
            .skip(i)
            .step_by(FEATURES)
            .map(|&v| f64::from(v))
            .collect();
        let mut f = FeatureProfile::numeric(name, &column, 10).unwrap();
        f.input = Some("input".into());
        f.column = i;
        features.push(f);
    }
    let mut prediction = FeatureProfile::categorical("label", &[0.0, 1.0]).unwrap();
    prediction.output = Some("label".into());
    let mut profile = Profile {
        format: 1,
        rows: 5000,
        source: "the test's reference rows".into(),
        features,
        prediction: Some(prediction),
    };
    spoil(&mut profile);
    std::fs::write(
        dir.join("profile.json"),
        serde_json::to_vec_pretty(&profile).unwrap(),
    )
    .unwrap();

    manifest.version = version;
    manifest.profile = Some("profile.json".into());
    manifest.drift.window = "5m".into();
    manifest.drift.min_rows = 500;
    manifest.files.retain(|f, _| f == "model.onnx");
    for file in ["model.onnx", "profile.json"] {
        manifest
            .files
            .insert(file.into(), sha256_file(&dir.join(file)).unwrap());
    }
    std::fs::write(dir.join("model.toml"), toml::to_string(&manifest).unwrap()).unwrap();
}

async fn send(client: &reqwest::Client, base: &str, data: &[f32]) {
    for chunk in data.chunks(50 * FEATURES) {
        let body = json!({"inputs": [{
            "name": "input", "datatype": "FP32",
            "shape": [chunk.len() / FEATURES, FEATURES], "data": chunk
        }]});
        let r = client
            .post(format!("{base}/v2/models/linear/infer"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
}

async fn report(client: &reqwest::Client, admin: &str) -> DriftReport {
    let r = client
        .get(format!("{admin}/admin/models/linear/drift"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// The value of one sample of the exposition, if present.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn promote(client: &reqwest::Client, admin: &str, version: u64) -> reqwest::Response {
    client
        .put(format!("{admin}/admin/models/linear/slots/green"))
        .json(&json!({ "version": version }))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_measured_live_and_names_the_shifted_features() {
    let dir = tempfile::tempdir().unwrap();
    let models = common::copy_models(dir.path());
    let state = dir.path().join("state");
    let gw = gateway::server::start(&common::config(&models, Some(&state), &[]))
        .await
        .unwrap();
    // Added after the start, which serves the newest version in blue.
    add_profiled_version(&models, 7, |_| {});
    let (http, admin) = (common::http(&gw), common::admin(&gw));
    let client = reqwest::Client::new();
    let r = promote(&client, &admin, 7).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = client
        .put(format!("{admin}/admin/models/linear/weights"))
        .json(&json!({"blue": 0, "green": 100}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Too few rows: withheld, with the reason, never reported as zero drift.
    send(&client, &http, &Normal(11).rows(100, 0.0)).await;
    let early = report(&client, &admin).await;
    let v7 = early.versions.iter().find(|v| v.version == 7).unwrap();
    assert!(!v7.ready);
    assert!(v7.reason.as_deref().unwrap().contains("100 of the 500"));
    let text = common::scrape(&gw).await;
    let mv = [("model", "linear"), ("version", "7")];
    assert_eq!(sample(&text, "switchyard_drift_ready", &mv), Some(0.0));
    assert_eq!(
        sample(&text, "switchyard_drift_window_rows", &mv),
        Some(100.0)
    );
    assert_eq!(
        sample(
            &text,
            "switchyard_drift_feature_statistic",
            &[("version", "7")]
        ),
        None,
        "no statistic before min_rows"
    );

    // Like the training data: nothing drifts.
    send(&client, &http, &Normal(12).rows(900, 0.0)).await;
    let calm = report(&client, &admin).await;
    let v7 = calm.versions.iter().find(|v| v.version == 7).unwrap();
    assert!(v7.ready, "{:?}", v7.reason);
    assert_eq!(v7.rows, 1000);
    assert_eq!(v7.dataset_drifted, Some(false));
    let drifted: Vec<&str> = v7
        .features
        .iter()
        .filter(|f| f.drifted == Some(true))
        .map(|f| f.name.as_str())
        .collect();
    assert!(
        drifted.is_empty(),
        "drift on reference-like data: {drifted:?}"
    );

    // Two features shifted by 1.5 standard deviations: those two, no others.
    send(&client, &http, &Normal(13).rows(3000, 1.5)).await;
    let shifted = report(&client, &admin).await;
    let v7 = shifted.versions.iter().find(|v| v.version == 7).unwrap();
    let drifted: Vec<&str> = v7
        .features
        .iter()
        .filter(|f| f.drifted == Some(true))
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(drifted, ["f00", "f01"]);
    assert_eq!(v7.drifted_share, Some(0.1));
    assert_eq!(v7.dataset_drifted, Some(false), "2 of 20 is under half");
    let prediction = v7.prediction.as_ref().unwrap();
    assert_eq!(prediction.counts.total(), 4000, "every row's label");

    // /metrics carries the same figures the admin API computed, and each is
    // the offline computation from the reported bins.
    let text = common::scrape(&gw).await;
    for f in &v7.features {
        let offline = statistics(&f.reference, &f.counts).unwrap();
        for (stat, want) in [
            ("psi", offline.psi),
            ("jensenshannon", offline.jensenshannon),
            ("ks", offline.ks.unwrap()),
            ("wasserstein", offline.wasserstein.unwrap()),
        ] {
            let got = sample(
                &text,
                "switchyard_drift_feature_statistic",
                &[("version", "7"), ("feature", &f.name), ("stat", stat)],
            )
            .unwrap_or_else(|| panic!("{} {stat} missing", f.name));
            assert!(
                (got - want).abs() <= 1e-6,
                "{} {stat}: {got} vs {want}",
                f.name
            );
        }
        let flag = sample(
            &text,
            "switchyard_drift_feature_drifted",
            &[("version", "7"), ("feature", &f.name)],
        );
        assert_eq!(flag, Some(if f.drifted == Some(true) { 1.0 } else { 0.0 }));
    }
    assert_eq!(sample(&text, "switchyard_drift_ready", &mv), Some(1.0));
    assert_eq!(
        sample(&text, "switchyard_drift_drifted_features_ratio", &mv),
        Some(0.1)
    );
    assert!(text.contains(
        "switchyard_drift_prediction_statistic{model=\"linear\",version=\"7\",stat=\"psi\"}"
    ));

    // Absurd values land in their own bins; nothing panics, nothing turns
    // into NaN or infinity.
    let mut odd = Normal(14).rows(4, 0.0);
    odd[0] = 1e30;
    odd[FEATURES] = -1e30;
    let body = json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [4, FEATURES], "data": odd}]});
    let r = client
        .post(format!("{http}/v2/models/linear/infer"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let after = report(&client, &admin).await;
    let f00 = &after
        .versions
        .iter()
        .find(|v| v.version == 7)
        .unwrap()
        .features[0];
    assert!(
        f00.counts.above >= 1 && f00.counts.below >= 1,
        "{:?}",
        f00.counts
    );
    let stats = f00.stats.unwrap();
    assert!(stats.wasserstein.unwrap().is_finite() && stats.psi.is_finite());

    // A version without a profile is reported as untracked, never as zero
    // drift.
    let v1 = Manifest::parse(&std::fs::read_to_string(models.join("linear/1/model.toml")).unwrap())
        .unwrap();
    let v1_tracked = after.versions.iter().any(|v| v.version == 1);
    assert_eq!(v1_tracked, v1.profile.is_some());
    assert_eq!(after.untracked.contains(&1), v1.profile.is_none());
    gw.shutdown().await;

    // A restart keeps the routing (version 7 live) but the window starts
    // empty, and says so.
    let gw = gateway::server::start(&common::config(&models, Some(&state), &[]))
        .await
        .unwrap();
    let restarted = report(&client, &common::admin(&gw)).await;
    let v7 = restarted.versions.iter().find(|v| v.version == 7).unwrap();
    assert_eq!(v7.rows, 0);
    assert!(!v7.ready);
    assert!(v7.observed_seconds < 60.0);
    assert!(v7.reason.as_deref().unwrap().contains("0 of the 500"));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_that_does_not_fit_the_model_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let models = common::copy_models(dir.path());
    let gw = gateway::server::start(&common::config(&models, None, &[]))
        .await
        .unwrap();
    add_profiled_version(&models, 8, |p| p.features[3].name = "age".into());
    add_profiled_version(&models, 9, |p| p.features[0].shares[0] += 0.5);
    let admin = common::admin(&gw);
    let client = reqwest::Client::new();
    let before: Value = client
        .get(format!("{admin}/admin/models/linear"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (version, needle) in [
        (8, "feature \"age\": column 3 of input \"input\" is \"f03\""),
        (9, "\"f00\": shares and missing_share add up to"),
    ] {
        let r = promote(&client, &admin, version).await;
        assert_eq!(r.status(), 422, "version {version}");
        let body: Value = r.json().await.unwrap();
        let message = body["error"].as_str().unwrap();
        assert!(message.contains(needle), "{message}");
        assert!(
            message.contains("profile.json"),
            "names the file: {message}"
        );
    }
    let after: Value = client
        .get(format!("{admin}/admin/models/linear"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(before, after, "nothing serving was touched");
    gw.shutdown().await;
}
