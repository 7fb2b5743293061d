//! Drift across a fleet: two real gateways serving the dropout example,
//! traffic drawn from its reference profile and then with two features
//! shifted; `controller drift` adds the windows up and names the shifted
//! features, and the drift gate of a promote fails (or is inconclusive)
//! exactly when it should.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use controller::fleet::LocalFleet;
use controller::journal::Strategy;
use controller::rollout::{ControlError, Controller, Paths, PromoteOptions};
use controller::suite::Thresholds;
use gateway::server::Gateway;
use serde_json::{Value, json};
use switchyard_api::drift::DriftReport;
use switchyard_api::profile::{FeatureKind, FeatureProfile, Profile};

use common::{copy, gateway_with, root};

const SHIFTED: [&str; 2] = ["admission_grade", "grade_1st_sem"];

/// A tiny deterministic generator.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An index drawn with the given shares.
    fn pick(&mut self, shares: &[f64]) -> usize {
        let mut u = self.unit() * shares.iter().sum::<f64>();
        for (i, s) in shares.iter().enumerate() {
            if u < *s {
                return i;
            }
            u -= s;
        }
        shares.len() - 1
    }
}

/// Rows drawn from the profile's own bins (uniform inside a bin), with the
/// `shift`ed features moved up by one reference standard deviation.
fn rows(profile: &Profile, n: usize, seed: u64, shift: &[&str]) -> Vec<f32> {
    let mut rng = Rng(seed);
    let mut data = Vec::with_capacity(n * profile.features.len());
    for _ in 0..n {
        for f in &profile.features {
            let v = draw(f, &mut rng)
                + if shift.contains(&f.name.as_str()) {
                    f.std.unwrap()
                } else {
                    0.0
                };
            data.push(v as f32);
        }
    }
    data
}

fn draw(f: &FeatureProfile, rng: &mut Rng) -> f64 {
    let i = rng.pick(&f.shares);
    match f.kind {
        FeatureKind::Categorical => f.values[i],
        FeatureKind::Numeric => f.edges[i] + rng.unit() * (f.edges[i + 1] - f.edges[i]),
    }
}

