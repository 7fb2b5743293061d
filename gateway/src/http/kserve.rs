//! KServe's V1 protocol: `POST /v1/models/{model}:predict` with
//! `{"instances": [...]}` (one entry per row), answered with
//! `{"predictions": [...]}` in TensorFlow Serving's row format: a model
//! with one output gives that output's row, one with several gives an
//! object of them per row.

use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use switchyard_api::Manifest;
use switchyard_api::manifest::TensorSpec;

use super::error::HttpError;
use super::json_data;
use super::{App, pin_from, timeout_header};
use crate::infer::InferRequest;
use crate::metrics::Protocol;
use crate::routing::Pin;
use crate::tensor::{Tensor, TensorData, with_vec};

#[derive(Deserialize)]
struct PredictRequest<'a> {
    #[serde(borrow)]
    instances: Vec<&'a RawValue>,
}

pub(super) async fn model(State(app): State<App>, Path(target): Path<String>) -> Response {
    let ready = {
        let table = app.serving.table();
        table.route(&target).ok().map(|r| r.slot(r.live).is_some())
    };
    match ready {
        Some(ready) => Json(serde_json::json!({ "name": target, "ready": ready })).into_response(),
        None => HttpError::new(
            StatusCode::NOT_FOUND,
            format!("model {target:?} is not loaded"),
        )
        .into_response(),
    }
}

pub(super) async fn predict(
    State(app): State<App>,
    Path(target): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let started = Instant::now();
    let Some(model) = target.strip_suffix(":predict") else {
        return Err(HttpError::new(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: /v1/models/{target} (expected /v1/models/<model>:predict)"),
        ));
    };
    let body = body?;
    let pin = pin_from(&headers, None)?;
    let manifest = manifest_for(&app, model, pin)?;
    let parsed: PredictRequest<'_> = serde_json::from_slice(&body)
        .map_err(|e| HttpError::bad_request(format!("malformed request JSON: {e}")))?;
    let inputs = decode_instances(&manifest, &parsed.instances)?;
    let response = app
        .serving
        .infer(InferRequest {
            model: model.to_owned(),
            pin,
            inputs,
            outputs: None,
            timeout: timeout_header(&headers)?,
            protocol: Protocol::V1,
            started,
        })
        .await?;
    let predictions = rows_of(&response.outputs);
    let mut out = Json(serde_json::json!({
        "model_name": model,
        "model_version": response.model.version_label,
        "predictions": predictions,
    }))
    .into_response();
    super::oip::version_headers(
        out.headers_mut(),
        &response.model.version_label,
        response.model.slot,
    );
    Ok(out)
}

/// The manifest of the version the request will most likely reach, to
/// know how to read its instances (the core checks the inputs again).
fn manifest_for(app: &App, model: &str, pin: Pin) -> Result<std::sync::Arc<Manifest>, HttpError> {
    let table = app.serving.table();
    let route = table
        .route(model)
        .map_err(|e| HttpError::new(StatusCode::NOT_FOUND, e.to_string()))?;
    let pin = if pin == Pin::Weighted {
        Pin::Slot(route.live)
    } else {
        pin
    };
    let picked = route
        .pick(pin)
        .map_err(|e| HttpError::new(StatusCode::NOT_FOUND, e.to_string()))?;
    Ok(picked.model.manifest.clone())
}

/// Turns instances into one tensor per input: each instance is a row of
/// the single input, or an object naming every input.
fn decode_instances(
    manifest: &Manifest,
    instances: &[&RawValue],
) -> Result<Vec<Tensor>, HttpError> {
    if instances.is_empty() {
        return Err(HttpError::bad_request("instances is empty"));
    }
    let single = manifest.inputs.len() == 1;
    let mut columns: Vec<Vec<&RawValue>> =
        vec![Vec::with_capacity(instances.len()); manifest.inputs.len()];
    for (i, raw) in instances.iter().enumerate() {
        if single {
            columns[0].push(raw);
            continue;
        }
        let object: std::collections::HashMap<&str, &RawValue> = serde_json::from_str(raw.get())
            .map_err(|_| {
                HttpError::bad_request(format!(
                    "instances[{i}] must be an object naming each input (the model has {} inputs)",
                    manifest.inputs.len()
                ))
            })?;
        for (spec, column) in manifest.inputs.iter().zip(&mut columns) {
            let value = object.get(spec.name.as_str()).ok_or_else(|| {
                HttpError::bad_request(format!("instances[{i}] has no input {:?}", spec.name))
            })?;
            column.push(value);
        }
    }
    manifest
        .inputs
        .iter()
        .zip(columns)
        .map(|(spec, rows)| column_tensor(spec, &rows))
        .collect()
}

fn column_tensor(spec: &TensorSpec, rows: &[&RawValue]) -> Result<Tensor, HttpError> {
    let per_row = spec.row_elements().ok_or_else(|| {
        HttpError::bad_request(format!(
            "input {:?} has a dimension of any size past the first; use the v2 protocol",
            spec.name
        ))
    })?;
    let mut data = TensorData::with_capacity(spec.datatype, per_row * rows.len());
    for (i, raw) in rows.iter().enumerate() {
        let row = json_data::decode(raw, spec.datatype, per_row).map_err(|e| {
            HttpError::bad_request(format!("instances[{i}] (input {:?}): {e}", spec.name))
        })?;
        // Same type by construction.
        let _ = data.extend_from(&row);
    }
    let mut shape = vec![rows.len()];
    shape.extend(
        spec.shape
            .iter()
            .skip(1)
            .map(|&d| d.unsigned_abs() as usize),
    );
    Ok(Tensor {
        name: spec.name.clone(),
        shape,
        data,
    })
}

/// Splits outputs into per-row predictions.
fn rows_of(outputs: &[Tensor]) -> Vec<Value> {
    let rows = outputs.first().map_or(0, Tensor::rows);
    (0..rows)
        .map(|r| {
            let values: Vec<(&str, Value)> = outputs
                .iter()
                .map(|t| (t.name.as_str(), row_value(t, r)))
                .collect();
            if values.len() == 1 {
                values
                    .into_iter()
                    .next()
                    .map(|(_, v)| v)
                    .unwrap_or(Value::Null)
            } else {
                Value::Object(
                    values
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect::<Map<_, _>>(),
                )
            }
        })
        .collect()
}

fn row_value(t: &Tensor, row: usize) -> Value {
    let per = t.row_elements();
    let (start, end) = (row * per, (row + 1) * per);
    let mut values: Vec<Value> =
        with_vec!(&t.data, v => v[start..end].iter().map(|&x| Value::from(x)).collect());
    if t.shape.len() <= 1 && values.len() == 1 {
        values.pop().unwrap_or(Value::Null)
    } else {
        Value::Array(values)
    }
}
