//! MLflow's Model Registry as a model source, through the tracking server's
//! REST API 2.0 (checked against MLflow 3.17):
//!
//! 1. `GET /api/2.0/mlflow/registered-models/alias?name=&alias=` or
//!    `GET /api/2.0/mlflow/model-versions/get?name=&version=` — the version,
//!    which must be `READY`, and its `source`;
//! 2. the source's artifact folder: an `mlflow-artifacts:` URI as is, a
//!    `runs:/<run>/<path>` URI through `GET .../runs/get`, a logged model
//!    (`models:/m-<id>`, MLflow 3) through `GET .../logged-models/<id>`;
//! 3. `GET /api/2.0/mlflow-artifacts/artifacts/<folder>/model.toml`, then
//!    every file that manifest lists, through the server's artifact proxy
//!    (`mlflow server --serve-artifacts`, the default since MLflow 2).
//!
//! The convention on the pipeline's side (docs/controller.md): the version's
//! folder holds a switchyard version as the repository would — `model.toml`
//! and every file under its `[files]`. Other files there (MLflow's own
//! `MLmodel`, say) are not fetched.

use std::fmt;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use reqwest::{RequestBuilder, Url};
use serde::de::DeserializeOwned;
use switchyard_api::Manifest;
use switchyard_api::manifest::MANIFEST_FILE;

use super::{ModelSource, Origin, Selector, SourceError, Wanted};
use wire::{
    Location, LoggedModelReply, ModelVersion, RunReply, VersionReply, error_message, join,
    parse_source, proxied_path,
};

mod wire;

/// The largest `model.toml` fetched.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// The largest file of a version fetched.
pub const MAX_FILE_BYTES: u64 = 8 << 30;
/// The largest API answer read (a model version is a few hundred bytes).
const MAX_REPLY_BYTES: usize = 4 << 20;

/// An MLflow tracking server's Model Registry.
#[derive(Debug, Clone)]
pub struct MlflowSource {
    base: Url,
    client: reqwest::Client,
    auth: Auth,
    timeout: Duration,
}

/// How requests authenticate, as MLflow's own client does from its
/// environment variables.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// No credentials.
    #[default]
    None,
    /// `Authorization: Bearer` (`MLFLOW_TRACKING_TOKEN`).
    Bearer(String),
    /// HTTP basic auth (`MLFLOW_TRACKING_USERNAME` / `_PASSWORD`).
    Basic {
        /// The user.
        username: String,
        /// The password.
        password: String,
    },
}

