//! The one path from a version in the repository to a routable
//! [`LoadedModel`], used at start-up and for every hot swap: fetch, verify
//! every file's sha256, parse the manifest, read the reference profile, load the graph with the first
//! backend that can, check the manifest's signature against the graph, warm
//! up every batch size, start the batcher. Any failure stops the path and
//! names the file and the reason; nothing that is serving is touched.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_api::admin::{Slot, VersionState};
use switchyard_api::manifest::{BackendKind, MODEL_FILE, Manifest, ManifestError, TensorSpec};
use switchyard_api::profile::ProfileError;

use crate::backend::{BackendError, Backends, GraphTensor, Session, backend_name};
use crate::batcher::{Batcher, Inline, ThreadBudget};
use crate::drift::DriftTracker;
use crate::metrics::{LoadPhase, Metrics};
use crate::model::LoadedModel;
use crate::repository::{ModelSource, SourceError};
use crate::tensor::{Tensor, TensorData};

/// Warm-up covers every batch size up to this many; past it, powers of two
/// and the maximum.
const WARM_EVERY_SIZE_UP_TO: usize = 64;

/// Why a version was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The source has no such version.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The manifest or a file's hash is wrong.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// No backend in the order could load the graph.
    #[error("no backend could load {model}: {}", reasons.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Backends {
        /// The model file.
        model: String,
        /// Each backend's reason, in the order tried.
        reasons: Vec<BackendError>,
    },
    /// The graph does not have the manifest's signature.
    #[error("{file} does not match model.toml: {}", problems.join("; "))]
    Signature {
        /// The model file.
        file: String,
        /// Every mismatch.
        problems: Vec<String>,
    },
    /// A warm-up inference failed.
    #[error("warm-up of {file} at batch size {rows} failed: {message}")]
    Warmup {
        /// The model file.
        file: String,
        /// The batch size.
        rows: usize,
        /// Why.
        message: String,
    },
    /// The reference profile is unreadable or does not fit the model.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// A worker thread could not be started.
    #[error("cannot start inference threads")]
    Thread(#[source] std::io::Error),
}

/// What a load needs besides the version.
#[derive(Debug, Clone)]
pub struct LoadContext {
    /// Where versions come from.
    pub source: Arc<dyn ModelSource>,
    /// The engines.
    pub backends: Backends,
    /// Per-model backend order set by the operator, overriding manifests.
    pub backend_overrides: std::collections::HashMap<String, Vec<BackendKind>>,
    /// Sessions (worker threads) per loaded version.
    pub instances: usize,
    /// Per-model session counts set by the operator, overriding `instances`.
    pub model_instances: std::collections::HashMap<String, usize>,
    /// The shared inference thread budget.
    pub budget: ThreadBudget,
    /// Where load metrics go.
    pub metrics: Metrics,
    /// Whether versions with a profile track live drift.
    pub drift: bool,
    /// Requests whose batch size a session runs within this time may run
    /// on the thread that received them when their version is idle (zero:
    /// never).
    pub inline_max: Duration,
}

impl LoadContext {
    /// Loads `model` version `version` for `slot`, reporting each state.
    ///
    /// # Errors
    /// [`LoadError`] naming the file and the reason.
    pub fn load(
        &self,
        model: &str,
        version: u64,
        slot: Slot,
        on_state: &mut dyn FnMut(VersionState),
    ) -> Result<LoadedModel, LoadError> {
        let started = Instant::now();
        let result = self.load_inner(model, version, slot, on_state, started);
        self.metrics
            .load(model, result.is_ok(), started.elapsed().as_secs_f64());
        result
    }

