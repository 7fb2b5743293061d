#![no_main]
//! `switchyard_api::Manifest::parse` of a `model.toml`, `validate`, and a
//! serialise-and-parse-again round trip. The input is the file.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gateway_fuzz::manifest::check(data);
});
