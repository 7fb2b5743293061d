//! How the `kubernetes` target reaches the API server: in-cluster
//! credentials (the pod's service account) or a kubeconfig file, found the
//! way controller-runtime finds them: `--kubeconfig`, then `KUBECONFIG`,
//! then the pod's service account, then `~/.kube/config`.
//!
//! Supported in a kubeconfig: the current context (or a named one), the
//! cluster's `server`, `certificate-authority[-data]`,
//! `insecure-skip-tls-verify` and `tls-server-name`; the user's `token`,
//! `tokenFile`, `client-certificate[-data]` with `client-key[-data]`, and
//! `username`/`password`. Exec plugins and auth providers are refused with
//! a message that says what to use instead: running a program named by a
//! file is more than a rollout controller should do.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64_lite::decode as b64decode;
use serde::Deserialize;

/// Where the service account's files are mounted in a pod.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Why no connection to the API server could be set up.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Nothing to connect with.
    #[error(
        "no Kubernetes credentials: not running in a pod (KUBERNETES_SERVICE_HOST is unset), no --kubeconfig or KUBECONFIG, and no {0}"
    )]
    NotFound(String),
    /// A file that could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A kubeconfig that does not parse or does not hold what is needed.
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the entry.
        message: String,
    },
    /// Certificates or keys the TLS stack refused, or a client that could
    /// not be built.
    #[error("{what}: {source}")]
    Tls {
        /// Which certificate or key.
        what: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
}

/// How requests prove who they are.
#[derive(Clone)]
enum Auth {
    None,
    Token(String),
    /// Re-read on every request: a projected service-account token is
    /// rotated by the kubelet while the controller runs.
    TokenFile(PathBuf),
    Basic(String, String),
}

impl std::fmt::Debug for Auth {
    // Never print a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("none"),
            Auth::Token(_) => f.write_str("token (redacted)"),
            Auth::TokenFile(p) => write!(f, "token file {}", p.display()),
            Auth::Basic(user, _) => write!(f, "basic {user} (password redacted)"),
        }
    }
}

/// Everything needed to talk to one API server.
#[derive(Clone)]
pub struct Credentials {
    /// The API server's base URL, without a trailing slash.
    pub server: String,
    /// The namespace the credentials point at (the context's, or the pod's).
    pub namespace: Option<String>,
    /// Where these came from, for messages.
    pub source: String,
    auth: Auth,
    ca_pem: Option<Vec<u8>>,
    identity_pem: Option<Vec<u8>>,
    insecure: bool,
    tls_server_name: Option<String>,
}

