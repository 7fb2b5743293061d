//! The request path, independent of any protocol: route, check the inputs
//! against the signature, queue, wait within the deadline, pick the outputs
//! asked for, count it. Front ends decode into an [`InferRequest`] and
//! encode the [`InferResponse`]; the mapping of [`InferError`] to statuses
//! lives in each front end's `error` module.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_api::Manifest;
use tokio::sync::oneshot;

use crate::batcher::{Job, Reply, RunError, SubmitError};
use crate::metrics::{Metrics, Protocol};
use crate::model::LoadedModel;
use crate::routing::{Pin, RouteError};
use crate::serving::Serving;
use crate::tensor::{Tensor, TensorData};

/// Relative and absolute tolerance for comparing float outputs in shadow
/// mode, used only for models without an integer (label) output.
const SHADOW_FLOAT_TOLERANCE: f64 = 1e-3;

/// A decoded inference request.
#[derive(Debug)]
pub struct InferRequest {
    /// The model.
    pub model: String,
    /// How to route it.
    pub pin: Pin,
    /// The inputs, in any order.
    pub inputs: Vec<Tensor>,
    /// The outputs asked for; `None` for all.
    pub outputs: Option<Vec<String>>,
    /// The client's deadline, if it sent one.
    pub timeout: Option<Duration>,
    /// How it arrived.
    pub protocol: Protocol,
    /// When decoding began, for the request-duration metric.
    pub started: Instant,
}

/// The answer.
#[derive(Debug)]
pub struct InferResponse {
    /// The version that produced it (and its slot).
    pub model: Arc<LoadedModel>,
    /// The outputs, in the order asked for (or the manifest's).
    pub outputs: Vec<Tensor>,
}

/// Why a request was not answered with outputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InferError {
    /// No such model, version or slot.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// The inputs don't match the model's signature.
    #[error("{0}")]
    InvalidInput(String),
    /// The version's queue is full.
    #[error(
        "model {model:?} version {version} is at capacity ({capacity} requests queued); retry later"
    )]
    QueueFull {
        /// The model.
        model: String,
        /// The version.
        version: u64,
        /// Its queue capacity.
        capacity: u32,
    },
    /// The deadline passed first.
    #[error("model {model:?} version {version} did not answer within {} ms", timeout.as_millis())]
    DeadlineExceeded {
        /// The model.
        model: String,
        /// The version.
        version: u64,
        /// The deadline it had.
        timeout: Duration,
    },
    /// The version went away while the request waited.
    #[error("model {model:?} version {version} is unloading")]
    Unavailable {
        /// The model.
        model: String,
        /// The version.
        version: u64,
    },
    /// The backend failed.
    #[error("model {model:?} version {version} failed: {message}")]
    Backend {
        /// The model.
        model: String,
        /// The version.
        version: u64,
        /// What the backend said.
        message: String,
    },
}

impl InferError {
    /// The HTTP status this error answers with (gRPC maps from it too).
    pub fn http_status(&self) -> u16 {
        match self {
            InferError::Route(_) => 404,
            InferError::InvalidInput(_) => 400,
            InferError::QueueFull { .. } => 429,
            InferError::DeadlineExceeded { .. } => 504,
            InferError::Unavailable { .. } => 503,
            InferError::Backend { .. } => 500,
        }
    }
}

impl Serving {
    /// Serves one request.
    ///
    /// # Errors
    /// [`InferError`], counted in the request metrics.
    pub async fn infer(&self, request: InferRequest) -> Result<InferResponse, InferError> {
        let InferRequest {
            model: name,
            pin,
            inputs,
            outputs,
            timeout,
            protocol,
            started,
        } = request;
        // Take the version out of the table; the guard is gone before any
        // await, and this request keeps its version to the end.
        let picked = {
            let table = self.table();
            table.route(&name).and_then(|r| r.pick(pin))
        };
        let picked = match picked {
            Ok(p) => p,
            Err(e) => {
                self.count_rejected(&name, protocol, 404);
                return Err(e.into());
            }
        };
        let model = picked.model;
        let result = self
            .run(&model, inputs, outputs.as_deref(), timeout, picked.shadow)
            .await;
        match &result {
            Ok(_) => model
                .metrics
                .request_ok(protocol, started.elapsed().as_secs_f64()),
            Err(e) => self.metrics().request_failed(
                model.name(),
                Some(model.version()),
                model.slot.as_str(),
                protocol,
                e.http_status(),
            ),
        }
        result.map(|outputs| InferResponse { model, outputs })
    }

    /// Counts a request refused before it reached a version (not found, or
    /// a body that did not decode). A model that is not loaded is counted
    /// under [`Metrics::UNKNOWN_MODEL`], so label values stay bounded.
    pub fn count_rejected(&self, model: &str, protocol: Protocol, code: u16) {
        let known = self.table().routes.contains_key(model);
        let label = if known { model } else { Metrics::UNKNOWN_MODEL };
        self.metrics()
            .request_failed(label, None, "", protocol, code);
    }

