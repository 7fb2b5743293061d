//! Wires the parts together: binds every listener first (so a taken port
//! fails at once, by name), serves liveness while the models load, turns
//! ready once they are warm, and on shutdown stops accepting, drains what
//! is in flight within the drain timeout, and returns.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use switchyard_api::grpc::grpc_inference_service_server::GrpcInferenceServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::backend::{BackendConfig, Backends};
use crate::batcher::ThreadBudget;
use crate::config::Config;
use crate::grpc::InferenceService;
use crate::http::{self, App, HttpLimits};
use crate::loader::LoadContext;
use crate::metrics::Metrics;
use crate::persist::StateStore;
use crate::repository::FolderSource;
use crate::serving::{Serving, ServingSettings, StartError};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listener could not bind.
    #[error("cannot listen on {addr} for {what}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The repository or the saved routing could not be read.
    #[error(transparent)]
    Start(#[from] StartError),
}

/// The addresses the gateway actually listens on (ports resolved when the
/// configuration asked for port 0).
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    /// HTTP.
    pub http: SocketAddr,
    /// gRPC.
    pub grpc: SocketAddr,
    /// Metrics.
    pub metrics: SocketAddr,
    /// Admin.
    pub admin: SocketAddr,
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    /// The core.
    pub serving: Arc<Serving>,
    /// Where it listens.
    pub addrs: Addrs,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    drain: Duration,
}

/// Builds the core from the configuration.
pub fn build_serving(config: &Config) -> Serving {
    let metrics = Metrics::new();
    let backends = Backends::from_config(&BackendConfig {
        order: config.backends.clone(),
        ort_library: config.ort_library.clone(),
        intra_op_threads: config.intra_op_threads,
    });
    let loader = LoadContext {
        source: Arc::new(FolderSource::new(config.models.clone())),
        backends,
        backend_overrides: config.model_backends.clone(),
        model_instances: config.model_instances.clone(),
        instances: config.instances,
        drift: config.drift,
        inline_max: config.inline_max,
        budget: ThreadBudget::new(config.inference_threads),
        metrics,
    };
    let settings = ServingSettings {
        default_timeout: config.request_timeout,
        load_threads: config.load_threads,
        strict_readiness: config.strict_readiness,
        pinned: config.pinned_versions.clone(),
    };
    Serving::new(
        loader,
        settings,
        config.state_dir.as_deref().map(StateStore::new),
    )
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { what, addr, source })
}

/// Binds every listener, starts serving, loads the models, and returns
/// once the gateway is ready (or has tried every model).
///
/// # Errors
/// [`ServerError`] naming the port or the unreadable repository.
pub async fn start(config: &Config) -> Result<Gateway, ServerError> {
    start_with(config, Arc::new(build_serving(config))).await
}

/// [`start`] with a core built by the caller (tests use other backends).
///
/// # Errors
/// As [`start`].
pub async fn start_with(config: &Config, serving: Arc<Serving>) -> Result<Gateway, ServerError> {
    let http_listener = bind("HTTP", config.http_addr).await?;
    let grpc_listener = bind("gRPC", config.grpc_addr).await?;
    let metrics_listener = bind("metrics", config.metrics_addr).await?;
    let admin_listener = bind("admin", config.admin_addr).await?;
    let local = |l: &TcpListener, fallback| l.local_addr().unwrap_or(fallback);
    let addrs = Addrs {
        http: local(&http_listener, config.http_addr),
        grpc: local(&grpc_listener, config.grpc_addr),
        metrics: local(&metrics_listener, config.metrics_addr),
        admin: local(&admin_listener, config.admin_addr),
    };

    let app = App {
        serving: serving.clone(),
    };
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let limits = HttpLimits {
        max_body_bytes: config.max_body_bytes,
    };
    serve_http(
        &mut tasks,
        http_listener,
        http::inference_service(app.clone(), limits),
        stopped.clone(),
    );
    serve_http(
        &mut tasks,
        metrics_listener,
        http::metrics_router(app.clone()),
        stopped.clone(),
    );
    serve_http(
        &mut tasks,
        admin_listener,
        http::admin::router(
            app,
            config.admin_token.clone(),
            http::admin::GatewayInfo {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                http: addrs.http.to_string(),
                grpc: addrs.grpc.to_string(),
                metrics: addrs.metrics.to_string(),
            },
        ),
        stopped.clone(),
    );

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_not_serving::<GrpcInferenceServiceServer<InferenceService>>()
        .await;
    let direct = crate::grpc::direct::DirectInfer::new(
        InferenceService::new(serving.clone()),
        config.max_body_bytes,
        serving.settings().default_timeout,
    );
    let inference = GrpcInferenceServiceServer::new(InferenceService::new(serving.clone()))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(config.max_body_bytes)
        .max_encoding_message_size(config.max_body_bytes);
    tasks.spawn(crate::grpc::serve::serve(
        grpc_listener,
        crate::grpc::serve::GrpcRoutes::new(direct, inference, health_service),
        config.grpc_keepalive,
        stopped.clone(),
    ));

    tracing::info!(http = %addrs.http, grpc = %addrs.grpc, metrics = %addrs.metrics, admin = %addrs.admin,
        models = %config.models.display(), "listening; loading models");
    serving.start().await?;
    if serving.is_ready() {
        health
            .set_serving::<GrpcInferenceServiceServer<InferenceService>>()
            .await;
        health
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
    }
    // Not-ready flips back on shutdown for the gRPC health service too.
    let mut health_stop = stopped;
    tasks.spawn(async move {
        let _ = health_stop.wait_for(|s| *s).await;
        health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
    });
    tracing::info!(ready = serving.is_ready(), "gateway started");
    Ok(Gateway {
        serving,
        addrs,
        stop,
        tasks,
        drain: config.drain_timeout,
    })
}

fn serve_http<S>(
    tasks: &mut JoinSet<()>,
    listener: TcpListener,
    service: S,
    mut stopped: watch::Receiver<bool>,
) where
    S: tower::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    tasks.spawn(async move {
        // Answers are small and written in parts (head, body): without
        // TCP_NODELAY, Nagle's algorithm holds the last part for the peer's
        // delayed ACK, about 40 ms.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let result = axum::serve(listener, axum::ServiceExt::into_make_service(service))
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
}

impl Gateway {
    /// Stops accepting, drains requests in flight for at most the drain
    /// timeout, and returns whether everything finished in time.
    pub async fn shutdown(mut self) -> bool {
        self.serving.begin_shutdown();
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(self.drain, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        if !drained {
            tracing::warn!(
                timeout_s = self.drain.as_secs_f64(),
                "drain timeout passed; dropping what is left"
            );
            self.tasks.abort_all();
        }
        drained
    }
}

/// Resolves when the process gets SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
