//! Batching, admission and deadlines, with a backend whose speed the test
//! sets: concurrent requests share one backend call, a full queue answers
//! 429 with Retry-After, and a request past its deadline gets 504 and its
//! work is dropped, not run. A fast model's lone request runs where it
//! arrived; a slow model's never does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gateway::backend::Backends;
use gateway::backend::fake::FakeBackend;
use serde_json::{Value, json};

fn repository(
    dir: &std::path::Path,
    max_batch: u32,
    queue: u32,
    delay_us: u64,
) -> std::path::PathBuf {
    let models = dir.join("models");
    let v = models.join("slow").join("1");
    std::fs::create_dir_all(&v).unwrap();
    std::fs::write(v.join("model.onnx"), b"fake").unwrap();
    let sha = switchyard_api::manifest::sha256_file(&v.join("model.onnx")).unwrap();
    std::fs::write(
        v.join("model.toml"),
        format!(
            r#"name = "slow"
version = 1
[[inputs]]
name = "input"
datatype = "FP32"
shape = [-1, 2]
[[outputs]]
name = "label"
datatype = "INT64"
shape = [-1]
[batching]
max_batch_size = {max_batch}
queue_capacity = {queue}
max_queue_delay_us = {delay_us}
[files]
"model.onnx" = "{sha}"
"#
        ),
    )
    .unwrap();
    models
}

/// A gateway serving the `slow` model on the fake backend, and the fake.
async fn fake_gateway(
    dir: &std::path::Path,
    (max_batch, queue, delay_us): (u32, u32, u64),
    run_time: Duration,
) -> (gateway::server::Gateway, FakeBackend) {
    let models = repository(dir, max_batch, queue, delay_us);
    let fake = FakeBackend {
        delay: run_time,
        ..FakeBackend::default()
    };
    let gw = common::start_with_backends(
        &models,
        Backends::from_list(vec![Arc::new(fake.clone())]),
        "10s",
    )
    .await;
    (gw, fake)
}

fn body(rows: usize) -> Value {
    json!({"inputs": [{"name": "input", "shape": [rows, 2], "datatype": "FP32", "data": vec![1.0f32; rows * 2]}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_backend_calls_and_get_their_own_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, fake) = fake_gateway(dir.path(), (16, 64, 20_000), Duration::from_millis(5)).await;
    let warm = fake.batches.load(Ordering::SeqCst);
    let url = format!("{}/v2/models/slow/infer", common::http(&gw));
    let client = reqwest::Client::new();
    let answers = futures::future::join_all((0..16).map(|i| {
        let rows = 1 + i % 3;
        let request = client.post(&url).json(&body(rows)).send();
        async move { (rows, request.await.unwrap().json::<Value>().await.unwrap()) }
    }))
    .await;
    for (rows, answer) in &answers {
        assert_eq!(answer["outputs"][0]["shape"], json!([rows]), "{answer}");
        assert_eq!(
            answer["outputs"][0]["data"],
            json!(vec![1; *rows]),
            "label is the version"
        );
    }
    let calls = fake.batches.load(Ordering::SeqCst) - warm;
    assert!(
        calls < 16,
        "16 concurrent requests took {calls} backend calls: no batching"
    );
    let metrics = common::scrape(&gw).await;
    assert!(metrics.contains("switchyard_batch_size_rows_count{model=\"slow\",version=\"1\"}"));
    assert_eq!(
        inline_runs(&metrics),
        0,
        "a model slower than the inline limit always goes through its worker"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_and_a_late_request_504_without_running() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, fake) = fake_gateway(dir.path(), (1, 2, 0), Duration::from_millis(300)).await;
    let url = format!("{}/v2/models/slow/infer", common::http(&gw));
    let client = reqwest::Client::new();

    // One running, two queued: the fourth and later find the queue full.
    let requests = (0..6).map(|_| client.post(&url).json(&body(1)).send());
    let responses = futures::future::join_all(requests).await;
    let mut statuses: Vec<u16> = Vec::new();
    for r in responses {
        let r = r.unwrap();
        let status = r.status().as_u16();
        if status == 429 {
            assert_eq!(r.headers()["retry-after"], "1");
            let answer: Value = r.json().await.unwrap();
            assert!(
                answer["error"].as_str().unwrap().contains("at capacity"),
                "{answer}"
            );
        }
        statuses.push(status);
    }
    statuses.sort_unstable();
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");

    // A deadline shorter than the queue ahead of it: 504, and its batch
    // never runs (the worker drops it).
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = fake.batches.load(Ordering::SeqCst);
    let slow = tokio::spawn(client.post(&url).json(&body(1)).send());
    // Let the first request reach the backend, so the second one waits.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let late = client
        .post(&url)
        .header("x-request-timeout-ms", "50")
        .json(&body(1))
        .send()
        .await
        .unwrap();
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
    assert_eq!(late.status(), 504);
    let answer: Value = late.json().await.unwrap();
    assert!(
        answer["error"].as_str().unwrap().contains("within 50 ms"),
        "{answer}"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        fake.batches.load(Ordering::SeqCst) - before,
        1,
        "the late request must not run"
    );
    gw.shutdown().await;
}

fn inline_runs(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("switchyard_inline_runs_total{model=\"slow\",version=\"1\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_at_a_time_to_a_fast_model_runs_where_it_arrived() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, fake) = fake_gateway(dir.path(), (16, 64, 0), Duration::ZERO).await;
    let url = format!("{}/v2/models/slow/infer", common::http(&gw));
    let client = reqwest::Client::new();
    let before = fake.batches.load(Ordering::SeqCst);
    for rows in [1, 3, 16] {
        let answer: Value = client
            .post(&url)
            .json(&body(rows))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            answer["outputs"][0]["data"],
            json!(vec![1; rows]),
            "{answer}"
        );
    }
    assert_eq!(fake.batches.load(Ordering::SeqCst) - before, 3);
    let metrics = common::scrape(&gw).await;
    assert_eq!(inline_runs(&metrics), 3, "every request ran inline");
    gw.shutdown().await;
}

/// Threads of this process whose name starts with `prefix`.
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_can_have_more_sessions_than_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, "[model.linear]\ninstances = 3\n").unwrap();
    let (gw, _dir, _models) = common::start(&["--config", config.to_str().unwrap()]).await;
    // Thread names are cut at 15 bytes: "infer-linear-1-" then the index.
    assert_eq!(threads_named("infer-linear-1"), 3);
    // The default: two, or one where one inference call at a time is all
    // the machine's cores allow.
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(threads_named("infer-mlp-1"), cpus.clamp(1, 2));
    gw.shutdown().await;
}