impl MlflowSource {
    /// A source reading the tracking server at `uri` (`http(s)://host:port`,
    /// optionally with a path prefix). `timeout` bounds each API call, each
    /// connection, and each wait for the next bytes of a download (a large
    /// file may take longer in all, as long as it keeps coming).
    ///
    /// # Errors
    /// [`SourceError::Config`] for a URI that is not an http(s) URL.
    pub fn new(uri: &str, auth: Auth, timeout: Duration) -> Result<MlflowSource, SourceError> {
        let bad = |why: &str| {
            SourceError::Config(format!(
                "--mlflow-uri {uri:?} {why}: give the http(s) URL of an MLflow tracking server, e.g. http://mlflow:5000"
            ))
        };
        let base = Url::parse(uri.trim_end_matches('/')).map_err(|_| bad("is not a URL"))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(bad("is not http or https"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(bad("has a query or fragment"));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .build()
            .map_err(|e| SourceError::Config(format!("cannot build an HTTP client: {e}")))?;
        Ok(MlflowSource {
            base,
            client,
            auth,
            timeout,
        })
    }

    fn server(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_owned()
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn authorized(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.auth {
            Auth::None => request,
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::Basic { username, password } => request.basic_auth(username, Some(password)),
        }
    }

    /// One REST call, its answer decoded.
    async fn call<T: DeserializeOwned>(
        &self,
        endpoint: &[&str],
        query: &[(&str, &str)],
        wanted: &Wanted,
    ) -> Result<T, SourceError> {
        let mut segments = vec!["api", "2.0", "mlflow"];
        segments.extend_from_slice(endpoint);
        let request = self
            .client
            .get(self.url(&segments))
            .query(query)
            .timeout(self.timeout);
        let response = self
            .authorized(request)
            .send()
            .await
            .map_err(|e| self.unreachable(wanted, e))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.unreachable(wanted, e))?;
        let what = endpoint.join("/");
        if !status.is_success() {
            return Err(SourceError::Refused {
                server: self.describe(),
                wanted: wanted.clone(),
                what,
                message: error_message(status, &body),
            });
        }
        if body.len() > MAX_REPLY_BYTES {
            return Err(self.unusable(wanted, format!("{what} answered {} bytes", body.len())));
        }
        serde_json::from_slice(&body).map_err(|e| self.unusable(wanted, format!("{what}: {e}")))
    }

    /// The model version the selector names.
    async fn version(&self, model: &str, selector: &Selector) -> Result<ModelVersion, SourceError> {
        let wanted = wanted(model, selector);
        let reply: VersionReply = match selector {
            Selector::Alias(alias) => {
                let query = [("name", model), ("alias", alias.as_str())];
                self.call(&["registered-models", "alias"], &query, &wanted)
                    .await?
            }
            Selector::Version(v) => {
                let v = v.to_string();
                let query = [("name", model), ("version", v.as_str())];
                self.call(&["model-versions", "get"], &query, &wanted)
                    .await?
            }
        };
        Ok(reply.model_version)
    }

    /// The artifact-proxy folder holding a version's files.
    async fn folder(&self, source: &str, wanted: &Wanted) -> Result<String, SourceError> {
        let location = parse_source(source).map_err(|m| self.unusable(wanted, m))?;
        let (root, rest) = match location {
            Location::Proxied(path) => return Ok(path),
            Location::Run { run_id, path } => {
                let reply: RunReply = self
                    .call(&["runs", "get"], &[("run_id", &run_id)], wanted)
                    .await?;
                (reply.run.info.artifact_uri, path)
            }
            Location::LoggedModel(id) => {
                let reply: LoggedModelReply =
                    self.call(&["logged-models", &id], &[], wanted).await?;
                (reply.model.info.artifact_uri, String::new())
            }
        };
        let root = proxied_path(&root).map_err(|m| self.unusable(wanted, m))?;
        Ok(join(&root, &rest))
    }

    /// Streams one artifact to `to`, refusing more than `limit` bytes.
    async fn download(
        &self,
        path: &str,
        to: &Path,
        limit: u64,
        wanted: &Wanted,
    ) -> Result<(), SourceError> {
        let mut segments = vec!["api", "2.0", "mlflow-artifacts", "artifacts"];
        segments.extend(path.split('/'));
        // No overall timeout: the client's read timeout catches a stalled
        // transfer without cutting a large one short.
        let request = self.client.get(self.url(&segments));
        let mut response = self
            .authorized(request)
            .send()
            .await
            .map_err(|e| self.unreachable(wanted, e))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.bytes().await.unwrap_or_default();
            return Err(SourceError::Refused {
                server: self.describe(),
                wanted: wanted.clone(),
                what: format!("the artifact {path}"),
                message: error_message(status, &body),
            });
        }
        let too_big = || self.unusable(wanted, format!("artifact {path} is over {limit} bytes"));
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(too_big());
        }
        let io = |source| SourceError::Repository {
            action: "write",
            path: to.to_owned(),
            source,
        };
        let mut file = std::fs::File::create(to).map_err(io)?;
        let mut written = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.unreachable(wanted, e))?
        {
            written += chunk.len() as u64;
            if written > limit {
                return Err(too_big());
            }
            file.write_all(&chunk).map_err(io)?;
        }
        Ok(())
    }

    fn unreachable(&self, wanted: &Wanted, source: reqwest::Error) -> SourceError {
        SourceError::Unreachable {
            server: self.describe(),
            wanted: wanted.clone(),
            source,
        }
    }

    fn unusable(&self, wanted: &Wanted, message: String) -> SourceError {
        SourceError::Unusable {
            server: self.describe(),
            wanted: wanted.clone(),
            message,
        }
    }
}

