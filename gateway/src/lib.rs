//! switchyard's gateway: serves ONNX models over the Open Inference
//! Protocol v2 (HTTP and gRPC) and KServe V1, with a blue and a green slot
//! per model, dynamic batching, and atomic hot swap of versions.
//!
//! The core ([`serving`], [`routing`], [`batcher`], [`infer`], [`loader`])
//! knows nothing of HTTP or gRPC; the front ends ([`http`], [`grpc`])
//! decode, call it and encode; [`backend`] and [`repository`] are the seams
//! for inference engines and model sources. `docs/architecture.md` draws
//! the picture. [`drift`] counts every served row against its version's
//! reference profile.

pub mod backend;
pub mod batcher;
pub mod config;
pub mod drift;
pub mod grpc;
pub mod http;
pub mod infer;
pub mod loader;
pub mod metrics;
pub mod model;
pub mod persist;
pub mod repository;
pub mod routing;
pub mod server;
pub mod serving;
pub mod tensor;
#[cfg(test)]
mod test_support;
