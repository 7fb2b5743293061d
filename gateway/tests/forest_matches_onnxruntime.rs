//! The forest backend against ONNX Runtime on tree ensembles of every shape
//! it accepts (tests/fixtures/trees, written by models/make_tree_fixtures.py):
//! binary and multiclass classifiers, regressors of one and two targets,
//! every split mode and missing-value rule, each post transform. Each
//! fixture's 300 rows (random, with NaN, and exactly on split thresholds)
//! must give onnxruntime's recorded labels exactly and its scores within
//! 1e-5, in one batch and in batches of 1, 7 and 64 rows; the ort backend,
//! run beside it, must agree with the same record.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use gateway::backend::{BackendConfig, BackendError, Backends, Session};
use gateway::tensor::{Tensor, TensorData};
use serde_json::Value;
use switchyard_api::Manifest;
use switchyard_api::manifest::BackendKind;

const FIXTURES: [&str; 12] = [
    "gbc_binary",
    "gbc_binary_modes",
    "gbc_binary_none",
    "rf_binary",
    "rf_binary_logistic",
    "gbc_multiclass",
    "gbc_multiclass_logistic",
    "rf_multiclass",
    "rf_multiclass_modes",
    "gb_regressor",
    "rf_regressor_two_targets",
    "rf_regressor_modes",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trees")
}

fn backends() -> Backends {
    Backends::from_config(&BackendConfig {
        order: vec![BackendKind::Forest, BackendKind::Ort],
        ort_library: Some(common::ort_library()),
        intra_op_threads: 1,
    })
}

/// Any manifest: neither backend reads it when loading.
fn manifest() -> Manifest {
    Manifest::load(&common::models_root().join("boosted/3")).unwrap()
}

struct Record {
    input: Vec<f32>,
    rows: usize,
    columns: usize,
    outputs: Vec<(String, Value)>,
}

fn record(name: &str) -> Record {
    let text = std::fs::read_to_string(fixtures().join(format!("{name}.json"))).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let input = v["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().map_or(f32::NAN, |f| f as f32))
        .collect();
    Record {
        input,
        rows: v["rows"].as_u64().unwrap() as usize,
        columns: v["columns"].as_u64().unwrap() as usize,
        outputs: v["outputs"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// Runs `rows` from `first` and checks them against the record.
fn check(name: &str, session: &mut dyn Session, r: &Record, first: usize, rows: usize) {
    let input = Tensor {
        name: session.inputs()[0].name.clone(),
        shape: vec![rows, r.columns],
        data: TensorData::F32(r.input[first * r.columns..(first + rows) * r.columns].to_vec()),
    };
    let outputs = session.run(&[input]).unwrap();
    assert_eq!(outputs.len(), r.outputs.len(), "{name}");
    for (out, (want_name, want)) in outputs.iter().zip(&r.outputs) {
        assert_eq!(&out.name, want_name, "{name}");
        let shape: Vec<usize> = want["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let width = shape[1..].iter().product::<usize>();
        assert_eq!(out.shape[0], rows, "{name} {want_name}");
        assert_eq!(out.shape[1..].iter().product::<usize>(), width, "{name}");
        let data = &want["data"].as_array().unwrap()[first * width..(first + rows) * width];
        match &out.data {
            TensorData::I64(got) => {
                let want: Vec<i64> = data.iter().map(|v| v.as_i64().unwrap()).collect();
                assert_eq!(got, &want, "{name} {want_name} rows {first}..+{rows}");
            }
            TensorData::F32(got) => {
                for (i, (g, w)) in got.iter().zip(data).enumerate() {
                    let w = w.as_f64().unwrap() as f32;
                    assert!(
                        (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                        "{name} {want_name} row {} column {}: {g} vs onnxruntime's {w}",
                        first + i / width,
                        i % width
                    );
                }
            }
            other => panic!("{name}: unexpected output type {other:?}"),
        }
    }
}

#[test]
fn forest_answers_every_fixture_like_onnxruntime_in_any_batch_size() {
    let backends = backends();
    let forest = backends.get(BackendKind::Forest).unwrap();
    let ort = backends.get(BackendKind::Ort).unwrap();
    for name in FIXTURES {
        let r = record(name);
        let file = fixtures().join(format!("{name}.onnx"));
        for backend in [forest, ort] {
            let mut session = backend
                .load(&file, &manifest())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            check(name, session.as_mut(), &r, 0, r.rows);
            for batch in [1, 7, 64] {
                let mut first = 0;
                while first < r.rows {
                    let rows = batch.min(r.rows - first);
                    check(name, session.as_mut(), &r, first, rows);
                    first += rows;
                }
            }
        }
    }
}

#[test]
fn the_fixtures_reach_the_cases_they_are_for() {
    // Missing values in the rows, more than one label, and scores that are
    // not all alike: a fixture that answered the same for every row would
    // prove nothing.
    for name in FIXTURES {
        let r = record(name);
        assert!(r.input.iter().any(|x| x.is_nan()), "{name} has no NaN");
        let (_, first) = &r.outputs[0];
        let data = first["data"].as_array().unwrap();
        let distinct: std::collections::BTreeSet<String> =
            data.iter().map(ToString::to_string).collect();
        assert!(distinct.len() > 1, "{name} answers one value");
    }
}

#[test]
fn forest_refuses_what_is_not_a_tree_ensemble_and_names_it() {
    let backends = backends();
    let forest = backends.get(BackendKind::Forest).unwrap();
    for model in ["linear/1", "mlp/1"] {
        let dir = common::models_root().join(model);
        let manifest = Manifest::load(&dir).unwrap();
        match forest.load(&dir.join("model.onnx"), &manifest) {
            Err(BackendError::Unsupported { backend, reason }) => {
                assert_eq!(backend, "forest");
                assert!(
                    reason.starts_with("operator ") && reason.contains("is not a tree ensemble"),
                    "{model}: {reason}"
                );
            }
            Err(other) => panic!("{model}: {other}"),
            Ok(_) => panic!("forest loaded {model}"),
        }
    }
}

#[test]
fn damaged_tree_files_are_refused_or_answered_never_a_panic() {
    // Flipped bytes and cut files: each load returns a model or an error,
    // and a model that loads answers or errs on rows of any width.
    let backends = backends();
    let forest = backends.get(BackendKind::Forest).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut refused, mut loaded) = (0, 0);
    for name in [
        "gbc_binary_modes",
        "rf_multiclass",
        "rf_regressor_two_targets",
    ] {
        let good = std::fs::read(fixtures().join(format!("{name}.onnx"))).unwrap();
        for round in 0..150 {
            let mut bytes = good.clone();
            if round % 3 == 0 {
                bytes.truncate(next() as usize % bytes.len());
            } else {
                for _ in 0..1 + next() % 4 {
                    let at = next() as usize % bytes.len();
                    bytes[at] ^= 1 << (next() % 8);
                }
            }
            let file = dir.path().join("damaged.onnx");
            std::fs::write(&file, &bytes).unwrap();
            match forest.load(&file, &manifest()) {
                Err(_) => refused += 1,
                Ok(mut session) => {
                    loaded += 1;
                    for width in [0, 3, 8, 40] {
                        let input = Tensor {
                            name: session.inputs()[0].name.clone(),
                            shape: vec![9, width],
                            data: TensorData::F32(vec![0.25; 9 * width]),
                        };
                        let _ = session.run(&[input]);
                    }
                }
            }
        }
    }
    // Both outcomes happen: the damage reaches the checks and the walk.
    assert!(
        refused > 50 && loaded > 20,
        "{refused} refused, {loaded} loaded"
    );
}
