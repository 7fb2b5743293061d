//! Analysis between steps: green's error rate, p99 latency and shadow
//! agreement, measured from the gateways' own `/metrics` over the bake
//! window (the difference of two scrapes, summed over the fleet).
//!
//! Safe by default: too few requests, a failed scrape or a metric that is
//! missing is *inconclusive*, never a pass; every result carries its
//! measured value next to its threshold.

use std::collections::BTreeMap;

use switchyard_api::admin::Slot;

use crate::journal::CheckResult;
use crate::suite::Thresholds;

/// The counters of one version in one slot, summed over the fleet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Answers by status code.
    pub requests: BTreeMap<String, f64>,
    /// Request-duration histogram: upper bound (s) → cumulative count.
    pub buckets: BTreeMap<u64, f64>,
    /// Shadow results: agree, disagree, error, dropped.
    pub shadow: BTreeMap<String, f64>,
    /// The version's drift window on each gateway scraped, in order: not
    /// a counter, so it is the latest state and not a difference.
    pub drift: Vec<DriftGauges>,
}

/// One gateway's drift gauges of one version.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DriftGauges {
    /// `switchyard_drift_ready`, absent without a profile (or with drift
    /// tracking off).
    pub ready: Option<f64>,
    /// `switchyard_drift_drifted_features_ratio`, present when ready.
    pub drifted_ratio: Option<f64>,
    /// `switchyard_drift_window_rows`.
    pub rows: Option<f64>,
}

/// The drift gate: the share of the version's features that drifted on the
/// worst gateway, against `max_drift_share`; `None` when the gate is off.
/// A gateway without drift figures for the version (no profile) or whose
/// window has too few rows makes it inconclusive, never a pass.
pub fn drift_check(window: &Snapshot, t: &Thresholds) -> Option<CheckResult> {
    let max = t.max_drift_share?;
    let name = "drift_share";
    if window.drift.is_empty() {
        return Some(result(
            name,
            None,
            max,
            "inconclusive",
            "no gateway was scraped".into(),
        ));
    }
    let untracked = window.drift.iter().filter(|d| d.ready.is_none()).count();
    if untracked > 0 {
        return Some(result(
            name,
            None,
            max,
            "inconclusive",
            format!(
                "{untracked} of {} gateways report no drift for this version: it has no reference profile, or drift tracking is off",
                window.drift.len()
            ),
        ));
    }
    let waiting: Vec<&DriftGauges> = window
        .drift
        .iter()
        .filter(|d| d.ready != Some(1.0) || d.drifted_ratio.is_none())
        .collect();
    if !waiting.is_empty() {
        let rows: f64 = waiting.iter().filter_map(|d| d.rows).sum();
        return Some(result(
            name,
            None,
            max,
            "inconclusive",
            format!(
                "drift windows not ready on {} of {} gateways ({rows} rows there, fewer than min_rows)",
                waiting.len(),
                window.drift.len()
            ),
        ));
    }
    let worst = window
        .drift
        .iter()
        .filter_map(|d| d.drifted_ratio)
        .fold(0.0, f64::max);
    Some(result(
        name,
        Some(worst),
        max,
        if worst <= max { "pass" } else { "fail" },
        format!("{worst:.2} of the features drifted on the worst gateway (max {max})"),
    ))
}

/// One sample of the text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// Parses Prometheus text exposition (what the gateway writes).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (head, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let (name, labels) = match head.split_once('{') {
        None => (head.to_owned(), BTreeMap::new()),
        Some((name, rest)) => {
            let body = rest.strip_suffix('}')?;
            let mut labels = BTreeMap::new();
            for pair in split_labels(body) {
                let (k, v) = pair.split_once('=')?;
                let quoted = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                labels.insert(
                    k.to_owned(),
                    quoted.replace("\\\"", "\"").replace("\\\\", "\\"),
                );
            }
            (name.to_owned(), labels)
        }
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Splits `a="x",b="y,z"` at the commas outside quotes.
fn split_labels(body: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in body.char_indices() {
        match c {
            '\\' if quoted => escaped = !escaped,
            '"' if !escaped => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&body[start..i]);
                start = i + 1;
            }
            _ => escaped = false,
        }
    }
    if start < body.len() {
        parts.push(&body[start..]);
    }
    parts
}

