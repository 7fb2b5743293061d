//! Runs a smoke suite against one slot of every gateway, pinned by the
//! `x-slot` header so live traffic is never touched. Any error — a refused
//! request, a wrong version answering, a value off, a slow answer — fails
//! the suite; a suite that could not run is never a pass.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_api::DataType;
use switchyard_api::admin::Slot;

use crate::suite::{Case, Expected, SuiteFile};

/// What a suite run found.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SmokeReport {
    /// Case runs (cases × gateways).
    pub runs: usize,
    /// Every failure, in words.
    pub failures: Vec<String>,
    /// The slowest answer, in milliseconds.
    pub slowest_ms: f64,
}

impl SmokeReport {
    /// Whether the suite passed.
    pub fn passed(&self) -> bool {
        self.runs > 0 && self.failures.is_empty()
    }
}

/// Runs every case that applies to `version` against `slot` of each gateway.
pub async fn run(
    client: &reqwest::Client,
    inference_urls: &[String],
    suite: &SuiteFile,
    model: &str,
    version: u64,
    slot: Slot,
) -> SmokeReport {
    let mut report = SmokeReport::default();
    let cases = suite.cases_for(version);
    if cases.is_empty() {
        report.failures.push(format!(
            "no smoke case applies to {model} version {version}"
        ));
        return report;
    }
    let budget = suite.smoke.latency_budget_ms;
    for base in inference_urls {
        for case in &cases {
            report.runs += 1;
            let started = Instant::now();
            let outcome = run_case(client, base, model, version, slot, case).await;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            report.slowest_ms = report.slowest_ms.max(ms);
            match outcome {
                Err(e) => report.failures.push(format!("{base} case {:?}: {e}", case.name)),
                Ok(()) if ms > budget => report.failures.push(format!(
                    "{base} case {:?}: answered in {ms:.1} ms, over the latency budget of {budget} ms",
                    case.name
                )),
                Ok(()) => {}
            }
        }
    }
    report
}

async fn run_case(
    client: &reqwest::Client,
    base: &str,
    model: &str,
    version: u64,
    slot: Slot,
    case: &Case,
) -> Result<(), String> {
    let inputs: Vec<Value> = case
        .inputs
        .iter()
        .map(|(name, t)| json!({"name": name, "datatype": t.datatype, "shape": t.shape, "data": values(t.datatype, &t.data)}))
        .collect();
    let response = client
        .post(format!("{base}/v2/models/{model}/infer"))
        .header("x-slot", slot.as_str())
        .timeout(Duration::from_secs(30))
        .json(&json!({ "id": format!("smoke-{}", case.name), "inputs": inputs }))
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status();
    let answered = response
        .headers()
        .get("x-model-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = response
        .json()
        .await
        .map_err(|e| format!("answer is not JSON: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "{status}: {}",
            body["error"].as_str().unwrap_or("no error message")
        ));
    }
    if answered.as_deref() != Some(version.to_string().as_str()) {
        return Err(format!(
            "the {slot} slot answered with version {answered:?}, not {version}"
        ));
    }
    for (name, expected) in &case.expect {
        let output = body["outputs"]
            .as_array()
            .and_then(|outs| outs.iter().find(|o| o["name"] == name.as_str()))
            .ok_or_else(|| format!("no output {name:?} in the answer"))?;
        compare(name, output, expected)?;
    }
    Ok(())
}

fn values(datatype: DataType, data: &[f64]) -> Value {
    match datatype {
        DataType::Fp32 | DataType::Fp64 => json!(data),
        DataType::Bool => json!(data.iter().map(|&x| x != 0.0).collect::<Vec<_>>()),
        _ => json!(data.iter().map(|&x| x as i64).collect::<Vec<_>>()),
    }
}

fn compare(name: &str, output: &Value, expected: &Expected) -> Result<(), String> {
    let got: Vec<f64> = output["data"]
        .as_array()
        .ok_or_else(|| format!("output {name:?} has no data"))?
        .iter()
        .map(|v| {
            v.as_f64()
                .or_else(|| v.as_bool().map(|b| f64::from(u8::from(b))))
                .unwrap_or(f64::NAN)
        })
        .collect();
    if got.len() != expected.data.len() {
        return Err(format!(
            "output {name:?} has {} values, expected {}",
            got.len(),
            expected.data.len()
        ));
    }
    let float = matches!(output["datatype"].as_str(), Some("FP32" | "FP64"));
    for (i, (g, e)) in got.iter().zip(&expected.data).enumerate() {
        let tolerance = if float { expected.tolerance } else { 0.0 };
        if (g - e).abs() > tolerance || g.is_nan() {
            return Err(format!(
                "output {name:?}[{i}] is {g}, expected {e} (tolerance {tolerance})"
            ));
        }
    }
    Ok(())
}