    async fn run(
        &self,
        model: &Arc<LoadedModel>,
        inputs: Vec<Tensor>,
        wanted: Option<&[String]>,
        timeout: Option<Duration>,
        shadow: Option<Arc<LoadedModel>>,
    ) -> Result<Vec<Tensor>, InferError> {
        let manifest = &model.manifest;
        let (inputs, rows) = check_inputs(manifest, inputs)?;
        if let Some(wanted) = wanted {
            check_outputs(manifest, wanted)?;
        }
        let timeout = timeout.unwrap_or(self.settings().default_timeout);
        let now = Instant::now();
        let deadline = now + timeout;
        let mirrored = shadow.map(|s| (mirror(&s, &inputs, rows, deadline, now), s));
        if let Some(drift) = &model.drift {
            drift.record_inputs(&inputs, rows, now);
        }
        let active = model.batcher.enter();
        let all = match model.batcher.run_now(&active, &inputs, rows) {
            Some(reply) => answer(model, reply, timeout)?,
            None => {
                let rx = queue(model, inputs, rows, deadline, now)?;
                wait(model, rx, deadline, timeout).await?
            }
        };
        drop(active);
        if let Some(drift) = &model.drift {
            drift.record_outputs(&all, rows, now);
        }
        if let Some((shadow_rx, shadow)) = mirrored {
            self.compare_later(model, &shadow, shadow_rx, &all);
        }
        Ok(select_outputs(manifest, all, wanted))
    }

    fn compare_later(
        &self,
        live: &Arc<LoadedModel>,
        shadow: &Arc<LoadedModel>,
        rx: Option<oneshot::Receiver<Reply>>,
        live_outputs: &[Tensor],
    ) {
        let metrics = self.metrics().clone();
        let model = live.name().to_owned();
        let (lv, sv) = (live.version(), shadow.version());
        let Some(rx) = rx else {
            metrics.shadow(&model, lv, sv, "dropped");
            return;
        };
        let expected = live_outputs.to_vec();
        tokio::spawn(async move {
            let result = match rx.await {
                Ok(Ok(outputs)) if agree(&expected, &outputs) => "agree",
                Ok(Ok(_)) => "disagree",
                _ => "error",
            };
            metrics.shadow(&model, lv, sv, result);
        });
    }
}

fn queue(
    model: &LoadedModel,
    inputs: Vec<Tensor>,
    rows: usize,
    deadline: Instant,
    now: Instant,
) -> Result<oneshot::Receiver<Reply>, InferError> {
    let (tx, rx) = oneshot::channel();
    let job = Job {
        inputs,
        rows,
        deadline,
        enqueued: now,
        reply: tx,
    };
    model.batcher.submit(job).map_err(|e| match e {
        SubmitError::Full => InferError::QueueFull {
            model: model.name().to_owned(),
            version: model.version(),
            capacity: model.manifest.batching.queue_capacity,
        },
        SubmitError::Closed => InferError::Unavailable {
            model: model.name().to_owned(),
            version: model.version(),
        },
    })?;
    Ok(rx)
}

/// Queues a copy for the shadow version; `None` when its queue is full, so
/// shadowing never holds up or fails the live request.
fn mirror(
    shadow: &LoadedModel,
    inputs: &[Tensor],
    rows: usize,
    deadline: Instant,
    now: Instant,
) -> Option<oneshot::Receiver<Reply>> {
    queue(shadow, inputs.to_vec(), rows, deadline, now).ok()
}

async fn wait(
    model: &LoadedModel,
    rx: oneshot::Receiver<Reply>,
    deadline: Instant,
    timeout: Duration,
) -> Result<Vec<Tensor>, InferError> {
    match tokio::time::timeout_at(deadline.into(), rx).await {
        // Dropping `rx` here tells the worker to skip this request.
        Err(_) => Err(InferError::DeadlineExceeded {
            model: model.name().to_owned(),
            version: model.version(),
            timeout,
        }),
        Ok(Err(_)) => Err(InferError::Unavailable {
            model: model.name().to_owned(),
            version: model.version(),
        }),
        Ok(Ok(reply)) => answer(model, reply, timeout),
    }
}

fn answer(model: &LoadedModel, reply: Reply, timeout: Duration) -> Result<Vec<Tensor>, InferError> {
    match reply {
        Err(RunError::DeadlineExceeded) => Err(InferError::DeadlineExceeded {
            model: model.name().to_owned(),
            version: model.version(),
            timeout,
        }),
        Err(RunError::Backend(message)) => Err(InferError::Backend {
            model: model.name().to_owned(),
            version: model.version(),
            message,
        }),
        Ok(outputs) => Ok(outputs),
    }
}