impl ModelSource for MlflowSource {
    fn describe(&self) -> String {
        format!("MLflow at {}", self.server())
    }

    async fn fetch(
        &self,
        model: &str,
        selector: &Selector,
        into: &Path,
    ) -> Result<Origin, SourceError> {
        let wanted = wanted(model, selector);
        let version = self.version(model, selector).await?;
        let number = version.version.parse::<u64>().map_err(|_| {
            self.unusable(
                &wanted,
                format!("version number {:?} is not a number", version.version),
            )
        })?;
        if version.status != "READY" {
            return Err(self.unusable(
                &wanted,
                format!(
                    "MLflow version {number} is {:?}, not READY (still registering, or its registration failed)",
                    version.status
                ),
            ));
        }
        let folder = self.folder(&version.source, &wanted).await?;
        let manifest_path = into.join(MANIFEST_FILE);
        self.download(
            &join(&folder, MANIFEST_FILE),
            &manifest_path,
            MAX_MANIFEST_BYTES,
            &wanted,
        )
        .await?;
        // The file names come from the manifest: only a valid one's names
        // are safe to use as paths.
        let names = listed_files(&manifest_path).map_err(|source| SourceError::Rejected {
            server: self.describe(),
            wanted: wanted.clone(),
            source: Box::new(source),
        })?;
        for name in names {
            self.download(
                &join(&folder, &name),
                &into.join(&name),
                MAX_FILE_BYTES,
                &wanted,
            )
            .await?;
        }
        Ok(Origin {
            from: "mlflow".into(),
            server: self.server(),
            name: version.name,
            version: number,
            alias: match selector {
                Selector::Alias(a) => Some(a.clone()),
                Selector::Version(_) => None,
            },
            run_id: Some(version.run_id).filter(|r| !r.is_empty()),
            artifacts: format!("mlflow-artifacts:/{folder}"),
        })
    }
}

impl Auth {
    /// Credentials from MLflow's own variables: `MLFLOW_TRACKING_TOKEN`
    /// first, else `MLFLOW_TRACKING_USERNAME` with `MLFLOW_TRACKING_PASSWORD`.
    pub fn from_env() -> Auth {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        Auth::from_vars(
            var("MLFLOW_TRACKING_TOKEN"),
            var("MLFLOW_TRACKING_USERNAME"),
            var("MLFLOW_TRACKING_PASSWORD"),
        )
    }

    fn from_vars(
        token: Option<String>,
        username: Option<String>,
        password: Option<String>,
    ) -> Auth {
        match (token, username) {
            (Some(token), _) => Auth::Bearer(token),
            (None, Some(username)) => Auth::Basic {
                username,
                password: password.unwrap_or_default(),
            },
            (None, None) => Auth::None,
        }
    }
}

/// Never prints a secret.
impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Auth::Basic { username, .. } => write!(f, "Basic({username}:<redacted>)"),
        }
    }
}

fn wanted(model: &str, selector: &Selector) -> Wanted {
    Wanted {
        model: model.to_owned(),
        selector: selector.clone(),
    }
}

/// The files a fetched manifest lists, once it is valid.
fn listed_files(path: &Path) -> Result<Vec<String>, switchyard_api::ManifestError> {
    use switchyard_api::ManifestError;
    let short = Path::new(MANIFEST_FILE).to_owned();
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        path: short.clone(),
        source,
    })?;
    let manifest = Manifest::parse(&text).map_err(|message| ManifestError::Parse {
        path: short.clone(),
        message,
    })?;
    let problems = manifest.validate();
    if !problems.is_empty() {
        return Err(ManifestError::Invalid {
            path: short,
            problems,
        });
    }
    Ok(manifest.files.into_keys().collect())
}

#[cfg(test)]
mod tests;
