//! Wire types shared by switchyard's gateway and controller.
//!
//! - [`manifest`]: a model version's `model.toml` — its signature, batching
//!   settings, provenance and the sha256 of every file — with a pure
//!   validation that reports every problem at once.
//! - [`profile`] and [`drift`]: a version's reference profile of its
//!   training data, and the drift statistics of live traffic against it.
//! - [`admin`]: the JSON bodies of the gateway's admin API, which the
//!   controller drives.
//! - [`grpc`] (feature `grpc`): the Open Inference Protocol v2 gRPC service.

pub mod admin;
pub mod datatype;
pub mod drift;
pub mod duration;
#[cfg(feature = "grpc")]
pub mod grpc_codec;
pub mod manifest;
pub mod profile;

#[cfg(feature = "grpc")]
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod grpc {
    //! Generated from `proto/grpc_predict_v2.proto` (package `inference`).
    tonic::include_proto!("inference");
}

pub use datatype::DataType;
pub use manifest::{Manifest, ManifestError};
