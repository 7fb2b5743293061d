//! The gRPC listener: the inference and health services straight on
//! hyper's HTTP/2 server, routed by path prefix.
//!
//! tonic's own server puts a stack of its layers and an axum router in
//! front of every call and records each connection's addresses in every
//! request; none of it is used here (deadlines, message limits and
//! compression are the services' own settings). Measured against it
//! (h2load, 1 row, 4 alternating pairs of 3-s runs): server CPU per call
//! 55.6 -> 47.8 µs with 64 connections and 45 -> 38 µs with 8 connections
//! of 8 streams; req/s +8 % and +15 %. HTTP/2's limits are hyper's
//! defaults: 16 KiB of headers and 20 pending resets as under tonic, and
//! at most 200 concurrent streams per connection, where tonic set none.

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{BoxFuture, Either};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::Service;

use super::direct::DirectInfer;

/// Calls under this prefix go to `grpc.health.v1.Health`, everything else
/// to the inference service (which answers UNIMPLEMENTED for a method it
/// doesn't have).
const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";

/// The services of the gRPC port.
#[derive(Debug, Clone)]
pub struct GrpcRoutes<I, H> {
    direct: DirectInfer,
    inference: I,
    health: H,
}

impl<I, H> GrpcRoutes<I, H> {
    /// Routes uncompressed `ModelInfer` calls to `direct`, health checks
    /// to `health` and everything else to `inference`.
    pub fn new(direct: DirectInfer, inference: I, health: H) -> Self {
        GrpcRoutes {
            direct,
            inference,
            health,
        }
    }
}

type Request = http::Request<Incoming>;
type Response = http::Response<tonic::body::Body>;

impl<I, H> Service<Request> for GrpcRoutes<I, H>
where
    I: Service<Request, Response = Response, Error = Infallible>,
    H: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future =
        Either<BoxFuture<'static, Result<Response, Infallible>>, Either<I::Future, H::Future>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // tonic's generated services are always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if DirectInfer::serves(&request) {
            let direct = self.direct.clone();
            Either::Left(Box::pin(async move { Ok(direct.call(request).await) }))
        } else if request.uri().path().starts_with(HEALTH_PREFIX) {
            Either::Right(Either::Right(self.health.call(request)))
        } else {
            Either::Right(Either::Left(self.inference.call(request)))
        }
    }
}

/// Accepts HTTP/2 connections (TCP_NODELAY, as on the HTTP port) until
/// `stopped`, then lets the open ones finish their calls; the caller
/// bounds that wait with the drain timeout.
pub async fn serve<S>(listener: TcpListener, routes: S, mut stopped: watch::Receiver<bool>)
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    // gRPC clients don't read a Date header; hyper would format and
    // HPACK-encode one into every answer.
    http2.auto_date_header(false);
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|s| *s) => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of file descriptors, typically: wait instead of
                // spinning on the error.
                tracing::warn!(error = %e, "gRPC accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let connection =
            http2.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(routes.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "gRPC connection ended with an error");
            }
        });
    }
    // Close the port now: a client that connects during the drain would
    // otherwise wait for an answer that never comes.
    drop(listener);
    graceful.shutdown().await;
}
