//! Set-up shared by the controller's integration tests: the source tree,
//! private copies of its folders, and real gateways on 127.0.0.1.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

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
