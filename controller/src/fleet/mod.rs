//! The deployment-target seam: where a rollout acts.
//!
//! A [`Target`] applies one change to every member or reports which member
//! failed; a change counts only when all have applied it. Every change is
//! idempotent, so repeating a step after a failure or a crash is safe.
//!
//! - [`local`] — gateways driven through their admin APIs
//! - [`kubernetes`] — blue and green Deployments behind a Service, driven
//!   through the Kubernetes API
//!
//! To add a target: one module implementing [`Target`], a variant of
//! [`AnyTarget`], and its API exchange under test in `controller/tests/`.

pub mod cli;
pub mod kube_api;
pub mod kubeconfig;
pub mod kubernetes;
pub mod local;

use switchyard_api::admin::{RolloutAnnotation, RouteView, Slot, Weights};

pub use kube_api::KubeError;
pub use kubernetes::{KubeOptions, KubernetesTarget};
pub use local::{LocalFleet, Member};

/// Why a fleet change failed.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A member refused or did not answer.
    #[error("gateway {gateway}: {message}")]
    Member {
        /// The member's admin URL.
        gateway: String,
        /// What happened.
        message: String,
    },
    /// The fleet is empty.
    #[error(
        "no gateways configured: set SWITCHYARD_GATEWAYS or --gateways (admin URLs, comma-separated)"
    )]
    Empty,
    /// The Kubernetes API refused, did not answer, or a wait ran out.
    #[error(transparent)]
    Kubernetes(#[from] KubeError),
}

impl From<kubeconfig::CredentialsError> for FleetError {
    fn from(e: kubeconfig::CredentialsError) -> Self {
        FleetError::Kubernetes(e.into())
    }
}

/// Where a rollout acts.
///
/// The slot-level methods name a [`Slot`]; a target whose unit is coarser
/// than a gateway's slot (a Kubernetes colour is a whole Deployment) maps
/// slots to its own unit and says how through [`Target::gateway_slot`] and
/// [`Target::slot_urls`].
pub trait Target {
    /// A name for logs.
    fn describe(&self) -> String;
    /// Every member's route of a model.
    fn routes(&self, model: &str) -> impl Future<Output = Result<Vec<RouteView>, FleetError>>;
    /// Loads a version into a slot everywhere.
    fn load(
        &self,
        model: &str,
        slot: Slot,
        version: u64,
    ) -> impl Future<Output = Result<(), FleetError>>;
    /// Sets weights everywhere.
    fn set_weights(
        &self,
        model: &str,
        weights: Weights,
    ) -> impl Future<Output = Result<(), FleetError>>;
    /// Sets the shadow share everywhere.
    fn set_shadow(&self, model: &str, percent: u32)
    -> impl Future<Output = Result<(), FleetError>>;
    /// Tells every member what the rollout is doing (exported as metrics).
    fn annotate(
        &self,
        model: &str,
        annotation: &RolloutAnnotation,
    ) -> impl Future<Output = Result<(), FleetError>>;
    /// Every member's inference base URL, for smoke tests.
    fn inference_urls(&self) -> Vec<String>;
    /// Every member's metrics URL, for analysis.
    fn metrics_urls(&self) -> Vec<String>;

    /// The slot *inside each gateway* that serves what [`Target::load`] put
    /// in `slot`: smoke tests pin it with `x-slot` and analysis reads the
    /// metrics labelled with it. The same slot unless the target says
    /// otherwise.
    fn gateway_slot(&self, slot: Slot) -> Slot {
        slot
    }

    /// Inference base URLs that reach `slot`'s version, for its smoke
    /// tests. Every member unless the target says otherwise.
    fn slot_urls(&self, slot: Slot) -> Vec<String> {
        let _ = slot;
        self.inference_urls()
    }

    /// Called once a rollout is promoted with `live` serving it: a target
    /// may free the old side here (Kubernetes scales the old colour down
    /// after a delay). Nothing by default.
    fn promoted(&self, model: &str, live: Slot) -> impl Future<Output = Result<(), FleetError>> {
        let _ = (model, live);
        std::future::ready(Ok(()))
    }
}

