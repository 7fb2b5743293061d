//! The few Kubernetes API calls the `kubernetes` target makes — get,
//! patch, list and watch — and the few fields of Deployments, Services and
//! Pods it reads. Hand-written rather than a full client: the target needs
//! a dozen fields, and every request it makes is asserted in
//! `controller/tests/kubernetes.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::kubeconfig::{Credentials, CredentialsError};

/// Why a Kubernetes API call, or a wait on one, failed. `what` names the
/// object, e.g. `Deployment switchyard/switchyard-gateway-green`.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// Credentials that cannot be used.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// No answer from the API server.
    #[error("{what}: the API server at {server} did not answer: {source}")]
    Unreachable {
        /// The object.
        what: String,
        /// The API server.
        server: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The API server refused (a `Status` object).
    #[error("{what}: the API server answered {code} {reason}: {message}{}", hint(*.code))]
    Api {
        /// The object.
        what: String,
        /// HTTP status.
        code: u16,
        /// The Status's `reason` (`NotFound`, `Conflict`, `Forbidden`...).
        reason: String,
        /// The Status's `message`.
        message: String,
    },
    /// An answer that is not the object asked for.
    #[error("{what}: the API server answered something that is not {expected}: {detail}")]
    Decode {
        /// The object.
        what: String,
        /// What was expected.
        expected: &'static str,
        /// The decoder's complaint.
        detail: String,
    },
    /// Optimistic concurrency lost again and again.
    #[error(
        "{what}: changed by someone else {attempts} times in a row while being updated (409 Conflict each time); try again when whatever else edits it is done"
    )]
    Conflict {
        /// The object.
        what: String,
        /// How many tries.
        attempts: u32,
    },
    /// A wait that ran out.
    #[error("{what}: not rolled out after {waited:?}: {state}")]
    Timeout {
        /// The object.
        what: String,
        /// How long it waited.
        waited: Duration,
        /// Where it was when time ran out.
        state: String,
    },
    /// A rollout Kubernetes itself gave up on, or an object that went away.
    #[error("{what}: {message}")]
    Failed {
        /// The object.
        what: String,
        /// What happened.
        message: String,
    },
    /// A change this target cannot make.
    #[error("{what}: {message}")]
    Unsupported {
        /// The object or the operation.
        what: String,
        /// Why, and what to do instead.
        message: String,
    },
}

fn hint(code: u16) -> &'static str {
    match code {
        401 => " (the credentials were refused: check the token or certificate)",
        403 => {
            " (the controller's Role does not allow it: apply k8s/base/controller-rbac.yaml and run as the switchyard-controller ServiceAccount)"
        }
        404 => " (apply the manifests of k8s/, and check --namespace and --gateway-name)",
        _ => "",
    }
}

impl KubeError {
    /// The HTTP status of an [`KubeError::Api`].
    pub fn code(&self) -> Option<u16> {
        match self {
            KubeError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// How a PATCH body is read by the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// RFC 7386: maps merge, lists are replaced.
    Merge,
    /// Kubernetes' own: lists of named things (containers, env) merge by name.
    StrategicMerge,
}

impl PatchType {
    /// The `Content-Type` that selects it.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
        }
    }
}

/// A client bound to one API server.
#[derive(Debug, Clone)]
pub struct KubeApi {
    creds: Credentials,
    client: reqwest::Client,
    timeout: Duration,
}

impl KubeApi {
    /// A client with `timeout` for every call but watches.
    ///
    /// # Errors
    /// [`CredentialsError`] when the TLS settings are refused.
    pub fn new(creds: Credentials, timeout: Duration) -> Result<KubeApi, CredentialsError> {
        let client = creds.client(timeout)?;
        Ok(KubeApi {
            creds,
            client,
            timeout,
        })
    }

    /// The credentials in use.
    pub fn credentials(&self) -> &Credentials {
        &self.creds
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<reqwest::RequestBuilder, KubeError> {
        let url = format!("{}{path}", self.creds.server);
        let request = self
            .client
            .request(method, url)
            .header(reqwest::header::ACCEPT, "application/json");
        Ok(self.creds.authorize(request)?)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        what: &str,
        expected: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, KubeError> {
        let response = request
            .send()
            .await
            .map_err(|source| self.unreachable(what, source))?;
        let response = check(what, response).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|source| self.unreachable(what, source))?;
        serde_json::from_slice(&bytes).map_err(|e| KubeError::Decode {
            what: what.to_owned(),
            expected,
            detail: e.to_string(),
        })
    }

    fn unreachable(&self, what: &str, source: reqwest::Error) -> KubeError {
        KubeError::Unreachable {
            what: what.to_owned(),
            server: self.creds.server.clone(),
            source,
        }
    }

    /// `GET path`, decoded as `expected`.
    ///
    /// # Errors
    /// [`KubeError`].
    pub async fn get<T: DeserializeOwned>(
        &self,
        what: &str,
        expected: &'static str,
        path: &str,
    ) -> Result<T, KubeError> {
        let request = self
            .request(reqwest::Method::GET, path)?
            .timeout(self.timeout);
        self.send(what, expected, request).await
    }

    /// `PATCH path` with `body`; answers the object as it now is.
    ///
    /// # Errors
    /// [`KubeError`]; a lost optimistic-concurrency race is an
    /// [`KubeError::Api`] with code 409.
    pub async fn patch<T: DeserializeOwned>(
        &self,
        what: &str,
        expected: &'static str,
        path: &str,
        kind: PatchType,
        body: &serde_json::Value,
    ) -> Result<T, KubeError> {
        tracing::debug!(what, path, patch = %body, "patch");
        let request = self
            .request(reqwest::Method::PATCH, path)?
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, kind.content_type())
            .body(body.to_string());
        self.send(what, expected, request).await
    }

