#![no_main]
//! `gateway::http::codec::decode_request` on a body and an optional
//! `Inference-Header-Content-Length`, then an `encode_response` round
//! trip. The input's layout is in `src/http.rs`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gateway_fuzz::http::check(data);
});
