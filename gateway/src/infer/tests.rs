use super::*;

fn manifest() -> Manifest {
    Manifest::parse(
        r#"
name = "m"
version = 1
[[inputs]]
name = "input"
datatype = "FP32"
shape = [-1, 3]
[[outputs]]
name = "label"
datatype = "INT64"
shape = [-1]
[[outputs]]
name = "probabilities"
datatype = "FP32"
shape = [-1, 2]
[batching]
max_batch_size = 4
[files]
"model.onnx" = "0000000000000000000000000000000000000000000000000000000000000000"
"#,
    )
    .unwrap()
}

fn input(name: &str, shape: Vec<usize>, n: usize) -> Tensor {
    Tensor {
        name: name.into(),
        shape,
        data: TensorData::F32(vec![0.5; n]),
    }
}

fn invalid(given: Vec<Tensor>) -> String {
    match check_inputs(&manifest(), given) {
        Err(InferError::InvalidInput(m)) => m,
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[test]
fn a_matching_request_passes_with_its_row_count() {
    let (inputs, rows) = check_inputs(&manifest(), vec![input("input", vec![2, 3], 6)]).unwrap();
    assert_eq!((inputs.len(), rows), (1, 2));
}

#[test]
fn each_bad_input_is_refused_naming_it() {
    assert!(invalid(vec![]).contains("input \"input\" is missing"));
    let extra = invalid(vec![
        input("input", vec![1, 3], 3),
        input("extra", vec![1, 3], 3),
    ]);
    assert!(extra.contains("no input \"extra\""), "{extra}");
    let twice = invalid(vec![
        input("input", vec![1, 3], 3),
        input("input", vec![1, 3], 3),
    ]);
    assert!(twice.contains("given twice"), "{twice}");
    let shape = invalid(vec![input("input", vec![1, 4], 4)]);
    assert!(shape.contains("shape [1, 4]"), "{shape}");
    let rank = invalid(vec![input("input", vec![3], 3)]);
    assert!(rank.contains("shape [3]"), "{rank}");
    let count = invalid(vec![input("input", vec![2, 3], 5)]);
    assert!(count.contains("5 values for shape [2, 3]"), "{count}");
    let rows = invalid(vec![input("input", vec![5, 3], 15)]);
    assert!(
        rows.contains("5 rows") && rows.contains("at most 4"),
        "{rows}"
    );
    let empty = invalid(vec![input("input", vec![0, 3], 0)]);
    assert!(empty.contains("no rows"), "{empty}");
    let dtype = invalid(vec![Tensor {
        name: "input".into(),
        shape: vec![1, 3],
        data: TensorData::F64(vec![0.0; 3]),
    }]);
    assert!(
        dtype.contains("datatype FP64") && dtype.contains("takes FP32"),
        "{dtype}"
    );
}

#[test]
fn unknown_outputs_are_refused_and_known_ones_selected_in_order() {
    let m = manifest();
    assert!(check_outputs(&m, &["label".into()]).is_ok());
    let err = check_outputs(&m, &["score".into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("no output \"score\""), "{err}");
    let all = vec![
        Tensor {
            name: "label".into(),
            shape: vec![1],
            data: TensorData::I64(vec![1]),
        },
        Tensor {
            name: "probabilities".into(),
            shape: vec![1, 2],
            data: TensorData::F32(vec![0.2, 0.8]),
        },
    ];
    let picked = select_outputs(
        &m,
        all.clone(),
        Some(&["probabilities".into(), "label".into()]),
    );
    assert_eq!(
        picked.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["probabilities", "label"]
    );
    assert_eq!(select_outputs(&m, all, None).len(), 2);
}

#[test]
fn shadow_agreement_compares_labels_or_else_floats() {
    let label = |v: i64| Tensor {
        name: "label".into(),
        shape: vec![1],
        data: TensorData::I64(vec![v]),
    };
    let probs = |p: f32| Tensor {
        name: "p".into(),
        shape: vec![1],
        data: TensorData::F32(vec![p]),
    };
    assert!(agree(&[label(1), probs(0.9)], &[label(1), probs(0.6)]));
    assert!(!agree(&[label(1), probs(0.9)], &[label(0), probs(0.9)]));
    assert!(agree(&[probs(0.9)], &[probs(0.9004)]));
    assert!(!agree(&[probs(0.9)], &[probs(0.95)]));
    assert!(!agree(&[label(1)], &[]));
}