    fn load_inner(
        &self,
        model: &str,
        version: u64,
        slot: Slot,
        on_state: &mut dyn FnMut(VersionState),
        started: Instant,
    ) -> Result<LoadedModel, LoadError> {
        on_state(VersionState::Loading);
        // Hashing a large model's files is seconds of CPU: at low priority
        // too, like opening and warming up.
        let (dir, manifest, drift) = in_background(&format!("verify-{model}-{version}"), || {
            let dir = self.source.fetch(model, version)?;
            let manifest = Manifest::load(&dir)?;
            manifest.verify_files(&dir)?;
            // Read before the engine: a profile that does not fit is
            // refused as early as a wrong hash.
            let drift = DriftTracker::for_version(&manifest, &dir)?.filter(|_| self.drift);
            Ok::<_, LoadError>((dir, manifest, drift))
        })??;
        self.metrics
            .load_phase(model, LoadPhase::Verify, started.elapsed());
        let opening = Instant::now();
        let file = dir.join(MODEL_FILE);
        let file_name = file.display().to_string();

        let order = self
            .backend_overrides
            .get(model)
            .cloned()
            .filter(|o| !o.is_empty())
            .or_else(|| Some(manifest.backends.clone()).filter(|o| !o.is_empty()))
            .unwrap_or_else(|| self.backends.order());
        let (loaded, reasons) = in_background(&format!("open-{model}-{version}"), || {
            let mut reasons = Vec::new();
            for kind in order {
                let attempt = self.backends.get(kind).and_then(|backend| {
                    let instances = self
                        .model_instances
                        .get(model)
                        .copied()
                        .unwrap_or(self.instances)
                        .max(1);
                    let mut sessions = Vec::with_capacity(instances);
                    for _ in 0..instances {
                        sessions.push(guarded(backend_name(kind), || {
                            backend.load(&file, &manifest)
                        })?);
                    }
                    Ok(sessions)
                });
                match attempt {
                    Ok(sessions) => return (Some((kind, sessions)), reasons),
                    Err(e) => {
                        tracing::info!(model, version, backend = backend_name(kind), reason = %e, "backend passed");
                        reasons.push(e);
                    }
                }
            }
            (None, reasons)
        })?;
        let Some((backend, mut sessions)) = loaded else {
            return Err(LoadError::Backends {
                model: file_name,
                reasons,
            });
        };

        let problems = check_signature(&manifest, sessions[0].as_ref());
        if !problems.is_empty() {
            return Err(LoadError::Signature {
                file: file_name,
                problems,
            });
        }

        self.metrics
            .load_phase(model, LoadPhase::Open, opening.elapsed());
        on_state(VersionState::Warming);
        let warming = Instant::now();
        let inline_rows = in_background(&format!("warm-{model}-{version}"), || {
            for session in &mut sessions {
                let warmed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    warm_up(&manifest, session.as_mut())
                }))
                .unwrap_or_else(|_| Err((0, "the backend panicked".to_owned())));
                warmed.map_err(|(rows, message)| LoadError::Warmup {
                    file: file_name.clone(),
                    rows,
                    message,
                })?;
            }
            let timed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                inline_rows(&manifest, sessions[0].as_mut(), self.inline_max)
            }));
            Ok::<usize, LoadError>(timed.unwrap_or(0))
        })??;
        self.metrics
            .load_phase(model, LoadPhase::Warmup, warming.elapsed());
        tracing::debug!(model, version, inline_rows, "timed after warm-up");
        let inline = Inline {
            rows: inline_rows,
            max: self.inline_max,
        };

        let metrics = self.metrics.version(model, version, slot.as_str());
        let batcher = Batcher::start(
            &format!("{model}-{version}"),
            sessions,
            manifest.batching,
            inline,
            &self.budget,
            &metrics,
        )
        .map_err(LoadError::Thread)?;
        on_state(VersionState::Ready);
        Ok(LoadedModel {
            version_label: manifest.version.to_string(),
            manifest: Arc::new(manifest),
            slot,
            backend,
            batcher,
            metrics,
            drift,
            load_seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// The nice value of the threads that verify, open and warm up a version.
const LOADING_NICE: i32 = 10;

/// Runs `work` on a thread of its own at a lower CPU priority: hashing a
/// version's files, opening its graph and warming it up at every batch
/// size are bursts of CPU, and on a
/// busy machine it must not take the cores from the requests being served
/// (a gateway under load kept answering, but its p99 doubled while a
/// fleet loaded a version). On Linux a thread's nice value is its own, and
/// this thread ends with the work: the batcher's workers, started later by
/// the caller, keep the normal priority (an unprivileged process could not
/// raise it back).
fn in_background<T: Send>(name: &str, work: impl FnOnce() -> T + Send) -> Result<T, LoadError> {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn_scoped(scope, || {
                let me = rustix::thread::gettid();
                if let Err(e) = rustix::process::setpriority_process(Some(me), LOADING_NICE) {
                    tracing::debug!(error = %e, "cannot lower the loading thread's priority");
                }
                work()
            })
            .map_err(LoadError::Thread)?;
        // Engine panics are caught inside `work`; anything else is a bug
        // that must not be swallowed.
        Ok(handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })
}

/// Runs a backend's load, turning a panic inside the engine into an error:
/// a hostile or broken model file must be refused, never take the loading
/// thread (and the answer to the admin call) down with it.
fn guarded(
    backend: &'static str,
    load: impl FnOnce() -> Result<Box<dyn Session>, BackendError>,
) -> Result<Box<dyn Session>, BackendError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(load)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        Err(BackendError::Load {
            backend,
            message: format!("the engine panicked: {message}"),
        })
    })
}

