//! A loaded, verified, warmed-up model version, shared by `Arc`.
//!
//! The routing table and every request routed to it hold an `Arc`; when the
//! last one drops, the batcher's queue closes and its sessions are freed.

use std::sync::Arc;

use switchyard_api::Manifest;
use switchyard_api::admin::Slot;
use switchyard_api::manifest::BackendKind;

use crate::batcher::Batcher;
use crate::drift::DriftTracker;
use crate::metrics::VersionMetrics;

/// A version in a slot, ready to serve.
#[derive(Debug)]
pub struct LoadedModel {
    /// Its manifest.
    pub manifest: Arc<Manifest>,
    /// The version as the protocol writes it.
    pub version_label: String,
    /// The slot it was loaded into.
    pub slot: Slot,
    /// The backend running it.
    pub backend: BackendKind,
    /// Its queue and workers.
    pub batcher: Batcher,
    /// Its request-path metric handles.
    pub metrics: VersionMetrics,
    /// Its live drift window, when it has a profile.
    pub drift: Option<DriftTracker>,
    /// How long verify, load and warm-up took.
    pub load_seconds: f64,
}

impl LoadedModel {
    /// The model's name.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// The version.
    pub fn version(&self) -> u64 {
        self.manifest.version
    }
}
