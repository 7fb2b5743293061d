//! The gateway's configuration: a TOML file, overridden by `SWITCHYARD_*`
//! environment variables, overridden by flags. Parsed strictly, then
//! validated without I/O reporting every problem at once; a bad
//! configuration exits non-zero before anything listens.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use switchyard_api::duration::parse_duration;
use switchyard_api::manifest::BackendKind;

/// The longest run time for which a request may run on the thread that
/// received it: tokio's guidance for time between awaits is 10–100 µs, and
/// ten times that still keeps other connections on that thread waiting
/// only about a millisecond.
const MAX_INLINE: Duration = Duration::from_millis(1);

/// The most sessions one loaded version may have.
const MAX_INSTANCES: usize = 64;

/// Sessions per loaded version when the operator sets none: two, as
/// Triton runs CPU models, since one session leaves all but one core idle
/// for a model whose calls take hundreds of microseconds; but no more than
/// the inference threads can run at once.
fn default_instances(inference_threads: usize, intra_op_threads: usize) -> usize {
    (inference_threads / intra_op_threads.max(1)).clamp(1, 2)
}

/// Command-line flags; each can also come from its environment variable.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "gateway",
    version,
    about = "switchyard's model-serving gateway: Open Inference Protocol v2 \
(HTTP and gRPC) and KServe V1 for ONNX models, with blue/green slots, dynamic batching and atomic hot swap"
)]
pub struct Flags {
    /// A TOML file with any of the settings below (flags and environment
    /// variables override it).
    #[arg(long, env = "SWITCHYARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// The model repository: <models>/<model>/<version>/{model.onnx,model.toml}.
    #[arg(long, env = "SWITCHYARD_MODELS")]
    pub models: Option<PathBuf>,
    /// Where the routing is saved, so a restart serves the same versions.
    #[arg(long, env = "SWITCHYARD_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// HTTP listener: Open Inference Protocol v2, KServe V1 and /metrics [default: 127.0.0.1:8000].
    #[arg(long, env = "SWITCHYARD_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// gRPC listener: inference.GRPCInferenceService and grpc.health.v1 [default: 127.0.0.1:8001].
    #[arg(long, env = "SWITCHYARD_GRPC_ADDR")]
    pub grpc_addr: Option<SocketAddr>,
    /// Metrics listener, /metrics alone [default: 127.0.0.1:8002].
    #[arg(long, env = "SWITCHYARD_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Admin API listener [default: 127.0.0.1:8003]. Off loopback it needs --admin-token.
    #[arg(long, env = "SWITCHYARD_ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,
    /// Bearer token the admin API requires (required when it is not on loopback).
    #[arg(long, env = "SWITCHYARD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Path of ONNX Runtime's shared library (libonnxruntime.so.*).
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub ort_library: Option<PathBuf>,
    /// Backend fallback order for models whose manifest names none [default: ort,tract,forest]
    /// (forest: tree ensembles evaluated natively; it refuses every other graph).
    #[arg(long, env = "SWITCHYARD_BACKENDS", value_delimiter = ',')]
    pub backends: Option<Vec<String>>,
    /// Backend calls that may run at once, across all models [default: the number of CPUs].
    #[arg(long, env = "SWITCHYARD_INFERENCE_THREADS")]
    pub inference_threads: Option<usize>,
    /// Threads inside one ONNX Runtime call [default: 1; more only helps large models].
    #[arg(long, env = "SWITCHYARD_INTRA_OP_THREADS")]
    pub intra_op_threads: Option<usize>,
    /// Sessions (worker threads) per loaded version [default: 2 (Triton's
    /// count for CPU models), fewer if the inference threads can't run
    /// that many calls at once].
    #[arg(long, env = "SWITCHYARD_INSTANCES")]
    pub instances: Option<usize>,
    /// A request whose batch size its model runs within this many
    /// microseconds (timed after warm-up) runs on the thread that received
    /// it when its version is idle, skipping the hand-off to the batch
    /// thread; 0 turns this off. Only for models without a queue delay
    /// [default: 100].
    #[arg(long, env = "SWITCHYARD_INLINE_MAX_US")]
    pub inline_max_us: Option<u64>,
    /// Versions that may load at once [default: 1].
    #[arg(long, env = "SWITCHYARD_LOAD_THREADS")]
    pub load_threads: Option<usize>,
    /// Deadline of a request that brings none, e.g. 500ms, 10s [default: 10s].
    #[arg(long, env = "SWITCHYARD_REQUEST_TIMEOUT")]
    pub request_timeout: Option<String>,
    /// Largest request body in bytes, HTTP and gRPC [default: 16777216].
    #[arg(long, env = "SWITCHYARD_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// How long SIGTERM waits for requests in flight [default: 30s].
    #[arg(long, env = "SWITCHYARD_DRAIN_TIMEOUT")]
    pub drain_timeout: Option<String>,
    /// A gRPC connection silent this long is sent an HTTP/2 PING, and
    /// closed if the ping is not answered within the same time (at most
    /// 20s); 0s turns it off [default: 60s].
    #[arg(long, env = "SWITCHYARD_GRPC_KEEPALIVE")]
    pub grpc_keepalive: Option<String>,
    /// Ready only when every model of the repository serves [default: true].
    #[arg(long, env = "SWITCHYARD_STRICT_READINESS")]
    pub strict_readiness: Option<bool>,
    /// Versions to serve at start instead of the newest, `model=version`
    /// comma-separated (a saved routing still wins). A pinned version that
    /// does not load leaves the gateway not ready; there is no fallback.
    #[arg(long, env = "SWITCHYARD_PINNED_VERSIONS", value_delimiter = ',')]
    pub pinned_versions: Option<Vec<String>>,
    /// Count every served row against its version's reference profile
    /// (live drift) [default: true].
    #[arg(long, env = "SWITCHYARD_DRIFT")]
    pub drift: Option<bool>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "SWITCHYARD_LOG_FORMAT")]
    pub log_format: Option<String>,
}

