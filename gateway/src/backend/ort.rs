//! ONNX Runtime through the `ort` crate, with the shared library loaded at
//! run time (`ORT_DYLIB_PATH`), so the build downloads nothing.
//!
//! All sessions share ONNX Runtime's global thread pool, sized by the
//! gateway's thread budget: a pool per session, ONNX Runtime's default,
//! oversubscribes the machine as soon as two models are loaded.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::{Environment, GlobalThreadPoolOptions};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session as OrtSession, SessionInputValue};
use ort::value::{DynValue, TensorElementType, TensorRef, ValueType};
use switchyard_api::DataType;
use switchyard_api::manifest::{BackendKind, Manifest};

use super::{Backend, BackendError, GraphTensor, Session};
use crate::tensor::{Tensor, TensorData};

const NAME: &str = "ort";

/// The ONNX Runtime backend.
#[derive(Debug)]
pub struct OrtBackend {
    environment: Environment,
    library: PathBuf,
}

impl OrtBackend {
    /// Loads ONNX Runtime's shared library and builds the one environment a
    /// process may have.
    ///
    /// # Errors
    /// A message naming the path and what went wrong: no path configured,
    /// no file there, or a library that doesn't load or is too old.
    pub fn init(library: Option<&Path>, intra_op_threads: usize) -> Result<OrtBackend, String> {
        let library = match library {
            Some(p) => p.to_path_buf(),
            None => std::env::var_os("ORT_DYLIB_PATH")
                .map(PathBuf::from)
                .ok_or_else(|| {
                    "no ONNX Runtime library configured: set ORT_DYLIB_PATH or --ort-library \
                 (`make ort` fetches it from the onnxruntime wheel)"
                        .to_owned()
                })?,
        };
        // ONNX Runtime allows one environment per process: the first
        // initialisation wins and later ones (tests that start several
        // gateways in one process) share it.
        let (environment, loaded) = ENVIRONMENT
            .get_or_init(|| build_environment(&library, intra_op_threads))
            .clone()?;
        if loaded != library {
            tracing::warn!(requested = %library.display(), loaded = %loaded.display(),
                "ONNX Runtime is already loaded in this process; using that library");
        }
        Ok(OrtBackend {
            environment,
            library: loaded,
        })
    }

    /// The library this backend loaded.
    pub fn library(&self) -> &Path {
        &self.library
    }
}

static ENVIRONMENT: OnceLock<Result<(Environment, PathBuf), String>> = OnceLock::new();

fn build_environment(
    library: &Path,
    intra_op_threads: usize,
) -> Result<(Environment, PathBuf), String> {
    // ort looks the library up itself and panics when it is missing, so
    // the path is checked here first to fail with a message instead.
    if !library.is_file() {
        return Err(format!(
            "ONNX Runtime library {} does not exist",
            library.display()
        ));
    }
    // The library first: building the thread-pool options already calls
    // into ONNX Runtime, and before `init_from` ort would look for the
    // library on its own (ORT_DYLIB_PATH or `libonnxruntime.so`) and panic
    // when it isn't there, ignoring the configured path.
    let builder =
        ort::init_from(library).map_err(|e| format!("cannot load {}: {e}", library.display()))?;
    let pool = GlobalThreadPoolOptions::default()
        .with_intra_threads(intra_op_threads.max(1))
        .and_then(|p| p.with_inter_threads(1))
        .and_then(|p| p.with_spin_control(false))
        .map_err(|e| format!("ONNX Runtime thread pool: {e}"))?;
    let environment = builder
        .with_name("switchyard")
        .with_telemetry(false)
        .with_global_thread_pool(pool)
        .build()
        .map_err(|e| format!("ONNX Runtime environment: {e}"))?;
    Ok((environment, library.to_path_buf()))
}

impl Backend for OrtBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Ort
    }

    fn load(&self, model: &Path, _manifest: &Manifest) -> Result<Box<dyn Session>, BackendError> {
        let load = |message: String| BackendError::Load {
            backend: NAME,
            message,
        };
        let session = OrtSession::builder(&self.environment)
            .map_err(|e| load(e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| load(e.to_string()))?
            .commit_from_file(model)
            .map_err(|e| load(e.to_string()))?;
        let inputs = session
            .inputs()
            .iter()
            .map(|o| describe(o.name(), o.dtype()))
            .collect();
        let outputs = session
            .outputs()
            .iter()
            .map(|o| describe(o.name(), o.dtype()))
            .collect();
        Ok(Box::new(OrtModel {
            session,
            inputs,
            outputs,
        }))
    }
}

