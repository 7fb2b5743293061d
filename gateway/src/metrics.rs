//! Every metric the gateway exports, named in this one place.
//!
//! Names follow Prometheus conventions: `switchyard_<part>_<name>_<unit>`,
//! `_total` for counters, seconds as the unit of time. Labels are bounded:
//! model and version come from the repository, slot and protocol from
//! fixed sets, code from HTTP status classes we produce. Handles for the
//! request path are resolved once per loaded version ([`VersionMetrics`]),
//! so serving a request does no label lookup.

use std::time::Duration;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets, 5 µs to 10 s: the gateway's own cost per request is
/// microseconds (5 µs steps up to 25 µs, so its median can be read off
/// the request and inference histograms), a slow model's is seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_015, 0.000_02, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5,
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Batch-size buckets, in rows.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// The protocols a request can arrive by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OIP v2 over HTTP.
    Http,
    /// OIP v2 over gRPC.
    Grpc,
    /// KServe V1 over HTTP.
    V1,
}

impl Protocol {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
            Protocol::V1 => "v1",
        }
    }
}

/// All of the gateway's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    queue_duration: HistogramVec,
    inference_duration: HistogramVec,
    batch_size: HistogramVec,
    inline: IntCounterVec,
    queue_depth: IntGaugeVec,
    loaded: IntGaugeVec,
    slot_weight: IntGaugeVec,
    shadow_percent: IntGaugeVec,
    shadow: IntCounterVec,
    loads: IntCounterVec,
    load_duration: HistogramVec,
    load_phase: HistogramVec,
    ready: Gauge,
    rollout_phase: IntGaugeVec,
    rollout_step: IntGaugeVec,
    check_value: GaugeVec,
    check_threshold: GaugeVec,
    check_passing: IntGaugeVec,
}

/// Buckets of the load durations: from a small model's tens of
/// milliseconds to a large one's minute.
const LOAD_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The steps of loading a version, as the `phase` label names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadPhase {
    /// Fetching, reading the manifest, checking the files' hashes and
    /// reading the drift profile.
    Verify,
    /// Opening the backend's sessions and checking the signature.
    Open,
    /// Warming up every batch size and timing the inline limit.
    Warmup,
}

impl LoadPhase {
    /// Every phase, in load order.
    pub const ALL: [LoadPhase; 3] = [LoadPhase::Verify, LoadPhase::Open, LoadPhase::Warmup];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadPhase::Verify => "verify",
            LoadPhase::Open => "open",
            LoadPhase::Warmup => "warmup",
        }
    }
}