impl Snapshot {
    /// Adds one gateway's counters of `model` version `version` in `slot`.
    pub fn add(&mut self, text: &str, model: &str, version: u64, slot: Slot) {
        let v = version.to_string();
        let mut drift = DriftGauges::default();
        for s in parse(text) {
            let label = |k: &str| s.labels.get(k).map(String::as_str);
            if label("model") != Some(model) {
                continue;
            }
            match s.name.as_str() {
                "switchyard_requests_total"
                    if label("version") == Some(&v) && label("slot") == Some(slot.as_str()) =>
                {
                    *self
                        .requests
                        .entry(label("code").unwrap_or("").to_owned())
                        .or_default() += s.value;
                }
                "switchyard_request_duration_seconds_bucket"
                    if label("version") == Some(&v) && label("slot") == Some(slot.as_str()) =>
                {
                    let le = label("le").unwrap_or("+Inf");
                    let micros = if le == "+Inf" {
                        u64::MAX
                    } else {
                        le.parse::<f64>()
                            .map_or(u64::MAX, |x| (x * 1e6).round() as u64)
                    };
                    *self.buckets.entry(micros).or_default() += s.value;
                }
                "switchyard_shadow_requests_total" if label("shadow_version") == Some(&v) => {
                    *self
                        .shadow
                        .entry(label("result").unwrap_or("").to_owned())
                        .or_default() += s.value;
                }
                "switchyard_drift_ready" if label("version") == Some(&v) => {
                    drift.ready = Some(s.value);
                }
                "switchyard_drift_drifted_features_ratio" if label("version") == Some(&v) => {
                    drift.drifted_ratio = Some(s.value);
                }
                "switchyard_drift_window_rows" if label("version") == Some(&v) => {
                    drift.rows = Some(s.value);
                }
                _ => {}
            }
        }
        self.drift.push(drift);
    }

    /// What happened between `before` and `self`.
    pub fn since(&self, before: &Snapshot) -> Snapshot {
        let diff = |a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>| {
            a.iter()
                .map(|(k, v)| (k.clone(), (v - b.get(k).copied().unwrap_or(0.0)).max(0.0)))
                .collect()
        };
        Snapshot {
            requests: diff(&self.requests, &before.requests),
            buckets: self
                .buckets
                .iter()
                .map(|(k, v)| {
                    (
                        *k,
                        (v - before.buckets.get(k).copied().unwrap_or(0.0)).max(0.0),
                    )
                })
                .collect(),
            shadow: diff(&self.shadow, &before.shadow),
            drift: self.drift.clone(),
        }
    }

    /// Requests answered.
    pub fn total(&self) -> f64 {
        // Folded from +0.0: an empty `sum()` of floats is -0.0.
        self.requests.values().fold(0.0, |a, b| a + b)
    }

    /// Answers with a server-error status (5xx).
    pub fn errors(&self) -> f64 {
        self.requests
            .iter()
            .filter(|(code, _)| code.starts_with('5'))
            .fold(0.0, |a, (_, v)| a + v)
    }

    /// The q-quantile of latency in milliseconds, by linear interpolation
    /// inside the bucket where it falls (as PromQL's histogram_quantile).
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.buckets.get(&u64::MAX).copied()?;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let (mut lower, mut below) = (0u64, 0.0);
        for (&upper, &count) in &self.buckets {
            if count >= rank {
                if upper == u64::MAX {
                    return Some(lower as f64 / 1e3);
                }
                let share = if count > below {
                    (rank - below) / (count - below)
                } else {
                    1.0
                };
                return Some((lower as f64 + (upper - lower) as f64 * share) / 1e3);
            }
            lower = upper;
            below = count;
        }
        None
    }
}

fn result(
    name: &str,
    value: Option<f64>,
    threshold: f64,
    verdict: &str,
    detail: String,
) -> CheckResult {
    CheckResult {
        name: name.to_owned(),
        value,
        threshold,
        verdict: verdict.to_owned(),
        detail,
    }
}

/// Green's error rate and p99 over a window, against the thresholds.
pub fn traffic_checks(window: &Snapshot, t: &Thresholds) -> Vec<CheckResult> {
    let total = window.total();
    let too_few = total < t.min_requests as f64;
    let mut checks = Vec::new();
    if too_few {
        let detail = format!(
            "{total} requests reached green, fewer than min_requests {}",
            t.min_requests
        );
        checks.push(result(
            "error_rate",
            None,
            t.max_error_rate,
            "inconclusive",
            detail.clone(),
        ));
        checks.push(result(
            "p99_latency_ms",
            None,
            t.max_p99_ms,
            "inconclusive",
            detail,
        ));
        return checks;
    }
    let rate = window.errors() / total;
    checks.push(result(
        "error_rate",
        Some(rate),
        t.max_error_rate,
        if rate <= t.max_error_rate {
            "pass"
        } else {
            "fail"
        },
        format!(
            "{} of {total} requests failed: {:.4} (max {})",
            window.errors(),
            rate,
            t.max_error_rate
        ),
    ));
    match window.quantile_ms(0.99) {
        Some(p99) => checks.push(result(
            "p99_latency_ms",
            Some(p99),
            t.max_p99_ms,
            if p99 <= t.max_p99_ms { "pass" } else { "fail" },
            format!(
                "p99 {p99:.3} ms over {total} requests (max {} ms)",
                t.max_p99_ms
            ),
        )),
        None => checks.push(result(
            "p99_latency_ms",
            None,
            t.max_p99_ms,
            "inconclusive",
            "no latency histogram for green".into(),
        )),
    }
    checks
}

