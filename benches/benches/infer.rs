//! One inference call per backend through the `Session` trait: ort and
//! tract on linear/1 and mlp/1, ort on boosted/2 (tract gets scikit-learn's
//! trees wrong), at 1 and 64 rows. The ort benches need `ORT_DYLIB_PATH`
//! (ONNX Runtime's library from the onnxruntime wheel); without it they are
//! skipped with a notice.

mod common;

use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gateway::backend::{BackendConfig, Backends, Session, backend_name};
use switchyard_api::Manifest;
use switchyard_api::manifest::{BackendKind, MODEL_FILE};

fn session(
    backends: &Backends,
    kind: BackendKind,
    model: &str,
    version: u64,
) -> Option<Box<dyn Session>> {
    let backend = match backends.get(kind) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("infer bench: skipping {model}/{version} on {kind:?}: {e}");
            return None;
        }
    };
    let dir = common::models().join(model).join(version.to_string());
    let manifest = Manifest::load(&dir).expect("the example manifest loads");
    match backend.load(&dir.join(MODEL_FILE), &manifest) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("infer bench: skipping {model}/{version} on {kind:?}: {e}");
            None
        }
    }
}

fn infer(c: &mut Criterion) {
    let ort_library = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from);
    let mut order = vec![BackendKind::Forest, BackendKind::Tract];
    match &ort_library {
        Some(p) if p.is_file() => order.insert(1, BackendKind::Ort),
        Some(p) => eprintln!(
            "infer bench: ORT_DYLIB_PATH={} is not a file; skipping the ort benches",
            p.display()
        ),
        None => eprintln!(
            "infer bench: ORT_DYLIB_PATH is not set; skipping the ort benches \
             (export ORT_DYLIB_PATH=$(ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.*))"
        ),
    }
    let backends = Backends::from_config(&BackendConfig {
        order,
        ort_library,
        intra_op_threads: 1,
    });
    let cases = [
        (BackendKind::Ort, "linear", 1),
        (BackendKind::Tract, "linear", 1),
        (BackendKind::Ort, "mlp", 1),
        (BackendKind::Tract, "mlp", 1),
        (BackendKind::Ort, "boosted", 2),
        (BackendKind::Forest, "boosted", 2),
    ];
    let inputs = [
        (1usize, vec![common::input_tensor(1)]),
        (64, vec![common::input_tensor(64)]),
    ];
    let mut g = c.benchmark_group("infer");
    for (kind, model, version) in cases {
        let Some(mut s) = session(&backends, kind, model, version) else {
            continue;
        };
        let backend = backend_name(kind);
        for (rows, input) in &inputs {
            g.throughput(Throughput::Elements(*rows as u64));
            g.bench_function(format!("{backend}/{model}-{version}/{rows}"), |b| {
                b.iter(|| s.run(std::hint::black_box(input)).expect("inference runs"));
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = infer
}
criterion_main!(benches);