/// The TOML file; every key is optional, unknown keys are errors.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    models: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    http_addr: Option<SocketAddr>,
    grpc_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    admin_token: Option<String>,
    ort_library: Option<PathBuf>,
    backends: Option<Vec<String>>,
    inference_threads: Option<usize>,
    intra_op_threads: Option<usize>,
    instances: Option<usize>,
    inline_max_us: Option<u64>,
    load_threads: Option<usize>,
    request_timeout: Option<String>,
    max_body_bytes: Option<usize>,
    drain_timeout: Option<String>,
    grpc_keepalive: Option<String>,
    strict_readiness: Option<bool>,
    drift: Option<bool>,
    log_format: Option<String>,
    /// Per-model settings, `[model.<name>]`.
    #[serde(default)]
    model: HashMap<String, ModelConfig>,
}

/// Per-model settings from the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Backend order for this model, overriding its manifest.
    #[serde(default)]
    pub backends: Vec<String>,
    /// The version to serve at start instead of the newest.
    pub version: Option<u64>,
    /// Sessions (worker threads) per loaded version of this model,
    /// overriding `instances`.
    pub instances: Option<usize>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The repository.
    pub models: PathBuf,
    /// The state folder, if routing is persisted.
    pub state_dir: Option<PathBuf>,
    /// HTTP listener.
    pub http_addr: SocketAddr,
    /// gRPC listener.
    pub grpc_addr: SocketAddr,
    /// Metrics listener.
    pub metrics_addr: SocketAddr,
    /// Admin listener.
    pub admin_addr: SocketAddr,
    /// Admin token.
    pub admin_token: Option<String>,
    /// ONNX Runtime's library.
    pub ort_library: Option<PathBuf>,
    /// Backend order.
    pub backends: Vec<BackendKind>,
    /// Per-model backend order.
    pub model_backends: HashMap<String, Vec<BackendKind>>,
    /// Per-model sessions per version.
    pub model_instances: HashMap<String, usize>,
    /// Concurrent backend calls.
    pub inference_threads: usize,
    /// Threads within one ONNX Runtime call.
    pub intra_op_threads: usize,
    /// Sessions per version.
    pub instances: usize,
    /// Run small requests on the receiving thread when this fast.
    pub inline_max: Duration,
    /// Concurrent loads.
    pub load_threads: usize,
    /// Default request deadline.
    pub request_timeout: Duration,
    /// Body limit.
    pub max_body_bytes: usize,
    /// Shutdown drain time.
    pub drain_timeout: Duration,
    /// Idle time before a gRPC connection is pinged; zero: never.
    pub grpc_keepalive: Duration,
    /// Strict readiness.
    pub strict_readiness: bool,
    /// Live drift tracking.
    pub drift: bool,
    /// Versions served at start instead of the newest.
    pub pinned_versions: BTreeMap<String, u64>,
    /// JSON logs.
    pub json_logs: bool,
}

/// A configuration that can't be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// Values that don't work, all of them.
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