    /// Opens a watch (`path` with `watch=true` in `query`). The server ends
    /// it after `timeoutSeconds`; the client gives up `slack` after that.
    ///
    /// # Errors
    /// [`KubeError`]; a resource version too old to watch from is an
    /// [`KubeError::Api`] with code 410.
    pub async fn watch(
        &self,
        what: &str,
        path: &str,
        query: &[(&str, String)],
        slack: Duration,
        server_timeout: Duration,
    ) -> Result<WatchStream, KubeError> {
        let request = self
            .request(reqwest::Method::GET, path)?
            .query(query)
            .timeout(server_timeout + slack);
        let response = request
            .send()
            .await
            .map_err(|source| self.unreachable(what, source))?;
        Ok(WatchStream {
            what: what.to_owned(),
            response: check(what, response).await?,
            buffer: Vec::new(),
        })
    }
}

/// Turns a non-2xx answer into [`KubeError::Api`] from its Status body.
async fn check(what: &str, response: reqwest::Response) -> Result<reqwest::Response, KubeError> {
    let code = response.status();
    if code.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    let status: Status = serde_json::from_str(&text).unwrap_or_else(|_| Status {
        message: text.trim().chars().take(300).collect(),
        reason: String::new(),
        code: code.as_u16(),
    });
    Err(KubeError::Api {
        what: what.to_owned(),
        code: code.as_u16(),
        reason: if status.reason.is_empty() {
            code.canonical_reason().unwrap_or("").to_owned()
        } else {
            status.reason
        },
        message: status.message,
    })
}

/// An open watch: newline-delimited JSON events.
#[derive(Debug)]
pub struct WatchStream {
    what: String,
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl WatchStream {
    /// The next event; `None` once the server has closed the watch.
    ///
    /// # Errors
    /// [`KubeError`] for a broken stream or a line that is not an event.
    pub async fn next(&mut self) -> Result<Option<WatchEvent>, KubeError> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return serde_json::from_slice(&line)
                    .map(Some)
                    .map_err(|e| KubeError::Decode {
                        what: self.what.clone(),
                        expected: "a watch event",
                        detail: e.to_string(),
                    });
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk),
                // A last event without its newline still counts.
                Ok(None) if !self.buffer.iter().all(u8::is_ascii_whitespace) => {
                    self.buffer.push(b'\n');
                }
                Ok(None) => return Ok(None),
                // A watch cut by the network or the client's own timeout is
                // like one the server closed: the caller re-reads.
                Err(e) => {
                    tracing::debug!(what = %self.what, error = %e, "watch stream broke");
                    return Ok(None);
                }
            }
        }
    }
}

/// One watch event.
#[derive(Debug, Deserialize)]
pub struct WatchEvent {
    /// `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` or `ERROR`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The object, or a Status for `ERROR`.
    pub object: serde_json::Value,
}

/// The API's error object.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Status {
    /// Human-readable.
    pub message: String,
    /// Machine-readable (`Conflict`, `Expired`...).
    pub reason: String,
    /// HTTP status.
    pub code: u16,
}

/// Object metadata.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Optimistic-concurrency token.
    pub resource_version: String,
    /// Spec generation.
    pub generation: i64,
}

/// The fields of a Deployment the target reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Deployment {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: DeploymentSpec,
    /// Status.
    pub status: DeploymentStatus,
}

/// A Deployment's spec.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DeploymentSpec {
    /// Desired pods (absent means 1).
    pub replicas: Option<i32>,
    /// Which pods are its own.
    pub selector: LabelSelector,
    /// The pods it makes.
    pub template: PodTemplate,
}

/// A label selector (`matchLabels` only; the target writes no other kind).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels every selected pod has.
    pub match_labels: BTreeMap<String, String>,
}

/// A pod template.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PodTemplate {
    /// The pod spec.
    pub spec: PodSpec,
}

/// A pod spec.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PodSpec {
    /// Containers.
    pub containers: Vec<Container>,
}

/// A container.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Container {
    /// Name.
    pub name: String,
    /// Environment.
    pub env: Vec<EnvVar>,
}

/// An environment variable (literal values only are read).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EnvVar {
    /// Name.
    pub name: String,
    /// Literal value.
    pub value: Option<String>,
}

/// A Deployment's status.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DeploymentStatus {
    /// The generation the Deployment controller has acted on.
    pub observed_generation: i64,
    /// Pods of any revision.
    pub replicas: i32,
    /// Pods of the current revision.
    pub updated_replicas: i32,
    /// Ready pods.
    pub ready_replicas: i32,
    /// Pods ready for at least minReadySeconds.
    pub available_replicas: i32,
    /// Conditions (`Progressing`, `Available`, `ReplicaFailure`).
    pub conditions: Vec<Condition>,
}

/// A status condition.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Condition {
    /// Kind.
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Why, machine-readable.
    pub reason: String,
    /// Why, for people.
    pub message: String,
}

/// The fields of a Service the target reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Service {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: ServiceSpec,
}

/// A Service's spec.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServiceSpec {
    /// The pods it sends to.
    pub selector: BTreeMap<String, String>,
}

/// A list of pods.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PodList {
    /// The pods.
    pub items: Vec<Pod>,
}

/// The fields of a Pod the target reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Pod {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Status.
    pub status: PodStatus,
}

/// A Pod's status.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodStatus {
    /// Its address on the pod network.
    #[serde(rename = "podIP")]
    pub pod_ip: Option<String>,
    /// Conditions (`Ready`...).
    pub conditions: Vec<Condition>,
}

impl Pod {
    /// Whether the kubelet reports it ready.
    pub fn ready(&self) -> bool {
        self.status
            .conditions
            .iter()
            .any(|c| c.kind == "Ready" && c.status == "True")
    }
}
