//! `loadgen`: a closed-loop load generator for switchyard and its peers.
//!
//! N client tasks (the concurrency) each own one connection and send one
//! request after another for a fixed duration, after a warm-up whose
//! requests are not measured. Protocols: Open Inference Protocol v2 JSON
//! (`POST /v2/models/{m}/infer`), the same with Triton's binary tensor
//! extension, KServe V1 (`POST /v1/models/{m}:predict`), MLflow's
//! `/invocations`, and OIP v2 gRPC (`ModelInfer` with `raw_input_contents`).
//!
//! Bodies are built from the rows of a model's `golden.json` (repeated to
//! reach `--rows`). Latency of successful requests goes into an HDR
//! histogram; every failure is counted by kind (HTTP status, gRPC code,
//! connection error, timeout) and reported, never dropped. The target is
//! always 127.0.0.1: only the port is configurable. With `--timeline`, every
//! request is also written out with its start time, latency and outcome, so
//! a run can be cut into time windows afterwards (a rollout during a run).
//!
//! Like wrk, the client side does as little as it can, since it shares the
//! machine with the server: bodies are encoded once, and gRPC requests go
//! out as pre-encoded length-prefixed messages on a bare HTTP/2 connection
//! (the answer's `grpc-status` is checked, its message is not decoded after
//! the first). gRPC clients may share connections (`--connections`), as
//! gRPC clients do, each request its own stream.

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use serde::Serialize;
use switchyard_api::grpc::ModelInferRequest;
use switchyard_api::grpc::grpc_inference_service_client::GrpcInferenceServiceClient;
use switchyard_api::grpc::model_infer_request::InferInputTensor;
use tonic::transport::Channel;

/// Longest run (warm-up included) loadgen agrees to.
const MAX_RUN: Duration = Duration::from_secs(3600);
/// Most client tasks.
const MAX_CONCURRENCY: usize = 4096;
/// Most rows in one request body.
const MAX_ROWS: usize = 65_536;
/// Latency histogram range, in microseconds: 1 µs to 10 min.
const HIST_MAX_US: u64 = 600_000_000;

/// The wire protocol to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Protocol {
    /// OIP v2 JSON over HTTP/1.1.
    HttpJson,
    /// OIP v2 with Triton's binary tensor extension (binary in and out).
    HttpBinary,
    /// KServe V1 `:predict` with `instances`.
    KserveV1,
    /// MLflow scoring server `/invocations` with `inputs`.
    Mlflow,
    /// OIP v2 gRPC `ModelInfer` with `raw_input_contents`.
    Grpc,
}

/// Closed-loop load generator: fixed concurrency for a fixed duration,
/// against 127.0.0.1 only.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version)]
struct Args {
    /// Wire protocol.
    #[arg(long, value_enum, default_value = "http-json")]
    protocol: Protocol,
    /// Port on 127.0.0.1 (HTTP or gRPC, as the protocol says).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Model name (in the URL or the gRPC request).
    #[arg(long, default_value = "boosted")]
    model: String,
    /// URL path, overriding the protocol's default one.
    #[arg(long)]
    path: Option<String>,
    /// Rows per request.
    #[arg(long, default_value_t = 1)]
    rows: usize,
    /// Client tasks, each with one request in flight at a time.
    #[arg(long, short = 'c', default_value_t = 1)]
    concurrency: usize,
    /// Connections the client tasks share (gRPC only: each request is a
    /// stream of its own) [default: one per client task].
    #[arg(long)]
    connections: Option<usize>,
    /// Measured time, e.g. 10s, 500ms, 2m.
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured time before it.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Stop once this many measured requests were sent (across all tasks).
    #[arg(long)]
    max_requests: Option<u64>,
    /// Per-request timeout; a request past it counts as an error.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// Runtime threads of the load generator (it shares the machine with
    /// the server under test).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// The golden file whose input rows make the body [default:
    /// models/boosted/2/golden.json, found from the current directory or
    /// the workspace].
    #[arg(long)]
    golden: Option<PathBuf>,
    /// Input tensor name.
    #[arg(long, default_value = "input")]
    input_name: String,
    /// Put an `id` in OIP v2 bodies (KServe's server answers 500 without).
    #[arg(long)]
    with_id: bool,
    /// A label copied into the JSON report.
    #[arg(long)]
    label: Option<String>,
    /// Print the report as one JSON object instead of a human line.
    #[arg(long)]
    json: bool,
    /// Exit with status 1 when any request failed.
    #[arg(long)]
    fail_on_errors: bool,
    /// Write every request, warm-up included, to this CSV file
    /// (`start_unix_us,latency_us,outcome`; outcome `ok` or the error kind).
    #[arg(long)]
    timeline: Option<PathBuf>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let value: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 10s, 500ms or 2m"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("{text:?} is not a positive duration"));
    }
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("{text:?}: {e}"))
}