impl Flags {
    /// Reads the file the flags name (if any) and resolves every setting.
    ///
    /// # Errors
    /// [`ConfigError`] with every problem found.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            None => FileConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.clone(),
                    message: e.to_string().trim_end().to_owned(),
                })?
            }
        };
        self.merge(file)
    }

    /// Layers the flags over a parsed file, then validates.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] listing every problem.
    pub fn merge(self, file: FileConfig) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let addr = |flag: Option<SocketAddr>, file: Option<SocketAddr>, port: u16| {
            flag.or(file)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], port)))
        };
        let mut duration = |name: &str,
                            flag: Option<String>,
                            file: Option<String>,
                            default: Duration| match flag.or(file) {
            None => default,
            Some(text) => parse_duration(&text).unwrap_or_else(|e| {
                problems.push(format!("{name}: {e}"));
                default
            }),
        };
        let request_timeout = duration(
            "request_timeout",
            self.request_timeout,
            file.request_timeout,
            Duration::from_secs(10),
        );
        let drain_timeout = duration(
            "drain_timeout",
            self.drain_timeout,
            file.drain_timeout,
            Duration::from_secs(30),
        );
        let grpc_keepalive = duration(
            "grpc_keepalive",
            self.grpc_keepalive,
            file.grpc_keepalive,
            Duration::from_secs(60),
        );
        let backends = parse_backends("backends", self.backends.or(file.backends), &mut problems)
            .unwrap_or_else(|| vec![BackendKind::Ort, BackendKind::Tract, BackendKind::Forest]);
        let mut model_backends = HashMap::new();
        let mut pinned_versions = BTreeMap::new();
        let mut model_instances = HashMap::new();
        for (name, m) in &file.model {
            if let Some(v) = m.version {
                pinned_versions.insert(name.clone(), v);
            }
            match m.instances {
                Some(n) if n == 0 || n > MAX_INSTANCES => problems.push(format!(
                    "model.{name}.instances {n} must be between 1 and {MAX_INSTANCES}"
                )),
                Some(n) => {
                    model_instances.insert(name.clone(), n);
                }
                None => {}
            }
        }
        for pin in self.pinned_versions.unwrap_or_default() {
            let pin = pin.trim();
            if pin.is_empty() {
                continue;
            }
            match pin
                .split_once('=')
                .and_then(|(m, v)| Some((m.trim(), v.trim().parse::<u64>().ok()?)))
            {
                Some((m, v)) if !m.is_empty() && v > 0 => {
                    pinned_versions.insert(m.to_owned(), v);
                }
                _ => problems.push(format!(
                    "pinned_versions: {pin:?} is not model=version (a positive integer)"
                )),
            }
        }
        for (name, m) in file.model {
            if m.backends.is_empty() {
                continue;
            }
            if let Some(order) = parse_backends(
                &format!("model.{name}.backends"),
                Some(m.backends),
                &mut problems,
            ) {
                model_backends.insert(name, order);
            }
        }
        let log_format = self
            .log_format
            .or(file.log_format)
            .unwrap_or_else(|| "text".to_owned());
        if !matches!(log_format.as_str(), "text" | "json") {
            problems.push(format!(
                "log_format {log_format:?} must be \"text\" or \"json\""
            ));
        }
        let inference_threads = self
            .inference_threads
            .or(file.inference_threads)
            .unwrap_or(cpus);
        let intra_op_threads = self.intra_op_threads.or(file.intra_op_threads).unwrap_or(1);
        let config = Config {
            models: self
                .models
                .or(file.models)
                .unwrap_or_else(|| PathBuf::from("models")),
            state_dir: self.state_dir.or(file.state_dir),
            http_addr: addr(self.http_addr, file.http_addr, 8000),
            grpc_addr: addr(self.grpc_addr, file.grpc_addr, 8001),
            metrics_addr: addr(self.metrics_addr, file.metrics_addr, 8002),
            admin_addr: addr(self.admin_addr, file.admin_addr, 8003),
            admin_token: self
                .admin_token
                .or(file.admin_token)
                .filter(|t| !t.is_empty()),
            ort_library: self.ort_library.or(file.ort_library),
            backends,
            model_backends,
            model_instances,
            inference_threads,
            intra_op_threads,
            instances: self
                .instances
                .or(file.instances)
                .unwrap_or_else(|| default_instances(inference_threads, intra_op_threads)),
            inline_max: Duration::from_micros(
                self.inline_max_us.or(file.inline_max_us).unwrap_or(100),
            ),
            load_threads: self.load_threads.or(file.load_threads).unwrap_or(1),
            request_timeout,
            max_body_bytes: self
                .max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(16 << 20),
            drain_timeout,
            grpc_keepalive,
            strict_readiness: self
                .strict_readiness
                .or(file.strict_readiness)
                .unwrap_or(true),
            drift: self.drift.or(file.drift).unwrap_or(true),
            pinned_versions,
            json_logs: log_format == "json",
        };
        problems.extend(config.validate());
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

