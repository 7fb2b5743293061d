//! Live drift: the cost of counting on the request path (per feature
//! value, for 1-row and 64-row requests of 20 features), and of a scrape's
//! drift section with 20 models × 50 features (every window summed, every
//! statistic computed, the text written).

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gateway::drift::DriftTracker;
use gateway::tensor::{Tensor, TensorData};
use switchyard_api::Manifest;
use switchyard_api::drift::DriftReport;
use switchyard_api::profile::{FeatureProfile, Profile};

/// Deterministic values spread like a standard normal (sum of uniforms).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    let mut uniform = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..n)
        .map(|_| (0..6).map(|_| uniform()).sum::<f32>() - 3.0)
        .collect()
}

/// A model of `features` numeric features (the last two categorical) with
/// its profile, as a tracker.
fn tracker(model: &str, features: usize) -> DriftTracker {
    let names: Vec<String> = (0..features).map(|i| format!("f{i:02}")).collect();
    let manifest = Manifest::parse(&format!(
        "name = \"{model}\"\nversion = 1\nprofile = \"profile.json\"\n\
         [[inputs]]\nname = \"input\"\ndatatype = \"FP32\"\nshape = [-1, {features}]\nfeatures = {names:?}\n\
         [[outputs]]\nname = \"label\"\ndatatype = \"INT64\"\nshape = [-1]\n\
         [files]\n\"model.onnx\" = \"{z}\"\n\"profile.json\" = \"{z}\"\n",
        z = "0".repeat(64)
    ))
    .expect("manifest");
    let reference = values(5000, 1);
    let profiled = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let column: Vec<f64> = reference
                .iter()
                .skip(i % 7)
                .step_by(7)
                .map(|&v| f64::from(v))
                .collect();
            let mut f = if i + 2 >= features {
                let coded: Vec<f64> = column.iter().map(|v| (v.abs() * 2.0).floor()).collect();
                FeatureProfile::categorical(name, &coded)
            } else {
                FeatureProfile::numeric(name, &column, 10)
            }
            .expect("values");
            f.input = Some("input".into());
            f.column = i;
            f
        })
        .collect();
    let mut prediction = FeatureProfile::categorical("label", &[0.0, 1.0]).expect("labels");
    prediction.output = Some("label".into());
    let profile = Profile {
        format: 1,
        rows: 5000,
        source: String::new(),
        features: profiled,
        prediction: Some(prediction),
    };
    assert!(profile.check_against(&manifest).is_empty());
    DriftTracker::new(profile, &manifest)
}

fn batch(rows: usize, features: usize, seed: u64) -> Vec<Tensor> {
    vec![Tensor {
        name: "input".into(),
        shape: vec![rows, features],
        data: TensorData::F32(values(rows * features, seed)),
    }]
}

fn counting(c: &mut Criterion) {
    let mut group = c.benchmark_group("drift_count");
    let t = tracker("boosted", 20);
    for rows in [1usize, 64] {
        let inputs = batch(rows, 20, 7);
        let now = Instant::now();
        // Per feature value: criterion reports time per element.
        group.throughput(Throughput::Elements((rows * 20) as u64));
        group.bench_with_input(
            BenchmarkId::new("record_inputs", rows),
            &inputs,
            |b, inputs| {
                b.iter(|| t.record_inputs(black_box(inputs), rows, now));
            },
        );
    }
    group.finish();
}

fn scrape(c: &mut Criterion) {
    let trackers: Vec<(String, DriftTracker)> = (0..20)
        .map(|i| {
            let name = format!("model{i:02}");
            let t = tracker(&name, 50);
            (name, t)
        })
        .collect();
    let now = Instant::now();
    for (i, (_, t)) in trackers.iter().enumerate() {
        for k in 0..20 {
            t.record_inputs(&batch(64, 50, (i * 100 + k) as u64), 64, now);
        }
    }
    c.bench_function("drift_scrape/20_models_x_50_features", |b| {
        b.iter(|| {
            let reports: Vec<DriftReport> = trackers
                .iter()
                .map(|(name, t)| DriftReport {
                    model: name.clone(),
                    versions: vec![t.report(1, now)],
                    untracked: Vec::new(),
                })
                .collect();
            let mut text = String::with_capacity(1 << 20);
            gateway::drift::render(&reports, &mut text);
            black_box(text.len())
        });
    });
}

criterion_group!(benches, counting, scrape);
criterion_main!(benches);
