//! The gRPC front end: the standard `inference.GRPCInferenceService`
//! (so tritonclient and KServe clients work unchanged) and
//! `grpc.health.v1.Health` for Kubernetes probes. Decodes into the core's
//! [`InferRequest`], encodes outputs as `raw_output_contents` as Triton
//! does; errors become statuses in [`status_of`] alone.

pub mod direct;
pub mod serve;

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_api::DataType;
use switchyard_api::grpc::grpc_inference_service_server::GrpcInferenceService;
use switchyard_api::grpc::model_infer_request::InferInputTensor;
use switchyard_api::grpc::model_infer_response::InferOutputTensor;
use switchyard_api::grpc::model_metadata_response::TensorMetadata;
use switchyard_api::grpc::{
    InferTensorContents, ModelInferRequest, ModelInferResponse, ModelMetadataRequest,
    ModelMetadataResponse, ModelReadyRequest, ModelReadyResponse, ServerLiveRequest,
    ServerLiveResponse, ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest,
    ServerReadyResponse, infer_parameter::ParameterChoice,
};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use crate::http::codec::MAX_TIMEOUT;
use crate::http::{SLOT_HEADER, VERSION_HEADER};
use crate::infer::{InferError, InferRequest};
use crate::metrics::Protocol;
use crate::routing::Pin;
use crate::serving::Serving;
use crate::tensor::{Tensor, TensorData};

pub use switchyard_api::grpc::grpc_inference_service_server::GrpcInferenceServiceServer;

/// The inference service.
#[derive(Debug, Clone)]
pub struct InferenceService {
    serving: Arc<Serving>,
}

impl InferenceService {
    /// A service over the core.
    pub fn new(serving: Arc<Serving>) -> InferenceService {
        InferenceService { serving }
    }
}

