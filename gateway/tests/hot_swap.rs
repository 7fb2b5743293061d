//! Atomic hot swap under load: 64 clients keep asking while the live slot's
//! version is swapped 20 times; no request fails, and every answer comes
//! from a version that was in the slot while the request was in flight,
//! with that version's own golden outputs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde_json::{Value, json};
use tokio::sync::Mutex;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_through_twenty_swaps_lose_nothing() {
    let (gw, _dir, _) = common::start(&[]).await;
    let url = format!("{}/v2/models/boosted/infer", common::http(&gw));
    let admin = format!("{}/admin/models/boosted/slots/blue", common::admin(&gw));
    let golden = [
        (2u64, common::golden("boosted", 2)),
        (3, common::golden("boosted", 3)),
    ];
    let body = Arc::new(common::infer_body(&golden[0].1, 4));

    // The swap timeline: (version, published no later than this instant).
    // A request that ran from s to e may be answered by the version live at
    // s or by any version published before e.
    let timeline = Arc::new(Mutex::new(vec![(3u64, Instant::now(), Instant::now())]));
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();

    let mut workers = Vec::new();
    for _ in 0..64 {
        let (client, url, body, stop) = (client.clone(), url.clone(), body.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let r = client
                    .post(&url)
                    .json(&*body)
                    .send()
                    .await
                    .expect("request failed");
                let status = r.status();
                let answer: Value = r.json().await.expect("body");
                seen.push((start, Instant::now(), status, answer));
            }
            seen
        }));
    }
    let admin_client = reqwest::Client::new();
    for i in 0..20 {
        let version = if i % 2 == 0 { 2 } else { 3 };
        let before = Instant::now();
        let r = admin_client
            .put(&admin)
            .json(&json!({ "version": version }))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "swap {i}: {}",
            r.text().await.unwrap()
        );
        timeline
            .lock()
            .await
            .push((version, before, Instant::now()));
    }
    stop.store(true, Ordering::Relaxed);

    let timeline = timeline.lock().await.clone();
    let mut total = 0;
    let mut by_version = [0usize; 2];
    for worker in workers {
        for (start, end, status, answer) in worker.await.unwrap() {
            total += 1;
            assert_eq!(status, 200, "failed request: {answer}");
            let v: u64 = answer["model_version"].as_str().unwrap().parse().unwrap();
            // Version i is in the slot from its publication (somewhere in
            // [began_i, done_i]) until the next one's. It may have answered
            // if that span can overlap [start, end].
            let allowed = timeline
                .iter()
                .enumerate()
                .any(|(i, &(version, began, _))| {
                    let next_done = timeline.get(i + 1).map(|&(_, _, d)| d);
                    version == v && began <= end && next_done.is_none_or(|d| d >= start)
                });
            assert!(
                allowed,
                "version {v} answered a request outside its time in the slot"
            );
            let g = &golden.iter().find(|(gv, _)| *gv == v).unwrap().1;
            common::assert_golden(&answer, g, 4);
            by_version[usize::from(v == 3)] += 1;
        }
    }
    assert!(total > 200, "only {total} requests during the swaps");
    assert!(
        by_version[0] > 0 && by_version[1] > 0,
        "both versions answered: {by_version:?}"
    );
    gw.shutdown().await;
}
