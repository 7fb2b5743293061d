use super::*;

fn input(
    name: &str,
    datatype: &str,
    shape: Vec<i64>,
    contents: Option<InferTensorContents>,
) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape,
        parameters: Default::default(),
        contents,
    }
}

#[test]
fn raw_and_typed_contents_decode_alike() {
    let raw: Vec<u8> = [1.5f32, 2.5].iter().flat_map(|x| x.to_le_bytes()).collect();
    let a = decode_inputs(vec![input("x", "FP32", vec![1, 2], None)], vec![raw]).unwrap();
    let typed = InferTensorContents {
        fp32_contents: vec![1.5, 2.5],
        ..Default::default()
    };
    let b = decode_inputs(vec![input("x", "FP32", vec![1, 2], Some(typed))], vec![]).unwrap();
    assert_eq!(a, b);
}

#[test]
fn bad_inputs_are_invalid_argument_naming_the_input() {
    let check = |inputs, raw, needle: &str| {
        let s = decode_inputs(inputs, raw).unwrap_err();
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(
            s.message().contains(needle),
            "{} lacks {needle:?}",
            s.message()
        );
    };
    check(
        vec![input("x", "FP32", vec![1, 2], None)],
        vec![vec![0; 7]],
        "input \"x\": raw_input_contents: 7 bytes",
    );
    check(
        vec![input("x", "FP32", vec![1, 2], None)],
        vec![vec![0; 8], vec![]],
        "2 entries for 1 inputs",
    );
    check(
        vec![input("x", "FP16", vec![1], None)],
        vec![vec![0; 2]],
        "unsupported datatype",
    );
    check(
        vec![input("x", "FP32", vec![-1, 2], None)],
        vec![vec![0; 8]],
        "negative dimension",
    );
    check(
        vec![input("x", "FP32", vec![1], None)],
        vec![],
        "has no contents",
    );
    let typed = InferTensorContents {
        int_contents: vec![300],
        ..Default::default()
    };
    check(
        vec![input("x", "INT8", vec![1], Some(typed))],
        vec![],
        "300 is not a valid INT8",
    );
    let typed = InferTensorContents {
        fp32_contents: vec![1.0],
        ..Default::default()
    };
    check(
        vec![input("x", "FP32", vec![2], Some(typed))],
        vec![],
        "1 values where shape [2] needs 2",
    );
}

#[test]
fn grpc_timeouts_parse_every_unit() {
    let mut m = http::HeaderMap::new();
    assert_eq!(grpc_timeout(&m).unwrap(), None);
    for (text, want) in [
        ("250m", Duration::from_millis(250)),
        ("3S", Duration::from_secs(3)),
        ("10u", Duration::from_micros(10)),
    ] {
        m.insert("grpc-timeout", http::HeaderValue::from_static(text));
        assert_eq!(grpc_timeout(&m).unwrap(), Some(want));
    }
    m.insert("grpc-timeout", http::HeaderValue::from_static("5X"));
    assert!(grpc_timeout(&m).is_err());
}

#[test]
fn statuses_follow_the_error_kind() {
    let full = InferError::QueueFull {
        model: "m".into(),
        version: 1,
        capacity: 4,
    };
    let s = status_of(&full);
    assert_eq!(s.code(), tonic::Code::ResourceExhausted);
    assert!(s.metadata().get("retry-after").is_some());
    let invalid = InferError::InvalidInput("input \"x\" is missing".into());
    assert_eq!(status_of(&invalid).code(), tonic::Code::InvalidArgument);
}
