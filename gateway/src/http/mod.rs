//! The HTTP front end: Open Inference Protocol v2, Triton's repository
//! extension, KServe V1, `/metrics`, and the admin API on its own listener.
//! Handlers decode, call the core ([`crate::serving::Serving`]) and encode;
//! errors become answers in [`error`] alone.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::routing::Pin;
use crate::serving::Serving;

pub mod admin;
pub mod codec;
mod edge;
pub mod error;
pub mod json_data;
mod kserve;
mod oip;

pub use edge::Edge;
pub use oip::HEADER_LENGTH;

use error::HttpError;

/// Pins a request to a slot.
pub const SLOT_HEADER: &str = "x-slot";
/// Pins a request to a version; every answer carries it too.
pub const VERSION_HEADER: &str = "x-model-version";
/// A deadline for the request, in milliseconds.
pub const TIMEOUT_HEADER: &str = "x-request-timeout-ms";
/// The request id, taken from the client or made up, echoed back.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct App {
    /// The core.
    pub serving: Arc<Serving>,
}

/// Limits of the HTTP listeners.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// The largest request body.
    pub max_body_bytes: usize,
}

/// The service of the inference port (8000 by default): the router
/// behind the [`Edge`].
pub fn inference_service(app: App, limits: HttpLimits) -> Edge {
    let router = Router::new()
        .route("/v2", get(oip::server_metadata))
        .route("/v2/health/live", get(oip::live))
        .route("/v2/health/ready", get(oip::ready))
        .route("/v2/models/{model}", get(oip::model_metadata))
        .route("/v2/models/{model}/ready", get(oip::model_ready))
        .route("/v2/models/{model}/infer", post(oip::infer_latest))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(oip::version_metadata),
        )
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(oip::version_ready),
        )
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(oip::infer_version),
        )
        .route("/v2/repository/index", post(oip::repository_index))
        .route(
            "/v2/repository/models/{model}/load",
            post(oip::repository_load),
        )
        .route(
            "/v2/repository/models/{model}/unload",
            post(oip::repository_unload),
        )
        .route(
            "/v1/models/{target}",
            get(kserve::model).post(kserve::predict),
        )
        .route("/metrics", get(metrics))
        .fallback(not_found)
        // The limit applies to the decompressed body, so a small gzip bomb
        // is refused like any other oversized body.
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .with_state(app);
    Edge::new(router)
}

/// The router of the metrics port (8002 by default): `/metrics` alone.
pub fn metrics_router(app: App) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(app)
}

async fn metrics(State(app): State<App>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        app.serving.render_metrics(),
    )
}

async fn not_found(uri: axum::http::Uri) -> HttpError {
    HttpError::new(
        axum::http::StatusCode::NOT_FOUND,
        format!("no such endpoint: {}", uri.path()),
    )
}

/// The routing a request asks for with `x-slot` and `x-model-version`
/// (or the version in its URL).
///
/// # Errors
/// 400 for an unknown slot, a version that is not a number, or a header
/// that contradicts the URL.
pub fn pin_from(headers: &HeaderMap, url_version: Option<u64>) -> Result<Pin, HttpError> {
    let text = |name: &str| -> Result<Option<&str>, HttpError> {
        headers
            .get(name)
            .map(|v| {
                v.to_str()
                    .map_err(|_| HttpError::bad_request(format!("header {name} is not text")))
            })
            .transpose()
    };
    let header_version = text(VERSION_HEADER)?
        .map(|v| {
            v.trim().parse::<u64>().map_err(|_| {
                HttpError::bad_request(format!(
                    "header {VERSION_HEADER} {v:?} is not a version number"
                ))
            })
        })
        .transpose()?;
    let version = match (url_version, header_version) {
        (Some(u), Some(h)) if u != h => {
            return Err(HttpError::bad_request(format!(
                "the URL asks for version {u} but {VERSION_HEADER} says {h}"
            )));
        }
        (u, h) => u.or(h),
    };
    let slot = text(SLOT_HEADER)?
        .map(|s| {
            s.trim()
                .parse()
                .map_err(|e: String| HttpError::bad_request(format!("header {SLOT_HEADER}: {e}")))
        })
        .transpose()?;
    Ok(match (version, slot) {
        (Some(_), Some(_)) => {
            return Err(HttpError::bad_request(format!(
                "pin a request by {SLOT_HEADER} or by version, not both"
            )));
        }
        (Some(v), None) => Pin::Version(v),
        (None, Some(s)) => Pin::Slot(s),
        (None, None) => Pin::Weighted,
    })
}

/// The deadline in `x-request-timeout-ms`, if any.
///
/// # Errors
/// 400 when it is not a number of milliseconds within the maximum.
pub fn timeout_header(headers: &HeaderMap) -> Result<Option<Duration>, HttpError> {
    let Some(v) = headers.get(TIMEOUT_HEADER) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
        .filter(|d| !d.is_zero() && *d <= codec::MAX_TIMEOUT)
        .map(Some)
        .ok_or_else(|| {
            HttpError::bad_request(format!(
                "header {TIMEOUT_HEADER} must be milliseconds between 1 and {}",
                codec::MAX_TIMEOUT.as_millis()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_api::admin::Slot;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn pins_come_from_headers_or_the_url() {
        assert_eq!(pin_from(&headers(&[]), None).unwrap(), Pin::Weighted);
        assert_eq!(
            pin_from(&headers(&[("x-slot", "green")]), None).unwrap(),
            Pin::Slot(Slot::Green)
        );
        assert_eq!(
            pin_from(&headers(&[("x-model-version", "3")]), None).unwrap(),
            Pin::Version(3)
        );
        assert_eq!(
            pin_from(&headers(&[("x-model-version", "3")]), Some(3)).unwrap(),
            Pin::Version(3)
        );
        assert!(pin_from(&headers(&[("x-model-version", "3")]), Some(2)).is_err());
        assert!(pin_from(&headers(&[("x-slot", "purple")]), None).is_err());
        assert!(pin_from(&headers(&[("x-model-version", "x")]), None).is_err());
        assert!(pin_from(&headers(&[("x-slot", "blue")]), Some(1)).is_err());
    }

    #[test]
    fn timeouts_are_bounded() {
        assert_eq!(timeout_header(&headers(&[])).unwrap(), None);
        assert_eq!(
            timeout_header(&headers(&[("x-request-timeout-ms", "250")])).unwrap(),
            Some(Duration::from_millis(250))
        );
        assert!(timeout_header(&headers(&[("x-request-timeout-ms", "0")])).is_err());
        assert!(timeout_header(&headers(&[("x-request-timeout-ms", "99999999")])).is_err());
    }
}
