//! The admin API (127.0.0.1:8003 by default): read routes, load and unload
//! versions into slots, set weights and shadow. Every call is idempotent.
//! A bearer token guards it when one is configured, which the gateway
//! requires whenever the admin listener is not on loopback.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use switchyard_api::admin::{
    LoadRequest, ROLLOUT_PHASES, RolloutAnnotation, ShadowRequest, Slot, Weights,
};

use super::App;
use super::error::HttpError;

#[derive(Clone)]
struct Token(Option<Arc<str>>);

pub use switchyard_api::admin::GatewayInfo;

/// The admin router; `token`, when set, is required as `Authorization:
/// Bearer <token>` on every call.
pub fn router(app: App, token: Option<String>, listeners: GatewayInfo) -> Router {
    let token = Token(token.map(Arc::from));
    Router::new()
        .route("/admin/info", get(move || async move { Json(listeners) }))
        .route(
            "/admin/health",
            get(|| async { Json(serde_json::json!({ "ok": true })) }),
        )
        .route("/admin/models", get(list))
        .route("/admin/models/{model}", get(show).delete(unload_model))
        .route(
            "/admin/models/{model}/slots/{slot}",
            put(load).delete(unload_slot),
        )
        .route("/admin/models/{model}/weights", put(weights))
        .route("/admin/models/{model}/shadow", put(shadow))
        .route("/admin/models/{model}/rollout", put(rollout))
        .route("/admin/models/{model}/drift", get(drift))
        .route(
            "/admin/models/{model}/versions/{version}",
            get(version_status),
        )
        .fallback(|uri: axum::http::Uri| async move {
            HttpError::new(
                StatusCode::NOT_FOUND,
                format!("no such admin endpoint: {}", uri.path()),
            )
        })
        .layer(middleware::from_fn_with_state(token, authorize))
        .with_state(app)
}

async fn authorize(State(token): State<Token>, request: Request, next: Next) -> Response {
    if let Some(expected) = &token.0 {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), expected.as_bytes())) {
            let mut response = HttpError::new(
                StatusCode::UNAUTHORIZED,
                "the admin API needs a valid bearer token",
            )
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
    }
    next.run(request).await
}

/// Compares without stopping at the first difference, so the time taken
/// says nothing about how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn list(State(app): State<App>) -> Response {
    Json(app.serving.views()).into_response()
}

async fn show(State(app): State<App>, Path(model): Path<String>) -> Result<Response, HttpError> {
    Ok(Json(app.serving.view(&model)?).into_response())
}

async fn drift(State(app): State<App>, Path(model): Path<String>) -> Result<Response, HttpError> {
    Ok(Json(app.serving.drift_report(&model)?).into_response())
}

fn slot(s: &str) -> Result<Slot, HttpError> {
    s.parse()
        .map_err(|e: String| HttpError::new(StatusCode::NOT_FOUND, e))
}

async fn load(
    State(app): State<App>,
    Path((model, s)): Path<(String, String)>,
    body: Result<Json<LoadRequest>, JsonRejection>,
) -> Result<Response, HttpError> {
    let slot = slot(&s)?;
    let Json(request) = body?;
    if request.version == 0 {
        return Err(HttpError::bad_request("version must be a positive integer"));
    }
    app.serving.load(&model, request.version, slot).await?;
    Ok(Json(app.serving.view(&model)?).into_response())
}

async fn unload_slot(
    State(app): State<App>,
    Path((model, s)): Path<(String, String)>,
) -> Result<Response, HttpError> {
    let slot = slot(&s)?;
    app.serving.unload_slot(&model, slot).await?;
    Ok(Json(app.serving.view(&model)?).into_response())
}

async fn unload_model(
    State(app): State<App>,
    Path(model): Path<String>,
) -> Result<Response, HttpError> {
    match app.serving.unload_model(&model).await {
        Ok(()) | Err(crate::serving::AdminError::UnknownModel(_)) => {
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Err(e) => Err(e.into()),
    }
}

async fn weights(
    State(app): State<App>,
    Path(model): Path<String>,
    body: Result<Json<Weights>, JsonRejection>,
) -> Result<Response, HttpError> {
    let Json(weights) = body?;
    Ok(Json(app.serving.set_weights(&model, weights).await?).into_response())
}

async fn shadow(
    State(app): State<App>,
    Path(model): Path<String>,
    body: Result<Json<ShadowRequest>, JsonRejection>,
) -> Result<Response, HttpError> {
    let Json(request) = body?;
    Ok(Json(app.serving.set_shadow(&model, request.percent).await?).into_response())
}

async fn rollout(
    State(app): State<App>,
    Path(model): Path<String>,
    body: Result<Json<RolloutAnnotation>, JsonRejection>,
) -> Result<Response, HttpError> {
    let Json(annotation) = body?;
    // Label values stay bounded: a loaded model, a known phase, and at most
    // a handful of checks with plain names.
    app.serving.view(&model)?;
    if !ROLLOUT_PHASES.contains(&annotation.phase.as_str()) {
        return Err(HttpError::bad_request(format!(
            "unknown rollout phase {:?}",
            annotation.phase
        )));
    }
    let plain = |n: &str| {
        !n.is_empty()
            && n.len() <= 32
            && n.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
    };
    if annotation.checks.len() > 8 || !annotation.checks.iter().all(|c| plain(&c.name)) {
        return Err(HttpError::bad_request(
            "checks: at most 8, named with [a-z0-9_]",
        ));
    }
    app.serving.metrics().set_rollout(&model, &annotation);
    Ok(Json(serde_json::json!({ "ok": true })).into_response())
}

async fn version_status(
    State(app): State<App>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Response, HttpError> {
    let version = super::oip::parse_version(&version)?;
    let serving = {
        let table = app.serving.table();
        table
            .route(&model)
            .ok()
            .and_then(|r| r.pick(crate::routing::Pin::Version(version)).ok())
            .map(|p| p.model.slot)
    };
    let status = app.serving.status(&model, version);
    let state = match (&serving, &status) {
        (Some(_), _) => "ready",
        (None, Some(s)) => s.state.as_str(),
        (None, None) => {
            return Err(HttpError::new(
                StatusCode::NOT_FOUND,
                format!("version {version} of model {model:?} was never loaded"),
            ));
        }
    };
    Ok(Json(serde_json::json!({
        "model": model,
        "version": version,
        "state": state,
        "slot": serving,
        "error": status.and_then(|s| s.error),
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