impl Config {
    /// Every problem with the values, without I/O.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.admin_addr.ip().is_loopback() && self.admin_token.is_none() {
            problems.push(format!(
                "admin_addr {} is not on loopback: set SWITCHYARD_ADMIN_TOKEN (or --admin-token) so the admin API is not open to anyone",
                self.admin_addr
            ));
        }
        let mut ports: Vec<(&str, SocketAddr)> = vec![
            ("http_addr", self.http_addr),
            ("grpc_addr", self.grpc_addr),
            ("metrics_addr", self.metrics_addr),
            ("admin_addr", self.admin_addr),
        ];
        ports.retain(|(_, a)| a.port() != 0);
        for (i, (a, x)) in ports.iter().enumerate() {
            for (b, y) in &ports[i + 1..] {
                if x == y {
                    problems.push(format!("{a} and {b} are both {x}"));
                }
            }
        }
        for (name, v, max) in [
            ("inference_threads", self.inference_threads, 1024),
            ("intra_op_threads", self.intra_op_threads, 256),
            ("instances", self.instances, MAX_INSTANCES),
            ("load_threads", self.load_threads, 64),
        ] {
            if v == 0 || v > max {
                problems.push(format!("{name} {v} must be between 1 and {max}"));
            }
        }
        if self.inline_max > MAX_INLINE {
            problems.push(format!(
                "inline_max_us {} must be at most {} (a request run inline holds up its thread's other connections)",
                self.inline_max.as_micros(),
                MAX_INLINE.as_micros()
            ));
        }
        if self.max_body_bytes < 1024 || self.max_body_bytes > 1 << 30 {
            problems.push(format!(
                "max_body_bytes {} must be between 1024 and {}",
                self.max_body_bytes,
                1u64 << 30
            ));
        }
        if self.request_timeout.is_zero() || self.request_timeout > crate::http::codec::MAX_TIMEOUT
        {
            problems.push(format!(
                "request_timeout must be between 1ms and {}s",
                crate::http::codec::MAX_TIMEOUT.as_secs()
            ));
        }
        problems
    }
}

