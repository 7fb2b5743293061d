//! Request decoding: OIP v2 JSON bodies of 1 and 64 rows, the binary tensor
//! extension, and gRPC `raw_input_contents`.

mod common;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use gateway::grpc::decode_inputs;
use gateway::http::codec::decode_request;
use switchyard_api::grpc::model_infer_request::InferInputTensor;

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for rows in [1usize, 64] {
        let json = common::json_body(rows);
        g.throughput(Throughput::Elements(rows as u64));
        g.bench_function(format!("json/{rows}"), |b| {
            b.iter(|| decode_request(std::hint::black_box(&json), None).expect("decodes"));
        });
        let (binary, header) = common::binary_body(rows);
        g.bench_function(format!("binary/{rows}"), |b| {
            b.iter(|| {
                decode_request(std::hint::black_box(&binary), Some(header)).expect("decodes")
            });
        });
        let inputs = vec![InferInputTensor {
            name: "input".to_owned(),
            datatype: "FP32".to_owned(),
            shape: vec![rows as i64, 20],
            ..Default::default()
        }];
        let raw = vec![common::raw_rows(rows)];
        // decode_inputs takes the message's parts by value, as tonic hands
        // them over; the clone is made outside the timed part.
        g.bench_function(format!("grpc_raw/{rows}"), |b| {
            b.iter_batched(
                || (inputs.clone(), raw.clone()),
                |(i, r)| decode_inputs(i, r).expect("decodes"),
                BatchSize::SmallInput,
            );
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = decode
}
criterion_main!(benches);
