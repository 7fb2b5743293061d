//! Seeds for the fuzz targets, and a replay of the corpora without
//! libFuzzer. Not a fuzz target itself; runs on the stable compiler:
//!
//! ```text
//! cargo run --bin seeds -- write    # (re)write corpus/<target>/seed-*
//! cargo run --bin seeds -- replay   # every corpus file through its check
//! cargo run --bin seeds -- replay http_decode artifacts/http_decode/crash-*
//! cargo run --release --bin seeds -- amplification   # worst cases found by hand
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use gateway::tensor::TensorData;
use gateway_fuzz::Target;
use gateway_fuzz::grpc::{int64_param, raw_input, request, typed_input};
use gateway_fuzz::http::{HeaderLength, fp32_json_body, input};
use prost::Message;
use serde_json::{Value, json};
use switchyard_api::DataType;
use switchyard_api::grpc::InferTensorContents;
use switchyard_api::grpc::model_infer_request::InferRequestedOutputTensor;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    match args.first().map(String::as_str) {
        Some("write") => {
            for target in Target::ALL {
                let dir = root.join("corpus").join(target.name());
                let seeds = seeds(target, &root);
                if let Err(e) = write(&dir, &seeds) {
                    eprintln!("cannot write {}: {e}", dir.display());
                    return ExitCode::FAILURE;
                }
                println!(
                    "{}: {} seeds in {}",
                    target.name(),
                    seeds.len(),
                    dir.display()
                );
            }
            ExitCode::SUCCESS
        }
        Some("replay") if args.len() > 2 => {
            let Some(target) = Target::ALL.into_iter().find(|t| t.name() == args[1]) else {
                eprintln!("unknown target {:?}", args[1]);
                return ExitCode::FAILURE;
            };
            let files: Vec<PathBuf> = args[2..].iter().map(PathBuf::from).collect();
            replay(target, &files)
        }
        Some("replay") => {
            for target in Target::ALL {
                let dir = root.join("corpus").join(target.name());
                let files = match list(&dir) {
                    Ok(f) => f,
                    Err(e) => {
                        eprintln!("cannot list {}: {e}", dir.display());
                        return ExitCode::FAILURE;
                    }
                };
                if replay(target, &files) != ExitCode::SUCCESS {
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Some("amplification") => {
            amplification();
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: seeds write | seeds replay [TARGET FILE...] | seeds amplification");
            ExitCode::FAILURE
        }
    }
}

fn list(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Runs each file through the target's check; a failing check names the
/// file and ends the program with the check's panic.
fn replay(target: Target, files: &[PathBuf]) -> ExitCode {
    let (mut bytes, mut accepted) = (0, 0);
    for file in files {
        let data = match fs::read(file) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("cannot read {}: {e}", file.display());
                return ExitCode::FAILURE;
            }
        };
        match std::panic::catch_unwind(|| target.check(&data)) {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(panic) => {
                eprintln!("{}: the check failed on {}", target.name(), file.display());
                std::panic::resume_unwind(panic);
            }
        }
        bytes += data.len();
    }
    println!(
        "{}: {} inputs ({bytes} bytes) replayed, all passed; {accepted} accepted, {} refused",
        target.name(),
        files.len(),
        files.len() - accepted
    );
    ExitCode::SUCCESS
}

fn write(dir: &Path, seeds: &[(String, Vec<u8>)]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    for (name, data) in seeds {
        fs::write(dir.join(format!("seed-{name}")), data)?;
    }
    Ok(())
}

fn seeds(target: Target, root: &Path) -> Vec<(String, Vec<u8>)> {
    match target {
        Target::HttpDecode => http_seeds(),
        Target::GrpcDecode => grpc_seeds(),
        Target::ManifestParse => manifest_seeds(root),
    }
}

/// One sample buffer per datatype, with each type's extremes.
fn samples() -> Vec<TensorData> {
    vec![
        TensorData::Bool(vec![true, false, true, true]),
        TensorData::U8(vec![0, 255, 7, 128]),
        TensorData::U16(vec![0, u16::MAX, 1, 300]),
        TensorData::U32(vec![0, u32::MAX, 1, 70_000]),
        TensorData::U64(vec![0, u64::MAX, 1, 1 << 53]),
        TensorData::I8(vec![i8::MIN, i8::MAX, 0, -1]),
        TensorData::I16(vec![i16::MIN, i16::MAX, 0, -1]),
        TensorData::I32(vec![i32::MIN, i32::MAX, 0, -1]),
        TensorData::I64(vec![i64::MIN, i64::MAX, 0, -(1 << 53) - 1]),
        TensorData::F32(vec![1.5, -0.0, f32::MAX, f32::MIN_POSITIVE]),
        TensorData::F64(vec![1e-300, -2.5, f64::MAX, 0.1]),
    ]
}

fn json_data(data: &TensorData) -> Value {
    match data {
        TensorData::Bool(v) => json!(v),
        TensorData::U8(v) => json!(v),
        TensorData::U16(v) => json!(v),
        TensorData::U32(v) => json!(v),
        TensorData::U64(v) => json!(v),
        TensorData::I8(v) => json!(v),
        TensorData::I16(v) => json!(v),
        TensorData::I32(v) => json!(v),
        TensorData::I64(v) => json!(v),
        TensorData::F32(v) => json!(v),
        TensorData::F64(v) => json!(v),
    }
}

fn le_bytes(data: &TensorData) -> Vec<u8> {
    let mut out = Vec::new();
    data.write_le_bytes(&mut out);
    out
}

/// A binary-extension body: `header` as JSON, then `tail`.
fn binary_body(header: &Value, tail: &[u8]) -> (Vec<u8>, usize) {
    let mut body = header.to_string().into_bytes();
    let json_len = body.len();
    body.extend_from_slice(tail);
    (body, json_len)
}

fn tail_of(len: usize) -> HeaderLength {
    HeaderLength::Tail(u16::try_from(len).expect("seed tails are small"))
}

fn http_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut plain = |name: &str, body: &str| {
        out.push((
            format!("json-{name}"),
            input(HeaderLength::Absent, body.as_bytes()),
        ));
    };

    // The example models' signature: "input", FP32, [n, 20].
    plain("fp32-1x20", &fp32_json_body(1, 20, None));
    plain("fp32-4x20-id", &fp32_json_body(4, 20, Some("req-42")));
    let flat: Vec<f32> = (0..40).map(|i| i as f32 / 8.0 - 2.0).collect();
    plain(
        "fp32-2x20-flat-all-options",
        &json!({
            "id": "r1",
            "parameters": {"timeout": 250_000, "binary_data_output": false},
            "inputs": [{"name": "input", "shape": [2, 20], "datatype": "FP32", "data": flat}],
            "outputs": [
                {"name": "label"},
                {"name": "probabilities", "parameters": {"binary_data": true}}
            ]
        })
        .to_string(),
    );
    plain(
        "fp32-1x20-ints-and-exponents",
        r#"{"inputs":[{"name":"input","shape":[1,20],"datatype":"FP32","data":[[0,1,-1,2e0,3E+1,-4e-2,5.5,1e38,-1e-45,7,8,9,10,11,12,13,14,15,16,17]]}]}"#,
    );
    plain(
        "kitchen-sink-params",
        r#"{"id":"x","parameters":{"timeout":1,"binary_data_output":true,"priority":3,"nested":{"a":[1,{"b":null}]}},"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","parameters":{"note":"hi"},"data":[1,2]}],"outputs":[]}"#,
    );
    plain("empty-inputs", r#"{"inputs":[]}"#);
    plain(
        "unicode-escapes",
        r#"{"id":"\ud83d\ude00\u0000","inputs":[{"name":"\u00e9","shape":[1],"datatype":"FP32","data":[1]}]}"#,
    );
    plain(
        "scalar",
        r#"{"inputs":[{"name":"s","shape":[],"datatype":"INT64","data":7}]}"#,
    );
    plain(
        "zero-rows",
        r#"{"inputs":[{"name":"input","shape":[0,20],"datatype":"FP32","data":[]}]}"#,
    );

    // Every datatype, as JSON and as binary data.
    for data in samples() {
        let dt = data.datatype().as_str();
        let n = data.len();
        let v = json!({"inputs": [{"name": "t", "shape": [2, n / 2], "datatype": dt, "data": json_data(&data)}]});
        out.push((
            format!("json-{}", dt.to_lowercase()),
            input(HeaderLength::Absent, v.to_string().as_bytes()),
        ));
        let raw = le_bytes(&data);
        let header = json!({
            "inputs": [{"name": "t", "shape": [n], "datatype": dt, "parameters": {"binary_data_size": raw.len()}}],
            "parameters": {"binary_data_output": true}
        });
        let (body, json_len) = binary_body(&header, &raw);
        out.push((
            format!("bin-{}", dt.to_lowercase()),
            input(tail_of(raw.len()), &body),
        ));
        if data.datatype() == DataType::Int64 {
            let exact = u16::try_from(json_len).expect("small header");
            out.push((
                "bin-int64-exact-length".into(),
                input(HeaderLength::Exactly(exact), &body),
            ));
        }
    }

    // Binary extension with the example signature, as tritonclient sends it.
    let rows = TensorData::F32((0..60).map(|i| (i as f32).cos()).collect());
    let raw = le_bytes(&rows);
    let header = json!({
        "inputs": [{"name": "input", "shape": [3, 20], "datatype": "FP32", "parameters": {"binary_data_size": raw.len()}}],
        "outputs": [{"name": "label", "parameters": {"binary_data": true}}, {"name": "probabilities", "parameters": {"binary_data": true}}]
    });
    let (body, _) = binary_body(&header, &raw);
    out.push(("bin-fp32-3x20".into(), input(tail_of(raw.len()), &body)));

    // Two binary inputs cut from the tail in order, and a JSON one beside.
    let a = le_bytes(&TensorData::F32(vec![1.5, -2.0]));
    let b = le_bytes(&TensorData::I64(vec![7]));
    let header = json!({"inputs": [
        {"name": "a", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": a.len()}},
        {"name": "j", "shape": [1], "datatype": "UINT8", "data": [9]},
        {"name": "b", "shape": [1], "datatype": "INT64", "parameters": {"binary_data_size": b.len()}}
    ]});
    let (body, _) = binary_body(&header, &[a.as_slice(), b.as_slice()].concat());
    out.push((
        "bin-mixed-three-inputs".into(),
        input(tail_of(a.len() + b.len()), &body),
    ));

    // NaN and infinity can only come in binary; they must go back out too.
    let odd = le_bytes(&TensorData::F32(vec![
        f32::NAN,
        f32::INFINITY,
        -f32::INFINITY,
        -0.0,
    ]));
    let header = json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": odd.len()}}]});
    let (body, _) = binary_body(&header, &odd);
    out.push(("bin-fp32-nan-inf".into(), input(tail_of(odd.len()), &body)));

    // Refused bodies: each should fail with a message, not a panic.
    let bad = [
        (
            "truncated",
            r#"{"inputs":[{"name":"input","shape":[1,20],"datatype":"FP32","data":[[1,2"#,
        ),
        ("not-an-object", "[1,2,3]"),
        ("missing-inputs", r#"{"input":[]}"#),
        (
            "fp16",
            r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP16","data":[1]}]}"#,
        ),
        (
            "bytes",
            r#"{"inputs":[{"name":"x","shape":[1],"datatype":"BYTES","data":["abc"]}]}"#,
        ),
        (
            "negative-dim",
            r#"{"inputs":[{"name":"x","shape":[-1,20],"datatype":"FP32","data":[1]}]}"#,
        ),
        (
            "overflowing-shape",
            r#"{"inputs":[{"name":"x","shape":[4294967296,4294967296,4294967296],"datatype":"FP32","data":[]}]}"#,
        ),
        (
            "huge-shape-few-values",
            r#"{"inputs":[{"name":"x","shape":[1000000000,20],"datatype":"FP64","data":[1,2,3]}]}"#,
        ),
        (
            "too-few-values",
            r#"{"inputs":[{"name":"x","shape":[2,20],"datatype":"FP32","data":[[1,2]]}]}"#,
        ),
        (
            "too-many-values",
            r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1,2]}]}"#,
        ),
        (
            "string-value",
            r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":["a"]}]}"#,
        ),
        (
            "object-value",
            r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[{"v":1}]}]}"#,
        ),
        (
            "null-value",
            r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[null]}]}"#,
        ),
        (
            "uint8-out-of-range",
            r#"{"inputs":[{"name":"x","shape":[1],"datatype":"UINT8","data":[300]}]}"#,
        ),
        (
            "int32-fraction",
            r#"{"inputs":[{"name":"x","shape":[1],"datatype":"INT32","data":[1.5]}]}"#,
        ),
        (
            "int64-from-float",
            r#"{"inputs":[{"name":"x","shape":[2],"datatype":"INT64","data":[1e3,9.3e18]}]}"#,
        ),
        (
            "fp32-overflow",
            r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1e300]}]}"#,
        ),
        (
            "bool-from-int",
            r#"{"inputs":[{"name":"x","shape":[1],"datatype":"BOOL","data":[1]}]}"#,
        ),
        (
            "no-data",
            r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]}"#,
        ),
        (
            "data-and-binary-size",
            r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1],"parameters":{"binary_data_size":4}}]}"#,
        ),
        (
            "binary-size-not-a-count",
            r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":-4}}]}"#,
        ),
        (
            "binary-size-past-end",
            r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}}]}"#,
        ),
        (
            "timeout-zero",
            r#"{"parameters":{"timeout":0},"inputs":[]}"#,
        ),
        (
            "timeout-too-long",
            r#"{"parameters":{"timeout":300000001},"inputs":[]}"#,
        ),
        (
            "timeout-string",
            r#"{"parameters":{"timeout":"5s"},"inputs":[]}"#,
        ),
        ("duplicate-keys", r#"{"inputs":[],"inputs":[]}"#),
        ("id-not-string", r#"{"id":5,"inputs":[]}"#),
        ("lone-surrogate", r#"{"id":"\ud800","inputs":[]}"#),
    ];
    for (name, body) in bad {
        out.push((
            format!("bad-{name}"),
            input(HeaderLength::Absent, body.as_bytes()),
        ));
    }
    let deep = format!(
        r#"{{"inputs":[{{"name":"x","shape":[1],"datatype":"FP32","data":{}1{}}}]}}"#,
        "[".repeat(20),
        "]".repeat(20)
    );
    out.push((
        "bad-nested-20-deep".into(),
        input(HeaderLength::Absent, deep.as_bytes()),
    ));
    let deep_params = format!(
        r#"{{"parameters":{{"p":{}0{}}},"inputs":[]}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    out.push((
        "bad-params-200-deep".into(),
        input(HeaderLength::Absent, deep_params.as_bytes()),
    ));
    out.push((
        "bad-not-utf8".into(),
        input(HeaderLength::Absent, b"{\"id\":\"\xff\xfe\",\"inputs\":[]}"),
    ));
    out.push(("empty".into(), Vec::new()));

    // Header lengths that don't fit the body.
    let (body, json_len) = binary_body(&json!({"inputs": []}), &[1, 2, 3]);
    out.push(("bad-unclaimed-tail".into(), input(tail_of(3), &body)));
    out.push((
        "bad-header-past-body".into(),
        input(
            HeaderLength::Exactly(u16::try_from(body.len() + 1).expect("small")),
            &body,
        ),
    ));
    out.push((
        "bad-header-near-max".into(),
        input(HeaderLength::NearMax(0), &body),
    ));
    out.push((
        "bad-header-splits-json".into(),
        input(
            HeaderLength::Exactly(u16::try_from(json_len / 2).expect("small")),
            &body,
        ),
    ));
    let header = json!({"inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP32", "parameters": {"binary_data_size": 80}}]});
    let (body, _) = binary_body(&header, &[0; 79]);
    out.push(("bad-binary-short".into(), input(tail_of(79), &body)));
    let header = json!({"inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP32", "parameters": {"binary_data_size": 76}}]});
    let (body, _) = binary_body(&header, &[0; 76]);
    out.push((
        "bad-binary-size-not-shape".into(),
        input(tail_of(76), &body),
    ));
    out
}