/// Every way the graph differs from the manifest's signature.
pub fn check_signature(manifest: &Manifest, session: &dyn Session) -> Vec<String> {
    let mut problems = Vec::new();
    for graph in session.inputs() {
        match manifest.input(&graph.name) {
            None => problems.push(format!(
                "the graph's input {:?} is not in the manifest",
                graph.name
            )),
            Some(spec) => compare("input", spec, graph, &mut problems),
        }
    }
    for spec in &manifest.inputs {
        if !session.inputs().iter().any(|g| g.name == spec.name) {
            problems.push(format!("input {:?} is not in the graph", spec.name));
        }
    }
    for spec in &manifest.outputs {
        match session.outputs().iter().find(|g| g.name == spec.name) {
            None => problems.push(format!("output {:?} is not in the graph", spec.name)),
            Some(graph) => compare("output", spec, graph, &mut problems),
        }
    }
    problems
}

fn compare(kind: &str, spec: &TensorSpec, graph: &GraphTensor, problems: &mut Vec<String>) {
    match &graph.datatype {
        Ok(t) if *t == spec.datatype => {}
        Ok(t) => problems.push(format!(
            "{kind} {:?} is {} in the manifest but {t} in the graph",
            spec.name, spec.datatype
        )),
        Err(t) => problems.push(format!(
            "{kind} {:?} has graph type {t}, which switchyard does not serve",
            spec.name
        )),
    }
    let Some(shape) = &graph.shape else {
        return;
    };
    if shape.len() != spec.shape.len() {
        problems.push(format!(
            "{kind} {:?} has shape {:?} in the manifest but {:?} in the graph",
            spec.name, spec.shape, shape
        ));
        return;
    }
    for (i, (&m, &g)) in spec.shape.iter().zip(shape).enumerate() {
        if m >= 0 && g >= 0 && m != g {
            problems.push(format!(
                "{kind} {:?} dimension {i} is {m} in the manifest but {g} in the graph",
                spec.name
            ));
        }
    }
}

/// The batch sizes warm-up runs.
pub fn warm_sizes(max_batch: usize) -> Vec<usize> {
    let mut sizes: Vec<usize> = (1..=max_batch.min(WARM_EVERY_SIZE_UP_TO)).collect();
    let mut p = WARM_EVERY_SIZE_UP_TO * 2;
    while p < max_batch {
        sizes.push(p);
        p *= 2;
    }
    if max_batch > WARM_EVERY_SIZE_UP_TO {
        sizes.push(max_batch);
    }
    sizes
}

/// Runs every batch size once with zeros, and checks that every output has
/// one row per input row (the batcher splits outputs by rows).
fn warm_up(manifest: &Manifest, session: &mut dyn Session) -> Result<(), (usize, String)> {
    for rows in warm_sizes(manifest.batching.max_batch_size as usize) {
        let inputs = zero_inputs(manifest, rows);
        let outputs = session.run(&inputs).map_err(|e| (rows, e.to_string()))?;
        for spec in &manifest.outputs {
            let out = outputs.iter().find(|o| o.name == spec.name);
            match out {
                Some(o) if o.rows() == rows => {}
                Some(o) => {
                    return Err((
                        rows,
                        format!(
                            "output {:?} has shape {:?}, not one row per input row; set batching.max_batch_size = 1",
                            o.name, o.shape
                        ),
                    ));
                }
                None => return Err((rows, format!("output {:?} was not produced", spec.name))),
            }
        }
    }
    Ok(())
}

/// The largest batch, in rows, that `session` runs within `limit`, timed
/// after warm-up on every size warm-up used, in order, stopping at the
/// first that is too slow. Each size gets up to three tries, so one
/// preemption doesn't rule it out; a first try far over the limit ends the
/// search at once, so a slow model pays one extra run.
fn inline_rows(manifest: &Manifest, session: &mut dyn Session, limit: Duration) -> usize {
    if limit.is_zero() || manifest.batching.max_queue_delay_us > 0 {
        return 0;
    }
    let mut fits = 0;
    for rows in warm_sizes(manifest.batching.max_batch_size as usize) {
        let inputs = zero_inputs(manifest, rows);
        let mut fast = false;
        for _ in 0..3 {
            let t0 = Instant::now();
            if session.run(&inputs).is_err() {
                return fits;
            }
            let took = t0.elapsed();
            if took <= limit {
                fast = true;
                break;
            }
            if took > limit * 10 {
                break;
            }
        }
        if !fast {
            break;
        }
        fits = rows;
    }
    fits
}

