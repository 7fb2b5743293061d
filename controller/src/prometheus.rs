//! Analysis checks written in PromQL and answered by a Prometheus server,
//! as Argo Rollouts' analysis templates do: `[[queries]]` in a model's
//! smoke-tests file, each with a `max` or `min`. `$model` and `$version` in
//! the query are replaced by the rollout's. A query that returns nothing,
//! several series, or an error is inconclusive — never a pass.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::journal::CheckResult;

/// One PromQL check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryCheck {
    /// The check's name in reports and metrics (`[a-z0-9_]`).
    pub name: String,
    /// The PromQL expression; it must return one number.
    pub query: String,
    /// Fail above this.
    #[serde(default)]
    pub max: Option<f64>,
    /// Fail below this.
    #[serde(default)]
    pub min: Option<f64>,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

impl QueryCheck {
    /// The problems of the check's own definition.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let plain = !self.name.is_empty()
            && self.name.len() <= 32
            && self
                .name
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
        if !plain {
            p.push(format!(
                "query check name {:?} must be [a-z0-9_], at most 32 long",
                self.name
            ));
        }
        if self.max.is_none() && self.min.is_none() {
            p.push(format!("query check {:?} needs a max or a min", self.name));
        }
        p
    }

    /// Runs the query against `prometheus` (its base URL) and judges it.
    pub async fn run(
        &self,
        client: &reqwest::Client,
        prometheus: Option<&str>,
        model: &str,
        version: u64,
    ) -> CheckResult {
        let threshold = self.max.or(self.min).unwrap_or(f64::NAN);
        let verdict = |value: Option<f64>, verdict: &str, detail: String| CheckResult {
            name: self.name.clone(),
            value,
            threshold,
            verdict: verdict.to_owned(),
            detail,
        };
        let Some(base) = prometheus else {
            return verdict(
                None,
                "inconclusive",
                "no Prometheus server configured (--prometheus)".into(),
            );
        };
        let query = self
            .query
            .replace("$model", model)
            .replace("$version", &version.to_string());
        match fetch(client, base, &query).await {
            Err(e) => verdict(None, "inconclusive", format!("query {query:?}: {e}")),
            Ok(v) => {
                let over = self.max.is_some_and(|m| v > m);
                let under = self.min.is_some_and(|m| v < m);
                let bounds = match (self.min, self.max) {
                    (Some(lo), Some(hi)) => format!("between {lo} and {hi}"),
                    (Some(lo), None) => format!("min {lo}"),
                    (None, Some(hi)) => format!("max {hi}"),
                    (None, None) => String::new(),
                };
                let ok = !(over || under || v.is_nan());
                verdict(
                    Some(v),
                    if ok { "pass" } else { "fail" },
                    format!("{query} = {v} ({bounds})"),
                )
            }
        }
    }
}

async fn fetch(client: &reqwest::Client, base: &str, query: &str) -> Result<f64, String> {
    let url = format!("{}/api/v1/query", base.trim_end_matches('/'));
    let response = client
        .get(&url)
        .query(&[("query", query)])
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("Prometheus at {base} did not answer: {e}"))?;
    let answer: Answer = response
        .json()
        .await
        .map_err(|e| format!("Prometheus answered something that is not its API: {e}"))?;
    if answer.status != "success" {
        return Err(format!(
            "Prometheus refused it: {}",
            answer.error.unwrap_or_default()
        ));
    }
    let data = answer.data.ok_or("no data in the answer")?;
    let number = |pair: &serde_json::Value| -> Result<f64, String> {
        pair.get(1)
            .and_then(serde_json::Value::as_str)
            .and_then(|s| s.parse::<f64>().ok())
            .ok_or_else(|| format!("a sample that is not a number: {pair}"))
    };
    match data.result_type.as_str() {
        "scalar" => number(&data.result),
        "vector" => {
            let series = data
                .result
                .as_array()
                .ok_or("a vector that is not a list")?;
            match series.as_slice() {
                [] => Err("it returned nothing (no data is never a pass)".into()),
                [one] => number(one.get("value").unwrap_or(&serde_json::Value::Null)),
                many => Err(format!(
                    "it returned {} series; it must return one (aggregate it)",
                    many.len()
                )),
            }
        }
        other => Err(format!("it returned a {other}; it must return one number")),
    }
}