fn parse_backends(
    name: &str,
    list: Option<Vec<String>>,
    problems: &mut Vec<String>,
) -> Option<Vec<BackendKind>> {
    let list = list?;
    let mut out = Vec::new();
    for b in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        match b {
            "ort" => out.push(BackendKind::Ort),
            "tract" => out.push(BackendKind::Tract),
            "forest" => out.push(BackendKind::Forest),
            other => problems.push(format!(
                "{name}: unknown backend {other:?} (known: forest, ort, tract)"
            )),
        }
    }
    if out.is_empty() {
        problems.push(format!("{name} names no backend"));
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_tritons_ports_on_loopback() {
        let c = Flags::default().merge(FileConfig::default()).unwrap();
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:8000");
        assert_eq!(c.grpc_addr.to_string(), "127.0.0.1:8001");
        assert_eq!(c.metrics_addr.to_string(), "127.0.0.1:8002");
        assert_eq!(c.admin_addr.to_string(), "127.0.0.1:8003");
        assert_eq!(
            c.backends,
            vec![BackendKind::Ort, BackendKind::Tract, BackendKind::Forest]
        );
        assert_eq!(c.request_timeout, Duration::from_secs(10));
        assert_eq!(c.intra_op_threads, 1);
        assert_eq!(c.inline_max, Duration::from_micros(100));
        assert_eq!(c.instances, c.inference_threads.clamp(1, 2));
    }

    #[test]
    fn default_sessions_fit_the_thread_budget() {
        let with = |threads: usize, intra: usize| {
            let flags = Flags {
                inference_threads: Some(threads),
                intra_op_threads: Some(intra),
                ..Flags::default()
            };
            flags.merge(FileConfig::default()).unwrap().instances
        };
        assert_eq!(with(8, 1), 2);
        assert_eq!(with(2, 1), 2);
        assert_eq!(with(1, 1), 1, "one call at a time needs one session");
        assert_eq!(with(8, 4), 2);
        assert_eq!(with(4, 4), 1);
        let set = Flags {
            inference_threads: Some(8),
            instances: Some(3),
            ..Flags::default()
        };
        assert_eq!(set.merge(FileConfig::default()).unwrap().instances, 3);
    }

    #[test]
    fn flags_override_the_file() {
        let file: FileConfig = toml::from_str(
            "http_addr = \"127.0.0.1:9000\"\nrequest_timeout = \"2s\"\ngrpc_keepalive = \"0s\"\n[model.boosted]\nbackends = [\"ort\"]\n",
        )
        .unwrap();
        let flags = Flags {
            http_addr: Some("127.0.0.1:9100".parse().unwrap()),
            ..Flags::default()
        };
        let c = flags.merge(file).unwrap();
        assert_eq!(c.http_addr.port(), 9100);
        assert!(c.model_instances.is_empty());
        assert_eq!(c.request_timeout, Duration::from_secs(2));
        assert_eq!(c.grpc_keepalive, Duration::ZERO, "0s turns keep-alive off");
        assert_eq!(c.model_backends["boosted"], vec![BackendKind::Ort]);
        let defaults = Flags::default().merge(FileConfig::default()).unwrap();
        assert_eq!(defaults.grpc_keepalive, Duration::from_secs(60));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let flags = Flags {
            admin_addr: Some("0.0.0.0:8003".parse().unwrap()),
            grpc_addr: Some("127.0.0.1:8000".parse().unwrap()),
            inference_threads: Some(0),
            backends: Some(vec!["onnx".into()]),
            request_timeout: Some("10".into()),
            log_format: Some("xml".into()),
            inline_max_us: Some(5000),
            ..Flags::default()
        };
        let ConfigError::Invalid(problems) = flags.merge(FileConfig::default()).unwrap_err() else {
            panic!("expected Invalid");
        };
        let all = problems.join("\n");
        for needle in [
            "SWITCHYARD_ADMIN_TOKEN",
            "http_addr and grpc_addr are both 127.0.0.1:8000",
            "inference_threads 0",
            "unknown backend \"onnx\"",
            "needs a unit",
            "log_format",
            "inline_max_us 5000 must be at most 1000",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in\n{all}");
        }
        let off_loopback_with_token = Flags {
            admin_addr: Some("0.0.0.0:8003".parse().unwrap()),
            admin_token: Some("s3cret".into()),
            ..Flags::default()
        };
        assert!(off_loopback_with_token.merge(FileConfig::default()).is_ok());
    }

    #[test]
    fn pinned_versions_come_from_the_file_and_the_flag() {
        let file: FileConfig =
            toml::from_str("[model.boosted]\nversion = 2\n[model.mlp]\nversion = 1\n").unwrap();
        let flags = Flags {
            pinned_versions: Some(vec!["boosted=3".into(), " dropout = 1 ".into()]),
            ..Flags::default()
        };
        let c = flags.merge(file).unwrap();
        let pins: Vec<(&str, u64)> = c
            .pinned_versions
            .iter()
            .map(|(m, v)| (m.as_str(), *v))
            .collect();
        assert_eq!(pins, [("boosted", 3), ("dropout", 1), ("mlp", 1)]);
    }

    #[test]
    fn per_model_instances_come_from_the_file_and_are_bounded() {
        let file: FileConfig =
            toml::from_str("[model.boosted]\ninstances = 2\n[model.mlp]\ninstances = 0\n").unwrap();
        let ConfigError::Invalid(problems) = Flags::default().merge(file).unwrap_err() else {
            panic!("expected Invalid");
        };
        assert_eq!(
            problems,
            ["model.mlp.instances 0 must be between 1 and 64"],
            "{problems:?}"
        );
        let file: FileConfig = toml::from_str("[model.boosted]\ninstances = 2\n").unwrap();
        let c = Flags::default().merge(file).unwrap();
        assert_eq!(c.model_instances["boosted"], 2);
    }

    #[test]
    fn pinned_versions_must_be_model_equals_version() {
        let bad = Flags {
            pinned_versions: Some(vec!["boosted".into(), "mlp=0".into()]),
            ..Flags::default()
        };
        let ConfigError::Invalid(problems) = bad.merge(FileConfig::default()).unwrap_err() else {
            panic!("expected Invalid");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("\"boosted\" is not model=version"),
            "{problems:?}"
        );
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        assert!(toml::from_str::<FileConfig>("http_adr = \"127.0.0.1:1\"").is_err());
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    }
}
