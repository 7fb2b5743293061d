//! Routing: the table lookup and `Route::pick` (weighted, shadowed, pinned
//! to a version). The routed versions are real `LoadedModel`s whose batcher
//! has no sessions, so no backend is needed and nothing is ever run.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use gateway::batcher::{Batcher, Inline, ThreadBudget};
use gateway::metrics::Metrics;
use gateway::model::LoadedModel;
use gateway::routing::{Pin, Route, RoutingTable};
use switchyard_api::Manifest;
use switchyard_api::admin::{Slot, Weights};
use switchyard_api::manifest::BackendKind;

fn loaded(
    metrics: &Metrics,
    budget: &ThreadBudget,
    model: &str,
    version: u64,
    slot: Slot,
) -> Arc<LoadedModel> {
    let dir = common::models().join(model).join(version.to_string());
    let manifest = Manifest::load(&dir).expect("the example manifest loads");
    let vm = metrics.version(model, version, slot.as_str());
    let batcher = Batcher::start(
        &format!("{model}-{version}"),
        Vec::new(),
        manifest.batching,
        Inline::OFF,
        budget,
        &vm,
    )
    .expect("a batcher without sessions starts no thread");
    Arc::new(LoadedModel {
        version_label: version.to_string(),
        manifest: Arc::new(manifest),
        slot,
        backend: BackendKind::Ort,
        batcher,
        metrics: vm,
        drift: None,
        load_seconds: 0.0,
    })
}

fn route(c: &mut Criterion) {
    let metrics = Metrics::new();
    let budget = ThreadBudget::new(1);
    let blue = loaded(&metrics, &budget, "boosted", 2, Slot::Blue);
    let green = loaded(&metrics, &budget, "boosted", 3, Slot::Green);
    let canary = Weights {
        blue: 90,
        green: 10,
    };
    let mut routes = BTreeMap::new();
    routes.insert(
        "boosted".to_owned(),
        Arc::new(Route::new(
            "boosted".to_owned(),
            [Some(blue.clone()), Some(green.clone())],
            canary,
            Slot::Blue,
            0,
        )),
    );
    routes.insert(
        "boosted-shadowed".to_owned(),
        Arc::new(Route::new(
            "boosted".to_owned(),
            [Some(blue.clone()), Some(green)],
            canary,
            Slot::Blue,
            10,
        )),
    );
    for (name, version) in [("linear", 1), ("mlp", 1)] {
        let m = loaded(&metrics, &budget, name, version, Slot::Blue);
        routes.insert(
            name.to_owned(),
            Arc::new(Route::new(
                name.to_owned(),
                [Some(m), None],
                Weights::all_to(Slot::Blue),
                Slot::Blue,
                0,
            )),
        );
    }
    let table = RoutingTable { routes };

    let mut g = c.benchmark_group("route");
    g.bench_function("lookup", |b| {
        b.iter(|| {
            table
                .route(std::hint::black_box("boosted"))
                .expect("routed")
                .clone()
        });
    });
    g.bench_function("lookup_and_pick/weighted_90_10", |b| {
        b.iter(|| {
            table
                .route(std::hint::black_box("boosted"))
                .expect("routed")
                .pick(Pin::Weighted)
                .expect("picked")
        });
    });
    g.bench_function("lookup_and_pick/weighted_shadow_10", |b| {
        b.iter(|| {
            table
                .route(std::hint::black_box("boosted-shadowed"))
                .expect("routed")
                .pick(Pin::Weighted)
                .expect("picked")
        });
    });
    g.bench_function("lookup_and_pick/version", |b| {
        b.iter(|| {
            table
                .route(std::hint::black_box("boosted"))
                .expect("routed")
                .pick(Pin::Version(3))
                .expect("picked")
        });
    });
    g.bench_function("lookup_and_pick/single_slot", |b| {
        b.iter(|| {
            table
                .route(std::hint::black_box("mlp"))
                .expect("routed")
                .pick(Pin::Weighted)
                .expect("picked")
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = route
}
criterion_main!(benches);
