//! Dynamic batching's tensor work: stacking 64 single-row requests into one
//! batch and handing each its own rows of the outputs back.

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gateway::tensor::{Tensor, TensorData, concat_rows, take_rows};

fn batch(c: &mut Criterion) {
    const N: usize = 64;
    let parts: Vec<Tensor> = (0..N).map(|_| common::input_tensor(1)).collect();
    let refs: Vec<&Tensor> = parts.iter().collect();
    let label = Tensor {
        name: "label".to_owned(),
        shape: vec![N],
        data: TensorData::I64((0..N as i64).map(|i| i % 2).collect()),
    };
    let probabilities = Tensor {
        name: "probabilities".to_owned(),
        shape: vec![N, 2],
        data: TensorData::F32((0..2 * N).map(|i| i as f32 / 128.0).collect()),
    };
    let outputs = [label, probabilities];

    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("concat_rows/64x1", |b| {
        b.iter(|| concat_rows(std::hint::black_box(&refs)).expect("same type"));
    });
    g.bench_function("take_rows/64x1", |b| {
        b.iter(|| {
            let mut replies = Vec::with_capacity(N);
            for row in 0..N {
                let mine: Vec<Tensor> = outputs
                    .iter()
                    .map(|t| take_rows(t, row, 1).expect("in range"))
                    .collect();
                replies.push(mine);
            }
            replies
        });
    });
    g.bench_function("concat_and_take/64x1", |b| {
        b.iter(|| {
            let stacked = concat_rows(std::hint::black_box(&refs)).expect("same type");
            let mut replies = Vec::with_capacity(N);
            for row in 0..N {
                let mine: Vec<Tensor> = outputs
                    .iter()
                    .map(|t| take_rows(t, row, 1).expect("in range"))
                    .collect();
                replies.push(mine);
            }
            (stacked, replies)
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = batch
}
criterion_main!(benches);
