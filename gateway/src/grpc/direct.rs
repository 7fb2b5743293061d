//! `ModelInfer` without tonic's codec, for the calls that need none of it.
//!
//! tonic's unary path decodes through a streaming decoder, encodes the
//! answer into an 8 KiB buffer, and builds its trailers from a `Status`,
//! for every call. An uncompressed `ModelInfer` (the one call that carries
//! load) is a single length-prefixed message each way, so here it is read
//! whole (bounded by the message limit and the call's deadline), checked by
//! the same entry guard and decoded by the same prost message, answered by
//! the same [`InferenceService::infer`], and encoded into a buffer of its
//! exact size. Everything else (a compressed request, the other methods,
//! health) still goes through tonic.
//!
//! An answer goes out uncompressed: as grpc-go's servers do, the gateway
//! compresses an answer only when the request came compressed (those take
//! tonic's path), since gzip costs more than it saves on messages of a few
//! hundred bytes.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use prost::Message;
use switchyard_api::grpc::ModelInferRequest;
use switchyard_api::grpc_codec::guard;
use tonic::Status;

use super::InferenceService;
use crate::http::{SLOT_HEADER, VERSION_HEADER};

/// The path of the call served here.
pub const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

/// The length-prefix of a gRPC message: a compression flag and a
/// big-endian length.
const PREFIX: usize = 5;

const GRPC_CONTENT_TYPE: HeaderValue = HeaderValue::from_static("application/grpc");

/// `ModelInfer` for uncompressed requests.
#[derive(Debug, Clone)]
pub struct DirectInfer {
    service: InferenceService,
    /// Largest message accepted or sent (`max_body_bytes`).
    max_message: usize,
    /// How long reading a request may take when the client set no
    /// deadline (the gateway's default request timeout).
    read_timeout: Duration,
}

impl DirectInfer {
    /// Serves `service`'s `ModelInfer` with messages of at most
    /// `max_message` bytes.
    pub fn new(service: InferenceService, max_message: usize, read_timeout: Duration) -> Self {
        DirectInfer {
            service,
            max_message,
            read_timeout,
        }
    }

    /// Whether a call is one this path serves: `ModelInfer` with an
    /// uncompressed message.
    pub fn serves(request: &http::Request<Incoming>) -> bool {
        request.uri().path() == MODEL_INFER
            && request
                .headers()
                .get("grpc-encoding")
                .is_none_or(|e| e == "identity")
    }

    /// Answers one call; every failure is a gRPC status in the answer.
    pub async fn call(self, request: http::Request<Incoming>) -> http::Response<tonic::body::Body> {
        let started = Instant::now();
        match self.answer(request, started).await {
            Ok(response) => response,
            Err(status) => status.into_http(),
        }
    }

    async fn answer(
        &self,
        request: http::Request<Incoming>,
        started: Instant,
    ) -> Result<http::Response<tonic::body::Body>, Status> {
        let (parts, body) = request.into_parts();
        // The client's own deadline bounds the read too; `infer` reads it
        // again (and refuses a malformed one) for the inference.
        let read_timeout = super::grpc_timeout(&parts.headers)
            .ok()
            .flatten()
            .unwrap_or(self.read_timeout);
        let limit = self.max_message + PREFIX;
        let body = tokio::time::timeout(read_timeout, Limited::new(body, limit).collect())
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "the request message did not arrive within {read_timeout:?}"
                ))
            })?
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    self.too_large("request")
                } else {
                    Status::cancelled(format!("the request stream broke: {e}"))
                }
            })?
            .to_bytes();
        let request = decode_call(body, self.max_message)?;
        let answer = self.service.infer(&parts.headers, request, started).await?;

        let len = answer.message.encoded_len();
        if len > self.max_message {
            return Err(self.too_large("answer"));
        }
        let mut framed = BytesMut::with_capacity(PREFIX + len);
        framed.put_u8(0);
        framed.put_u32(u32::try_from(len).map_err(|_| self.too_large("answer"))?);
        answer
            .message
            .encode(&mut framed)
            .map_err(|e| Status::internal(format!("cannot encode the answer: {e}")))?;
        let mut trailers = HeaderMap::with_capacity(1);
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let trailers = std::future::ready(Some(Ok::<_, Infallible>(trailers)));
        let body = Full::new(framed.freeze()).with_trailers(trailers);

        let mut response = http::Response::new(tonic::body::Body::new(body));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, GRPC_CONTENT_TYPE);
        if let Some(v) = answer.version {
            headers.insert(VERSION_HEADER, v);
        }
        headers.insert(SLOT_HEADER, HeaderValue::from_static(answer.slot));
        Ok(response)
    }

    fn too_large(&self, which: &str) -> Status {
        too_large(which, self.max_message)
    }
}

fn too_large(which: &str, max_message: usize) -> Status {
    Status::resource_exhausted(format!(
        "the {which} message is larger than {max_message} bytes (the gateway's --max-body-bytes)"
    ))
}

/// A call's body (one length-prefixed message) as a `ModelInferRequest`:
/// the prefix checked, the entry guard run, the message decoded.
///
/// # Errors
/// As [`unframe`]; `INVALID_ARGUMENT` naming a field with too many
/// entries; `INTERNAL` for bytes that are not a `ModelInferRequest`.
pub fn decode_call(body: Bytes, max_message: usize) -> Result<ModelInferRequest, Status> {
    let message = unframe(body, max_message)?;
    guard(&message).map_err(Status::invalid_argument)?;
    ModelInferRequest::decode(message)
        .map_err(|e| Status::internal(format!("malformed protobuf message: {e}")))
}

/// The one message of a unary call, without its prefix.
///
/// # Errors
/// `INTERNAL` for a body that is not exactly one uncompressed message (a
/// protocol error, as gRPC names them), `RESOURCE_EXHAUSTED` for a message
/// over `max_message` bytes.
pub fn unframe(mut body: Bytes, max_message: usize) -> Result<Bytes, Status> {
    if body.len() < PREFIX {
        return Err(Status::internal(format!(
            "the request holds {} bytes, less than a message prefix",
            body.len()
        )));
    }
    let compressed = body.get_u8();
    let declared = body.get_u32() as usize;
    if compressed != 0 {
        return Err(Status::internal(
            "the message is flagged compressed but the call names no grpc-encoding",
        ));
    }
    if declared > max_message {
        return Err(too_large("request", max_message));
    }
    if body.len() != declared {
        return Err(Status::internal(format!(
            "the message prefix declares {declared} bytes but {} follow (one message per ModelInfer call)",
            body.len()
        )));
    }
    Ok(body)
}
