//! `http_decode`: `gateway::http::codec::decode_request`, the Open
//! Inference Protocol's JSON body and Triton's binary tensor extension,
//! then an `encode_response` round trip of whatever it accepted.
//!
//! An input is a three-byte prefix that picks the
//! `Inference-Header-Content-Length` value, then the body:
//!
//! | byte 0 % 4 | header length                                   |
//! |------------|-------------------------------------------------|
//! | 0          | none (a plain JSON body)                        |
//! | 1          | body length − n: n bytes of binary data follow  |
//! | 2          | n                                               |
//! | 3          | `usize::MAX` − n                                |
//!
//! where n is bytes 1–2, little-endian. Mode 1 keeps the binary tail the
//! same size while the fuzzer grows or shrinks the JSON in front of it;
//! a tail longer than the body gives a header length past its end.

use gateway::http::codec::{
    BinaryOutputs, DecodedRequest, MAX_TIMEOUT, decode_request, encode_response,
};
use gateway::tensor::{Tensor, TensorData};
use serde::Deserialize;
use serde_json::value::RawValue;
use switchyard_api::DataType;

use crate::{assert_bounded, peak_during};

/// Heap `decode_request` may hold per input byte. Its worst honest cases
/// are long `shape` arrays (two bytes of JSON become an `i64`, then a
/// `usize`, each in a vector that grows by doubling) at about 30.
pub const BYTES_PER_INPUT_BYTE: usize = 64;

/// How the prefix sets the header length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderLength {
    /// No `Inference-Header-Content-Length`.
    Absent,
    /// This many bytes of the body are binary data after the JSON.
    Tail(u16),
    /// This exact value.
    Exactly(u16),
    /// `usize::MAX` less this.
    NearMax(u16),
}

/// Splits a fuzz input into the header length and the body.
pub fn split(data: &[u8]) -> (Option<usize>, &[u8]) {
    let mode = data.first().copied().unwrap_or(0);
    let n = u16::from_le_bytes([
        data.get(1).copied().unwrap_or(0),
        data.get(2).copied().unwrap_or(0),
    ]);
    let body = data.get(3..).unwrap_or(&[]);
    let n = usize::from(n);
    let header_length = match mode % 4 {
        0 => None,
        1 => Some(body.len().checked_sub(n).unwrap_or(body.len() + n)),
        2 => Some(n),
        _ => Some(usize::MAX - n),
    };
    (header_length, body)
}

/// A fuzz input for `body` with `header` (the inverse of [`split`]).
pub fn input(header: HeaderLength, body: &[u8]) -> Vec<u8> {
    let (mode, n) = match header {
        HeaderLength::Absent => (0, 0),
        HeaderLength::Tail(n) => (1, n),
        HeaderLength::Exactly(n) => (2, n),
        HeaderLength::NearMax(n) => (3, n),
    };
    let mut out = Vec::with_capacity(3 + body.len());
    out.push(mode);
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// The check: no panic, bounded allocation, and for an accepted body,
/// consistent tensors that survive `encode_response` in both its JSON and
/// its binary form. Returns whether the body was accepted.
pub fn check(data: &[u8]) -> bool {
    let (header_length, body) = split(data);
    let (decoded, peak) = peak_during(|| decode_request(body, header_length));
    assert_bounded("decode_request", data.len(), peak, BYTES_PER_INPUT_BYTE);
    match decoded {
        Ok(request) => {
            promises_hold(&request);
            round_trip(&request, false);
            round_trip(&request, true);
            true
        }
        Err(e) => {
            assert!(!e.0.is_empty(), "an empty error message");
            false
        }
    }
}

fn promises_hold(request: &DecodedRequest) {
    for t in &request.inputs {
        let elements = t
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .expect("an accepted shape's element count fits in usize");
        assert_eq!(
            t.data.len(),
            elements,
            "input {:?} of shape {:?} was accepted with {} elements",
            t.name,
            t.shape,
            t.data.len()
        );
    }
    if let Some(timeout) = request.timeout {
        assert!(
            !timeout.is_zero() && timeout <= MAX_TIMEOUT,
            "timeout {timeout:?} accepted"
        );
    }
    let outputs = request.outputs.as_deref().unwrap_or_default();
    for name in &request.binary.named {
        assert!(
            outputs.contains(name),
            "binary output {name:?} is not among the outputs asked for"
        );
    }
}

/// The JSON part of an encoded response. The outputs carry exactly the
/// fields of a request's inputs, so they can be sent straight back.
#[derive(Deserialize)]
struct ResponseHeader<'a> {
    model_name: String,
    model_version: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(borrow)]
    outputs: &'a RawValue,
}

