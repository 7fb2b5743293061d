//! What the criterion benches share: the example models and request bodies
//! built from their golden rows.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::time::Duration;

use criterion::Criterion;
use gateway::tensor::{Tensor, TensorData};

/// Short runs, so that `cargo bench` finishes in minutes on two cores.
pub fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30)
}

/// The repository of example models.
pub fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// The golden input rows of boosted v2: (row width, flat values).
pub fn golden() -> (usize, Vec<f64>) {
    let path = models().join("boosted/2/golden.json");
    let text = std::fs::read_to_string(&path).expect("models/boosted/2/golden.json is readable");
    let json: serde_json::Value = serde_json::from_str(&text).expect("golden.json is JSON");
    let input = &json["inputs"]["input"];
    let width = input["shape"][1].as_u64().expect("shape [rows, width]") as usize;
    let data: Vec<f64> = serde_json::from_value(input["data"].clone()).expect("data is numbers");
    (width, data)
}

/// `rows` golden rows, repeated as needed.
pub fn rows(n: usize) -> (usize, Vec<f64>) {
    let (width, data) = golden();
    let available = data.len() / width;
    let flat = (0..n)
        .flat_map(|r| {
            let i = r % available;
            data[i * width..(i + 1) * width].to_vec()
        })
        .collect();
    (width, flat)
}

/// An OIP v2 JSON body of `n` rows, numbers written as Python writes them.
pub fn json_body(n: usize) -> Vec<u8> {
    let (width, flat) = rows(n);
    serde_json::to_vec(&serde_json::json!({
        "inputs": [{"name": "input", "shape": [n, width], "datatype": "FP32", "data": flat}]
    }))
    .expect("serialisable")
}

/// Little-endian FP32 bytes of `n` rows.
#[allow(clippy::cast_possible_truncation)]
pub fn raw_rows(n: usize) -> Vec<u8> {
    rows(n)
        .1
        .iter()
        .flat_map(|&v| (v as f32).to_le_bytes())
        .collect()
}

/// A binary-extension body of `n` rows and its JSON header's length.
pub fn binary_body(n: usize) -> (Vec<u8>, usize) {
    let raw = raw_rows(n);
    let mut body = serde_json::to_vec(&serde_json::json!({
        "inputs": [{"name": "input", "shape": [n, 20], "datatype": "FP32",
                    "parameters": {"binary_data_size": raw.len()}}],
        "parameters": {"binary_data_output": true}
    }))
    .expect("serialisable");
    let header = body.len();
    body.extend_from_slice(&raw);
    (body, header)
}

/// The `input` tensor of `n` rows.
#[allow(clippy::cast_possible_truncation)]
pub fn input_tensor(n: usize) -> Tensor {
    let (width, flat) = rows(n);
    Tensor {
        name: "input".to_owned(),
        shape: vec![n, width],
        data: TensorData::F32(flat.iter().map(|&v| v as f32).collect()),
    }
}