/// What every task needs to build and send a request.
#[derive(Debug)]
struct Plan {
    protocol: Protocol,
    port: u16,
    path: String,
    grpc: Option<ModelInferRequest>,
    /// The gRPC request as it goes on the wire: flag, length, message.
    grpc_frame: Bytes,
    /// The `ModelInfer` URI, parsed once.
    grpc_uri: http::Uri,
    /// An HTTP request as it goes on the wire: request line, headers, body.
    http_wire: Bytes,
    /// Client tasks per connection (gRPC).
    per_connection: usize,
    rows: usize,
    timeout: Duration,
    /// Whether every request is kept for `--timeline`.
    timeline: bool,
}

/// Shared clock and request budget.
#[derive(Debug)]
struct Clock {
    /// When the run started, as an instant and in microseconds since the
    /// Unix epoch, so timeline entries can be put beside other processes'.
    origin: Instant,
    origin_unix_us: u128,
    warm_end: Instant,
    end: Instant,
    /// Measured requests left; negative means no limit.
    budget: AtomicI64,
    limited: bool,
}

impl Clock {
    /// Whether a measured request may start.
    fn ticket(&self) -> bool {
        !self.limited || self.budget.fetch_sub(1, Ordering::Relaxed) > 0
    }

    /// `at` in microseconds since the Unix epoch.
    fn unix_us(&self, at: Instant) -> u128 {
        self.origin_unix_us + at.saturating_duration_since(self.origin).as_micros()
    }
}

/// What one task saw.
#[derive(Debug)]
struct Tally {
    latency: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
    warmup_ok: u64,
    warmup_errors: BTreeMap<String, u64>,
    samples: BTreeMap<String, String>,
    last_done: Option<Instant>,
    /// CSV lines of every request, when `--timeline` asked for them.
    timeline: Option<String>,
}

impl Tally {
    fn new(timeline: bool) -> anyhow::Result<Tally> {
        Ok(Tally {
            latency: Histogram::new_with_bounds(1, HIST_MAX_US, 3)?,
            ok: 0,
            errors: BTreeMap::new(),
            warmup_ok: 0,
            warmup_errors: BTreeMap::new(),
            samples: BTreeMap::new(),
            last_done: None,
            timeline: timeline.then(String::new),
        })
    }

    /// Keeps one request for the timeline (a no-op without `--timeline`).
    /// Writes one request to the timeline, if one is kept.
    fn note(&mut self, clock: &Clock, start: Instant, elapsed: Duration, outcome: &str) {
        if let Some(t) = self.timeline.as_mut() {
            // Writing into a String cannot fail.
            let _ = writeln!(
                t,
                "{},{},{outcome}",
                clock.unix_us(start),
                elapsed.as_micros()
            );
        }
    }

