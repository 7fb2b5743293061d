//! The gRPC codec of the inference service: prost's, behind a guard that
//! counts repeated entries before anything is decoded.
//!
//! prost turns each two-byte empty `inputs` entry into a struct of a few
//! hundred bytes, so a 16 MiB request of empty entries would hold gigabytes
//! before any handler could refuse it. The guard walks the wire format once
//! (no allocation) and refuses a request with more entries than any model
//! needs, with `INVALID_ARGUMENT` naming the field.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::ProstCodec;

/// Most entries of `inputs`, `outputs`, `raw_input_contents` or request
/// `parameters` in one request.
pub const MAX_ENTRIES: usize = 256;
/// Most `parameters` entries of one tensor.
pub const MAX_TENSOR_PARAMETERS: usize = 64;
/// Most `bytes_contents` entries of one tensor.
pub const MAX_BYTES_ELEMENTS: usize = 4096;

/// prost's codec with the entry guard on decoding.
#[derive(Debug)]
pub struct GuardedCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for GuardedCodec<T, U> {
    fn default() -> Self {
        GuardedCodec(PhantomData)
    }
}

/// The decoding half.
#[derive(Debug)]
pub struct GuardedDecoder<U>(PhantomData<U>);

impl<T, U> Codec for GuardedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = GuardedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        GuardedDecoder(PhantomData)
    }
}

impl<U: Message + Default> Decoder for GuardedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        use bytes::Buf;
        let bytes = buf.copy_to_bytes(buf.remaining());
        guard(&bytes).map_err(Status::invalid_argument)?;
        U::decode(bytes)
            .map(Some)
            .map_err(|e| Status::internal(format!("malformed protobuf message: {e}")))
    }
}

/// Checks the entry counts of a `ModelInferRequest` (harmless for the
/// other messages, which have none of these fields). Malformed input is
/// left for prost to report.
///
/// # Errors
/// A message naming the field with too many entries.
pub fn guard(message: &[u8]) -> Result<(), String> {
    let mut counts = [0usize; 8];
    walk(message, |field, body| {
        if let Some(c) = counts.get_mut(field as usize) {
            *c += 1;
        }
        if let (5, Some(body)) = (field, body) {
            check_input(body)?;
        }
        Ok(())
    })?;
    for (field, name) in [
        (4, "parameters"),
        (5, "inputs"),
        (6, "outputs"),
        (7, "raw_input_contents"),
    ] {
        if counts[field] > MAX_ENTRIES {
            return Err(format!(
                "{name} has {} entries; at most {MAX_ENTRIES} are accepted",
                counts[field]
            ));
        }
    }
    Ok(())
}

fn check_input(input: &[u8]) -> Result<(), String> {
    let mut parameters = 0;
    walk(input, |field, body| {
        match (field, body) {
            (4, _) => parameters += 1,
            (5, Some(contents)) => {
                let mut elements = 0;
                walk(contents, |f, _| {
                    if f == 8 {
                        elements += 1;
                    }
                    Ok(())
                })?;
                if elements > MAX_BYTES_ELEMENTS {
                    return Err(format!(
                        "an input's bytes_contents has {elements} entries; at most {MAX_BYTES_ELEMENTS} are accepted"
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    if parameters > MAX_TENSOR_PARAMETERS {
        return Err(format!(
            "an input has {parameters} parameters; at most {MAX_TENSOR_PARAMETERS} are accepted"
        ));
    }
    Ok(())
}

/// Calls `each(field, body)` for every top-level field of a message; `body`
/// is the bytes of a length-delimited field. Stops quietly at malformed
/// bytes (prost reports them).
fn walk(
    mut b: &[u8],
    mut each: impl FnMut(u64, Option<&[u8]>) -> Result<(), String>,
) -> Result<(), String> {
    while !b.is_empty() {
        let Some(key) = varint(&mut b) else {
            return Ok(());
        };
        let (field, wire) = (key >> 3, key & 7);
        let body = match wire {
            0 => {
                if varint(&mut b).is_none() {
                    return Ok(());
                }
                None
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                if b.len() < n {
                    return Ok(());
                }
                b = &b[n..];
                None
            }
            2 => {
                let Some(len) = varint(&mut b).and_then(|l| usize::try_from(l).ok()) else {
                    return Ok(());
                };
                if b.len() < len {
                    return Ok(());
                }
                let (body, rest) = b.split_at(len);
                b = rest;
                Some(body)
            }
            _ => return Ok(()),
        };
        each(field, body)?;
    }
    Ok(())
}

fn varint(b: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b.split_first()?;
        *b = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::ModelInferRequest;
    use crate::grpc::model_infer_request::InferInputTensor;

    #[test]
    fn a_normal_request_passes_and_a_flood_of_empty_entries_does_not() {
        let mut r = ModelInferRequest {
            model_name: "m".into(),
            ..Default::default()
        };
        r.inputs.push(InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![1, 20],
            ..Default::default()
        });
        r.raw_input_contents.push(vec![0; 80]);
        assert_eq!(guard(&r.encode_to_vec()), Ok(()));

        r.inputs = vec![InferInputTensor::default(); MAX_ENTRIES + 1];
        let err = guard(&r.encode_to_vec()).unwrap_err();
        assert!(err.contains("inputs has 257 entries"), "{err}");

        let mut flood = Vec::new();
        for _ in 0..100_000 {
            flood.extend_from_slice(&[0x2a, 0x00]); // field 5, empty
        }
        assert!(guard(&flood).is_err());
        // Malformed bytes are left for prost.
        assert_eq!(guard(&[0xff, 0xff, 0xff]), Ok(()));
    }

    #[test]
    fn tensor_parameters_are_bounded_too() {
        let mut input = InferInputTensor::default();
        for i in 0..=MAX_TENSOR_PARAMETERS {
            input.parameters.insert(format!("p{i}"), Default::default());
        }
        let r = ModelInferRequest {
            inputs: vec![input],
            ..Default::default()
        };
        let err = guard(&r.encode_to_vec()).unwrap_err();
        assert!(err.contains("65 parameters"), "{err}");
    }
}