async fn send(client: &reqwest::Client, gateways: &[Gateway], data: &[f32], width: usize) {
    for (k, chunk) in data.chunks(40 * width).enumerate() {
        let g = &gateways[k % gateways.len()];
        let body = json!({"inputs": [{"name": "input", "datatype": "FP32",
            "shape": [chunk.len() / width, width], "data": chunk}]});
        let r = client
            .post(format!("http://{}/v2/models/dropout/infer", g.addrs.http))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
}

fn controller_drift(admins: &[String]) -> (Value, String) {
    let run = |json: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_controller"));
        if json {
            cmd.arg("--json");
        }
        let out = cmd
            .args(["drift", "dropout"])
            .env("SWITCHYARD_GATEWAYS", admins.join(","))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    (serde_json::from_str(&run(true)).unwrap(), run(false))
}

struct World {
    _dir: tempfile::TempDir,
    models: std::path::PathBuf,
    suites: std::path::PathBuf,
    state: std::path::PathBuf,
    gateways: Vec<Gateway>,
    profile: Profile,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let suites = dir.path().join("smoke-tests");
    copy(&root().join("models/dropout"), &models.join("dropout"));
    copy(&root().join("smoke-tests"), &suites);
    // A window that is ready after a few hundred rows, for a quick test.
    for v in ["1", "2"] {
        let path = models.join("dropout").join(v).join("model.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("min_rows = 200", "min_rows = 300")).unwrap();
    }
    let profile: Profile =
        serde_json::from_slice(&std::fs::read(models.join("dropout/1/profile.json")).unwrap())
            .unwrap();
    let mut gateways = Vec::new();
    for _ in 0..2 {
        gateways.push(gateway_with(&models, &["--pinned-versions=dropout=1"]).await);
    }
    World {
        state: dir.path().join("state"),
        _dir: dir,
        models,
        suites,
        gateways,
        profile,
    }
}

fn admins(w: &World) -> Vec<String> {
    w.gateways
        .iter()
        .map(|g| format!("http://{}", g.addrs.admin))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_drift_adds_up_the_fleet_and_names_the_shifted_features() {
    let w = world().await;
    let client = reqwest::Client::new();
    let width = w.profile.features.len();
    let admins = admins(&w);

    send(&client, &w.gateways, &rows(&w.profile, 200, 1, &[]), width).await;
    let (report, text) = controller_drift(&admins);
    let v1 = &report["versions"][0];
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["rows"], 200, "both gateways' windows added up");
    assert_eq!(v1["ready"], false);
    assert!(
        text.contains("statistics withheld: too few rows: 200 of the 300"),
        "{text}"
    );

    send(&client, &w.gateways, &rows(&w.profile, 800, 2, &[]), width).await;
    let (report, _) = controller_drift(&admins);
    let calm: DriftReport = serde_json::from_value(report).unwrap();
    let v1 = &calm.versions[0];
    assert!(v1.ready);
    assert_eq!(v1.dataset_drifted, Some(false));
    let drifted: Vec<&str> = v1
        .features
        .iter()
        .filter(|f| f.drifted == Some(true))
        .map(|f| f.name.as_str())
        .collect();
    assert!(
        drifted.is_empty(),
        "drawn from the profile itself: {drifted:?}"
    );

    send(
        &client,
        &w.gateways,
        &rows(&w.profile, 3000, 3, &SHIFTED),
        width,
    )
    .await;
    let (report, text) = controller_drift(&admins);
    let shifted: DriftReport = serde_json::from_value(report).unwrap();
    let v1 = &shifted.versions[0];
    assert_eq!(v1.rows, 4000);
    let drifted: Vec<&str> = v1
        .features
        .iter()
        .filter(|f| f.drifted == Some(true))
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(drifted, SHIFTED);
    // The fleet's figure is the statistic of the summed counts.
    let f = v1.features.iter().find(|f| f.name == SHIFTED[0]).unwrap();
    let recomputed = switchyard_api::drift::statistics(&f.reference, &f.counts).unwrap();
    assert_eq!(f.stats, Some(recomputed));
    for name in SHIFTED {
        let line = text.lines().find(|l| l.contains(name)).unwrap();
        assert!(line.contains("YES"), "{line}");
    }
    assert!(text.contains("2 of 12 features drifted"), "{text}");
    for g in w.gateways {
        g.shutdown().await;
    }
}

fn options(max_drift_share: f64) -> PromoteOptions {
    PromoteOptions {
        version: Some(2),
        strategy: Strategy::Canary,
        steps: vec![50, 100],
        bake: Duration::from_millis(1500),
        shadow_percent: 100,
        thresholds: Thresholds {
            min_requests: 5,
            // These tests are about the drift gate; a debug build on a busy
            // 2-core machine must not fail them on latency.
            max_p99_ms: 10_000.0,
            max_drift_share: Some(max_drift_share),
            ..Thresholds::default()
        },
        resume: false,
        queries: vec![],
    }
}

/// Sends rows until `stop`, so green's window fills while it bakes.
fn traffic(
    w: &World,
    shift: &[&str],
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::watch::Sender<bool>,
) {
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let urls: Vec<String> = w
        .gateways
        .iter()
        .map(|g| format!("http://{}/v2/models/dropout/infer", g.addrs.http))
        .collect();
    let width = w.profile.features.len();
    let data = rows(&w.profile, 4000, 9, shift);
    let handle = tokio::spawn(async move {
        let client = reqwest::Client::new();
        for (k, chunk) in data.chunks(20 * width).cycle().enumerate() {
            if *rx.borrow_and_update() {
                break;
            }
            let body = json!({"inputs": [{"name": "input", "datatype": "FP32",
                "shape": [chunk.len() / width, width], "data": chunk}]});
            let r = client
                .post(&urls[k % urls.len()])
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    (handle, tx)
}

async fn promote(w: &World, max_drift_share: f64) -> Result<(), ControlError> {
    let fleet = LocalFleet::connect(
        &admins(w),
        None,
        Duration::from_secs(5),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let paths = Paths {
        models: w.models.clone(),
        suites: w.suites.clone(),
        state: w.state.clone(),
    };
    let controller = Controller::new(&fleet, paths, |l| eprintln!("{l}"));
    controller
        .promote("dropout", &options(max_drift_share))
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drift_gate_stops_a_version_whose_traffic_has_drifted() {
    let w = world().await;

    // Every numeric feature shifted: 8 of 12, a share of 0.67, over 0.5.
    // (Green sees a few hundred rows per gateway in its bake, where noise
    // may flag a feature or two: the gate is set well apart from both.)
    let numeric: Vec<&str> = w
        .profile
        .features
        .iter()
        .filter(|f| f.kind == FeatureKind::Numeric)
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(numeric.len(), 8);
    let (load, stop) = traffic(&w, &numeric);
    let err = promote(&w, 0.5).await.unwrap_err();
    let _ = stop.send(true);
    load.await.unwrap();
    let ControlError::RolledBack(reason) = &err else {
        panic!("expected a rollback, got {err}");
    };
    assert!(reason.contains("check drift_share failed"), "{reason}");
    assert!(
        reason.contains("of the features drifted on the worst gateway (max 0.5)"),
        "{reason}"
    );

    // Calm traffic passes the same gate, and v2 is promoted. Unloading
    // green first gives v2 a fresh window (loading a loaded version again
    // is a no-op that would keep the drifted rows).
    let client = reqwest::Client::new();
    for admin in admins(&w) {
        let r = client
            .delete(format!("{admin}/admin/models/dropout/slots/green"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
    let (load, stop) = traffic(&w, &[]);
    let result = promote(&w, 0.5).await;
    let _ = stop.send(true);
    load.await.unwrap();
    result.unwrap();
    for g in w.gateways {
        g.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drift_gate_without_data_is_inconclusive_never_a_pass() {
    let w = world().await;
    // No traffic at all: green's window stays empty.
    let err = promote(&w, 0.5).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ControlError::RolledBack(_)), "{text}");
    assert!(text.contains("inconclusive"), "{text}");

    // A version without a profile: inconclusive too, and says why. (Green
    // is unloaded first, so v2 is read again.)
    let client = reqwest::Client::new();
    for admin in admins(&w) {
        let r = client
            .delete(format!("{admin}/admin/models/dropout/slots/green"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
    let dir = w.models.join("dropout/2");
    let manifest = std::fs::read_to_string(dir.join("model.toml")).unwrap();
    let mut m = switchyard_api::Manifest::parse(&manifest).unwrap();
    m.profile = None;
    m.files.remove("profile.json");
    std::fs::write(dir.join("model.toml"), toml::to_string(&m).unwrap()).unwrap();
    let (load, stop) = traffic(&w, &[]);
    let err = promote(&w, 0.5).await.unwrap_err();
    let _ = stop.send(true);
    load.await.unwrap();
    assert!(err.to_string().contains("no reference profile"), "{err}");
    for g in w.gateways {
        g.shutdown().await;
    }
}