    fn success(&mut self, clock: &Clock, start: Instant, elapsed: Duration, measured: bool) {
        self.note(clock, start, elapsed, "ok");
        if measured {
            let us = u64::try_from(elapsed.as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            self.latency.saturating_record(us);
            self.ok += 1;
            self.last_done = Some(Instant::now());
        } else {
            self.warmup_ok += 1;
        }
    }

    fn error(
        &mut self,
        clock: &Clock,
        start: Instant,
        elapsed: Duration,
        measured: bool,
        kind: String,
        detail: impl FnOnce() -> String,
    ) {
        self.note(clock, start, elapsed, &kind);
        if !self.samples.contains_key(&kind) {
            let mut d = detail();
            d.truncate(300);
            self.samples.insert(kind.clone(), d);
        }
        let map = if measured {
            self.last_done = Some(Instant::now());
            &mut self.errors
        } else {
            &mut self.warmup_errors
        };
        *map.entry(kind).or_insert(0) += 1;
    }

    fn merge(&mut self, other: Tally) -> anyhow::Result<()> {
        self.latency.add(&other.latency)?;
        self.ok += other.ok;
        self.warmup_ok += other.warmup_ok;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_insert(0) += v;
        }
        for (k, v) in other.warmup_errors {
            *self.warmup_errors.entry(k).or_insert(0) += v;
        }
        for (k, v) in other.samples {
            self.samples.entry(k).or_insert(v);
        }
        self.last_done = match (self.last_done, other.last_done) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if let (Some(mine), Some(theirs)) = (self.timeline.as_mut(), other.timeline) {
            mine.push_str(&theirs);
        }
        Ok(())
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Serialize)]
struct Latency {
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
    mean: f64,
}

/// The report, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Report {
    label: Option<String>,
    protocol: Protocol,
    port: u16,
    path: String,
    model: String,
    rows: usize,
    concurrency: usize,
    connections: usize,
    threads: usize,
    warmup_s: f64,
    duration_s: f64,
    elapsed_s: f64,
    started_unix_ms: u128,
    requests: u64,
    ok: u64,
    req_per_s: f64,
    rows_per_s: f64,
    latency_us: Latency,
    errors: u64,
    errors_by_kind: BTreeMap<String, u64>,
    error_samples: BTreeMap<String, String>,
    warmup_ok: u64,
    warmup_errors: BTreeMap<String, u64>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> anyhow::Result<std::process::ExitCode> {
    if args.concurrency == 0 || args.concurrency > MAX_CONCURRENCY {
        bail!("--concurrency must be between 1 and {MAX_CONCURRENCY}");
    }
    if args.rows == 0 || args.rows > MAX_ROWS {
        bail!("--rows must be between 1 and {MAX_ROWS}");
    }
    if args.duration.is_zero() || args.duration + args.warmup > MAX_RUN {
        bail!("--duration must be positive and, with --warmup, at most {MAX_RUN:?}");
    }
    if args.threads == 0 || args.threads > 64 {
        bail!("--threads must be between 1 and 64");
    }
    if args.timeout.is_zero() {
        bail!("--timeout must be positive");
    }
    match args.connections {
        Some(n) if n == 0 || n > args.concurrency => {
            bail!("--connections must be between 1 and --concurrency");
        }
        Some(n) if n != args.concurrency && args.protocol != Protocol::Grpc => {
            bail!(
                "--connections below --concurrency needs --protocol grpc (HTTP/1.1 carries one request per connection at a time)"
            );
        }
        _ => {}
    }
    let golden = match &args.golden {
        Some(p) => p.clone(),
        None => default_golden()?,
    };
    let (width, values) = golden_rows(&golden, &args.input_name)?;
    let plan = Arc::new(build_plan(args, width, &values)?);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let (mut tally, elapsed, started) = runtime.block_on(drive(args, &plan))?;
    if let (Some(path), Some(lines)) = (&args.timeline, tally.timeline.take()) {
        let text = format!("start_unix_us,latency_us,outcome\n{lines}");
        std::fs::write(path, text)
            .with_context(|| format!("cannot write the timeline {}", path.display()))?;
    }
    let report = report(args, &plan, tally, elapsed, started);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", human(&report));
        for (kind, sample) in &report.error_samples {
            println!("  error {kind}: {sample}");
        }
    }
    let failed = report.errors > 0 || report.warmup_errors.values().sum::<u64>() > 0;
    Ok(if args.fail_on_errors && failed {
        std::process::ExitCode::from(1)
    } else {
        std::process::ExitCode::SUCCESS
    })
}