/// Shadow agreement over a window.
pub fn shadow_check(window: &Snapshot, t: &Thresholds) -> CheckResult {
    let get = |k: &str| window.shadow.get(k).copied().unwrap_or(0.0);
    let compared = get("agree") + get("disagree") + get("error");
    if compared < t.min_requests as f64 {
        return result(
            "shadow_agreement",
            None,
            t.min_shadow_agreement,
            "inconclusive",
            format!(
                "{compared} shadow comparisons, fewer than min_requests {}",
                t.min_requests
            ),
        );
    }
    let rate = get("agree") / compared;
    result(
        "shadow_agreement",
        Some(rate),
        t.min_shadow_agreement,
        if rate >= t.min_shadow_agreement {
            "pass"
        } else {
            "fail"
        },
        format!(
            "{} of {compared} shadow answers agreed: {rate:.4} (min {}; {} dropped)",
            get("agree"),
            t.min_shadow_agreement,
            get("dropped")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = r#"# TYPE switchyard_requests_total counter
switchyard_requests_total{code="200",model="m",protocol="http",slot="green",version="2"} 95
switchyard_requests_total{code="500",model="m",protocol="http",slot="green",version="2"} 5
switchyard_requests_total{code="200",model="m",protocol="http",slot="blue",version="1"} 1000
switchyard_request_duration_seconds_bucket{model="m",protocol="http",slot="green",version="2",le="0.001"} 50
switchyard_request_duration_seconds_bucket{model="m",protocol="http",slot="green",version="2",le="0.01"} 90
switchyard_request_duration_seconds_bucket{model="m",protocol="http",slot="green",version="2",le="0.1"} 100
switchyard_request_duration_seconds_bucket{model="m",protocol="http",slot="green",version="2",le="+Inf"} 100
switchyard_shadow_requests_total{live_version="1",model="m",result="agree",shadow_version="2"} 30
switchyard_shadow_requests_total{live_version="1",model="m",result="disagree",shadow_version="2"} 10
"#;

    #[test]
    fn green_is_measured_alone_with_numbers_next_to_thresholds() {
        let mut s = Snapshot::default();
        s.add(METRICS, "m", 2, Slot::Green);
        assert_eq!(s.total(), 100.0);
        assert_eq!(s.errors(), 5.0);
        // Rank 99 falls in the (0.01, 0.1] bucket holding 90..100: 0.01 + 0.09 * 0.9.
        let p99 = s.quantile_ms(0.99).unwrap();
        assert!((p99 - 91.0).abs() < 1e-9, "{p99}");
        let t = Thresholds::default();
        let checks = traffic_checks(&s, &t);
        assert_eq!(checks[0].verdict, "fail", "5% errors over the 1% default");
        assert!(
            checks[0].detail.contains("5 of 100"),
            "{}",
            checks[0].detail
        );
        assert_eq!(checks[1].verdict, "pass");
        let shadow = shadow_check(&s, &t);
        assert_eq!(shadow.verdict, "fail");
        assert_eq!(shadow.value, Some(0.75));
    }

    #[test]
    fn no_data_is_inconclusive_never_a_pass() {
        let empty = Snapshot::default();
        let t = Thresholds::default();
        assert!(
            traffic_checks(&empty, &t)
                .iter()
                .all(|c| c.verdict == "inconclusive")
        );
        assert_eq!(shadow_check(&empty, &t).verdict, "inconclusive");
        let mut s = Snapshot::default();
        s.add(METRICS, "m", 2, Slot::Green);
        let same = s.since(&s);
        assert_eq!(same.total(), 0.0);
        assert!(
            traffic_checks(&same, &t)
                .iter()
                .all(|c| c.verdict == "inconclusive")
        );
    }

    #[test]
    fn labels_with_commas_and_quotes_parse() {
        let samples = parse("x{a=\"1,2\",b=\"say \\\"hi\\\"\"} 3\n");
        assert_eq!(samples[0].labels["a"], "1,2");
        assert_eq!(samples[0].labels["b"], "say \"hi\"");
        assert_eq!(samples[0].value, 3.0);
    }
}
