//! `reference`: the ceilings the gateway is measured against, served on
//! this machine in the same benchmark run.
//!
//! * `/hello` answers a constant to any method: what axum and hyper cost
//!   alone.
//! * `POST /v2/models/{model}/infer` is the smallest Open Inference
//!   Protocol v2 JSON handler that calls ONNX Runtime: decode the first
//!   input's rows, run the model on the tokio thread that received the
//!   request, encode every output. No routing, batching, queue, deadline,
//!   metrics, drift or logs: what a request costs when the server does
//!   nothing a production gateway must do.
//!
//! The targets are stated against such a handler (measured once
//! on a quieter machine); serving it beside the gateway in one run keeps
//! the comparison honest when the machine itself is slower or busier.

#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use clap::Parser;
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef};
use serde::{Deserialize, Serialize};

/// Minimal axum + ONNX Runtime server, for side-by-side benchmarks only
#[derive(Debug, Parser)]
struct Args {
    /// Port on 127.0.0.1
    #[arg(long, default_value_t = 8100)]
    port: u16,
    /// The model file
    #[arg(long)]
    model: PathBuf,
    /// ONNX Runtime's shared library (default: ORT_DYLIB_PATH)
    #[arg(long, env = "ORT_DYLIB_PATH")]
    ort_library: PathBuf,
}

#[derive(Deserialize)]
struct Request {
    inputs: Vec<Input>,
}

#[derive(Deserialize)]
struct Input {
    name: String,
    shape: Vec<i64>,
    data: Vec<f32>,
}

#[derive(Serialize)]
struct Answer {
    model_name: String,
    outputs: Vec<Output>,
}

#[derive(Serialize)]
struct Output {
    name: String,
    datatype: &'static str,
    shape: Vec<i64>,
    data: OutputData,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutputData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// One session behind a lock: with one intra-op thread a run takes a few
/// microseconds, and two tokio workers rarely meet on it.
type Shared = Arc<Mutex<Session>>;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let environment = ort::init_from(&args.ort_library)
        .with_context(|| format!("loading {}", args.ort_library.display()))?
        .with_name("reference")
        .build()?;
    let session = Session::builder(&environment)
        .map_err(|e| anyhow::anyhow!("session builder: {e}"))?
        .with_intra_threads(1)
        .map_err(|e| anyhow::anyhow!("session options: {e}"))?
        .commit_from_file(&args.model)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let app = Router::new()
        .route("/hello", any(|| async { "{\"hello\":true}" }))
        .route("/v2/models/{model}/infer", post(infer))
        .with_state(Arc::new(Mutex::new(session)));
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
            println!("reference listening on {}", listener.local_addr()?);
            axum::serve(listener, app).await?;
            Ok(())
        })
}

async fn infer(
    State(session): State<Shared>,
    axum::extract::Path(model): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> Response {
    match run(&session, model, &body) {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

fn run(session: &Shared, model: String, body: &[u8]) -> anyhow::Result<Answer> {
    let request: Request = serde_json::from_slice(body)?;
    let input = request.inputs.into_iter().next().context("no input")?;
    let mut session = session
        .lock()
        .map_err(|_| anyhow::anyhow!("session poisoned"))?;
    let view = TensorRef::from_array_view((input.shape, input.data.as_slice()))?;
    let results = session.run(ort::inputs![input.name.as_str() => view])?;
    let mut outputs = Vec::with_capacity(results.len());
    for (name, value) in results.iter() {
        let (datatype, shape, data) = match value.dtype().tensor_type() {
            Some(TensorElementType::Int64) => {
                let (shape, data) = value.try_extract_tensor::<i64>()?;
                ("INT64", shape.to_vec(), OutputData::I64(data.to_vec()))
            }
            _ => {
                let (shape, data) = value.try_extract_tensor::<f32>()?;
                ("FP32", shape.to_vec(), OutputData::F32(data.to_vec()))
            }
        };
        outputs.push(Output {
            name: name.to_owned(),
            datatype,
            shape,
            data,
        });
    }
    Ok(Answer {
        model_name: model,
        outputs,
    })
}