fn default_golden() -> anyhow::Result<PathBuf> {
    let rel = Path::new("models/boosted/2/golden.json");
    let candidates = [
        PathBuf::from(rel),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel),
    ];
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| format!("cannot find {}; pass --golden", rel.display()))
}

/// The golden input rows: the row width and the flat values.
fn golden_rows(path: &Path, input: &str) -> anyhow::Result<(usize, Vec<f64>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let tensor = &json["inputs"][input];
    let shape: Vec<usize> = serde_json::from_value(tensor["shape"].clone())
        .with_context(|| format!("{}: inputs.{input}.shape", path.display()))?;
    let values: Vec<f64> = serde_json::from_value(tensor["data"].clone())
        .with_context(|| format!("{}: inputs.{input}.data", path.display()))?;
    let [rows, width] = shape[..] else {
        bail!("{}: inputs.{input} is not two-dimensional", path.display());
    };
    if rows == 0 || width == 0 || values.len() != rows * width {
        bail!(
            "{}: inputs.{input} has an inconsistent shape",
            path.display()
        );
    }
    Ok((width, values))
}

fn build_plan(args: &Args, width: usize, golden: &[f64]) -> anyhow::Result<Plan> {
    let available = golden.len() / width;
    // Repeat the golden rows until there are enough.
    let flat: Vec<f64> = (0..args.rows)
        .flat_map(|r| {
            let i = r % available;
            golden[i * width..(i + 1) * width].iter().copied()
        })
        .collect();
    let rows = args.rows;
    let name = &args.input_name;
    let id = args.with_id.then_some("loadgen");
    let mut header_length = None;
    let mut grpc = None;
    let (default_path, body) = match args.protocol {
        Protocol::HttpJson => {
            let mut body = serde_json::json!({
                "inputs": [{"name": name, "shape": [rows, width], "datatype": "FP32", "data": flat}]
            });
            if let Some(id) = id {
                body["id"] = id.into();
            }
            (
                format!("/v2/models/{}/infer", args.model),
                serde_json::to_vec(&body)?,
            )
        }
        Protocol::HttpBinary => {
            let raw = le_f32(&flat);
            let mut header = serde_json::json!({
                "inputs": [{"name": name, "shape": [rows, width], "datatype": "FP32",
                            "parameters": {"binary_data_size": raw.len()}}],
                "parameters": {"binary_data_output": true}
            });
            if let Some(id) = id {
                header["id"] = id.into();
            }
            let mut body = serde_json::to_vec(&header)?;
            header_length = Some(body.len());
            body.extend_from_slice(&raw);
            (format!("/v2/models/{}/infer", args.model), body)
        }
        Protocol::KserveV1 => {
            let instances: Vec<&[f64]> = flat.chunks(width).collect();
            (
                format!("/v1/models/{}:predict", args.model),
                serde_json::to_vec(&serde_json::json!({ "instances": instances }))?,
            )
        }
        Protocol::Mlflow => {
            let inputs: Vec<&[f64]> = flat.chunks(width).collect();
            (
                "/invocations".to_owned(),
                serde_json::to_vec(&serde_json::json!({ "inputs": inputs }))?,
            )
        }
        Protocol::Grpc => {
            grpc = Some(ModelInferRequest {
                model_name: args.model.clone(),
                id: id.unwrap_or_default().to_owned(),
                inputs: vec![InferInputTensor {
                    name: name.clone(),
                    datatype: "FP32".to_owned(),
                    shape: vec![i64::try_from(rows)?, i64::try_from(width)?],
                    ..Default::default()
                }],
                raw_input_contents: vec![le_f32(&flat)],
                ..Default::default()
            });
            (String::new(), Vec::new())
        }
    };
    let grpc_frame = match &grpc {
        Some(request) => {
            let message = prost::Message::encode_to_vec(request);
            let mut frame = Vec::with_capacity(message.len() + 5);
            frame.push(0);
            frame.extend_from_slice(&u32::try_from(message.len())?.to_be_bytes());
            frame.extend_from_slice(&message);
            Bytes::from(frame)
        }
        None => Bytes::new(),
    };
    let connections = args.connections.unwrap_or(args.concurrency).max(1);
    let path = args.path.clone().unwrap_or(default_path);
    let http_wire = {
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{}\r\ncontent-type: {}\r\ncontent-length: {}\r\n",
            args.port,
            if header_length.is_some() {
                "application/octet-stream"
            } else {
                "application/json"
            },
            body.len()
        );
        if let Some(n) = header_length {
            write!(head, "inference-header-content-length: {n}\r\n")?;
        }
        head.push_str("\r\n");
        let mut wire = head.into_bytes();
        wire.extend_from_slice(&body);
        Bytes::from(wire)
    };
    Ok(Plan {
        protocol: args.protocol,
        port: args.port,
        path,
        http_wire,
        grpc,
        grpc_frame,
        grpc_uri: format!(
            "http://127.0.0.1:{}/inference.GRPCInferenceService/ModelInfer",
            args.port
        )
        .parse()?,
        per_connection: args.concurrency.div_ceil(connections),
        rows,
        timeout: args.timeout,
        timeline: args.timeline.is_some(),
    })
}

