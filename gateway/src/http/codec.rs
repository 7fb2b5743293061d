//! The Open Inference Protocol v2 request and response bodies over HTTP:
//! JSON, and Triton's binary tensor data extension (a JSON header of
//! `Inference-Header-Content-Length` bytes followed by raw tensors), which
//! tritonclient uses by default.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::json_data;
use crate::tensor::{Tensor, TensorData, with_vec};

/// The longest deadline a client may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// A decoded `/infer` body.
#[derive(Debug)]
pub struct DecodedRequest {
    /// The client's request id, echoed back.
    pub id: Option<String>,
    /// The inputs.
    pub inputs: Vec<Tensor>,
    /// The outputs asked for, if the client named any.
    pub outputs: Option<Vec<String>>,
    /// Which outputs go back as binary.
    pub binary: BinaryOutputs,
    /// `parameters.timeout`, in microseconds as Triton defines it.
    pub timeout: Option<Duration>,
}

/// Which outputs are answered as raw bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BinaryOutputs {
    /// `parameters.binary_data_output` of the request: all of them.
    pub all: bool,
    /// Outputs whose own `parameters.binary_data` is true.
    pub named: Vec<String>,
}

/// Why a body was refused; each message names the field or input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

#[derive(Deserialize)]
struct RequestJson<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<HashMap<String, serde_json::Value>>,
    #[serde(borrow)]
    inputs: Vec<InputJson<'a>>,
    #[serde(default)]
    outputs: Option<Vec<OutputJson>>,
}

#[derive(Deserialize)]
struct InputJson<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<HashMap<String, serde_json::Value>>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct OutputJson {
    name: String,
    #[serde(default)]
    parameters: Option<HashMap<String, serde_json::Value>>,
}

/// Decodes an `/infer` body. `header_length` is the value of
/// `Inference-Header-Content-Length`, if the request had it.
///
/// # Errors
/// [`DecodeError`] naming what is wrong.
pub fn decode_request(
    body: &[u8],
    header_length: Option<usize>,
) -> Result<DecodedRequest, DecodeError> {
    let err = |m: String| DecodeError(m);
    let (json, mut binary) = match header_length {
        Some(n) if n > body.len() => {
            return Err(err(format!(
                "Inference-Header-Content-Length is {n} but the body has only {} bytes",
                body.len()
            )));
        }
        Some(n) => body.split_at(n),
        None => (body, &[][..]),
    };
    let text =
        std::str::from_utf8(json).map_err(|e| err(format!("request JSON is not UTF-8: {e}")))?;
    let parsed: RequestJson<'_> =
        serde_json::from_str(text).map_err(|e| err(format!("malformed request JSON: {e}")))?;
    let params = parsed.parameters.unwrap_or_default();
    let timeout = match params.get("timeout") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .map(Duration::from_micros)
                .filter(|d| !d.is_zero() && *d <= MAX_TIMEOUT)
                .ok_or_else(|| {
                    err(format!(
                        "parameters.timeout must be microseconds between 1 and {}, got {v}",
                        MAX_TIMEOUT.as_micros()
                    ))
                })?,
        ),
    };
    let mut inputs = Vec::with_capacity(parsed.inputs.len());
    for input in parsed.inputs {
        let name = input.name;
        let (datatype, shape, elements) =
            crate::tensor::declared(&name, &input.datatype, &input.shape).map_err(err)?;
        let binary_size = input
            .parameters
            .as_ref()
            .and_then(|p| p.get("binary_data_size"))
            .map(|v| {
                v.as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| {
                        err(format!(
                            "input {name:?}: binary_data_size must be a byte count"
                        ))
                    })
            })
            .transpose()?;
        let data = match (binary_size, input.data) {
            (Some(_), Some(_)) => {
                return Err(err(format!(
                    "input {name:?} has both data and binary_data_size"
                )));
            }
            (Some(n), None) => {
                if n > binary.len() {
                    return Err(err(format!(
                        "input {name:?}: binary_data_size {n} is past the end of the body ({} bytes left)",
                        binary.len()
                    )));
                }
                let (mine, rest) = binary.split_at(n);
                binary = rest;
                TensorData::from_le_bytes(datatype, &shape, mine)
                    .map_err(|e| err(format!("input {name:?}: {e}")))?
            }
            (None, Some(raw)) => json_data::decode(raw, datatype, elements)
                .map_err(|e| err(format!("input {name:?}: data: {e}")))?,
            (None, None) => return Err(err(format!("input {name:?} has no data"))),
        };
        inputs.push(Tensor { name, shape, data });
    }
    if !binary.is_empty() {
        return Err(err(format!(
            "{} bytes of binary data follow the inputs that no input claims",
            binary.len()
        )));
    }
    let mut binary_outputs = BinaryOutputs {
        all: params
            .get("binary_data_output")
            .and_then(serde_json::Value::as_bool)
            == Some(true),
        named: Vec::new(),
    };
    let outputs = parsed.outputs.map(|outs| {
        outs.into_iter()
            .map(|o| {
                let binary = o.parameters.as_ref().and_then(|p| p.get("binary_data"));
                if binary.and_then(serde_json::Value::as_bool) == Some(true) {
                    binary_outputs.named.push(o.name.clone());
                }
                o.name
            })
            .collect()
    });
    Ok(DecodedRequest {
        id: parsed.id,
        inputs,
        outputs,
        binary: binary_outputs,
        timeout,
    })
}

#[derive(Serialize)]
struct ResponseJson<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<OutputOut<'a>>,
}

#[derive(Serialize)]
struct OutputOut<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinarySize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<DataOut<'a>>,
}

#[derive(Serialize)]
struct BinarySize {
    binary_data_size: usize,
}

struct DataOut<'a>(&'a TensorData);

impl Serialize for DataOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        with_vec!(self.0, v => v.serialize(s))
    }
}

/// An encoded response: the bytes, and the JSON part's length when binary
/// outputs follow it (the `Inference-Header-Content-Length` to send).
#[derive(Debug)]
pub struct EncodedResponse {
    /// The body.
    pub body: Vec<u8>,
    /// Length of the JSON header when the body carries binary outputs.
    pub header_length: Option<usize>,
}

/// Encodes outputs as the protocol's response.
pub fn encode_response(
    model: &str,
    version: &str,
    id: Option<&str>,
    outputs: &[Tensor],
    binary: &BinaryOutputs,
) -> EncodedResponse {
    let is_binary = |t: &Tensor| binary.all || binary.named.iter().any(|n| n == &t.name);
    let json = ResponseJson {
        model_name: model,
        model_version: version,
        id,
        outputs: outputs
            .iter()
            .map(|t| {
                let raw = is_binary(t);
                OutputOut {
                    name: &t.name,
                    datatype: t.datatype().as_str(),
                    shape: &t.shape,
                    parameters: raw.then(|| BinarySize {
                        binary_data_size: t.data.len() * t.datatype().size(),
                    }),
                    data: (!raw).then_some(DataOut(&t.data)),
                }
            })
            .collect(),
    };
    let mut body =
        Vec::with_capacity(256 + outputs.iter().map(|t| t.data.len() * 12).sum::<usize>());
    // Serialising plain structs and number slices into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut body, &json);
    let any_binary = outputs.iter().any(is_binary);
    let header_length = any_binary.then_some(body.len());
    for t in outputs.iter().filter(|t| is_binary(t)) {
        t.data.write_le_bytes(&mut body);
    }
    EncodedResponse {
        body,
        header_length,
    }
}

#[cfg(test)]
mod tests;