/// Encodes the decoded inputs as a response's outputs, turns that response
/// back into a request and decodes it: the tensors must come back the same.
fn round_trip(request: &DecodedRequest, binary: bool) {
    // JSON has no NaN or infinity; the encoder writes them as `null`,
    // which no decoder takes back. Only the binary form can carry them.
    if !binary && request.inputs.iter().any(|t| has_non_finite(&t.data)) {
        return;
    }
    let wanted = BinaryOutputs {
        all: binary,
        named: Vec::new(),
    };
    let encoded = encode_response(
        "model",
        "7",
        request.id.as_deref(),
        &request.inputs,
        &wanted,
    );
    let expect_binary = binary && !request.inputs.is_empty();
    assert_eq!(
        encoded.header_length.is_some(),
        expect_binary,
        "header length {:?} for a response with binary={binary} and {} outputs",
        encoded.header_length,
        request.inputs.len()
    );
    let json_end = encoded.header_length.unwrap_or(encoded.body.len());
    let (json, tail) = encoded.body.split_at(json_end);
    let expected_tail: usize = request
        .inputs
        .iter()
        .filter(|_| binary)
        .map(|t| t.data.len() * t.datatype().size())
        .sum();
    assert_eq!(tail.len(), expected_tail, "binary tail length");
    let header: ResponseHeader<'_> = serde_json::from_slice(json).unwrap_or_else(|e| {
        panic!(
            "encode_response wrote JSON it cannot read back ({e}): {}",
            String::from_utf8_lossy(json)
        )
    });
    assert_eq!(header.model_name, "model");
    assert_eq!(header.model_version, "7");
    assert_eq!(header.id, request.id, "the id is echoed");

    let mut again = format!(r#"{{"inputs":{}}}"#, header.outputs.get()).into_bytes();
    let again_json = again.len();
    again.extend_from_slice(tail);
    let back = decode_request(&again, expect_binary.then_some(again_json)).unwrap_or_else(|e| {
        panic!(
            "a response built from accepted inputs does not decode as a request (binary={binary}): {e}\n{}",
            String::from_utf8_lossy(&again[..again_json])
        )
    });
    assert_eq!(back.inputs.len(), request.inputs.len());
    for (a, b) in request.inputs.iter().zip(&back.inputs) {
        same_tensor(a, b, binary);
    }
}

fn same_tensor(sent: &Tensor, back: &Tensor, binary: bool) {
    assert_eq!(sent.name, back.name);
    assert_eq!(sent.shape, back.shape, "shape of {:?}", sent.name);
    assert_eq!(
        sent.datatype(),
        back.datatype(),
        "datatype of {:?}",
        sent.name
    );
    // Byte for byte, so NaN payloads in binary data count too, and a
    // JSON float must come back exactly (FP64 included: docs/fuzzing.md,
    // finding 2, fixed).
    let (mut a, mut b) = (Vec::new(), Vec::new());
    sent.data.write_le_bytes(&mut a);
    back.data.write_le_bytes(&mut b);
    assert!(
        a == b,
        "{:?} ({}) changed in a {} round trip",
        sent.name,
        sent.datatype().as_str(),
        if binary { "binary" } else { "JSON" }
    );
}

fn has_non_finite(data: &TensorData) -> bool {
    match data {
        TensorData::F32(v) => v.iter().any(|x| !x.is_finite()),
        TensorData::F64(v) => v.iter().any(|x| !x.is_finite()),
        _ => false,
    }
}

/// A JSON body of one FP32 input named `input` of shape `[rows, cols]`,
/// written as nested rows, for seeds.
pub fn fp32_json_body(rows: usize, cols: usize, id: Option<&str>) -> String {
    let data: Vec<Vec<f32>> = (0..rows)
        .map(|r| {
            (0..cols)
                .map(|c| ((r * cols + c) as f32 * 0.37).sin() * 3.0)
                .collect()
        })
        .collect();
    let mut v = serde_json::json!({
        "inputs": [{
            "name": "input",
            "shape": [rows, cols],
            "datatype": DataType::Fp32.as_str(),
            "data": data,
        }]
    });
    if let Some(id) = id {
        v["id"] = serde_json::Value::from(id);
    }
    v.to_string()
}