#[allow(clippy::cast_possible_truncation)]
fn le_f32(values: &[f64]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&v| (v as f32).to_le_bytes())
        .collect()
}

async fn drive(args: &Args, plan: &Arc<Plan>) -> anyhow::Result<(Tally, f64, u128)> {
    // One request first, so a wrong port, path or body fails loudly.
    preflight(plan).await?;
    let started = Instant::now();
    let started_unix_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let started_unix_ms = started_unix_us / 1000;
    let limit = args
        .max_requests
        .map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    let clock = Arc::new(Clock {
        origin: started,
        origin_unix_us: started_unix_us,
        warm_end: started + args.warmup,
        end: started + args.warmup + args.duration,
        budget: AtomicI64::new(limit.unwrap_or(-1)),
        limited: limit.is_some(),
    });
    let mut tasks = tokio::task::JoinSet::new();
    let mut shared: Option<Grpc> = None;
    for i in 0..args.concurrency {
        let plan = plan.clone();
        let clock = clock.clone();
        if plan.protocol == Protocol::Grpc {
            if i % plan.per_connection == 0 {
                shared = Some(Grpc::open(plan.port).await?);
            }
            tasks.spawn(client(plan, clock, shared.clone()));
        } else {
            tasks.spawn(client::<Http1>(plan, clock, None));
        }
    }
    let mut total = Tally::new(plan.timeline)?;
    while let Some(done) = tasks.join_next().await {
        total.merge(done.context("a client task panicked")??)?;
    }
    let measured_from = clock.warm_end;
    let measured_to = total.last_done.unwrap_or(clock.end).max(clock.end);
    let elapsed = measured_to
        .checked_duration_since(measured_from)
        .unwrap_or_default()
        .as_secs_f64();
    Ok((total, elapsed, started_unix_ms))
}

async fn preflight(plan: &Plan) -> anyhow::Result<()> {
    let deadline = plan.timeout.max(Duration::from_secs(5));
    if plan.protocol == Protocol::Grpc {
        let mut client = grpc_connect(plan.port).await?;
        let request = plan.grpc.clone().context("no gRPC request")?;
        let answer = tokio::time::timeout(deadline, client.model_infer(request))
            .await
            .context("the first gRPC request timed out")?
            .map_err(|s| {
                anyhow::anyhow!(
                    "the first gRPC request failed: {:?}: {}",
                    s.code(),
                    s.message()
                )
            })?;
        if answer.get_ref().outputs.is_empty() {
            bail!("the first gRPC answer has no outputs");
        }
        return Ok(());
    }
    let mut connection = Http1::connect(plan.port).await?;
    let (status, at) = tokio::time::timeout(deadline, connection.exchange(plan))
        .await
        .context("the first request timed out")??;
    if status != 200 {
        let body = &connection.buf[at];
        bail!(
            "the first request to 127.0.0.1:{}{} answered {status}: {}",
            plan.port,
            plan.path,
            String::from_utf8_lossy(&body[..body.len().min(500)])
        );
    }
    Ok(())
}