/// Request-path handles for one loaded version in one slot.
#[derive(Debug, Clone)]
pub struct VersionMetrics {
    /// Rows per inference call.
    pub batch_size: Histogram,
    /// Time inside the backend, per call.
    pub inference: Histogram,
    /// Time from enqueue to the start of the call.
    pub queue: Histogram,
    /// Requests waiting.
    pub queue_depth: IntGauge,
    /// Requests run on the thread that received them.
    pub inline: IntCounter,
    ok: [IntCounter; 3],
    duration: [Histogram; 3],
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    ///
    /// # Panics
    /// Only if two metrics here share a name, which a unit test rules out.
    #[allow(clippy::expect_used)]
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let labels_mv = &["model", "version"];
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let ready = Gauge::new(
            "switchyard_gateway_ready",
            "1 when every configured model is loaded and warm",
        )
        .expect("valid metric");
        registry
            .register(Box::new(ready.clone()))
            .expect("unique metric");
        let float_gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        Metrics {
            rollout_phase: gauge(
                "switchyard_rollout_phase",
                "1 for the phase of the model's latest rollout, as the controller reports it",
                &["model", "phase"],
            ),
            rollout_step: gauge(
                "switchyard_rollout_step",
                "The current traffic step of the model's rollout (0 before the first)",
                &["model"],
            ),
            check_value: float_gauge(
                "switchyard_rollout_check_value",
                "The latest value of each analysis check of the model's rollout",
                &["model", "check"],
            ),
            check_threshold: float_gauge(
                "switchyard_rollout_check_threshold",
                "The threshold of each analysis check of the model's rollout",
                &["model", "check"],
            ),
            check_passing: gauge(
                "switchyard_rollout_check_passing",
                "1 pass, 0 fail, -1 inconclusive, per analysis check",
                &["model", "check"],
            ),
            requests: counter(
                "switchyard_requests_total",
                "Inference requests answered, by model, version, slot, protocol and status code",
                &["model", "version", "slot", "protocol", "code"],
            ),
            request_duration: histogram(
                "switchyard_request_duration_seconds",
                "Time from a decoded request to its encoded answer",
                &["model", "version", "slot", "protocol"],
                LATENCY_BUCKETS,
            ),
            queue_duration: histogram(
                "switchyard_queue_duration_seconds",
                "Time a request waited in its version's batch queue",
                labels_mv,
                LATENCY_BUCKETS,
            ),
            inference_duration: histogram(
                "switchyard_inference_duration_seconds",
                "Time of one backend call (one batch)",
                labels_mv,
                LATENCY_BUCKETS,
            ),
            batch_size: histogram(
                "switchyard_batch_size_rows",
                "Rows per backend call",
                labels_mv,
                BATCH_BUCKETS,
            ),
            inline: counter(
                "switchyard_inline_runs_total",
                "Requests run on the thread that received them because their version was idle",
                labels_mv,
            ),
            queue_depth: gauge(
                "switchyard_queue_depth_requests",
                "Requests waiting in a version's batch queue",
                labels_mv,
            ),
            loaded: gauge(
                "switchyard_model_loaded",
                "1 for each version loaded in a slot, with its backend",
                &["model", "version", "slot", "backend"],
            ),
            slot_weight: gauge(
                "switchyard_route_weight_percent",
                "Share of a model's traffic sent to a slot",
                &["model", "slot"],
            ),
            shadow_percent: gauge(
                "switchyard_route_shadow_percent",
                "Share of live requests mirrored to the standby slot",
                &["model"],
            ),
            shadow: counter(
                "switchyard_shadow_requests_total",
                "Mirrored requests by result: agree, disagree, error, dropped",
                &["model", "live_version", "shadow_version", "result"],
            ),
            loads: counter(
                "switchyard_model_loads_total",
                "Version loads by result: ok, failed",
                &["model", "result"],
            ),
            load_duration: histogram(
                "switchyard_model_load_duration_seconds",
                "Time to verify, load and warm up a version",
                &["model"],
                LOAD_BUCKETS,
            ),
            load_phase: histogram(
                "switchyard_model_load_phase_duration_seconds",
                "Time of each completed step of a version's load: verify (fetch, manifest, file hashes, profile), open (the backend's sessions and the signature check), warmup (every batch size, then timing the inline limit)",
                &["model", "phase"],
                LOAD_BUCKETS,
            ),
            ready,
            registry,
        }
    }

    /// Resolves the request-path handles of a version in a slot.
    pub fn version(&self, model: &str, version: u64, slot: &str) -> VersionMetrics {
        let v = version.to_string();
        let protocols = [Protocol::Http, Protocol::Grpc, Protocol::V1];
        VersionMetrics {
            batch_size: self.batch_size.with_label_values(&[model, &v]),
            inference: self.inference_duration.with_label_values(&[model, &v]),
            queue: self.queue_duration.with_label_values(&[model, &v]),
            queue_depth: self.queue_depth.with_label_values(&[model, &v]),
            inline: self.inline.with_label_values(&[model, &v]),
            ok: protocols.map(|p| {
                self.requests
                    .with_label_values(&[model, &v, slot, p.as_str(), "200"])
            }),
            duration: protocols.map(|p| {
                self.request_duration
                    .with_label_values(&[model, &v, slot, p.as_str()])
            }),
        }
    }

    /// The model label of requests for a model that is not loaded: names
    /// chosen by clients never become label values.
    pub const UNKNOWN_MODEL: &'static str = "_unknown_";

    /// Counts a request that failed with `code`, or never reached a version.
    pub fn request_failed(
        &self,
        model: &str,
        version: Option<u64>,
        slot: &str,
        protocol: Protocol,
        code: u16,
    ) {
        let v = version.map(|v| v.to_string()).unwrap_or_default();
        self.requests
            .with_label_values(&[model, &v, slot, protocol.as_str(), &code.to_string()])
            .inc();
    }

    /// Marks a version loaded into (or out of) a slot.
    pub fn set_loaded(&self, model: &str, version: u64, slot: &str, backend: &str, loaded: bool) {
        let v = version.to_string();
        if loaded {
            self.loaded
                .with_label_values(&[model, &v, slot, backend])
                .set(1);
        } else {
            // An unloaded version's series go away instead of lingering at 0.
            let _ = self.loaded.remove_label_values(&[model, &v, slot, backend]);
            let _ = self.queue_depth.remove_label_values(&[model, &v]);
        }
    }

    /// Exports a route's weights and shadow share.
    pub fn set_route(&self, model: &str, blue: u32, green: u32, shadow: u32) {
        self.slot_weight
            .with_label_values(&[model, "blue"])
            .set(i64::from(blue));
        self.slot_weight
            .with_label_values(&[model, "green"])
            .set(i64::from(green));
        self.shadow_percent
            .with_label_values(&[model])
            .set(i64::from(shadow));
    }

    /// Drops a model's route series when it is unloaded.
    pub fn remove_route(&self, model: &str) {
        let _ = self.slot_weight.remove_label_values(&[model, "blue"]);
        let _ = self.slot_weight.remove_label_values(&[model, "green"]);
        let _ = self.shadow_percent.remove_label_values(&[model]);
    }

    /// Counts one mirrored request's result.
    pub fn shadow(&self, model: &str, live: u64, shadow: u64, result: &str) {
        self.shadow
            .with_label_values(&[model, &live.to_string(), &shadow.to_string(), result])
            .inc();
    }

    /// Records how long one step of a load took, once it completed.
    pub fn load_phase(&self, model: &str, phase: LoadPhase, took: Duration) {
        self.load_phase
            .with_label_values(&[model, phase.as_str()])
            .observe(took.as_secs_f64());
    }

    /// Records one load attempt.
    pub fn load(&self, model: &str, ok: bool, seconds: f64) {
        self.loads
            .with_label_values(&[model, if ok { "ok" } else { "failed" }])
            .inc();
        self.load_duration
            .with_label_values(&[model])
            .observe(seconds);
    }

    /// Exports what the controller reports about a model's rollout.
    pub fn set_rollout(&self, model: &str, a: &switchyard_api::admin::RolloutAnnotation) {
        for phase in switchyard_api::admin::ROLLOUT_PHASES {
            self.rollout_phase
                .with_label_values(&[model, phase])
                .set(i64::from(phase == a.phase));
        }
        self.rollout_step
            .with_label_values(&[model])
            .set(i64::from(a.step));
        for c in &a.checks {
            let labels = [model, c.name.as_str()];
            if let Some(v) = c.value {
                self.check_value.with_label_values(&labels).set(v);
            }
            self.check_threshold
                .with_label_values(&labels)
                .set(c.threshold);
            let passing = match c.verdict.as_str() {
                "pass" => 1,
                "fail" => 0,
                _ => -1,
            };
            self.check_passing.with_label_values(&labels).set(passing);
        }
    }

    /// Sets the readiness gauge.
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(if ready { 1.0 } else { 0.0 });
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl VersionMetrics {
    /// Counts a successful request and its duration.
    pub fn request_ok(&self, protocol: Protocol, seconds: f64) {
        let i = protocol as usize;
        self.ok[i].inc();
        self.duration[i].observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_convention_names() {
        let m = Metrics::new();
        let v = m.version("boosted", 2, "blue");
        v.request_ok(Protocol::Grpc, 0.001);
        v.batch_size.observe(4.0);
        m.request_failed("boosted", Some(2), "blue", Protocol::Http, 429);
        m.set_route("boosted", 90, 10, 0);
        let text = m.render();
        assert!(text.contains(
            r#"switchyard_requests_total{code="200",model="boosted",protocol="grpc",slot="blue",version="2"} 1"#
        ), "{text}");
        assert!(text.contains(r#"code="429""#));
        assert!(
            text.contains(r#"switchyard_route_weight_percent{model="boosted",slot="green"} 10"#)
        );
        assert!(text.contains("switchyard_batch_size_rows_bucket"));
        m.load_phase("boosted", LoadPhase::Open, Duration::from_millis(30));
        let text = m.render();
        assert!(text.contains(
            r#"switchyard_model_load_phase_duration_seconds_bucket{model="boosted",phase="open",le="0.05"} 1"#
        ), "{text}");
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let name = line.split_whitespace().nth(2).unwrap_or_default();
            assert!(name.starts_with("switchyard_"), "{name}");
            if line.ends_with("counter") {
                assert!(name.ends_with("_total"), "{name}");
            }
        }
    }
}
