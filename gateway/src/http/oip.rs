//! Open Inference Protocol v2 over HTTP: health, server and model metadata,
//! readiness, inference, and Triton's repository extension.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use switchyard_api::Manifest;
use switchyard_api::admin::{Slot, VersionState};
use switchyard_api::manifest::TensorSpec;

use super::codec::{self, BinaryOutputs};
use super::error::HttpError;
use super::{App, pin_from, timeout_header};
use crate::infer::{InferRequest, InferResponse};
use crate::metrics::Protocol;
use crate::routing::Pin;

/// The header that splits a binary body into its JSON part and its tensors.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

#[derive(Serialize)]
struct ServerMetadata {
    name: &'static str,
    version: &'static str,
    extensions: [&'static str; 3],
}

#[derive(Serialize)]
struct TensorMetadata<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [i64],
}

#[derive(Serialize)]
struct ModelMetadata<'a> {
    name: &'a str,
    versions: Vec<String>,
    platform: &'a str,
    inputs: Vec<TensorMetadata<'a>>,
    outputs: Vec<TensorMetadata<'a>>,
}

#[derive(Serialize)]
struct IndexEntry {
    name: String,
    version: String,
    state: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    reason: String,
}

#[derive(Deserialize, Default)]
pub(super) struct IndexRequest {
    #[serde(default)]
    ready: bool,
}

pub(super) async fn server_metadata() -> impl IntoResponse {
    Json(ServerMetadata {
        name: "switchyard",
        version: env!("CARGO_PKG_VERSION"),
        extensions: ["binary_tensor_data", "model_repository", "kserve_v1"],
    })
}

pub(super) async fn live() -> impl IntoResponse {
    Json(serde_json::json!({ "live": true }))
}

pub(super) async fn ready(State(app): State<App>) -> Response {
    let ready = app.serving.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(serde_json::json!({ "ready": ready }))).into_response()
}

pub(super) async fn model_metadata(
    State(app): State<App>,
    Path(model): Path<String>,
) -> Result<Response, HttpError> {
    metadata(&app, &model, None)
}

pub(super) async fn version_metadata(
    State(app): State<App>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Response, HttpError> {
    metadata(&app, &model, Some(parse_version(&version)?))
}

fn tensors(specs: &[TensorSpec]) -> Vec<TensorMetadata<'_>> {
    specs
        .iter()
        .map(|s| TensorMetadata {
            name: &s.name,
            datatype: s.datatype.as_str(),
            shape: &s.shape,
        })
        .collect()
}

fn metadata(app: &App, model: &str, version: Option<u64>) -> Result<Response, HttpError> {
    let (manifest, versions) = lookup(app, model, version)?;
    let body = ModelMetadata {
        name: &manifest.name,
        versions,
        platform: &manifest.platform,
        inputs: tensors(&manifest.inputs),
        outputs: tensors(&manifest.outputs),
    };
    Ok(Json(body).into_response())
}

/// The manifest of the version a request would reach, and every loaded
/// version of the model.
fn lookup(
    app: &App,
    model: &str,
    version: Option<u64>,
) -> Result<(Arc<Manifest>, Vec<String>), HttpError> {
    let table = app.serving.table();
    let route = table
        .route(model)
        .map_err(|e| HttpError::new(StatusCode::NOT_FOUND, e.to_string()))?;
    let model = route
        .described(version)
        .map_err(|e| HttpError::new(StatusCode::NOT_FOUND, e.to_string()))?;
    Ok((model.manifest.clone(), route.loaded_versions()))
}

pub(super) async fn model_ready(State(app): State<App>, Path(model): Path<String>) -> Response {
    readiness(&app, &model, None)
}

pub(super) async fn version_ready(
    State(app): State<App>,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    match parse_version(&version) {
        Ok(v) => readiness(&app, &model, Some(v)),
        Err(e) => e.into_response(),
    }
}

