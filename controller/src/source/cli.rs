//! The `promote` flags that choose where a version comes from, so the
//! binary's `main` only flattens them in and calls [`SourceArgs::resolve`].

use clap::{Args, ValueEnum};
use switchyard_api::duration::parse_duration;

use super::mlflow::{Auth, MlflowSource};
use super::{Selector, import_for_rollout};
use crate::rollout::{ControlError, Paths};

/// Where `promote` takes its version from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceKind {
    /// The model repository as it is (`--models`).
    Repository,
    /// MLflow's Model Registry: fetched, verified and added to the repository first.
    Mlflow,
}

/// `promote`'s source settings.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Where the version comes from; with mlflow, --version is MLflow's version number.
    #[arg(long = "from", value_enum, default_value = "repository")]
    pub from: SourceKind,
    /// mlflow: the alias of the registered model's version, e.g. champion (instead of --version).
    #[arg(long, conflicts_with = "version")]
    pub alias: Option<String>,
    /// mlflow: the tracking server's URL; credentials from MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/_PASSWORD.
    #[arg(long, env = "MLFLOW_TRACKING_URI")]
    pub mlflow_uri: Option<String>,
    /// mlflow: how long each request may take, and a download may stall.
    #[arg(long, default_value = "30s")]
    pub mlflow_timeout: String,
}

/// The version a promote rolls out, once its source has been read.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The repository's version (`None`: the newest).
    pub version: Option<u64>,
    /// Where it came from, for `--json`.
    pub source: serde_json::Value,
}

impl SourceArgs {
    /// For `--from mlflow`, fetches the version named by `--alias` or
    /// `--version` (MLflow's number) into the repository, and gives the
    /// repository's number for it; for `--from repository`, `version` as is.
    ///
    /// # Errors
    /// [`ControlError::Invalid`] for flags that do not fit together, and
    /// whatever [`import_for_rollout`] returns.
    pub async fn resolve(
        &self,
        paths: &Paths,
        model: &str,
        version: Option<u64>,
        resume: bool,
        say: fn(&str),
    ) -> Result<Resolved, ControlError> {
        let selector = match (self.from, &self.alias, version) {
            (SourceKind::Repository, None, _) => {
                return Ok(Resolved {
                    version,
                    source: serde_json::json!({"from": "repository"}),
                });
            }
            (SourceKind::Repository, Some(_), _) => {
                return Err(invalid("--alias needs --from mlflow"));
            }
            (SourceKind::Mlflow, _, _) if resume => {
                return Err(invalid(
                    "--resume goes on with the version already in the repository: leave out --from mlflow",
                ));
            }
            (SourceKind::Mlflow, Some(alias), _) => Selector::Alias(alias.clone()),
            (SourceKind::Mlflow, None, Some(v)) => Selector::Version(v),
            (SourceKind::Mlflow, None, None) => {
                return Err(invalid(
                    "--from mlflow needs --alias NAME or --version N (MLflow's version number)",
                ));
            }
        };
        let uri = self.mlflow_uri.as_deref().ok_or_else(|| {
            invalid("--from mlflow needs the tracking server: --mlflow-uri or MLFLOW_TRACKING_URI")
        })?;
        let timeout = parse_duration(&self.mlflow_timeout)
            .map_err(|e| invalid(&format!("--mlflow-timeout: {e}")))?;
        let source = MlflowSource::new(uri, Auth::from_env(), timeout)
            .map_err(|e| ControlError::Invalid(e.chain()))?;
        let imported = import_for_rollout(&source, paths, model, &selector, &say).await?;
        Ok(Resolved {
            version: Some(imported.repository_version),
            source: serde_json::json!(imported),
        })
    }
}

impl Resolved {
    /// A command's JSON result with `"source"` added, when it is an object.
    pub fn annotate(&self, mut result: serde_json::Value) -> serde_json::Value {
        if let Some(fields) = result.as_object_mut() {
            fields.insert("source".into(), self.source.clone());
        }
        result
    }
}

fn invalid(message: &str) -> ControlError {
    ControlError::Invalid(message.to_owned())
}
