//! The one place where the gateway's errors become HTTP answers: a status
//! and a JSON body `{"error": "..."}` whose message names the model,
//! version, input or field at fault.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use switchyard_api::admin::ErrorBody;

use crate::infer::InferError;
use crate::serving::{AdminError, error_chain};

/// An error answer.
#[derive(Debug)]
pub struct HttpError {
    status: StatusCode,
    message: String,
}

impl HttpError {
    /// An answer with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            message: message.into(),
        }
    }

    /// 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, message)
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let retry = self.status == StatusCode::TOO_MANY_REQUESTS
            || self.status == StatusCode::SERVICE_UNAVAILABLE;
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        if retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<InferError> for HttpError {
    fn from(e: InferError) -> Self {
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        HttpError::new(status, e.to_string())
    }
}

impl From<AdminError> for HttpError {
    fn from(e: AdminError) -> Self {
        let status = match &e {
            AdminError::UnknownModel(_) => StatusCode::NOT_FOUND,
            AdminError::Invalid(_) => StatusCode::BAD_REQUEST,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            // A version that fails its checks is the caller's input at fault.
            AdminError::Load { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            AdminError::Persist(_) => StatusCode::INTERNAL_SERVER_ERROR,
            AdminError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        };
        HttpError::new(status, error_chain(&e))
    }
}

impl From<axum::extract::rejection::BytesRejection> for HttpError {
    fn from(e: axum::extract::rejection::BytesRejection) -> Self {
        let status = e.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "request body is larger than the gateway's limit (--max-body-bytes)".to_owned()
        } else {
            format!("cannot read the request body: {}", e.body_text())
        };
        HttpError::new(status, message)
    }
}

impl From<axum::extract::rejection::JsonRejection> for HttpError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        let status = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        HttpError::new(status, e.body_text())
    }
}
