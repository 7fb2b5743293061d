//! The model-source seam: where a version's files come from before a
//! rollout. The repository itself is the default source and needs nothing
//! here; any other source (MLflow's Model Registry today) fetches a version's
//! files into a staging folder inside the repository, and [`import`] verifies
//! them and adds them as a new version — or finds the identical version
//! already there — so the rollout that follows reads the repository as
//! always.
//!
//! To add a source: one module implementing [`ModelSource`] (find the
//! version, write `model.toml` and every file it lists into the folder it is
//! given, report its [`Origin`]); [`import`] does the verifying, numbering and
//! the atomic move, the same for every source.

pub mod cli;
pub mod mlflow;
mod staging;

use std::error::Error as _;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use switchyard_api::ManifestError;

pub use staging::{Imported, import};

use crate::journal::Journal;
use crate::rollout::{ControlError, Paths, terminal};

/// Which version of a registered model to fetch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Selector {
    /// The version an alias points at, e.g. `champion`.
    Alias(String),
    /// A version number of the source (not of the repository).
    Version(u64),
}

/// Where a fetched version came from: printed with `--json` and written to
/// the manifest's `provenance.training_run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    /// The kind of source, e.g. `mlflow`.
    pub from: String,
    /// The server it was fetched from.
    pub server: String,
    /// The registered model's name there.
    pub name: String,
    /// The source's version number.
    pub version: u64,
    /// The alias it was asked for by, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// The run that logged it, if the source knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Where its files were read from, as the source names it.
    pub artifacts: String,
}

/// A source's version, by model and selector, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The model.
    pub model: String,
    /// The version asked for.
    pub selector: Selector,
}

/// Why a version could not be fetched or added to the repository. Nothing
/// in the repository changed when one of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source's address is not usable.
    #[error("{0}")]
    Config(String),
    /// The server did not answer (refused, unreachable, timed out).
    #[error("cannot reach {server} for {wanted}")]
    Unreachable {
        /// The server, as its source describes it.
        server: String,
        /// What was being fetched.
        wanted: Wanted,
        /// The transport's error.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error.
    #[error("{server} refused {what} for {wanted}: {message}")]
    Refused {
        /// The server, as its source describes it.
        server: String,
        /// What was being fetched.
        wanted: Wanted,
        /// The request, e.g. `registered-models/alias`.
        what: String,
        /// The server's message, with its code and HTTP status.
        message: String,
    },
    /// The server's answer could not be used.
    #[error("{server} gave an unusable answer for {wanted}: {message}")]
    Unusable {
        /// The server, as its source describes it.
        server: String,
        /// What was being fetched.
        wanted: Wanted,
        /// What was wrong with it.
        message: String,
    },
    /// The fetched version's manifest or files failed verification.
    #[error("{wanted} from {server} is refused")]
    Rejected {
        /// The server, as its source describes it.
        server: String,
        /// What was fetched.
        wanted: Wanted,
        /// The manifest's complaint (boxed: it is the largest cause).
        #[source]
        source: Box<ManifestError>,
    },
    /// Reading or writing the repository failed.
    #[error("cannot {action} {path}")]
    Repository {
        /// What was being done.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A place model versions can be fetched from.
pub trait ModelSource {
    /// The server or place, for messages, e.g. `MLflow at http://mlflow:5000`.
    fn describe(&self) -> String;

    /// Finds `selector` of `model` and writes its `model.toml` and every file
    /// that manifest lists into `into`, an empty folder. It need not verify
    /// the hashes ([`import`] does), but must never write outside `into`.
    ///
    /// # Errors
    /// [`SourceError`] naming the server, the model and the selector.
    fn fetch(
        &self,
        model: &str,
        selector: &Selector,
        into: &Path,
    ) -> impl Future<Output = Result<Origin, SourceError>>;
}

/// [`import`] for a promote: under the model's rollout lock, and refused
/// while a rollout of the model is unfinished (the version it rolls out must
/// not change beneath it). The lock is released on return; the promote that
/// follows takes it again.
///
/// # Errors
/// [`ControlError::Invalid`] (exit code 2, nothing changed) for any
/// [`SourceError`]; the lock's and the log's own errors.
pub async fn import_for_rollout<S: ModelSource>(
    source: &S,
    paths: &Paths,
    model: &str,
    selector: &Selector,
    say: &dyn Fn(&str),
) -> Result<Imported, ControlError> {
    let _lock = Journal::lock(&paths.state, model)?;
    let unfinished = Journal::new(&paths.state, model)
        .current()?
        .filter(|r| !terminal(r.phase));
    if let Some(r) = unfinished {
        return Err(ControlError::Invalid(format!(
            "rollout {} of {model} v{} stopped at {:?}; finish it (`controller promote {model} --resume`) or undo it (`controller abort {model}`) before fetching another version",
            r.id, r.to_version, r.phase
        )));
    }
    import(source, &paths.models, model, selector, say)
        .await
        .map_err(|e| ControlError::Invalid(e.chain()))
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Alias(alias) => write!(f, "alias {alias:?}"),
            Selector::Version(v) => write!(f, "version {v}"),
        }
    }
}

impl fmt::Display for Wanted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "model {:?} {}", self.model, self.selector)
    }
}

impl Origin {
    /// The manifest's `provenance.training_run` for this origin, keeping
    /// what the pipeline wrote there after it.
    pub fn training_run(&self, logged: &str) -> String {
        let run = self.run_id.as_deref().unwrap_or("unknown");
        let ours = format!("{}:{}/{} run {run}", self.from, self.name, self.version);
        if logged.is_empty() || logged == ours {
            ours
        } else {
            format!("{ours} ({logged})")
        }
    }
}

impl SourceError {
    /// The message with every cause after it, for one line on the terminal
    /// (a transport error's own text rarely says more than "error sending
    /// request"; its causes say "connection refused").
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut cause = self.source();
        while let Some(c) = cause {
            let next = c.to_string();
            // Some libraries repeat their cause in their own message.
            if !text.ends_with(&next) {
                text.push_str(": ");
                text.push_str(&next);
            }
            cause = c.source();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_and_wants_read_as_sentences() {
        let wanted = Wanted {
            model: "boosted".into(),
            selector: Selector::Alias("champion".into()),
        };
        assert_eq!(wanted.to_string(), r#"model "boosted" alias "champion""#);
        assert_eq!(Selector::Version(3).to_string(), "version 3");
    }

    #[test]
    fn training_run_names_the_source_version_and_keeps_the_pipelines_note() {
        let origin = Origin {
            from: "mlflow".into(),
            server: "http://127.0.0.1:5000".into(),
            name: "boosted".into(),
            version: 4,
            alias: None,
            run_id: Some("abc".into()),
            artifacts: String::new(),
        };
        assert_eq!(origin.training_run(""), "mlflow:boosted/4 run abc");
        assert_eq!(
            origin.training_run("train.py:v2"),
            "mlflow:boosted/4 run abc (train.py:v2)"
        );
        assert_eq!(
            origin.training_run("mlflow:boosted/4 run abc"),
            "mlflow:boosted/4 run abc"
        );
    }

    #[test]
    fn chain_appends_causes_once() {
        let e = SourceError::Repository {
            action: "write",
            path: PathBuf::from("/m/x"),
            source: std::io::Error::other("disk full"),
        };
        assert_eq!(e.chain(), "cannot write /m/x: disk full");
    }
}