fn grpc_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |name: &str, r: switchyard_api::grpc::ModelInferRequest| {
        out.push((name.to_owned(), r.encode_to_vec()));
    };
    let fp32 = |n: usize| -> Vec<f32> { (0..n).map(|i| (i as f32 * 0.37).sin() * 3.0).collect() };

    // The example models' signature: "input", FP32, [n, 20].
    add(
        "typed-fp32-1x20",
        request(
            "linear",
            vec![typed_input(
                "input",
                "FP32",
                &[1, 20],
                InferTensorContents {
                    fp32_contents: fp32(20),
                    ..Default::default()
                },
            )],
            Vec::new(),
        ),
    );
    let rows = TensorData::F32(fp32(80));
    let mut r = request(
        "mlp",
        vec![raw_input("input", "FP32", &[4, 20])],
        vec![le_bytes(&rows)],
    );
    r.model_version = "1".into();
    r.id = "req-7".into();
    r.parameters.insert("timeout".into(), int64_param(250_000));
    r.outputs = ["label", "probabilities"]
        .iter()
        .map(|n| InferRequestedOutputTensor {
            name: (*n).to_owned(),
            parameters: Default::default(),
        })
        .collect();
    add("raw-fp32-4x20-all-fields", r);
    add("empty-inputs", request("linear", Vec::new(), Vec::new()));

    // Every datatype, typed and raw.
    for data in samples() {
        let dt = data.datatype().as_str();
        let n = i64::try_from(data.len()).expect("small");
        let mut c = InferTensorContents::default();
        match &data {
            TensorData::Bool(v) => c.bool_contents = v.clone(),
            TensorData::U8(v) => c.uint_contents = v.iter().map(|&x| u32::from(x)).collect(),
            TensorData::U16(v) => c.uint_contents = v.iter().map(|&x| u32::from(x)).collect(),
            TensorData::U32(v) => c.uint_contents = v.clone(),
            TensorData::U64(v) => c.uint64_contents = v.clone(),
            TensorData::I8(v) => c.int_contents = v.iter().map(|&x| i32::from(x)).collect(),
            TensorData::I16(v) => c.int_contents = v.iter().map(|&x| i32::from(x)).collect(),
            TensorData::I32(v) => c.int_contents = v.clone(),
            TensorData::I64(v) => c.int64_contents = v.clone(),
            TensorData::F32(v) => c.fp32_contents = v.clone(),
            TensorData::F64(v) => c.fp64_contents = v.clone(),
        }
        let lower = dt.to_lowercase();
        add(
            &format!("typed-{lower}"),
            request("m", vec![typed_input("t", dt, &[2, n / 2], c)], Vec::new()),
        );
        add(
            &format!("raw-{lower}"),
            request("m", vec![raw_input("t", dt, &[n])], vec![le_bytes(&data)]),
        );
    }

    // Refused requests.
    let typed = |dt: &str, shape: &[i64], c: InferTensorContents| {
        request("m", vec![typed_input("t", dt, shape, c)], Vec::new())
    };
    add(
        "bad-unknown-datatype",
        typed(
            "FP16",
            &[1],
            InferTensorContents {
                fp32_contents: vec![1.0],
                ..Default::default()
            },
        ),
    );
    add(
        "bad-negative-dim",
        typed(
            "FP32",
            &[-1, 20],
            InferTensorContents {
                fp32_contents: fp32(20),
                ..Default::default()
            },
        ),
    );
    add(
        "bad-overflowing-shape",
        typed(
            "FP32",
            &[1 << 32, 1 << 32, 1 << 32],
            InferTensorContents::default(),
        ),
    );
    add(
        "bad-huge-shape-few-values",
        typed(
            "FP64",
            &[1_000_000_000, 20],
            InferTensorContents {
                fp64_contents: vec![1.0],
                ..Default::default()
            },
        ),
    );
    add(
        "bad-count",
        typed(
            "FP32",
            &[2, 20],
            InferTensorContents {
                fp32_contents: fp32(20),
                ..Default::default()
            },
        ),
    );
    add(
        "bad-int8-range",
        typed(
            "INT8",
            &[1],
            InferTensorContents {
                int_contents: vec![300],
                ..Default::default()
            },
        ),
    );
    add(
        "bad-uint16-range",
        typed(
            "UINT16",
            &[1],
            InferTensorContents {
                uint_contents: vec![70_000],
                ..Default::default()
            },
        ),
    );
    add(
        "bad-no-contents",
        request("m", vec![raw_input("t", "FP32", &[1])], Vec::new()),
    );
    add(
        "bad-raw-wrong-length",
        request(
            "m",
            vec![raw_input("t", "FP32", &[1, 20])],
            vec![vec![0; 79]],
        ),
    );
    add(
        "bad-raw-count",
        request(
            "m",
            vec![raw_input("a", "FP32", &[1]), raw_input("b", "FP32", &[1])],
            vec![vec![0; 4]],
        ),
    );
    add(
        "bad-raw-and-typed",
        request(
            "m",
            vec![typed_input(
                "t",
                "FP32",
                &[1],
                InferTensorContents {
                    fp32_contents: vec![1.0],
                    ..Default::default()
                },
            )],
            vec![vec![0; 4]],
        ),
    );
    add(
        "bad-raw-huge-shape",
        request(
            "m",
            vec![raw_input("t", "FP64", &[i64::MAX, i64::MAX])],
            vec![vec![0; 8]],
        ),
    );

    // Wire-level oddities prost must refuse or take: a truncated message,
    // a length past the end, an unknown field, a bad wire type, and the
    // same repeated field sent unpacked.
    let good = out[0].1.clone();
    out.push(("wire-truncated".into(), good[..good.len() / 2].to_vec()));
    out.push((
        "wire-length-past-end".into(),
        vec![0x2a, 0xff, 0xff, 0xff, 0x0f, 0x0a],
    ));
    let mut unknown = good.clone();
    unknown.extend_from_slice(&[0xf8, 0x07, 0x01]);
    out.push(("wire-unknown-field".into(), unknown));
    out.push(("wire-bad-wire-type".into(), vec![0x0f, 0x00]));
    // inputs { name: "t" datatype: "INT64" shape: [2]
    //          contents { int64_contents: 5 int64_contents: 6 } }, unpacked
    out.push((
        "wire-unpacked-int64".into(),
        vec![
            0x2a, 0x13, 0x0a, 0x01, b't', 0x12, 0x05, b'I', b'N', b'T', b'6', b'4', 0x1a, 0x01,
            0x02, 0x2a, 0x04, 0x18, 0x05, 0x18, 0x06,
        ],
    ));
    out.push(("wire-empty".into(), Vec::new()));
    out
}

