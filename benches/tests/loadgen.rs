//! The load generator against a real gateway: every request it sends over
//! HTTP/1.1 and over gRPC (streams sharing connections) is answered, and
//! the gateway counted exactly as many as loadgen reports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use gateway::config::Flags;
use serde_json::Value;

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn loadgen(args: &[String]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .args([
            "--json",
            "--warmup=0s",
            "--duration=30s",
            "--golden",
            &models().join("boosted/2/golden.json").display().to_string(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn served(metrics: &str, protocol: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("switchyard_requests_total{")
                && l.contains("model=\"boosted\"")
                && l.contains(&format!("protocol=\"{protocol}\""))
                && l.contains("code=\"200\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_sent_is_answered_and_counted_on_both_protocols() {
    let ort = std::env::var("ORT_DYLIB_PATH").expect(
        "ORT_DYLIB_PATH is not set: run the tests through `make test`, which fetches ONNX Runtime",
    );
    let config = Flags::try_parse_from([
        "gateway",
        "--models",
        &models().display().to_string(),
        "--http-addr=127.0.0.1:0",
        "--grpc-addr=127.0.0.1:0",
        "--metrics-addr=127.0.0.1:0",
        "--admin-addr=127.0.0.1:0",
        "--ort-library",
        &ort,
    ])
    .unwrap()
    .resolve()
    .unwrap();
    let gw = gateway::server::start(&config).await.unwrap();
    let metrics_url = format!("http://{}/metrics", gw.addrs.metrics);
    let scrape = || async {
        reqwest::get(&metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };

    for (protocol, port, label, extra) in [
        (
            "grpc",
            gw.addrs.grpc.port(),
            "grpc",
            vec!["--connections=2"],
        ),
        ("http-json", gw.addrs.http.port(), "http", vec![]),
        ("http-binary", gw.addrs.http.port(), "http", vec![]),
    ] {
        let before = served(&scrape().await, label);
        let mut args = vec![
            format!("--protocol={protocol}"),
            format!("--port={port}"),
            "-c".to_owned(),
            "4".to_owned(),
            "--max-requests=300".to_owned(),
            "--rows=3".to_owned(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let (code, report, stderr) = tokio::task::spawn_blocking(move || loadgen(&args))
            .await
            .unwrap();
        assert_eq!(code, 0, "{protocol}: {stderr}");
        assert_eq!(report["ok"], 300, "{protocol}: {report}");
        assert_eq!(report["errors"], 0, "{protocol}: {report}");
        // The preflight request is answered too.
        assert_eq!(
            served(&scrape().await, label) - before,
            301,
            "{protocol}: the gateway's count"
        );
    }

    // HTTP/1.1 carries one request per connection at a time.
    let port = gw.addrs.http.port();
    let (code, _, stderr) = tokio::task::spawn_blocking(move || {
        loadgen(&[
            "--protocol=http-json".into(),
            format!("--port={port}"),
            "-c".into(),
            "4".into(),
            "--connections=2".into(),
        ])
    })
    .await
    .unwrap();
    assert_eq!(code, 2);
    assert!(stderr.contains("--connections"), "{stderr}");
    gw.shutdown().await;
}