async fn grpc_connect(port: u16) -> anyhow::Result<GrpcInferenceServiceClient<Channel>> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot connect to gRPC on 127.0.0.1:{port}"))?;
    Ok(GrpcInferenceServiceClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20))
}

/// A bare HTTP/2 connection that carries gRPC calls as streams.
type H2Sender = h2::client::SendRequest<Bytes>;

/// HTTP/2 flow-control windows: as large as hyper's client asks for, so a
/// 64-row answer never waits for a window update.
const H2_STREAM_WINDOW: u32 = 2 << 20;
const H2_CONNECTION_WINDOW: u32 = 5 << 20;

/// Opens a connection on the `h2` crate itself rather than through hyper's
/// client: hyper hands each request to the connection task over a channel
/// and sends a body from a task of its own, which doubled this client's
/// CPU per call against its HTTP/1.1 one. Here the caller queues HEADERS
/// and DATA in one go, and they leave in one write, as with grpc-go or
/// h2load.
async fn h2_connect(port: u16) -> anyhow::Result<H2Sender> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot connect to gRPC on 127.0.0.1:{port}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = h2::client::Builder::new()
        .initial_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .handshake::<_, Bytes>(stream)
        .await
        .context("HTTP/2 handshake failed")?;
    tokio::spawn(async move {
        // Ends when every sender is dropped or the server closes; a failed
        // call reports the error itself.
        let _ = connection.await;
    });
    Ok(sender)
}

/// How one request ended.
enum Outcome {
    Ok,
    /// Not OK: the kind of failure (status or code) and what came with it.
    Failed(String, String),
}

async fn grpc_call(sender: &mut H2Sender, plan: &Plan) -> anyhow::Result<Outcome> {
    let request = http::Request::post(plan.grpc_uri.clone())
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .body(())?;
    // Waits while the connection is at the server's stream limit.
    std::future::poll_fn(|cx| sender.poll_ready(cx))
        .await
        .context("connection closed")?;
    let (response, mut upload) = sender.send_request(request, false)?;
    upload.send_data(plan.grpc_frame.clone(), true)?;
    let response = response.await?;
    if response.status() != http::StatusCode::OK {
        return Ok(Outcome::Failed(
            format!("http_{}", response.status().as_u16()),
            String::new(),
        ));
    }
    let (parts, mut body) = response.into_parts();
    let mut received = 0;
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        received += chunk.len();
        // Hands the bytes back to the window, or the server stalls once
        // the connection's window is spent.
        body.flow_control().release_capacity(chunk.len())?;
    }
    let trailers = body.trailers().await?.unwrap_or_default();
    // A status comes in the trailers, or in the headers of an answer
    // without a message.
    let field = |name: &str| {
        trailers
            .get(name)
            .or_else(|| parts.headers.get(name))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    match field("grpc-status").as_deref() {
        Some("0") if received > 5 => Ok(Outcome::Ok),
        Some("0") => Ok(Outcome::Failed(
            "grpc_empty".to_owned(),
            "status OK without a message".to_owned(),
        )),
        Some(code) => Ok(Outcome::Failed(
            format!("grpc_{code}"),
            field("grpc-message").unwrap_or_default(),
        )),
        None => Ok(Outcome::Failed(
            "grpc_no_status".to_owned(),
            "no grpc-status in the answer".to_owned(),
        )),
    }
}

/// A connection the client loop sends requests on.
trait Connection: Sized + Send {
    async fn open(port: u16) -> anyhow::Result<Self>;
    /// One request; `Err` means the connection is unusable.
    async fn call(&mut self, plan: &Plan) -> anyhow::Result<Outcome>;
}