/// Checks every input against the signature and puts them in the
/// manifest's order; returns them with the batch's row count.
///
/// # Errors
/// [`InferError::InvalidInput`] naming the input and what is wrong.
pub fn check_inputs(
    manifest: &Manifest,
    mut given: Vec<Tensor>,
) -> Result<(Vec<Tensor>, usize), InferError> {
    let invalid = |m: String| Err(InferError::InvalidInput(m));
    for (i, t) in given.iter().enumerate() {
        if given[..i].iter().any(|o| o.name == t.name) {
            return invalid(format!("input {:?} is given twice", t.name));
        }
        if manifest.input(&t.name).is_none() {
            let names: Vec<&str> = manifest.inputs.iter().map(|s| s.name.as_str()).collect();
            return invalid(format!(
                "model {:?} has no input {:?} (its inputs: {names:?})",
                manifest.name, t.name
            ));
        }
    }
    let mut ordered = Vec::with_capacity(manifest.inputs.len());
    let mut rows = None;
    for spec in &manifest.inputs {
        let Some(pos) = given.iter().position(|t| t.name == spec.name) else {
            return invalid(format!("input {:?} is missing", spec.name));
        };
        let t = given.swap_remove(pos);
        if t.datatype() != spec.datatype {
            return invalid(format!(
                "input {:?} has datatype {} but the model takes {}",
                t.name,
                t.datatype(),
                spec.datatype
            ));
        }
        let shape_ok = t.shape.len() == spec.shape.len()
            && t.shape
                .iter()
                .zip(&spec.shape)
                .skip(1)
                .all(|(&d, &s)| s < 0 || d as i64 == s);
        if !shape_ok {
            return invalid(format!(
                "input {:?} has shape {:?} but the model takes {:?} (-1: any size)",
                t.name, t.shape, spec.shape
            ));
        }
        let elements: usize = t.shape.iter().product();
        if elements != t.data.len() {
            return invalid(format!(
                "input {:?} has {} values for shape {:?}, which needs {elements}",
                t.name,
                t.data.len(),
                t.shape
            ));
        }
        let n = t.rows();
        if n == 0 {
            return invalid(format!("input {:?} has no rows", t.name));
        }
        let max = manifest.batching.max_batch_size as usize;
        if n > max {
            return invalid(format!(
                "input {:?} has {n} rows; model {:?} takes at most {max} per request",
                t.name, manifest.name
            ));
        }
        match rows {
            Some(r) if r != n => {
                return invalid(format!(
                    "input {:?} has {n} rows but the other inputs have {r}",
                    t.name
                ));
            }
            _ => rows = Some(n),
        }
        ordered.push(t);
    }
    Ok((ordered, rows.unwrap_or(0)))
}

/// Checks that every requested output exists.
///
/// # Errors
/// [`InferError::InvalidInput`] naming the output.
pub fn check_outputs(manifest: &Manifest, wanted: &[String]) -> Result<(), InferError> {
    for name in wanted {
        if manifest.output(name).is_none() {
            let names: Vec<&str> = manifest.outputs.iter().map(|s| s.name.as_str()).collect();
            return Err(InferError::InvalidInput(format!(
                "model {:?} has no output {name:?} (its outputs: {names:?})",
                manifest.name
            )));
        }
    }
    Ok(())
}

fn select_outputs(
    manifest: &Manifest,
    mut all: Vec<Tensor>,
    wanted: Option<&[String]>,
) -> Vec<Tensor> {
    match wanted {
        None => {
            all.retain(|t| manifest.output(&t.name).is_some());
            all
        }
        Some(names) => names
            .iter()
            .filter_map(|n| {
                all.iter()
                    .position(|t| &t.name == n)
                    .map(|i| all[i].clone())
            })
            .collect(),
    }
}

/// Whether a shadow answer agrees with the live one: integer outputs (labels)
/// must be equal; when there are none, floats must be close.
pub fn agree(live: &[Tensor], shadow: &[Tensor]) -> bool {
    let integer = |t: &Tensor| !matches!(t.data, TensorData::F32(_) | TensorData::F64(_));
    let has_integer = live.iter().any(integer);
    live.iter().filter(|t| !has_integer || integer(t)).all(|l| {
        shadow.iter().find(|s| s.name == l.name).is_some_and(|s| {
            if s.shape != l.shape {
                return false;
            }
            if integer(l) {
                return s.data == l.data;
            }
            let (a, b) = (l.data.to_f64_lossy(), s.data.to_f64_lossy());
            a.iter().zip(&b).all(|(x, y)| {
                (x - y).abs() <= SHADOW_FLOAT_TOLERANCE * (1.0 + x.abs().max(y.abs()))
            })
        })
    })
}

#[cfg(test)]
mod tests;
