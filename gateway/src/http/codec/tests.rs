use super::*;

fn body(json: &str) -> Vec<u8> {
    json.as_bytes().to_vec()
}

#[test]
fn a_json_request_decodes_with_id_timeout_and_outputs() {
    let req = decode_request(
        &body(
            r#"{"id": "r1", "parameters": {"timeout": 2500},
                "inputs": [{"name": "input", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4.5]]}],
                "outputs": [{"name": "label"}, {"name": "probabilities", "parameters": {"binary_data": true}}]}"#,
        ),
        None,
    )
    .unwrap();
    assert_eq!(req.id.as_deref(), Some("r1"));
    assert_eq!(req.timeout, Some(Duration::from_micros(2500)));
    assert_eq!(req.inputs[0].shape, vec![2, 2]);
    assert_eq!(
        req.inputs[0].data,
        TensorData::F32(vec![1.0, 2.0, 3.0, 4.5])
    );
    assert_eq!(
        req.outputs,
        Some(vec!["label".to_owned(), "probabilities".to_owned()])
    );
    assert_eq!(req.binary.named, vec!["probabilities".to_owned()]);
    assert!(!req.binary.all);
}

#[test]
fn binary_inputs_are_cut_from_the_tail_in_order() {
    let json = r#"{"inputs": [
        {"name": "a", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
        {"name": "b", "shape": [1], "datatype": "INT64", "parameters": {"binary_data_size": 8}}],
        "parameters": {"binary_data_output": true}}"#;
    let mut b = body(json);
    b.extend_from_slice(&1.5f32.to_le_bytes());
    b.extend_from_slice(&(-2.0f32).to_le_bytes());
    b.extend_from_slice(&7i64.to_le_bytes());
    let req = decode_request(&b, Some(json.len())).unwrap();
    assert_eq!(req.inputs[0].data, TensorData::F32(vec![1.5, -2.0]));
    assert_eq!(req.inputs[1].data, TensorData::I64(vec![7]));
    assert!(req.binary.all);

    let short = &b[..b.len() - 1];
    let e = decode_request(short, Some(json.len()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("input \"b\"") && e.contains("past the end"),
        "{e}"
    );
    let mut long = b.clone();
    long.push(0);
    let e = decode_request(&long, Some(json.len()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("1 bytes of binary data"), "{e}");
    let e = decode_request(&b, Some(b.len() + 1))
        .unwrap_err()
        .to_string();
    assert!(e.contains("Inference-Header-Content-Length"), "{e}");
}

#[test]
fn bad_bodies_are_refused_naming_the_field() {
    let cases = [
        ("{", "malformed request JSON"),
        (
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP16", "data": [1]}]}"#,
            "input \"x\": unsupported datatype \"FP16\"",
        ),
        (
            r#"{"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}]}"#,
            "negative dimension",
        ),
        (
            r#"{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1]}]}"#,
            "input \"x\": data: 1 values where the shape needs 2",
        ),
        (
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}"#,
            "input \"x\" has no data",
        ),
        (
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": ["a"]}]}"#,
            "input \"x\": data",
        ),
        (
            r#"{"parameters": {"timeout": -5}, "inputs": []}"#,
            "parameters.timeout",
        ),
        (
            r#"{"inputs": [{"name": "x", "shape": [4294967296, 4294967296, 4294967296], "datatype": "FP32", "data": []}]}"#,
            "too large",
        ),
        (r#"{"input": []}"#, "missing field `inputs`"),
    ];
    for (json, needle) in cases {
        let e = decode_request(json.as_bytes(), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(needle),
            "{json}\n  -> {e}\n  (wanted {needle:?})"
        );
    }
}

#[test]
fn responses_encode_json_or_binary_outputs() {
    let outputs = vec![
        Tensor {
            name: "label".into(),
            shape: vec![2],
            data: TensorData::I64(vec![1, 0]),
        },
        Tensor {
            name: "p".into(),
            shape: vec![2, 1],
            data: TensorData::F32(vec![0.25, 0.5]),
        },
    ];
    let json = encode_response("m", "2", Some("r1"), &outputs, &BinaryOutputs::default());
    assert_eq!(json.header_length, None);
    let v: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(v["model_version"], "2");
    assert_eq!(v["id"], "r1");
    assert_eq!(v["outputs"][0]["data"], serde_json::json!([1, 0]));
    assert_eq!(v["outputs"][1]["datatype"], "FP32");
    assert_eq!(v["outputs"][1]["shape"], serde_json::json!([2, 1]));

    let bin = encode_response(
        "m",
        "2",
        None,
        &outputs,
        &BinaryOutputs {
            all: false,
            named: vec!["p".into()],
        },
    );
    let n = bin.header_length.unwrap();
    let header: serde_json::Value = serde_json::from_slice(&bin.body[..n]).unwrap();
    assert_eq!(header["outputs"][1]["parameters"]["binary_data_size"], 8);
    assert!(header["outputs"][1].get("data").is_none());
    assert_eq!(&bin.body[n..n + 4], &0.25f32.to_le_bytes());
    assert_eq!(bin.body.len(), n + 8);
}