/// An HTTP/1.1 connection: one request at a time, written as one
/// pre-encoded buffer and read back with `httparse`, as wrk does. Through
/// hyper's client (a request built per call, a channel to the connection
/// task, a response and its body assembled) the load generator spent
/// 16–22 µs of CPU per one-row request, about two thirds of what the
/// gateway spent answering it, on the cores they share.
struct Http1 {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
    /// The server said `connection: close`: open a new one next time.
    closing: bool,
}

/// Most response headers read.
const MAX_HEADERS: usize = 32;
/// Largest response loadgen accepts, headers and body.
const MAX_RESPONSE: usize = 64 << 20;

impl Http1 {
    async fn connect(port: u16) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .with_context(|| format!("cannot connect to 127.0.0.1:{port}"))?;
        stream.set_nodelay(true)?;
        Ok(Http1 {
            stream,
            buf: Vec::with_capacity(16 << 10),
            closing: false,
        })
    }

    /// Reads more of the answer; a closed connection is an error.
    async fn fill(&mut self) -> anyhow::Result<()> {
        use tokio::io::AsyncReadExt;
        if self.buf.len() >= MAX_RESPONSE {
            bail!("the answer is larger than {MAX_RESPONSE} bytes");
        }
        self.buf.reserve(16 << 10);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            bail!("the server closed the connection mid-answer");
        }
        Ok(())
    }

    /// Sends the plan's request; returns the status and where the body
    /// lies in the buffer.
    async fn exchange(&mut self, plan: &Plan) -> anyhow::Result<(u16, std::ops::Range<usize>)> {
        use tokio::io::AsyncWriteExt;
        if self.closing {
            *self = Http1::connect(plan.port).await?;
        }
        self.stream.write_all(&plan.http_wire).await?;
        self.buf.clear();
        let (status, head, length, close) = loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&self.buf)? {
                httparse::Status::Complete(head) => {
                    let mut length = None;
                    let mut close = false;
                    for h in response.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            length = Some(std::str::from_utf8(h.value)?.trim().parse::<usize>()?);
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            bail!("chunked answers are not supported by loadgen");
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            close = h.value.eq_ignore_ascii_case(b"close");
                        }
                    }
                    let status = response.code.context("no status code")?;
                    break (status, head, length.context("no content-length")?, close);
                }
                httparse::Status::Partial => self.fill().await?,
            }
        };
        if length > MAX_RESPONSE {
            bail!("the answer declares {length} bytes, more than {MAX_RESPONSE}");
        }
        while self.buf.len() < head + length {
            self.fill().await?;
        }
        self.closing = close;
        Ok((status, head..head + length))
    }
}

impl Connection for Http1 {
    async fn open(port: u16) -> anyhow::Result<Self> {
        Http1::connect(port).await
    }

    async fn call(&mut self, plan: &Plan) -> anyhow::Result<Outcome> {
        let (status, at) = self.exchange(plan).await?;
        let body = &self.buf[at];
        Ok(if status == 200 {
            Outcome::Ok
        } else {
            Outcome::Failed(
                format!("http_{status}"),
                String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
            )
        })
    }
}

/// An HTTP/2 connection carrying gRPC calls; clones share it.
#[derive(Clone)]
struct Grpc(H2Sender);

impl Connection for Grpc {
    async fn open(port: u16) -> anyhow::Result<Self> {
        h2_connect(port).await.map(Grpc)
    }

    async fn call(&mut self, plan: &Plan) -> anyhow::Result<Outcome> {
        grpc_call(&mut self.0, plan).await
    }
}