impl std::fmt::Debug for Credentials {
    // The client key and tokens stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("server", &self.server)
            .field("namespace", &self.namespace)
            .field("source", &self.source)
            .field("auth", &self.auth)
            .field("ca", &self.ca_pem.as_ref().map(|_| "pem"))
            .field(
                "client_certificate",
                &self.identity_pem.as_ref().map(|_| "pem (redacted)"),
            )
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Finds credentials: `explicit` (a `--kubeconfig`), then `KUBECONFIG`,
    /// then the pod's service account, then `~/.kube/config`.
    ///
    /// # Errors
    /// [`CredentialsError`] naming the file or what is missing.
    pub fn discover(
        explicit: Option<&Path>,
        context: Option<&str>,
    ) -> Result<Credentials, CredentialsError> {
        if let Some(path) = explicit {
            return Credentials::from_kubeconfig(&[path.to_path_buf()], context);
        }
        if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
            let paths: Vec<PathBuf> = std::env::split_paths(&list).collect();
            return Credentials::from_kubeconfig(&paths, context);
        }
        if let (Ok(host), Ok(port)) = (
            std::env::var("KUBERNETES_SERVICE_HOST"),
            std::env::var("KUBERNETES_SERVICE_PORT"),
        ) {
            return Credentials::in_cluster(&host, &port, Path::new(SERVICE_ACCOUNT_DIR));
        }
        let home = std::env::var_os("HOME").map(PathBuf::from);
        match home.map(|h| h.join(".kube").join("config")) {
            Some(path) if path.is_file() => Credentials::from_kubeconfig(&[path], context),
            Some(path) => Err(CredentialsError::NotFound(path.display().to_string())),
            None => Err(CredentialsError::NotFound("~/.kube/config".into())),
        }
    }

    /// The pod's own service account: `host` and `port` from
    /// `KUBERNETES_SERVICE_HOST`/`_PORT`, the token, CA and namespace from
    /// `dir`.
    ///
    /// # Errors
    /// [`CredentialsError::Read`] when the token or CA is missing.
    pub fn in_cluster(host: &str, port: &str, dir: &Path) -> Result<Credentials, CredentialsError> {
        let token = dir.join("token");
        // Fail now, not on the first request, when the token is absent
        // (automountServiceAccountToken: false).
        read(&token)?;
        let ca = read(&dir.join("ca.crt"))?;
        let namespace = std::fs::read_to_string(dir.join("namespace"))
            .ok()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty());
        // An IPv6 service host needs brackets in a URL.
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        Ok(Credentials {
            server: format!("https://{host}:{port}"),
            namespace,
            source: format!("the pod's service account ({})", dir.display()),
            auth: Auth::TokenFile(token),
            ca_pem: Some(ca),
            identity_pem: None,
            insecure: false,
            tls_server_name: None,
        })
    }

    /// A kubeconfig, or several merged as kubectl merges `KUBECONFIG`: the
    /// first file to set a field or name an entry wins.
    ///
    /// # Errors
    /// [`CredentialsError`] naming the file and the entry.
    pub fn from_kubeconfig(
        paths: &[PathBuf],
        context: Option<&str>,
    ) -> Result<Credentials, CredentialsError> {
        let mut merged = Kubeconfig::default();
        let mut first: Option<PathBuf> = None;
        for path in paths {
            if !path.is_file() && paths.len() > 1 {
                // kubectl skips missing files in a KUBECONFIG list.
                continue;
            }
            let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
                path: path.clone(),
                source,
            })?;
            let mut one: Kubeconfig =
                serde_norway::from_str(&text).map_err(|e| CredentialsError::Kubeconfig {
                    path: path.clone(),
                    message: format!("does not parse: {e}"),
                })?;
            let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
            one.resolve_paths(&base);
            merged.merge(one);
            first.get_or_insert_with(|| path.clone());
        }
        let path = first.ok_or_else(|| {
            CredentialsError::NotFound(format!(
                "kubeconfig among {}",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        merged.credentials(&path, context)
    }

    /// An HTTP client that trusts the cluster's CA and presents the client
    /// certificate, if any. `connect_timeout` bounds each connection; the
    /// caller bounds each request (a watch is long on purpose).
    ///
    /// # Errors
    /// [`CredentialsError::Tls`] for a certificate or key the TLS stack refuses.
    pub fn client(&self, connect_timeout: Duration) -> Result<reqwest::Client, CredentialsError> {
        let tls = |what: &str| {
            let what = format!("{what} of {}", self.source);
            move |source| CredentialsError::Tls { what, source }
        };
        let mut builder = reqwest::Client::builder().connect_timeout(connect_timeout);
        if let Some(pem) = &self.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(tls("the certificate authority"))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some(pem) = &self.identity_pem {
            builder = builder
                .identity(reqwest::Identity::from_pem(pem).map_err(tls("the client certificate"))?);
        }
        if self.insecure {
            tracing::warn!(server = %self.server, "insecure-skip-tls-verify: the API server's certificate is not checked");
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        if let Some(name) = &self.tls_server_name {
            // reqwest has no per-client SNI override; the CA still has to
            // vouch for the name in the URL.
            tracing::warn!(tls_server_name = %name, "tls-server-name is not supported; the server URL's host is verified");
        }
        builder.build().map_err(tls("the HTTP client"))
    }

    /// Adds the credentials to a request.
    ///
    /// # Errors
    /// [`CredentialsError::Read`] when a token file has gone.
    pub fn authorize(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, CredentialsError> {
        Ok(match &self.auth {
            Auth::None => request,
            Auth::Token(token) => request.bearer_auth(token),
            Auth::TokenFile(path) => {
                let token = String::from_utf8_lossy(&read(path)?).trim().to_owned();
                request.bearer_auth(token)
            }
            Auth::Basic(user, password) => request.basic_auth(user, Some(password)),
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CredentialsError> {
    std::fs::read(path).map_err(|source| CredentialsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The parts of a kubeconfig the controller reads; the rest is ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig {
    #[serde(default)]
    current_context: Option<String>,
    #[serde(default)]
    clusters: Vec<Named<Cluster>>,
    #[serde(default)]
    users: Vec<Named<User>>,
    #[serde(default)]
    contexts: Vec<Named<Context>>,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    value: T,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    server: Option<String>,
    certificate_authority: Option<PathBuf>,
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
    tls_server_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct User {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<PathBuf>,
    client_certificate: Option<PathBuf>,
    client_certificate_data: Option<String>,
    client_key: Option<PathBuf>,
    client_key_data: Option<String>,
    username: Option<String>,
    password: Option<String>,
    exec: Option<serde_norway::Value>,
    auth_provider: Option<serde_norway::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct Context {
    cluster: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

impl Kubeconfig {
    /// Relative file names in a kubeconfig are relative to its folder.
    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut Option<PathBuf>| {
            if let Some(path) = p.as_mut().filter(|p| p.is_relative()) {
                *path = base.join(&*path);
            }
        };
        for c in &mut self.clusters {
            fix(&mut c.value.certificate_authority);
        }
        for u in &mut self.users {
            fix(&mut u.value.token_file);
            fix(&mut u.value.client_certificate);
            fix(&mut u.value.client_key);
        }
    }

    fn merge(&mut self, other: Kubeconfig) {
        if self.current_context.as_deref().is_none_or(str::is_empty) {
            self.current_context = other.current_context;
        }
        fn extend<T>(into: &mut Vec<Named<T>>, from: Vec<Named<T>>) {
            for entry in from {
                if !into.iter().any(|e| e.name == entry.name) {
                    into.push(entry);
                }
            }
        }
        extend(&mut self.clusters, other.clusters);
        extend(&mut self.users, other.users);
        extend(&mut self.contexts, other.contexts);
    }

    fn credentials(
        self,
        path: &Path,
        context: Option<&str>,
    ) -> Result<Credentials, CredentialsError> {
        let bad = |message: String| CredentialsError::Kubeconfig {
            path: path.to_path_buf(),
            message,
        };
        let name = context
            .map(str::to_owned)
            .or(self.current_context.clone())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                bad(
                    "no current-context: set one (kubectl config use-context) or pass --context"
                        .into(),
                )
            })?;
        let ctx = find(&self.contexts, &name)
            .ok_or_else(|| bad(format!("context {name:?} is not defined")))?;
        let cluster = find(&self.clusters, &ctx.cluster).ok_or_else(|| {
            bad(format!(
                "context {name:?} names cluster {:?}, which is not defined",
                ctx.cluster
            ))
        })?;
        let server = cluster
            .server
            .as_deref()
            .map(|s| s.trim_end_matches('/').to_owned())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad(format!("cluster {:?} has no server", ctx.cluster)))?;
        let user = match &ctx.user {
            Some(u) if !u.is_empty() => Some(find(&self.users, u).ok_or_else(|| {
                bad(format!(
                    "context {name:?} names user {u:?}, which is not defined"
                ))
            })?),
            _ => None,
        };
        let ca_pem = pem_of(
            cluster.certificate_authority_data.as_deref(),
            cluster.certificate_authority.as_deref(),
        )
        .map_err(|m| {
            bad(format!(
                "cluster {:?}: certificate-authority {m}",
                ctx.cluster
            ))
        })?;
        let (auth, identity_pem) = match user {
            None => (Auth::None, None),
            Some(u) => user_auth(u).map_err(|m| {
                bad(format!(
                    "user {:?}: {m}",
                    ctx.user.as_deref().unwrap_or_default()
                ))
            })?,
        };
        Ok(Credentials {
            server,
            namespace: ctx.namespace.clone().filter(|n| !n.is_empty()),
            source: format!("context {name:?} of {}", path.display()),
            auth,
            ca_pem,
            identity_pem,
            insecure: cluster.insecure_skip_tls_verify,
            tls_server_name: cluster.tls_server_name.clone(),
        })
    }
}

fn find<'a, T>(entries: &'a [Named<T>], name: &str) -> Option<&'a T> {
    entries.iter().find(|e| e.name == name).map(|e| &e.value)
}

/// PEM bytes from inline base64 data or a file; data wins, as in kubectl.
fn pem_of(data: Option<&str>, file: Option<&Path>) -> Result<Option<Vec<u8>>, String> {
    match (data, file) {
        (Some(d), _) => b64decode(d)
            .map(Some)
            .map_err(|e| format!("data is not base64: {e}")),
        (None, Some(f)) => std::fs::read(f)
            .map(Some)
            .map_err(|e| format!("file {}: {e}", f.display())),
        (None, None) => Ok(None),
    }
}

fn user_auth(u: &User) -> Result<(Auth, Option<Vec<u8>>), String> {
    let cert = pem_of(
        u.client_certificate_data.as_deref(),
        u.client_certificate.as_deref(),
    )
    .map_err(|m| format!("client-certificate {m}"))?;
    let key = pem_of(u.client_key_data.as_deref(), u.client_key.as_deref())
        .map_err(|m| format!("client-key {m}"))?;
    let identity = match (cert, key) {
        (Some(mut cert), Some(key)) => {
            // rustls takes the certificate and its key as one PEM.
            cert.push(b'\n');
            cert.extend_from_slice(&key);
            Some(cert)
        }
        (None, None) => None,
        _ => return Err("a client certificate needs both its certificate and its key".into()),
    };
    let auth = if let Some(token) = u.token.as_deref().filter(|t| !t.is_empty()) {
        Auth::Token(token.to_owned())
    } else if let Some(file) = &u.token_file {
        Auth::TokenFile(file.clone())
    } else if let (Some(user), Some(password)) = (&u.username, &u.password) {
        Auth::Basic(user.clone(), password.clone())
    } else if identity.is_none() && (u.exec.is_some() || u.auth_provider.is_some()) {
        return Err(
            "uses an exec plugin or auth provider, which the controller does not run: give it a token (`kubectl create token switchyard-controller -n <namespace>`) or a client certificate"
                .into(),
        );
    } else {
        Auth::None
    };
    Ok((auth, identity))
}

/// Standard base64 (kubeconfig `*-data` fields), without a crate for it.
mod base64_lite {
    /// Decodes standard base64, padding optional, whitespace ignored.
    pub(super) fn decode(text: &str) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(text.len() * 3 / 4);
        let (mut acc, mut bits) = (0u32, 0u32);
        for (i, c) in text.bytes().enumerate() {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                b'=' => break,
                b' ' | b'\n' | b'\r' | b'\t' => continue,
                _ => return Err(format!("byte {i} is {:?}", char::from(c))),
            };
            acc = (acc << 6) | u32::from(v);
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push(u8::try_from((acc >> bits) & 0xff).unwrap_or_default());
            }
        }
        Ok(out)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn decodes_with_and_without_padding() {
            assert_eq!(super::decode("aGVsbG8=").unwrap(), b"hello");
            assert_eq!(super::decode("aGVsbG8").unwrap(), b"hello");
            assert_eq!(super::decode("aGVs\nbG8h").unwrap(), b"hello!");
            assert!(super::decode("a*b").is_err());
        }
    }
}