struct OrtModel {
    session: OrtSession,
    inputs: Vec<GraphTensor>,
    outputs: Vec<GraphTensor>,
}

impl Session for OrtModel {
    fn inputs(&self) -> &[GraphTensor] {
        &self.inputs
    }

    fn outputs(&self) -> &[GraphTensor] {
        &self.outputs
    }

    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, BackendError> {
        let run = |message: String| BackendError::Run {
            backend: NAME,
            message,
        };
        let mut values: Vec<(&str, SessionInputValue<'_>)> = Vec::with_capacity(inputs.len());
        for t in inputs {
            values.push((t.name.as_str(), view(t).map_err(|e| run(e.to_string()))?));
        }
        let outputs = self.session.run(values).map_err(|e| run(e.to_string()))?;
        self.outputs
            .iter()
            .map(|spec| {
                let value = outputs
                    .get(&spec.name)
                    .ok_or_else(|| run(format!("the graph gave no output {:?}", spec.name)))?;
                extract(&spec.name, value).map_err(run)
            })
            .collect()
    }
}

fn view(t: &Tensor) -> ort::Result<SessionInputValue<'_>> {
    let shape: Vec<i64> = t.shape_i64();
    macro_rules! view {
        ($v:expr) => {
            TensorRef::from_array_view((shape, $v.as_slice()))?.into()
        };
    }
    Ok(match &t.data {
        TensorData::Bool(v) => view!(v),
        TensorData::U8(v) => view!(v),
        TensorData::U16(v) => view!(v),
        TensorData::U32(v) => view!(v),
        TensorData::U64(v) => view!(v),
        TensorData::I8(v) => view!(v),
        TensorData::I16(v) => view!(v),
        TensorData::I32(v) => view!(v),
        TensorData::I64(v) => view!(v),
        TensorData::F32(v) => view!(v),
        TensorData::F64(v) => view!(v),
    })
}

fn extract(name: &str, value: &DynValue) -> Result<Tensor, String> {
    let ty = value
        .dtype()
        .tensor_type()
        .ok_or_else(|| format!("output {name:?} is not a tensor (convert with zipmap disabled)"))?;
    macro_rules! take {
        ($t:ty, $variant:ident) => {{
            let (shape, data) = value
                .try_extract_tensor::<$t>()
                .map_err(|e| e.to_string())?;
            let shape = shape
                .iter()
                .map(|&d| usize::try_from(d).unwrap_or(0))
                .collect();
            (shape, TensorData::$variant(data.to_vec()))
        }};
    }
    let (shape, data) = match ty {
        TensorElementType::Bool => take!(bool, Bool),
        TensorElementType::Uint8 => take!(u8, U8),
        TensorElementType::Uint16 => take!(u16, U16),
        TensorElementType::Uint32 => take!(u32, U32),
        TensorElementType::Uint64 => take!(u64, U64),
        TensorElementType::Int8 => take!(i8, I8),
        TensorElementType::Int16 => take!(i16, I16),
        TensorElementType::Int32 => take!(i32, I32),
        TensorElementType::Int64 => take!(i64, I64),
        TensorElementType::Float32 => take!(f32, F32),
        TensorElementType::Float64 => take!(f64, F64),
        other => {
            return Err(format!(
                "output {name:?} has element type {other:?}, which switchyard does not serve"
            ));
        }
    };
    Ok(Tensor {
        name: name.to_owned(),
        shape,
        data,
    })
}

fn describe(name: &str, dtype: &ValueType) -> GraphTensor {
    let datatype = match dtype.tensor_type() {
        Some(t) => datatype_of(t).ok_or_else(|| format!("{t:?}")),
        None => Err(format!("{dtype}")),
    };
    GraphTensor {
        name: name.to_owned(),
        datatype,
        shape: dtype.tensor_shape().map(|s| s.to_vec()),
    }
}

fn datatype_of(t: TensorElementType) -> Option<DataType> {
    Some(match t {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::Uint8,
        TensorElementType::Uint16 => DataType::Uint16,
        TensorElementType::Uint32 => DataType::Uint32,
        TensorElementType::Uint64 => DataType::Uint64,
        TensorElementType::Int8 => DataType::Int8,
        TensorElementType::Int16 => DataType::Int16,
        TensorElementType::Int32 => DataType::Int32,
        TensorElementType::Int64 => DataType::Int64,
        TensorElementType::Float32 => DataType::Fp32,
        TensorElementType::Float64 => DataType::Fp64,
        _ => return None,
    })
}
