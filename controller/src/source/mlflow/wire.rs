//! What MLflow's answers and URIs mean, with no I/O: the reply bodies of
//! the REST API 2.0 (proto3 JSON: version numbers are strings, empty fields
//! may be absent), its error bodies, and where a version's `source` URI
//! points under the artifact proxy.

use reqwest::StatusCode;
use serde::Deserialize;

/// Where a version's files are, as its `source` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Location {
    /// A folder under the artifact proxy (the part after `mlflow-artifacts:`).
    Proxied(String),
    /// A folder inside a run's artifacts.
    Run { run_id: String, path: String },
    /// An MLflow 3 logged model's artifacts.
    LoggedModel(String),
}

/// `registered-models/alias` and `model-versions/get`.
#[derive(Debug, Deserialize)]
pub(super) struct VersionReply {
    pub(super) model_version: ModelVersion,
}

/// The fields of an MLflow `ModelVersion` used here (proto3 JSON: the
/// version number is a string, empty fields may be absent).
#[derive(Debug, Deserialize)]
pub(super) struct ModelVersion {
    pub(super) name: String,
    pub(super) version: String,
    #[serde(default)]
    pub(super) source: String,
    #[serde(default)]
    pub(super) run_id: String,
    #[serde(default)]
    pub(super) status: String,
}

/// `runs/get`.
#[derive(Debug, Deserialize)]
pub(super) struct RunReply {
    pub(super) run: Run,
}

#[derive(Debug, Deserialize)]
pub(super) struct Run {
    pub(super) info: ArtifactInfo,
}

/// `logged-models/<id>` (MLflow 3).
#[derive(Debug, Deserialize)]
pub(super) struct LoggedModelReply {
    pub(super) model: LoggedModel,
}

#[derive(Debug, Deserialize)]
pub(super) struct LoggedModel {
    pub(super) info: ArtifactInfo,
}

#[derive(Debug, Deserialize)]
pub(super) struct ArtifactInfo {
    pub(super) artifact_uri: String,
}

/// MLflow's error body.
#[derive(Debug, Deserialize)]
struct ErrorReply {
    error_code: String,
    message: String,
}

/// The server's error message, with its code and the HTTP status.
pub(super) fn error_message(status: StatusCode, body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorReply>(body) {
        Ok(e) => format!("{} ({}, HTTP {})", e.message, e.error_code, status.as_u16()),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let text: String = text.chars().take(200).collect();
            if text.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {text}")
            }
        }
    }
}

/// What a model version's `source` points at.
pub(super) fn parse_source(source: &str) -> Result<Location, String> {
    if source.starts_with("mlflow-artifacts:") {
        return proxied_path(source).map(Location::Proxied);
    }
    if let Some(rest) = source.strip_prefix("runs:/") {
        let (run_id, path) = rest.split_once('/').unwrap_or((rest, ""));
        if run_id.is_empty() || !run_id.bytes().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("source {source:?} has no usable run id"));
        }
        return Ok(Location::Run {
            run_id: run_id.to_owned(),
            path: clean(path)?,
        });
    }
    if let Some(rest) = source.strip_prefix("models:/") {
        if rest.starts_with("m-")
            && rest.len() > 2
            && rest
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            return Ok(Location::LoggedModel(rest.to_owned()));
        }
        return Err(format!(
            "source {source:?} is another registered model's version; register the run's folder (or logged model) itself"
        ));
    }
    Err(format!(
        "source {source:?} is not served through the tracking server's artifact proxy: \
         the controller reads artifacts only through it (`mlflow server --serve-artifacts`, \
         the default, with runs logging to mlflow-artifacts:/)"
    ))
}

/// The folder under the artifact proxy that an `mlflow-artifacts:` URI
/// names (`mlflow-artifacts:/p` or `mlflow-artifacts://host:port/p`; the
/// proxy asked is always the tracking server's own).
pub(super) fn proxied_path(uri: &str) -> Result<String, String> {
    let Some(rest) = uri.strip_prefix("mlflow-artifacts:") else {
        return Err(format!(
            "artifact location {uri:?} is not served through the tracking server's artifact proxy \
             (start `mlflow server` with --serve-artifacts, the default, and log to mlflow-artifacts:/)"
        ));
    };
    let path = match rest.strip_prefix("//") {
        Some(authority_and_path) => authority_and_path
            .split_once('/')
            .map_or("", |(_, path)| path),
        None => rest,
    };
    let path = clean(path)?;
    if path.is_empty() {
        return Err(format!("artifact location {uri:?} names no folder"));
    }
    Ok(path)
}

/// A relative artifact path without empty, `.` or `..` parts.
fn clean(path: &str) -> Result<String, String> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return Err(format!("artifact path {path:?} leaves its folder"));
    }
    Ok(parts.join("/"))
}

pub(super) fn join(folder: &str, name: &str) -> String {
    match (folder.is_empty(), name.is_empty()) {
        (true, _) => name.to_owned(),
        (_, true) => folder.to_owned(),
        _ => format!("{folder}/{name}"),
    }
}
