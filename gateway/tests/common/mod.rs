//! Shared set-up of the gateway's integration tests: a copy of the example
//! repository, a real gateway on 127.0.0.1:0, and the golden outputs.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Parser;
use gateway::backend::Backends;
use gateway::batcher::ThreadBudget;
use gateway::config::{Config, Flags};
use gateway::loader::LoadContext;
use gateway::metrics::Metrics;
use gateway::persist::StateStore;
use gateway::repository::FolderSource;
use gateway::server::{self, Gateway};
use gateway::serving::{Serving, ServingSettings};
use serde_json::Value;

/// The example repository in the source tree.
pub fn models_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// ONNX Runtime's library; the tests that need it fail with this message
/// rather than pass without it.
pub fn ort_library() -> PathBuf {
    let path = std::env::var_os("ORT_DYLIB_PATH").expect(
        "ORT_DYLIB_PATH is not set: run the tests through `make test`, which fetches ONNX Runtime",
    );
    PathBuf::from(path)
}

/// A private copy of the example repository (tests add broken versions).
pub fn copy_models(dir: &Path) -> PathBuf {
    let dest = dir.join("models");
    copy_dir(&models_root(), &dest);
    dest
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "__pycache__" {
                copy_dir(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A configuration on free loopback ports.
pub fn config(models: &Path, state: Option<&Path>, extra: &[&str]) -> Config {
    let mut args = vec![
        "gateway".to_owned(),
        "--models".to_owned(),
        models.display().to_string(),
        "--http-addr=127.0.0.1:0".to_owned(),
        "--grpc-addr=127.0.0.1:0".to_owned(),
        "--metrics-addr=127.0.0.1:0".to_owned(),
        "--admin-addr=127.0.0.1:0".to_owned(),
        "--ort-library".to_owned(),
        ort_library().display().to_string(),
        "--drain-timeout=5s".to_owned(),
    ];
    if let Some(state) = state {
        args.push("--state-dir".to_owned());
        args.push(state.display().to_string());
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Flags::try_parse_from(args).unwrap().resolve().unwrap()
}

/// A gateway over a copy of the example models, with its temp folder.
pub async fn start(extra: &[&str]) -> (Gateway, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let models = copy_models(dir.path());
    let state = dir.path().join("state");
    let gateway = server::start(&config(&models, Some(&state), extra))
        .await
        .unwrap();
    assert!(gateway.serving.is_ready(), "gateway not ready");
    (gateway, dir, models)
}

/// A gateway whose only backend is the given one (the fake, in tests).
pub async fn start_with_backends(models: &Path, backends: Backends, timeout: &str) -> Gateway {
    let config = config(models, None, &[&format!("--request-timeout={timeout}")]);
    let loader = LoadContext {
        source: Arc::new(FolderSource::new(models.to_path_buf())),
        backends,
        backend_overrides: Default::default(),
        model_instances: Default::default(),
        instances: 1,
        drift: true,
        inline_max: config.inline_max,
        budget: ThreadBudget::new(2),
        metrics: Metrics::new(),
    };
    let settings = ServingSettings {
        default_timeout: config.request_timeout,
        load_threads: 1,
        strict_readiness: true,
        pinned: Default::default(),
    };
    let serving = Serving::new(loader, settings, None::<StateStore>);
    server::start_with(&config, Arc::new(serving))
        .await
        .unwrap()
}

/// A version's golden file: inputs and onnxruntime's outputs.
pub struct Golden {
    pub rows: usize,
    pub input: Vec<f32>,
    pub labels: Vec<i64>,
    pub probabilities: Vec<f32>,
}

pub fn golden(model: &str, version: u64) -> Golden {
    let path = models_root()
        .join(model)
        .join(version.to_string())
        .join("golden.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let floats = |v: &Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    Golden {
        rows: v["inputs"]["input"]["shape"][0].as_u64().unwrap() as usize,
        input: floats(&v["inputs"]["input"]["data"]),
        labels: v["outputs"]["label"]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect(),
        probabilities: floats(&v["outputs"]["probabilities"]["data"]),
    }
}

/// An OIP v2 JSON body of the first `rows` golden rows.
pub fn infer_body(g: &Golden, rows: usize) -> Value {
    serde_json::json!({
        "inputs": [{"name": "input", "shape": [rows, 20], "datatype": "FP32", "data": &g.input[..rows * 20]}]
    })
}

/// Asserts that an OIP response body carries the golden outputs of `rows`.
pub fn assert_golden(body: &Value, g: &Golden, rows: usize) {
    let outputs = body["outputs"].as_array().unwrap();
    let label = outputs.iter().find(|o| o["name"] == "label").unwrap();
    let got: Vec<i64> = label["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    assert_eq!(got, g.labels[..rows], "labels");
    let probs = outputs
        .iter()
        .find(|o| o["name"] == "probabilities")
        .unwrap();
    for (i, (p, want)) in probs["data"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&g.probabilities)
        .enumerate()
    {
        let p = p.as_f64().unwrap() as f32;
        assert!(
            (p - want).abs() <= 1e-5,
            "probability {i}: {p} vs golden {want}"
        );
    }
}

pub fn http(gateway: &Gateway) -> String {
    format!("http://{}", gateway.addrs.http)
}

pub fn admin(gateway: &Gateway) -> String {
    format!("http://{}", gateway.addrs.admin)
}

pub fn metrics(gateway: &Gateway) -> String {
    format!("http://{}/metrics", gateway.addrs.metrics)
}

/// The gateway's /metrics text.
pub async fn scrape(gateway: &Gateway) -> String {
    reqwest::get(metrics(gateway))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
