//! `manifest_parse`: `switchyard_api::Manifest::parse` of a `model.toml`,
//! then `validate`, then a write-and-read-again round trip.
//!
//! An input is the file's bytes; those that are not UTF-8 stop at the
//! check (the gateway reads the file with `read_to_string`, which refuses
//! them before the parser runs).

use switchyard_api::Manifest;

use crate::{assert_bounded, peak_during};

/// Heap `Manifest::parse` may hold per input byte. TOML becomes a document
/// tree and then the manifest's structs, both larger than their text.
pub const BYTES_PER_INPUT_BYTE: usize = 256;

/// The check: no panic, bounded allocation, and for a manifest that
/// parses, `validate` that does not panic and a manifest that serialises
/// and parses back to the same text and the same problems. Returns
/// whether the manifest parsed and validated without a problem.
pub fn check(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let (parsed, peak) = peak_during(|| Manifest::parse(text));
    assert_bounded("Manifest::parse", data.len(), peak, BYTES_PER_INPUT_BYTE);
    let manifest = match parsed {
        Ok(m) => m,
        Err(e) => {
            assert!(!e.is_empty(), "an empty parse error");
            return false;
        }
    };
    let problems = manifest.validate();
    for spec in manifest.inputs.iter().chain(&manifest.outputs) {
        let _ = spec.row_elements();
        assert!(manifest.input(&spec.name).is_some() || manifest.output(&spec.name).is_some());
    }
    // Written out and read again, a manifest is the same manifest. Compared
    // as text, since NaN in `provenance.metrics` is not equal to itself.
    let first = toml::to_string(&manifest)
        .unwrap_or_else(|e| panic!("a parsed manifest does not serialise: {e}"));
    let again = Manifest::parse(&first)
        .unwrap_or_else(|e| panic!("a serialised manifest does not parse: {e}\n{first}"));
    let second = toml::to_string(&again).expect("serialises the second time");
    assert_eq!(first, second, "the manifest changed on a round trip");
    assert_eq!(
        again.validate(),
        problems,
        "validation changed on a round trip"
    );
    problems.is_empty()
}