/// Either target, chosen at run time (`--target`).
#[derive(Debug)]
pub enum AnyTarget {
    /// Gateways through their admin APIs.
    Local(LocalFleet),
    /// Deployments and a Service through the Kubernetes API.
    Kubernetes(Box<KubernetesTarget>),
}

impl AnyTarget {
    /// Whether the target can run a strategy: a Kubernetes Service moves
    /// all traffic at once and mirrors none, so only blue-green.
    ///
    /// # Errors
    /// Why not, and what to use instead.
    pub fn supports(&self, strategy: crate::journal::Strategy) -> Result<(), String> {
        match (self, strategy) {
            (AnyTarget::Kubernetes(_), crate::journal::Strategy::Canary | crate::journal::Strategy::Shadow) => Err(
                "the kubernetes target switches the live Service's selector, all traffic at once: promote with --full or --strategy blue-green".into(),
            ),
            _ => Ok(()),
        }
    }
}

impl Target for AnyTarget {
    fn describe(&self) -> String {
        match self {
            AnyTarget::Local(t) => t.describe(),
            AnyTarget::Kubernetes(t) => t.describe(),
        }
    }

    async fn routes(&self, model: &str) -> Result<Vec<RouteView>, FleetError> {
        match self {
            AnyTarget::Local(t) => t.routes(model).await,
            AnyTarget::Kubernetes(t) => t.routes(model).await,
        }
    }

    async fn load(&self, model: &str, slot: Slot, version: u64) -> Result<(), FleetError> {
        match self {
            AnyTarget::Local(t) => t.load(model, slot, version).await,
            AnyTarget::Kubernetes(t) => t.load(model, slot, version).await,
        }
    }

    async fn set_weights(&self, model: &str, weights: Weights) -> Result<(), FleetError> {
        match self {
            AnyTarget::Local(t) => t.set_weights(model, weights).await,
            AnyTarget::Kubernetes(t) => t.set_weights(model, weights).await,
        }
    }

    async fn set_shadow(&self, model: &str, percent: u32) -> Result<(), FleetError> {
        match self {
            AnyTarget::Local(t) => t.set_shadow(model, percent).await,
            AnyTarget::Kubernetes(t) => t.set_shadow(model, percent).await,
        }
    }

    async fn annotate(
        &self,
        model: &str,
        annotation: &RolloutAnnotation,
    ) -> Result<(), FleetError> {
        match self {
            AnyTarget::Local(t) => t.annotate(model, annotation).await,
            AnyTarget::Kubernetes(t) => t.annotate(model, annotation).await,
        }
    }

    fn inference_urls(&self) -> Vec<String> {
        match self {
            AnyTarget::Local(t) => t.inference_urls(),
            AnyTarget::Kubernetes(t) => t.inference_urls(),
        }
    }

    fn metrics_urls(&self) -> Vec<String> {
        match self {
            AnyTarget::Local(t) => t.metrics_urls(),
            AnyTarget::Kubernetes(t) => t.metrics_urls(),
        }
    }

    fn gateway_slot(&self, slot: Slot) -> Slot {
        match self {
            AnyTarget::Local(t) => t.gateway_slot(slot),
            AnyTarget::Kubernetes(t) => t.gateway_slot(slot),
        }
    }

    fn slot_urls(&self, slot: Slot) -> Vec<String> {
        match self {
            AnyTarget::Local(t) => t.slot_urls(slot),
            AnyTarget::Kubernetes(t) => t.slot_urls(slot),
        }
    }

    async fn promoted(&self, model: &str, live: Slot) -> Result<(), FleetError> {
        match self {
            AnyTarget::Local(t) => t.promoted(model, live).await,
            AnyTarget::Kubernetes(t) => t.promoted(model, live).await,
        }
    }
}