fn manifest_seeds(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    // The repository's own manifests.
    let models = root.join("../../models");
    if let Ok(entries) = fs::read_dir(&models) {
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .flat_map(|model| fs::read_dir(model.path()).into_iter().flatten().flatten())
            .map(|version| version.path().join("model.toml"))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        for path in found {
            let parts: Vec<_> = path
                .iter()
                .rev()
                .skip(1)
                .take(2)
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if let Ok(text) = fs::read(&path) {
                out.push((format!("models-{}-{}", parts[1], parts[0]), text));
            }
        }
    }
    let sha = "0".repeat(64);
    let minimal = format!(
        r#"name = "tiny"
version = 1

[[inputs]]
name = "input"
datatype = "FP32"
shape = [-1, 20]

[[outputs]]
name = "label"
datatype = "INT64"
shape = [-1]

[files]
"model.onnx" = "{sha}"
"#
    );
    out.push(("minimal".into(), minimal.clone().into_bytes()));
    let variants: [(&str, &str, &str); 13] = [
        ("version-zero", "version = 1", "version = 0"),
        ("bad-name", r#"name = "tiny""#, r#"name = "../etc""#),
        ("unknown-key", "version = 1", "version = 1\nversoin = 2"),
        (
            "batch-zero",
            "[files]",
            "[batching]\nmax_batch_size = 0\nqueue_capacity = 0\nmax_queue_delay_us = 5000000\n\n[files]",
        ),
        (
            "shape-not-batch-first",
            "shape = [-1, 20]",
            "shape = [4, 0, -3]",
        ),
        (
            "features-mismatch",
            "shape = [-1, 20]",
            "shape = [-1, 2]\nfeatures = [\"a\"]",
        ),
        ("duplicate-name", "name = \"label\"", "name = \"input\""),
        ("bad-sha", &sha, "ABC"),
        ("bad-datatype", "datatype = \"FP32\"", "datatype = \"FP16\""),
        ("string-version", "version = 1", "version = \"1\""),
        ("negative-version", "version = 1", "version = -1"),
        (
            "platform",
            "version = 1",
            "version = 1\nplatform = \"tensorflow\"\nbackends = [\"ort\", \"tract\", \"ort\"]",
        ),
        (
            "file-names",
            "\"model.onnx\"",
            "\"model.toml\" = \"x\"\n\"\" = \"y\"\n\"a/b\"",
        ),
    ];
    for (name, from, to) in variants {
        out.push((
            format!("bad-{name}"),
            minimal.replacen(from, to, 1).into_bytes(),
        ));
    }
    out.push((
        "metrics-nan-inf".into(),
        minimal
            .replacen(
                "[files]",
                "[provenance]\nmetrics = { accuracy = 0.5, loss = nan, big = inf, small = -0.0 }\n\n[files]",
                1,
            )
            .into_bytes(),
    ));
    out.push((
        "inline-tables".into(),
        format!(
            "name = 'tiny'\nversion = 0x10\ninputs = [{{ name = \"a\", datatype = \"BOOL\", shape = [-1] }}]\noutputs = [{{ name = \"b\", datatype = \"UINT8\", shape = [-1, 1_000] }}]\nfiles = {{ \"model.onnx\" = '{sha}' }}\nbatching = {{ max_batch_size = 4096 }}\n"
        )
        .into_bytes(),
    ));
    out.push((
        "bad-truncated".into(),
        minimal.as_bytes()[..minimal.len() / 2].to_vec(),
    ));
    out.push((
        "bad-deep-array".into(),
        format!("labels = {}1{}\n", "[".repeat(100), "]".repeat(100)).into_bytes(),
    ));
    out.push(("empty".into(), Vec::new()));
    out
}

/// `input` repeated to `len` bytes between `head` and `tail`.
fn repeated(head: &str, unit: &str, tail: &str, len: usize) -> Vec<u8> {
    let count = len.saturating_sub(head.len() + tail.len()) / unit.len();
    let mut out = String::with_capacity(len);
    out.push_str(head);
    for _ in 0..count {
        out.push_str(unit);
    }
    out.push_str(tail);
    out.into_bytes()
}

/// The most heap each decoder holds for the densest inputs found by hand,
/// per input byte, at the fuzzer's largest input and at the gateway's
/// default body limit (16 MiB). Figures for docs/fuzzing.md.
fn amplification() {
    use gateway::http::codec::decode_request;
    use gateway_fuzz::peak_during;
    use switchyard_api::Manifest;
    use switchyard_api::grpc::ModelInferRequest;

    type Case = (&'static str, fn(usize) -> Vec<u8>, fn(&[u8]) -> bool);
    let cases: [Case; 9] = [
        (
            "http: long shape",
            |n| {
                repeated(
                    r#"{"inputs":[{"name":"x","datatype":"FP32","data":[],"shape":[0"#,
                    ",0",
                    "]}]}",
                    n,
                )
            },
            |b| decode_request(b, None).is_ok(),
        ),
        (
            "http: long negative shape",
            |n| {
                repeated(
                    r#"{"inputs":[{"name":"x","datatype":"FP32","data":[],"shape":[-1"#,
                    ",0",
                    "]}]}",
                    n,
                )
            },
            |b| decode_request(b, None).is_ok(),
        ),
        (
            "http: FP64 zeros",
            |n| {
                let count = n.saturating_sub(64) / 2;
                let head = format!(
                    r#"{{"inputs":[{{"name":"x","datatype":"FP64","shape":[{count}],"data":[0"#
                );
                repeated(&head, ",0", "]}]}", head.len() + 2 * count + 4)
            },
            |b| decode_request(b, None).is_ok(),
        ),
        (
            "http: empty outputs",
            |n| {
                repeated(
                    r#"{"inputs":[],"outputs":[{"name":""}"#,
                    r#",{"name":""}"#,
                    "]}",
                    n,
                )
            },
            |b| decode_request(b, None).is_ok(),
        ),
        (
            "http: empty inputs",
            |n| {
                repeated(
                    r#"{"inputs":[{"name":"","shape":[],"datatype":"x"}"#,
                    r#",{"name":"","shape":[],"datatype":"x"}"#,
                    "]}",
                    n,
                )
            },
            |b| decode_request(b, None).is_ok(),
        ),
        (
            "grpc: empty inputs (prost)",
            |n| [0x2a, 0x00].repeat(n / 2),
            |b| ModelInferRequest::decode(b).is_ok(),
        ),
        (
            "grpc: empty outputs (prost)",
            |n| [0x32, 0x00].repeat(n / 2),
            |b| ModelInferRequest::decode(b).is_ok(),
        ),
        (
            "grpc: empty raw contents (prost)",
            |n| [0x3a, 0x00].repeat(n / 2),
            |b| ModelInferRequest::decode(b).is_ok(),
        ),
        (
            "manifest: empty labels",
            |n| repeated("labels = [\"\"", ",\"\"", "]\n", n),
            |b| Manifest::parse(std::str::from_utf8(b).unwrap_or_default()).is_ok(),
        ),
    ];
    println!("case | input bytes | peak heap bytes | per input byte | accepted");
    for (name, make, decode) in cases {
        for len in [64 << 10, 16 << 20] {
            let input = make(len);
            let (ok, peak) = peak_during(|| decode(&input));
            println!(
                "{name} | {} | {peak} | {:.1} | {ok}",
                input.len(),
                peak as f64 / input.len() as f64
            );
        }
    }
}
