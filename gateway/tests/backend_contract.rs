//! The contract every backend meets, run against each one: it loads every
//! example model it can serve correctly, matches the golden outputs of
//! onnxruntime's Python run (labels exactly, probabilities within 1e-5),
//! reports the graph's signature as the manifest declares it, refuses what
//! it would answer wrongly, and fails cleanly on a file that is not ONNX.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use gateway::backend::{Backend, BackendConfig, BackendError, Backends, backend_name};
use gateway::loader::check_signature;
use gateway::tensor::{Tensor, TensorData};
use switchyard_api::Manifest;
use switchyard_api::manifest::BackendKind;

fn backends() -> Backends {
    Backends::from_config(&BackendConfig {
        order: vec![BackendKind::Forest, BackendKind::Ort, BackendKind::Tract],
        ort_library: Some(common::ort_library()),
        intra_op_threads: 1,
    })
}

fn versions() -> Vec<(String, u64)> {
    let mut all = Vec::new();
    for model in ["linear", "boosted", "mlp"] {
        for entry in std::fs::read_dir(common::models_root().join(model)).unwrap() {
            let v: u64 = entry
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            all.push((model.to_owned(), v));
        }
    }
    all.sort();
    all
}

fn check(backend: &dyn Backend, model: &str, version: u64) -> Result<(), BackendError> {
    let dir = common::models_root().join(model).join(version.to_string());
    let manifest = Manifest::load(&dir).unwrap();
    manifest.verify_files(&dir).unwrap();
    let mut session = backend.load(&dir.join("model.onnx"), &manifest)?;
    let problems = check_signature(&manifest, session.as_ref());
    assert!(problems.is_empty(), "{model}/{version}: {problems:?}");
    let g = common::golden(model, version);
    // All 32 rows at once, then one row alone: batching must not change answers.
    for rows in [g.rows, 1] {
        let input = Tensor {
            name: "input".into(),
            shape: vec![rows, 20],
            data: TensorData::F32(g.input[..rows * 20].to_vec()),
        };
        let outputs = session.run(&[input])?;
        let label = outputs.iter().find(|t| t.name == "label").unwrap();
        assert_eq!(
            label.data,
            TensorData::I64(g.labels[..rows].to_vec()),
            "{model}/{version} labels"
        );
        let probs = outputs.iter().find(|t| t.name == "probabilities").unwrap();
        let TensorData::F32(p) = &probs.data else {
            panic!("probabilities are not FP32")
        };
        assert_eq!(probs.shape, vec![rows, 2]);
        for (got, want) in p.iter().zip(&g.probabilities) {
            assert!(
                (got - want).abs() <= 1e-5,
                "{model}/{version}: {got} vs {want}"
            );
        }
    }
    Ok(())
}

#[test]
fn ort_serves_every_example_model_like_onnxruntime() {
    let backends = backends();
    let ort = backends.get(BackendKind::Ort).unwrap();
    for (model, version) in versions() {
        check(ort.as_ref(), &model, version).unwrap_or_else(|e| panic!("{model}/{version}: {e}"));
    }
}

#[test]
fn tract_serves_linear_and_mlp_and_refuses_tree_ensembles() {
    let backends = backends();
    let tract = backends.get(BackendKind::Tract).unwrap();
    for (model, version) in versions() {
        let result = check(tract.as_ref(), &model, version);
        if model == "boosted" {
            match result {
                Err(BackendError::Unsupported { reason, .. }) => {
                    assert!(reason.contains("TreeEnsembleClassifier"), "{reason}");
                }
                other => panic!("tract must refuse {model}/{version}, got {other:?}"),
            }
        } else {
            result.unwrap_or_else(|e| panic!("{model}/{version}: {e}"));
        }
    }
}

#[test]
fn forest_serves_the_tree_ensembles_and_refuses_the_rest() {
    let backends = backends();
    let forest = backends.get(BackendKind::Forest).unwrap();
    for (model, version) in versions() {
        let result = check(forest.as_ref(), &model, version);
        if model == "boosted" {
            result.unwrap_or_else(|e| panic!("{model}/{version}: {e}"));
        } else {
            match result {
                Err(BackendError::Unsupported { reason, .. }) => {
                    assert!(reason.contains("is not a tree ensemble"), "{reason}");
                }
                other => panic!("forest must refuse {model}/{version}, got {other:?}"),
            }
        }
    }
}

#[test]
fn every_backend_fails_cleanly_on_a_file_that_is_not_onnx() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("model.onnx");
    std::fs::write(&bogus, b"this is not a protobuf \xff\xfe").unwrap();
    let truncated = dir.path().join("truncated.onnx");
    let real = std::fs::read(common::models_root().join("mlp/1/model.onnx")).unwrap();
    std::fs::write(&truncated, &real[..real.len() / 2]).unwrap();
    let manifest = Manifest::load(&common::models_root().join("mlp/1")).unwrap();
    let backends = backends();
    for kind in [BackendKind::Forest, BackendKind::Ort, BackendKind::Tract] {
        let backend = backends.get(kind).unwrap();
        for file in [&bogus, &truncated] {
            match backend.load(Path::new(file), &manifest) {
                Err(BackendError::Load {
                    backend: name,
                    message,
                }) => {
                    assert_eq!(name, backend_name(kind));
                    assert!(!message.is_empty());
                }
                Err(other) => panic!("{}: unexpected error {other}", backend_name(kind)),
                Ok(_) => panic!("{} loaded {}", backend_name(kind), file.display()),
            }
        }
    }
}

#[test]
fn a_missing_ort_library_is_reported_not_a_panic() {
    let backends = Backends::from_config(&BackendConfig {
        order: vec![BackendKind::Tract],
        ort_library: None,
        intra_op_threads: 1,
    });
    let err = backends.get(BackendKind::Ort).unwrap_err().to_string();
    assert!(err.contains("ort is not available"), "{err}");
    assert!(backends.get(BackendKind::Tract).is_ok());
}
