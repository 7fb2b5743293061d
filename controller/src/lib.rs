//! switchyard's controller: rolls a model version out across a fleet of
//! gateways — load into the standby slot, smoke-test it alone, shift
//! traffic by a strategy with analysis between steps, and roll back by
//! itself on failure — with every transition written before it is acted on.
//!
//! - [`suite`] — `smoke-tests/<model>.toml` (smoke cases and rollout settings)
//! - [`fleet`] — the deployment-target seam and the local fleet of gateways
//! - [`journal`] — the durable rollout log and the per-model lock
//! - [`smoke`] — runs a suite against one slot
//! - [`analysis`] — error rate, p99 and shadow agreement from `/metrics`
//! - [`prometheus`] — PromQL checks against a Prometheus server
//! - [`rollout`] — the state machine

pub mod analysis;
pub mod fleet;
pub mod journal;
pub mod prometheus;
pub mod rollout;
pub mod smoke;
pub mod suite;