fn readiness(app: &App, model: &str, version: Option<u64>) -> Response {
    let serving = {
        let table = app.serving.table();
        table.route(model).ok().is_some_and(|r| match version {
            None => r.slot(r.live).is_some(),
            Some(v) => r.pick(Pin::Version(v)).is_ok(),
        })
    };
    if serving {
        return (
            StatusCode::OK,
            Json(serde_json::json!({ "name": model, "ready": true })),
        )
            .into_response();
    }
    let status = version.and_then(|v| app.serving.status(model, v));
    let state = status.as_ref().map_or("unavailable", |s| s.state.as_str());
    let mut body = serde_json::json!({ "name": model, "ready": false, "state": state });
    if let Some(reason) = status.and_then(|s| s.error) {
        body["reason"] = serde_json::Value::String(reason);
    }
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

pub(super) async fn infer_latest(
    State(app): State<App>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    infer(app, model, None, headers, body).await
}

pub(super) async fn infer_version(
    State(app): State<App>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let version = parse_version(&version)?;
    infer(app, model, Some(version), headers, body).await
}

async fn infer(
    app: App,
    model: String,
    version: Option<u64>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let started = Instant::now();
    let (decoded, pin, timeout) = match decode(&headers, version, body) {
        Ok(d) => d,
        Err(e) => {
            app.serving
                .count_rejected(&model, Protocol::Http, e.status().as_u16());
            return Err(e);
        }
    };
    let response = app
        .serving
        .infer(InferRequest {
            model,
            pin,
            inputs: decoded.inputs,
            outputs: decoded.outputs,
            timeout,
            protocol: Protocol::Http,
            started,
        })
        .await?;
    Ok(respond(&response, decoded.id.as_deref(), &decoded.binary))
}

/// Everything a request says before it reaches the core.
fn decode(
    headers: &HeaderMap,
    version: Option<u64>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(codec::DecodedRequest, Pin, Option<std::time::Duration>), HttpError> {
    let body = body?;
    let header_length = match headers.get(HEADER_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    HttpError::bad_request("Inference-Header-Content-Length must be a byte count")
                })?,
        ),
    };
    let pin = pin_from(headers, version)?;
    let decoded =
        codec::decode_request(&body, header_length).map_err(|e| HttpError::bad_request(e.0))?;
    let timeout = timeout_header(headers)?.or(decoded.timeout);
    Ok((decoded, pin, timeout))
}

fn respond(response: &InferResponse, id: Option<&str>, binary: &BinaryOutputs) -> Response {
    let model = &response.model;
    let encoded = codec::encode_response(
        model.name(),
        &model.version_label,
        id,
        &response.outputs,
        binary,
    );
    let mut out = Response::new(axum::body::Body::from(encoded.body));
    let h = out.headers_mut();
    version_headers(h, &model.version_label, model.slot);
    match encoded.header_length {
        Some(n) => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(HEADER_LENGTH, HeaderValue::from(n));
        }
        None => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    out
}

/// Adds `x-model-version` and `x-slot` to an answer.
pub(super) fn version_headers(h: &mut HeaderMap, version: &str, slot: Slot) {
    if let Ok(v) = HeaderValue::from_str(version) {
        h.insert(super::VERSION_HEADER, v);
    }
    h.insert(super::SLOT_HEADER, HeaderValue::from_static(slot.as_str()));
}

pub(super) async fn repository_index(
    State(app): State<App>,
    body: Option<Json<IndexRequest>>,
) -> Result<Response, HttpError> {
    let only_ready = body.is_some_and(|Json(b)| b.ready);
    let source = app.serving.source().clone();
    let models = source
        .models()
        .map_err(|e| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut entries = Vec::new();
    for model in models {
        let versions = source.versions(&model).unwrap_or_default();
        for v in versions {
            let serving = {
                let table = app.serving.table();
                table
                    .route(&model)
                    .ok()
                    .is_some_and(|r| r.pick(Pin::Version(v)).is_ok())
            };
            let status = app.serving.status(&model, v);
            let (state, reason) = match (serving, status) {
                (true, _) => ("READY", String::new()),
                (false, Some(s))
                    if matches!(s.state, VersionState::Loading | VersionState::Warming) =>
                {
                    ("LOADING", String::new())
                }
                (false, Some(s)) => (
                    "UNAVAILABLE",
                    s.error.unwrap_or_else(|| "unloaded".to_owned()),
                ),
                (false, None) => ("UNAVAILABLE", "not loaded".to_owned()),
            };
            if only_ready && state != "READY" {
                continue;
            }
            entries.push(IndexEntry {
                name: model.clone(),
                version: v.to_string(),
                state,
                reason,
            });
        }
    }
    Ok(Json(entries).into_response())
}

pub(super) async fn repository_load(
    State(app): State<App>,
    Path(model): Path<String>,
) -> Result<Response, HttpError> {
    let versions = app
        .serving
        .source()
        .versions(&model)
        .map_err(|e| HttpError::new(StatusCode::NOT_FOUND, e.to_string()))?;
    let Some(&newest) = versions.last() else {
        return Err(HttpError::new(
            StatusCode::NOT_FOUND,
            format!("model {model:?} has no versions"),
        ));
    };
    // Triton's meaning of load: serve the newest version. It goes into the
    // live slot (a hot swap) and leaves the standby slot alone.
    let slot = app
        .serving
        .table()
        .routes
        .get(&model)
        .map_or(Slot::Blue, |r| r.live);
    app.serving.load(&model, newest, slot).await?;
    Ok(StatusCode::OK.into_response())
}

pub(super) async fn repository_unload(
    State(app): State<App>,
    Path(model): Path<String>,
) -> Result<Response, HttpError> {
    app.serving.unload_model(&model).await?;
    Ok(StatusCode::OK.into_response())
}

/// A version from the URL.
pub(super) fn parse_version(v: &str) -> Result<u64, HttpError> {
    v.parse::<u64>().ok().filter(|&v| v > 0).ok_or_else(|| {
        HttpError::new(
            StatusCode::NOT_FOUND,
            format!("version {v:?} is not a positive integer"),
        )
    })
}
