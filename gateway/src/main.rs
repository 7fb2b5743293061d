//! `gateway`: parse the configuration, start, serve until SIGTERM, drain.

use clap::Parser;
use gateway::config::Flags;
use gateway::server;
use tracing_subscriber::EnvFilter;

// Every request allocates its decoded tensors, its answer and hyper's
// buffers, freed on another thread as often as not; under load glibc's
// malloc and free were an eighth of the gateway's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let config = match Flags::parse().resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gateway: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_from_env("SWITCHYARD_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,ort=warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.json_logs {
        logs.json().init();
    } else {
        logs.init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gateway: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let gateway = match server::start(&config).await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %gateway::serving::error_chain(&e), "cannot start");
                return std::process::ExitCode::FAILURE;
            }
        };
        server::shutdown_signal().await;
        tracing::info!("shutting down: draining requests in flight");
        if gateway.shutdown().await {
            tracing::info!("drained; bye");
        }
        std::process::ExitCode::SUCCESS
    })
}
