#![no_main]
//! `prost` decoding of a `ModelInferRequest`, then
//! `gateway::grpc::decode_inputs`. The input is the protobuf message.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gateway_fuzz::grpc::check(data);
});
