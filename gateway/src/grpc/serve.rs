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
//!
//! A connection's first few calls in flight run in the connection's own
//! task ([`ConnectionCalls`]) rather than in a task each.

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{BoxFuture, Either};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
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

/// Longest wait for a keep-alive ping's answer.
const MAX_PING_WAIT: Duration = Duration::from_secs(20);

/// Accepts HTTP/2 connections (TCP_NODELAY, as on the HTTP port) until
/// `stopped`, then lets the open ones finish their calls; the caller
/// bounds that wait with the drain timeout.
///
/// A connection silent for `keepalive` is pinged and closed when the ping
/// goes unanswered for as long again (at most [`MAX_PING_WAIT`]): a peer
/// that vanished without a FIN (a node gone, a NAT entry dropped) would
/// otherwise hold its connection and streams for good. Zero turns it off.
pub async fn serve<S>(
    listener: TcpListener,
    routes: S,
    keepalive: Duration,
    mut stopped: watch::Receiver<bool>,
) where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
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
        let calls = ConnectionCalls::default();
        let mut http2 = hyper::server::conn::http2::Builder::new(calls.clone());
        // gRPC clients don't read a Date header; hyper would format and
        // HPACK-encode one into every answer.
        http2.auto_date_header(false);
        if !keepalive.is_zero() {
            http2
                .timer(TokioTimer::new())
                .keep_alive_interval(keepalive)
                .keep_alive_timeout(keepalive.min(MAX_PING_WAIT));
        }
        let connection =
            http2.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(routes.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = calls.run_with(connection).await {
                tracing::debug!(error = %e, "gRPC connection ended with an error");
            }
        });
    }
    // Close the port now: a client that connects during the drain would
    // otherwise wait for an answer that never comes.
    drop(listener);
    graceful.shutdown().await;
}

/// Calls a connection runs inside its own task before it hands further
/// ones to the runtime.
const CALLS_IN_CONNECTION: usize = 8;

/// Passes over a connection and its calls in one wake-up before the task
/// yields to the others.
const PASSES_PER_WAKE: usize = 16;

/// hyper's executor for one connection's calls: the first
/// [`CALLS_IN_CONNECTION`] in flight run in the connection's own task, the
/// rest on the runtime.
///
/// hyper spawns a task per HTTP/2 stream. With one call per connection
/// that is three task wake-ups per call (the connection reads it, the
/// call's task answers, the connection writes), often across the two
/// worker threads; HTTP/1.1 does it in one. Polled where they arrive, a
/// call and its answer are read, run and written in one pass. Calls past
/// the first few still get tasks of their own, so one busy connection
/// is spread over the cores.
#[derive(Clone, Default)]
struct ConnectionCalls {
    arrived: Arc<Mutex<Vec<BoxFuture<'static, ()>>>>,
    /// Calls in the connection's task (arrived or running).
    local: Arc<AtomicUsize>,
}

impl<F> hyper::rt::Executor<F> for ConnectionCalls
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, call: F) {
        if self.local.load(Ordering::Relaxed) >= CALLS_IN_CONNECTION {
            tokio::spawn(call);
            return;
        }
        self.local.fetch_add(1, Ordering::Relaxed);
        // In a task of its own a panicking call would end only itself;
        // here it would end the connection's task and every call in it. So
        // it ends alone: dropping its stream resets that one stream.
        let call = AssertUnwindSafe(call).catch_unwind().map(|outcome| {
            if outcome.is_err() {
                tracing::error!("a gRPC call panicked; its stream is reset");
            }
        });
        self.arrived
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::pin(call));
    }
}

impl ConnectionCalls {
    /// Drives `connection` and the calls it hands over until both are
    /// done.
    async fn run_with<C: Future>(self, connection: C) -> C::Output {
        let mut connection = pin!(connection);
        let mut calls = FuturesUnordered::new();
        let mut ended = None;
        std::future::poll_fn(|cx| {
            for _ in 0..PASSES_PER_WAKE {
                if ended.is_none()
                    && let Poll::Ready(out) = connection.as_mut().poll(cx)
                {
                    ended = Some(out);
                }
                calls.extend(
                    self.arrived
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .drain(..),
                );
                let mut finished = 0;
                while let Poll::Ready(Some(())) = calls.poll_next_unpin(cx) {
                    finished += 1;
                }
                self.local.fetch_sub(finished, Ordering::Relaxed);
                if calls.is_empty()
                    && let Some(out) = ended.take()
                {
                    return Poll::Ready(out);
                }
                if finished == 0 {
                    return Poll::Pending;
                }
                // A finished call queued its answer: the connection writes
                // it on the next pass.
            }
            // Still busy: let the other tasks run, then come back.
            cx.waker().wake_by_ref();
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Executor;

    #[tokio::test]
    async fn a_call_that_panics_ends_alone_and_the_connections_other_calls_finish() {
        let calls = ConnectionCalls::default();
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        let (go_tx, go_rx) = tokio::sync::watch::channel(false);
        for i in 0..4 {
            let done = done_tx.clone();
            let mut go = go_rx.clone();
            calls.execute(async move {
                let _ = go.wait_for(|g| *g).await;
                assert!(i != 2, "call {i} fails");
                let _ = done.send(i);
            });
        }
        drop(done_tx);
        // The connection ends once it has let the calls go; `run_with`
        // returns when the calls are done too.
        let connection = async move {
            tokio::task::yield_now().await;
            let _ = go_tx.send(true);
            "ended"
        };
        let out = tokio::time::timeout(Duration::from_secs(5), calls.clone().run_with(connection))
            .await
            .expect("run_with finished");
        assert_eq!(out, "ended");
        let mut finished = Vec::new();
        while let Some(i) = done_rx.recv().await {
            finished.push(i);
        }
        finished.sort_unstable();
        assert_eq!(finished, vec![0, 1, 3]);
        assert_eq!(calls.local.load(Ordering::Relaxed), 0);
    }
}