fn zero_inputs(manifest: &Manifest, rows: usize) -> Vec<Tensor> {
    manifest
        .inputs
        .iter()
        .map(|spec| zeros(spec, rows))
        .collect()
}

fn zeros(spec: &TensorSpec, rows: usize) -> Tensor {
    let shape: Vec<usize> = std::iter::once(rows)
        .chain(
            spec.shape
                .iter()
                .skip(1)
                .map(|&d| usize::try_from(d).unwrap_or(1)),
        )
        .collect();
    let n: usize = shape.iter().product();
    // Zero bytes are a valid zero of every type; the length is right by
    // construction, so the fallback is never taken.
    let data = TensorData::from_le_bytes(spec.datatype, &[n], &vec![0u8; n * spec.datatype.size()])
        .unwrap_or_else(|_| TensorData::with_capacity(spec.datatype, 0));
    Tensor {
        name: spec.name.clone(),
        shape,
        data,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn loading_work_runs_at_low_priority_and_the_caller_keeps_its_own() {
        let own = || rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        let before = own();
        let inside = in_background("test-load", own).unwrap();
        assert_eq!(
            inside,
            before.max(LOADING_NICE),
            "the work's thread is lowered"
        );
        assert_eq!(own(), before, "the calling thread is not");
    }

    /// A source that notes the priority of the thread fetching from it,
    /// then has nothing to give.
    #[derive(Debug, Default)]
    struct NotingSource(std::sync::Mutex<Vec<i32>>);

    impl ModelSource for NotingSource {
        fn models(&self) -> Result<Vec<String>, SourceError> {
            Ok(Vec::new())
        }
        fn versions(&self, model: &str) -> Result<Vec<u64>, SourceError> {
            Err(SourceError::UnknownModel(model.to_owned()))
        }
        fn fetch(&self, model: &str, _version: u64) -> Result<PathBuf, SourceError> {
            let nice = rustix::process::getpriority_process(Some(rustix::thread::gettid()));
            if let (Ok(nice), Ok(mut seen)) = (nice, self.0.lock()) {
                seen.push(nice);
            }
            Err(SourceError::UnknownModel(model.to_owned()))
        }
    }

    #[test]
    fn fetching_and_verifying_run_at_low_priority_too() {
        let source = Arc::new(NotingSource::default());
        let loader = LoadContext {
            source: source.clone(),
            backends: Backends::from_list(Vec::new()),
            backend_overrides: std::collections::HashMap::new(),
            instances: 1,
            model_instances: std::collections::HashMap::new(),
            budget: ThreadBudget::new(1),
            metrics: Metrics::new(),
            drift: false,
            inline_max: Duration::ZERO,
        };
        let before = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        let result = loader.load("m", 1, Slot::Blue, &mut |_| {});
        assert!(matches!(result, Err(LoadError::Source(_))), "{result:?}");
        let seen = source.0.lock().unwrap().clone();
        assert_eq!(seen, vec![before.max(LOADING_NICE)]);
    }

    #[test]
    fn warm_sizes_cover_every_size_then_powers_of_two() {
        assert_eq!(warm_sizes(4), vec![1, 2, 3, 4]);
        assert_eq!(warm_sizes(64).len(), 64);
        let big = warm_sizes(300);
        assert_eq!(&big[62..], &[63, 64, 128, 256, 300]);
    }

    #[test]
    fn only_sizes_run_within_the_limit_may_run_inline() {
        use crate::backend::Backend;
        use crate::backend::fake::FakeBackend;
        let manifest = |delay_us| crate::test_support::manifest(6, delay_us);
        let limit = Duration::from_millis(50);
        let session = |delay: Duration| {
            let fake = FakeBackend {
                delay,
                ..FakeBackend::default()
            };
            (
                fake.load(std::path::Path::new("m"), &manifest(0)).unwrap(),
                fake,
            )
        };
        let (mut fast, _) = session(Duration::ZERO);
        assert_eq!(inline_rows(&manifest(0), fast.as_mut(), limit), 6);
        assert_eq!(inline_rows(&manifest(0), fast.as_mut(), Duration::ZERO), 0);
        assert_eq!(inline_rows(&manifest(200), fast.as_mut(), limit), 0);
        // Far over the limit: one try and done.
        let (mut slow, fake) = session(Duration::from_millis(600));
        assert_eq!(inline_rows(&manifest(0), slow.as_mut(), limit), 0);
        assert_eq!(fake.batches.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
