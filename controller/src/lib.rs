//! switchyard's controller: rolls a model version out across a fleet of
//! gateways — load into the standby slot, smoke-test it alone, shift
//! traffic by a strategy with analysis between steps, and roll back by
//! itself on failure — with every transition written before it is acted on.
//!
//! - [`suite`] — `smoke-tests/<model>.toml` (smoke cases and rollout settings)
//! - [`fleet`] — the deployment-target seam: local gateways, or Kubernetes
//!   Deployments and a Service
//! - [`journal`] — the durable rollout log and the per-model lock
//! - [`smoke`] — runs a suite against one slot
//! - [`source`] — the model-source seam: versions fetched from MLflow
//! - [`analysis`] — error rate, p99 and shadow agreement from `/metrics`
//! - [`prometheus`] — PromQL checks against a Prometheus server
//! - [`drift`] — the fleet's live drift, added up across gateways
//! - [`profiling`] — reference profiles from training data (CSV, Parquet)
//! - [`rollout`] — the state machine

pub mod analysis;
pub mod drift;
pub mod fleet;
pub mod journal;
pub mod profiling;
pub mod prometheus;
pub mod rollout;
pub mod smoke;
pub mod source;
pub mod suite;
