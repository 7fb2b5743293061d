//! The inference backend seam: what runs an ONNX graph.
//!
//! A [`Backend`] turns a verified model file into [`Session`]s; a session is
//! owned by one batcher worker thread and runs one batch at a time, so it
//! may need `&mut self` (ONNX Runtime's does). Everything here is
//! synchronous: callers run it on the gateway's inference threads, never on
//! the async runtime.
//!
//! To add a backend: one module implementing both traits, an entry in
//! [`BackendKind`] (in `switchyard-api`) and in [`Backends::from_config`],
//! and a line in `tests/backend_contract.rs`, whose suite every backend runs.

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

use switchyard_api::DataType;
use switchyard_api::manifest::{BackendKind, Manifest};

use crate::tensor::Tensor;

#[cfg(feature = "test-util")]
pub mod fake;
#[cfg(feature = "forest")]
pub mod forest;
#[cfg(feature = "ort")]
pub mod ort;
#[cfg(feature = "tract")]
pub mod tract;

/// An input or output as the graph itself declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphTensor {
    /// Its name in the graph.
    pub name: String,
    /// Its element type, `Err` with the graph's name for a type switchyard
    /// does not serve.
    pub datatype: Result<DataType, String>,
    /// Its dimensions, `-1` where any size goes; `None` when the graph does
    /// not say.
    pub shape: Option<Vec<i64>>,
}

/// Why a backend could not load or run a model.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The backend itself is not usable in this process.
    #[error("{backend} is not available: {reason}")]
    Unavailable {
        /// The backend.
        backend: &'static str,
        /// Why.
        reason: String,
    },
    /// The backend can't serve this graph correctly (an operator it lacks or
    /// gets wrong).
    #[error("{backend} cannot serve this model: {reason}")]
    Unsupported {
        /// The backend.
        backend: &'static str,
        /// Why.
        reason: String,
    },
    /// The graph did not load.
    #[error("{backend} failed to load the graph: {message}")]
    Load {
        /// The backend.
        backend: &'static str,
        /// What the engine said.
        message: String,
    },
    /// An inference call failed.
    #[error("{backend} inference failed: {message}")]
    Run {
        /// The backend.
        backend: &'static str,
        /// What the engine said.
        message: String,
    },
}

/// An inference engine.
pub trait Backend: Send + Sync + Debug {
    /// Which engine this is.
    fn kind(&self) -> BackendKind;

    /// Loads `model` (an ONNX file whose hash was checked) into a session.
    ///
    /// # Errors
    /// [`BackendError::Unsupported`] for a graph this engine would answer
    /// wrongly, [`BackendError::Load`] for one it cannot parse or build.
    fn load(&self, model: &Path, manifest: &Manifest) -> Result<Box<dyn Session>, BackendError>;
}

/// A loaded graph, run by one thread at a time.
pub trait Session: Send {
    /// The graph's inputs, in its order.
    fn inputs(&self) -> &[GraphTensor];

    /// The graph's outputs, in its order.
    fn outputs(&self) -> &[GraphTensor];

    /// Runs one batch. `inputs` holds every graph input, by name; the result
    /// holds every graph output, in graph order.
    ///
    /// # Errors
    /// [`BackendError::Run`] with the engine's message.
    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, BackendError>;
}

/// The backends this process can use, in the operator's fallback order.
#[derive(Debug, Clone, Default)]
pub struct Backends {
    available: Vec<Arc<dyn Backend>>,
    unavailable: Vec<(BackendKind, String)>,
}

/// How the backends are set up.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// Fallback order for models whose manifest names none.
    pub order: Vec<BackendKind>,
    /// Path of ONNX Runtime's shared library.
    pub ort_library: Option<std::path::PathBuf>,
    /// Intra-op threads per inference call (shared by all sessions).
    pub intra_op_threads: usize,
}

impl Backends {
    /// Initialises every configured backend; one that cannot start is kept
    /// with its reason, so a model that needs it is refused with that reason.
    pub fn from_config(config: &BackendConfig) -> Backends {
        let mut backends = Backends::default();
        for &kind in &config.order {
            match init(kind, config) {
                Ok(b) => backends.available.push(b),
                Err(reason) => {
                    tracing::warn!(backend = backend_name(kind), %reason, "backend unavailable");
                    backends.unavailable.push((kind, reason));
                }
            }
        }
        backends
    }

    /// A set made of the given backends, in order (for tests).
    pub fn from_list(list: Vec<Arc<dyn Backend>>) -> Backends {
        Backends {
            available: list,
            unavailable: Vec::new(),
        }
    }

    /// The backend of a kind, or why there is none.
    ///
    /// # Errors
    /// [`BackendError::Unavailable`] with the reason it failed to start, or
    /// that it is not configured.
    pub fn get(&self, kind: BackendKind) -> Result<&Arc<dyn Backend>, BackendError> {
        if let Some(b) = self.available.iter().find(|b| b.kind() == kind) {
            return Ok(b);
        }
        let reason = self
            .unavailable
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or_else(
                || "not in the configured backend order".to_owned(),
                |(_, r)| r.clone(),
            );
        Err(BackendError::Unavailable {
            backend: backend_name(kind),
            reason,
        })
    }

    /// The operator's order.
    pub fn order(&self) -> Vec<BackendKind> {
        let mut order: Vec<BackendKind> = self.available.iter().map(|b| b.kind()).collect();
        order.extend(self.unavailable.iter().map(|(k, _)| *k));
        order
    }
}

/// The name of a backend kind, as manifests and metrics spell it.
pub const fn backend_name(kind: BackendKind) -> &'static str {
    match kind {
        BackendKind::Ort => "ort",
        BackendKind::Tract => "tract",
        BackendKind::Forest => "forest",
    }
}

fn init(kind: BackendKind, config: &BackendConfig) -> Result<Arc<dyn Backend>, String> {
    // Read only by the backends compiled in.
    let _ = config;
    match kind {
        #[cfg(feature = "ort")]
        BackendKind::Ort => {
            ort::OrtBackend::init(config.ort_library.as_deref(), config.intra_op_threads)
                .map(|b| Arc::new(b) as Arc<dyn Backend>)
        }
        #[cfg(feature = "tract")]
        BackendKind::Tract => Ok(Arc::new(tract::TractBackend)),
        #[cfg(feature = "forest")]
        BackendKind::Forest => Ok(Arc::new(forest::ForestBackend)),
        #[allow(unreachable_patterns)]
        other => Err(format!(
            "{} support was not compiled in (cargo feature {:?})",
            backend_name(other),
            backend_name(other)
        )),
    }
}
