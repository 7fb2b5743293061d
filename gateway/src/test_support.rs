//! Fixtures the unit tests of several modules share.

use switchyard_api::Manifest;

/// A model with one FP32 input of two features and an INT64 `label`, with
/// the given batching settings.
pub(crate) fn manifest(max_batch: u32, delay_us: u64) -> Manifest {
    Manifest::parse(&format!(
        r#"
name = "m"
version = 1
[[inputs]]
name = "input"
datatype = "FP32"
shape = [-1, 2]
[[outputs]]
name = "label"
datatype = "INT64"
shape = [-1]
[batching]
max_batch_size = {max_batch}
max_queue_delay_us = {delay_us}
[files]
"model.onnx" = "0000000000000000000000000000000000000000000000000000000000000000"
"#
    ))
    .unwrap_or_else(|e| panic!("the test manifest parses: {e}"))
}
