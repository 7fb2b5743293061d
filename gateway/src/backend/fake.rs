//! A backend for tests: no graph, a fixed answer after a set delay, and a
//! count of the batches it ran, so tests can hold the batcher up and see
//! what it skipped.
//!
//! Its session takes the manifest's inputs and answers every output of the
//! manifest as zeros, one row per input row, with `label` (if present) set
//! to the version number so answers show who produced them.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use switchyard_api::manifest::{BackendKind, Manifest};

use super::{Backend, BackendError, GraphTensor, Session};
use crate::tensor::{Tensor, TensorData};

/// The fake backend. It claims to be `tract`, so manifests can name it.
#[derive(Debug, Clone, Default)]
pub struct FakeBackend {
    /// How long each batch takes.
    pub delay: Duration,
    /// Batches run so far, across every session.
    pub batches: Arc<AtomicUsize>,
    /// Rows run so far.
    pub rows: Arc<AtomicUsize>,
}

struct FakeSession {
    inputs: Vec<GraphTensor>,
    outputs: Vec<GraphTensor>,
    manifest: Manifest,
    backend: FakeBackend,
}

impl Backend for FakeBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Tract
    }

    fn load(&self, _model: &Path, manifest: &Manifest) -> Result<Box<dyn Session>, BackendError> {
        let describe = |s: &switchyard_api::manifest::TensorSpec| GraphTensor {
            name: s.name.clone(),
            datatype: Ok(s.datatype),
            shape: Some(s.shape.clone()),
        };
        Ok(Box::new(FakeSession {
            inputs: manifest.inputs.iter().map(describe).collect(),
            outputs: manifest.outputs.iter().map(describe).collect(),
            manifest: manifest.clone(),
            backend: self.clone(),
        }))
    }
}

impl Session for FakeSession {
    fn inputs(&self) -> &[GraphTensor] {
        &self.inputs
    }

    fn outputs(&self) -> &[GraphTensor] {
        &self.outputs
    }

    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, BackendError> {
        std::thread::sleep(self.backend.delay);
        let rows = inputs.first().map_or(1, Tensor::rows);
        self.backend.batches.fetch_add(1, Ordering::SeqCst);
        self.backend.rows.fetch_add(rows, Ordering::SeqCst);
        Ok(self
            .manifest
            .outputs
            .iter()
            .map(|spec| {
                let mut shape = vec![rows];
                shape.extend(
                    spec.shape
                        .iter()
                        .skip(1)
                        .map(|&d| usize::try_from(d).unwrap_or(1)),
                );
                let n: usize = shape.iter().product();
                let mut data = TensorData::from_le_bytes(
                    spec.datatype,
                    &[n],
                    &vec![0u8; n * spec.datatype.size()],
                )
                .unwrap_or_else(|_| TensorData::with_capacity(spec.datatype, 0));
                if let (TensorData::I64(v), "label") = (&mut data, spec.name.as_str()) {
                    v.fill(self.manifest.version as i64);
                }
                Tensor {
                    name: spec.name.clone(),
                    shape,
                    data,
                }
            })
            .collect())
    }
}
