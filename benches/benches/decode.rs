//! Request decoding: OIP v2 JSON bodies of 1 and 64 rows, the binary tensor
//! extension, and gRPC `raw_input_contents` (the tensors alone, and the
//! whole call body as the direct `ModelInfer` path reads it).

mod common;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use gateway::grpc::decode_inputs;
use gateway::grpc::direct::decode_call;
use gateway::http::codec::decode_request;
use switchyard_api::grpc::ModelInferRequest;
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
        // The call's body, framed as on the wire: prefix, entry guard,
        // protobuf, tensors.
        let message = prost::Message::encode_to_vec(&ModelInferRequest {
            model_name: "boosted".to_owned(),
            inputs: inputs.clone(),
            raw_input_contents: raw.clone(),
            ..Default::default()
        });
        let mut framed = vec![0u8];
        framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
        framed.extend_from_slice(&message);
        let framed = bytes::Bytes::from(framed);
        g.bench_function(format!("grpc_call/{rows}"), |b| {
            b.iter(|| {
                let request =
                    decode_call(std::hint::black_box(framed.clone()), 16 << 20).expect("decodes");
                decode_inputs(request.inputs, request.raw_input_contents).expect("decodes")
            });
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
