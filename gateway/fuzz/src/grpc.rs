//! `grpc_decode`: what the gateway does with a `ModelInfer` call's bytes
//! before any model sees them: `prost::Message::decode` of a
//! `ModelInferRequest`, then `gateway::grpc::decode_inputs`.
//!
//! An input is the protobuf message itself, as tonic hands it over after
//! the gRPC frame header. The same bytes also go through the direct
//! `ModelInfer` path's reading (`gateway::grpc::direct`): framed, through
//! `decode_call` (prefix, entry guard, prost), whose verdict must agree
//! with prost's; and taken as a whole call body, through `unframe`.

use bytes::Bytes;
use gateway::grpc::decode_inputs;
use gateway::grpc::direct::{decode_call, unframe};
use gateway::tensor::Tensor;
use prost::Message;
use switchyard_api::grpc::model_infer_request::InferInputTensor;
use switchyard_api::grpc::{InferParameter, InferTensorContents, ModelInferRequest};

use crate::{assert_bounded, peak_during};

/// Heap `prost` may hold per input byte while decoding. Protobuf is denser
/// than the structs it becomes: two bytes (a tag and a zero length) make an
/// empty `InferInputTensor` of a few hundred bytes, in a vector that grows
/// by doubling. The bound is linear all the same, and `docs/fuzzing.md`
/// gives the measured worst case.
pub const PROST_BYTES_PER_INPUT_BYTE: usize = 1024;

/// Heap `decode_inputs` may hold per input byte on top of the decoded
/// message: typed buffers no larger than the contents they come from.
pub const DECODE_INPUTS_BYTES_PER_INPUT_BYTE: usize = 16;

/// The check: no panic, bounded allocation in both steps, and for accepted
/// inputs, tensors that match what the message declared. Returns whether
/// both steps accepted the input.
pub fn check(data: &[u8]) -> bool {
    direct_agrees(data);
    let (decoded, peak) = peak_during(|| ModelInferRequest::decode(data));
    assert_bounded(
        "ModelInferRequest::decode",
        data.len(),
        peak,
        PROST_BYTES_PER_INPUT_BYTE,
    );
    let Ok(request) = decoded else {
        return false;
    };
    // What to compare against afterwards, taken before the inputs move.
    let declared: Vec<(String, Vec<i64>, bool)> = request
        .inputs
        .iter()
        .map(|i| (i.name.clone(), i.shape.clone(), i.contents.is_some()))
        .collect();
    let raw = request.raw_input_contents.clone();

    let ModelInferRequest {
        inputs,
        raw_input_contents,
        ..
    } = request;
    let (tensors, peak) = peak_during(|| decode_inputs(inputs, raw_input_contents));
    assert_bounded(
        "decode_inputs",
        data.len(),
        peak,
        DECODE_INPUTS_BYTES_PER_INPUT_BYTE,
    );
    let Ok(tensors) = tensors else {
        return false;
    };
    assert_eq!(tensors.len(), declared.len(), "one tensor per input");
    assert!(
        raw.is_empty() || raw.len() == declared.len(),
        "{} raw_input_contents accepted for {} inputs",
        raw.len(),
        declared.len()
    );
    for (i, (t, (name, shape, typed))) in tensors.iter().zip(&declared).enumerate() {
        assert_eq!(&t.name, name);
        let as_i64: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
        assert_eq!(&as_i64, shape, "shape of {name:?}");
        let elements = t
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .expect("an accepted shape's element count fits in usize");
        assert_eq!(t.data.len(), elements, "element count of {name:?}");
        if let Some(bytes) = raw.get(i) {
            assert!(!typed, "{name:?} accepted with both contents and raw bytes");
            raw_matches(t, bytes);
        }
    }
    true
}

/// The direct path accepts exactly what prost accepts, except what the
/// entry guard refuses (with `INVALID_ARGUMENT`); as a call body, the bytes
/// are unframed only when their prefix declares exactly what follows.
fn direct_agrees(data: &[u8]) {
    let mut framed = Vec::with_capacity(data.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&(data.len() as u32).to_be_bytes());
    framed.extend_from_slice(data);
    match (
        decode_call(Bytes::from(framed), usize::MAX),
        ModelInferRequest::decode(data),
    ) {
        // Compared by size: NaN contents are never equal to themselves,
        // and maps encode in no fixed order.
        (Ok(direct), Ok(plain)) => assert_eq!(
            direct.encoded_len(),
            plain.encoded_len(),
            "the two decodings differ"
        ),
        (Ok(_), Err(e)) => panic!("the direct path accepted a message prost refuses: {e}"),
        (Err(s), Ok(_)) => assert_eq!(
            s.code(),
            tonic::Code::InvalidArgument,
            "refused for another reason than the entry guard: {s:?}"
        ),
        (Err(_), Err(_)) => {}
    }
    if let Ok(message) = unframe(Bytes::copy_from_slice(data), usize::MAX) {
        assert_eq!(
            message.len() + 5,
            data.len(),
            "unframed a body of another length"
        );
        assert_eq!(&data[5..], &message[..]);
    }
}

/// Raw input bytes become exactly these elements (BOOL: any non-zero byte
/// is true).
fn raw_matches(t: &Tensor, bytes: &[u8]) {
    let mut written = Vec::with_capacity(bytes.len());
    t.data.write_le_bytes(&mut written);
    if t.datatype() == switchyard_api::DataType::Bool {
        let normal: Vec<u8> = bytes.iter().map(|&b| u8::from(b != 0)).collect();
        assert_eq!(written, normal, "BOOL raw bytes of {:?}", t.name);
    } else {
        assert!(written == bytes, "raw bytes of {:?} changed", t.name);
    }
}

/// An input with typed contents, for seeds.
pub fn typed_input(
    name: &str,
    datatype: &str,
    shape: &[i64],
    contents: InferTensorContents,
) -> InferInputTensor {
    InferInputTensor {
        name: name.to_owned(),
        datatype: datatype.to_owned(),
        shape: shape.to_vec(),
        parameters: Default::default(),
        contents: Some(contents),
    }
}

/// An input whose data travels in `raw_input_contents`, for seeds.
pub fn raw_input(name: &str, datatype: &str, shape: &[i64]) -> InferInputTensor {
    InferInputTensor {
        name: name.to_owned(),
        datatype: datatype.to_owned(),
        shape: shape.to_vec(),
        parameters: Default::default(),
        contents: None,
    }
}

/// A request for `model` with these inputs, for seeds.
pub fn request(model: &str, inputs: Vec<InferInputTensor>, raw: Vec<Vec<u8>>) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.to_owned(),
        model_version: String::new(),
        id: String::new(),
        parameters: Default::default(),
        inputs,
        outputs: Vec::new(),
        raw_input_contents: raw,
    }
}

/// An `int64_param`, for seeds.
pub fn int64_param(v: i64) -> InferParameter {
    InferParameter {
        parameter_choice: Some(
            switchyard_api::grpc::infer_parameter::ParameterChoice::Int64Param(v),
        ),
    }
}