/// One client task: a request after another on its connection until the
/// clock or the request budget says stop; a broken connection is replaced
/// by one of its own.
async fn client<C: Connection>(
    plan: Arc<Plan>,
    clock: Arc<Clock>,
    shared: Option<C>,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::new(plan.timeline)?;
    let mut conn = shared;
    loop {
        let now = Instant::now();
        if now >= clock.end {
            break;
        }
        let measured = now >= clock.warm_end;
        if measured && !clock.ticket() {
            break;
        }
        if conn.is_none() {
            match C::open(plan.port).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tally.error(
                        &clock,
                        Instant::now(),
                        Duration::ZERO,
                        measured,
                        "connect".to_owned(),
                        || format!("{e:#}"),
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else {
            continue;
        };
        let start = Instant::now();
        let outcome = tokio::time::timeout(plan.timeout, c.call(&plan)).await;
        let elapsed = start.elapsed();
        match outcome {
            Err(_) => {
                tally.error(
                    &clock,
                    start,
                    elapsed,
                    measured,
                    "timeout".to_owned(),
                    || format!("no answer within {:?}", plan.timeout),
                );
                conn = None;
            }
            Ok(Err(e)) => {
                tally.error(
                    &clock,
                    start,
                    elapsed,
                    measured,
                    "connection".to_owned(),
                    || format!("{e:#}"),
                );
                conn = None;
            }
            Ok(Ok(Outcome::Ok)) => tally.success(&clock, start, elapsed, measured),
            Ok(Ok(Outcome::Failed(kind, detail))) => {
                tally.error(&clock, start, elapsed, measured, kind, || detail);
            }
        }
    }
    Ok(tally)
}

#[allow(clippy::cast_precision_loss)]
fn report(args: &Args, plan: &Plan, t: Tally, elapsed: f64, started_unix_ms: u128) -> Report {
    let errors: u64 = t.errors.values().sum();
    let rate = |n: u64| {
        if elapsed > 0.0 {
            n as f64 / elapsed
        } else {
            0.0
        }
    };
    let h = &t.latency;
    let q = |p: f64| {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(p)
        }
    };
    Report {
        label: args.label.clone(),
        protocol: args.protocol,
        port: args.port,
        path: if plan.protocol == Protocol::Grpc {
            "inference.GRPCInferenceService/ModelInfer".to_owned()
        } else {
            plan.path.clone()
        },
        model: args.model.clone(),
        rows: plan.rows,
        concurrency: args.concurrency,
        connections: args.connections.unwrap_or(args.concurrency),
        threads: args.threads,
        warmup_s: args.warmup.as_secs_f64(),
        duration_s: args.duration.as_secs_f64(),
        elapsed_s: elapsed,
        started_unix_ms,
        requests: t.ok + errors,
        ok: t.ok,
        req_per_s: rate(t.ok),
        rows_per_s: rate(t.ok * plan.rows as u64),
        latency_us: Latency {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: if h.is_empty() { 0 } else { h.max() },
            mean: if h.is_empty() { 0.0 } else { h.mean() },
        },
        errors,
        errors_by_kind: t.errors,
        error_samples: t.samples,
        warmup_ok: t.warmup_ok,
        warmup_errors: t.warmup_errors,
    }
}

#[allow(clippy::cast_precision_loss)]
fn us(v: u64) -> String {
    if v >= 10_000 {
        format!("{:.1}ms", v as f64 / 1e3)
    } else if v >= 1_000 {
        format!("{:.2}ms", v as f64 / 1e3)
    } else {
        format!("{v}µs")
    }
}

fn human(r: &Report) -> String {
    let l = &r.latency_us;
    let kinds: Vec<String> = r
        .errors_by_kind
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let warm: u64 = r.warmup_errors.values().sum();
    format!(
        "{label}{proto:?} {model} rows={rows} c={c}: {rps:.0} req/s, {rows_s:.0} rows/s | p50 {p50} p90 {p90} p99 {p99} p99.9 {p999} max {max} | ok {ok}, errors {errors}{kinds}{warm}",
        label = r
            .label
            .as_deref()
            .map(|l| format!("[{l}] "))
            .unwrap_or_default(),
        proto = r.protocol,
        model = r.model,
        rows = r.rows,
        c = r.concurrency,
        rps = r.req_per_s,
        rows_s = r.rows_per_s,
        p50 = us(l.p50),
        p90 = us(l.p90),
        p99 = us(l.p99),
        p999 = us(l.p999),
        max = us(l.max),
        ok = r.ok,
        errors = r.errors,
        kinds = if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({})", kinds.join(", "))
        },
        warm = if warm > 0 {
            format!(", warm-up errors {warm}")
        } else {
            String::new()
        },
    )
}