/// The gRPC status of an inference error.
pub fn status_of(e: &InferError) -> Status {
    let message = e.to_string();
    match e.http_status() {
        404 => Status::not_found(message),
        400 => Status::invalid_argument(message),
        429 => {
            let mut s = Status::resource_exhausted(message);
            s.metadata_mut()
                .insert("retry-after", MetadataValue::from_static("1"));
            s
        }
        504 => Status::deadline_exceeded(message),
        503 => Status::unavailable(message),
        _ => Status::internal(message),
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse {
            ready: self.serving.is_ready(),
        }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let r = request.into_inner();
        let pin = version_pin(&r.version)?;
        let table = self.serving.table();
        let ready = table.route(&r.name).ok().is_some_and(|route| match pin {
            Some(v) => route.pick(Pin::Version(v)).is_ok(),
            None => route.slot(route.live).is_some(),
        });
        Ok(Response::new(ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: "switchyard".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            // The repository extension is HTTP-only here; gRPC clients
            // must not be told otherwise.
            extensions: vec![],
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let r = request.into_inner();
        let pin = version_pin(&r.version)?;
        let table = self.serving.table();
        let route = table
            .route(&r.name)
            .map_err(|e| Status::not_found(e.to_string()))?;
        let picked = route
            .described(pin)
            .map_err(|e| Status::not_found(e.to_string()))?;
        let m = &picked.manifest;
        let tensors = |specs: &[switchyard_api::manifest::TensorSpec]| {
            specs
                .iter()
                .map(|s| TensorMetadata {
                    name: s.name.clone(),
                    datatype: s.datatype.as_str().to_owned(),
                    shape: s.shape.clone(),
                })
                .collect()
        };
        Ok(Response::new(ModelMetadataResponse {
            name: m.name.clone(),
            versions: route.loaded_versions(),
            platform: m.platform.clone(),
            inputs: tensors(&m.inputs),
            outputs: tensors(&m.outputs),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let started = Instant::now();
        let (metadata, _, r) = request.into_parts();
        let answer = self.infer(&metadata.into_headers(), r, started).await?;
        let mut response = Response::new(answer.message);
        let metadata = response.metadata_mut();
        if let Some(v) = answer
            .version
            .and_then(|v| MetadataValue::try_from(v.as_bytes()).ok())
        {
            metadata.insert(VERSION_HEADER, v);
        }
        metadata.insert(SLOT_HEADER, MetadataValue::from_static(answer.slot));
        Ok(response)
    }
}

/// A `ModelInfer` answer and the metadata it goes out with.
pub(crate) struct Answer {
    pub(crate) message: ModelInferResponse,
    /// The version label, when it is a valid header value.
    pub(crate) version: Option<http::HeaderValue>,
    pub(crate) slot: &'static str,
}

impl InferenceService {
    /// `ModelInfer` once the message is decoded, for tonic's method and
    /// for the direct path of [`direct`] alike: the client's deadline and
    /// pins from the headers, the inputs, the inference, the answer.
    pub(crate) async fn infer(
        &self,
        headers: &http::HeaderMap,
        r: ModelInferRequest,
        started: Instant,
    ) -> Result<Answer, Status> {
        let timeout = grpc_timeout(headers)?;
        let pin = pin_from(headers, version_pin(&r.model_version)?)?;
        let param_timeout = parameter_timeout(&r)?;
        let inputs = decode_inputs(r.inputs, r.raw_input_contents)?;
        let outputs =
            (!r.outputs.is_empty()).then(|| r.outputs.into_iter().map(|o| o.name).collect());
        let response = self
            .serving
            .infer(InferRequest {
                model: r.model_name,
                pin,
                inputs,
                outputs,
                timeout: timeout.or(param_timeout),
                protocol: Protocol::Grpc,
                started,
            })
            .await
            .map_err(|e| status_of(&e))?;
        let model = &response.model;
        let mut raw = Vec::with_capacity(response.outputs.len());
        let outputs = response
            .outputs
            .iter()
            .map(|t| {
                let mut bytes = Vec::with_capacity(t.data.len() * t.datatype().size());
                t.data.write_le_bytes(&mut bytes);
                raw.push(bytes);
                InferOutputTensor {
                    name: t.name.clone(),
                    datatype: t.datatype().as_str().to_owned(),
                    shape: t.shape_i64(),
                    parameters: Default::default(),
                    contents: None,
                }
            })
            .collect();
        Ok(Answer {
            message: ModelInferResponse {
                model_name: model.name().to_owned(),
                model_version: model.version_label.clone(),
                id: r.id,
                parameters: Default::default(),
                outputs,
                raw_output_contents: raw,
            },
            version: http::HeaderValue::from_str(&model.version_label).ok(),
            slot: model.slot.as_str(),
        })
    }
}

fn version_pin(version: &str) -> Result<Option<u64>, Status> {
    if version.is_empty() {
        return Ok(None);
    }
    version
        .parse::<u64>()
        .ok()
        .filter(|&v| v > 0)
        .map(Some)
        .ok_or_else(|| {
            Status::not_found(format!(
                "model_version {version:?} is not a positive integer"
            ))
        })
}

fn pin_from(headers: &http::HeaderMap, version: Option<u64>) -> Result<Pin, Status> {
    crate::http::pin_from(headers, version).map_err(|e| Status::invalid_argument(e.message()))
}

/// The client's deadline from `grpc-timeout` (e.g. `100m` = 100 ms).
fn grpc_timeout(headers: &http::HeaderMap) -> Result<Option<Duration>, Status> {
    let Some(v) = headers.get("grpc-timeout") else {
        return Ok(None);
    };
    let text = v
        .to_str()
        .map_err(|_| Status::invalid_argument("grpc-timeout is not text"))?;
    let (digits, unit) = text.split_at(text.len().saturating_sub(1));
    let n: u64 = digits
        .parse()
        .map_err(|_| Status::invalid_argument(format!("grpc-timeout {text:?} is malformed")))?;
    let d = match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => {
            return Err(Status::invalid_argument(format!(
                "grpc-timeout {text:?} has an unknown unit"
            )));
        }
    };
    Ok(Some(d.min(MAX_TIMEOUT)))
}

/// Triton's `timeout` request parameter, in microseconds.
fn parameter_timeout(r: &ModelInferRequest) -> Result<Option<Duration>, Status> {
    let Some(p) = r.parameters.get("timeout") else {
        return Ok(None);
    };
    let micros = match &p.parameter_choice {
        Some(ParameterChoice::Int64Param(n)) => u64::try_from(*n).ok(),
        Some(ParameterChoice::Uint64Param(n)) => Some(*n),
        _ => None,
    };
    micros
        .map(Duration::from_micros)
        .filter(|d| !d.is_zero() && *d <= MAX_TIMEOUT)
        .map(Some)
        .ok_or_else(|| {
            Status::invalid_argument("parameters.timeout must be a positive number of microseconds")
        })
}

/// Builds tensors from typed contents or from `raw_input_contents`.
///
/// # Errors
/// `INVALID_ARGUMENT` naming the input: an unknown datatype, a negative
/// dimension, raw bytes that don't fit the shape, or a mix of both forms.
pub fn decode_inputs(
    inputs: Vec<InferInputTensor>,
    raw: Vec<Vec<u8>>,
) -> Result<Vec<Tensor>, Status> {
    let invalid = |m: String| Status::invalid_argument(m);
    if !raw.is_empty() && raw.len() != inputs.len() {
        return Err(invalid(format!(
            "raw_input_contents has {} entries for {} inputs",
            raw.len(),
            inputs.len()
        )));
    }
    let mut raw = raw.into_iter();
    let mut tensors = Vec::with_capacity(inputs.len());
    for input in inputs {
        let name = input.name;
        let (datatype, shape, elements) =
            crate::tensor::declared(&name, &input.datatype, &input.shape).map_err(invalid)?;
        let data = match (raw.next(), input.contents) {
            (Some(_), Some(_)) => {
                return Err(invalid(format!(
                    "input {name:?} has contents while raw_input_contents is used"
                )));
            }
            (Some(bytes), None) => TensorData::from_le_bytes(datatype, &shape, &bytes)
                .map_err(|e| invalid(format!("input {name:?}: raw_input_contents: {e}")))?,
            (None, Some(contents)) => typed_contents(datatype, contents)
                .map_err(|e| invalid(format!("input {name:?}: contents: {e}")))?,
            (None, None) => return Err(invalid(format!("input {name:?} has no contents"))),
        };
        if data.len() != elements {
            return Err(invalid(format!(
                "input {name:?}: {} values where shape {shape:?} needs {elements}",
                data.len()
            )));
        }
        tensors.push(Tensor { name, shape, data });
    }
    Ok(tensors)
}

fn typed_contents(datatype: DataType, c: InferTensorContents) -> Result<TensorData, String> {
    fn narrow<S: Copy + std::fmt::Display, T: TryFrom<S>>(
        v: Vec<S>,
        name: &str,
    ) -> Result<Vec<T>, String> {
        v.into_iter()
            .map(|x| T::try_from(x).map_err(|_| format!("{x} is not a valid {name}")))
            .collect()
    }
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(c.bool_contents),
        DataType::Uint8 => TensorData::U8(narrow(c.uint_contents, "UINT8")?),
        DataType::Uint16 => TensorData::U16(narrow(c.uint_contents, "UINT16")?),
        DataType::Uint32 => TensorData::U32(c.uint_contents),
        DataType::Uint64 => TensorData::U64(c.uint64_contents),
        DataType::Int8 => TensorData::I8(narrow(c.int_contents, "INT8")?),
        DataType::Int16 => TensorData::I16(narrow(c.int_contents, "INT16")?),
        DataType::Int32 => TensorData::I32(c.int_contents),
        DataType::Int64 => TensorData::I64(c.int64_contents),
        DataType::Fp32 => TensorData::F32(c.fp32_contents),
        DataType::Fp64 => TensorData::F64(c.fp64_contents),
    })
}

#[cfg(test)]
mod tests;
