//! 1,000 load/unload cycles of a version leave the process where it was:
//! memory flat and no worker thread left behind (a version's sessions and
//! threads go when its last reference does).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use gateway::serving::Serving;
use switchyard_api::admin::Slot;

fn status_field(name: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(name)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn cycles(serving: &Serving, n: usize) {
    for _ in 0..n {
        serving.load("linear", 1, Slot::Green).await.unwrap();
        serving.unload_slot("linear", Slot::Green).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_reloads_leave_memory_and_threads_where_they_were() {
    // No state folder: each change would fsync the routing file, which
    // measures the disk, not the reload.
    let dir = tempfile::tempdir().unwrap();
    let models = common::copy_models(dir.path());
    let gw = gateway::server::start(&common::config(&models, None, &[]))
        .await
        .unwrap();
    let serving = gw.serving.clone();
    // Allocator arenas and ONNX Runtime's caches settle in the first cycles.
    cycles(&serving, 100).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (rss_before, threads_before) = (status_field("VmRSS:"), status_field("Threads:"));
    cycles(&serving, 900).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (rss_after, threads_after) = (status_field("VmRSS:"), status_field("Threads:"));
    let grown_kib = rss_after.saturating_sub(rss_before);
    eprintln!(
        "RSS {rss_before} KiB -> {rss_after} KiB over 900 cycles; threads {threads_before} -> {threads_after}"
    );
    assert!(
        grown_kib < 8 * 1024,
        "RSS grew {grown_kib} KiB over 900 reloads"
    );
    assert!(
        threads_after <= threads_before,
        "worker threads leaked: {threads_before} -> {threads_after}"
    );
    let route = serving.view("linear").unwrap();
    assert!(route.green.is_none() && route.blue.is_some());
    gw.shutdown().await;
}
