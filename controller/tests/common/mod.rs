//! Set-up shared by the controller's integration tests: the source tree,
//! private copies of its folders, and real gateways on 127.0.0.1.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use clap::Parser;
use gateway::server::Gateway;

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Copies a folder tree (tests change their copies of models/ and
/// smoke-tests/).
pub fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            if e.file_name() != "__pycache__" {
                copy(&e.path(), &to.join(e.file_name()));
            }
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A real gateway over `models` on free loopback ports, with `extra` flags.
pub async fn gateway_with(models: &Path, extra: &[&str]) -> Gateway {
    let ort = std::env::var("ORT_DYLIB_PATH")
        .expect("ORT_DYLIB_PATH is not set: run the tests through `make test`");
    let mut args = vec![
        "gateway",
        "--models",
        models.to_str().unwrap(),
        "--http-addr=127.0.0.1:0",
        "--grpc-addr=127.0.0.1:0",
        "--metrics-addr=127.0.0.1:0",
        "--admin-addr=127.0.0.1:0",
        "--ort-library",
        &ort,
    ];
    args.extend_from_slice(extra);
    let flags = gateway::config::Flags::try_parse_from(args).unwrap();
    gateway::server::start(&flags.resolve().unwrap())
        .await
        .unwrap()
}

/// A real gateway over `models`.
pub async fn gateway(models: &Path) -> Gateway {
    gateway_with(models, &[]).await
}

/// Clients posting one boosted row to every URL until stopped; counts
/// answers and failures.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts `clients_per_url` closed-loop clients on each inference base URL.
pub fn traffic(urls: &[String], clients_per_url: usize) -> Traffic {
    let (stop, ok, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let body = serde_json::json!({"inputs": [{"name": "input", "shape": [1, 20], "datatype": "FP32", "data": vec![0.25f32; 20]}]});
    let client = reqwest::Client::new();
    let tasks = urls
        .iter()
        .flat_map(|u| std::iter::repeat_n(u.clone(), clients_per_url))
        .map(|url| {
            let (stop, ok, failed, body, client) = (
                stop.clone(),
                ok.clone(),
                failed.clone(),
                body.clone(),
                client.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = client
                        .post(format!("{url}/v2/models/boosted/infer"))
                        .json(&body)
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    Traffic {
        stop,
        ok,
        failed,
        tasks,
    }
}

impl Traffic {
    /// Stops the clients; `(answered, failed)`.
    pub async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}
