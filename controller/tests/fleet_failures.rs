//! The `local` target when a gateway fails mid-rollout: one that answers
//! 500, one too slow to answer, one that goes down. Two real gateways on
//! 127.0.0.1; the second is reached through a proxy that injects the fault
//! into its admin API, so the controller meets exactly what a failing peer
//! sends. Each time the step fails, the rollback puts every gateway it can
//! reach back on the old version, the message names the gateway, and no
//! live request fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::{copy, gateway, root, traffic};
use controller::fleet::{LocalFleet, Target};
use controller::journal::{Journal, Phase, Strategy};
use controller::rollout::{ControlError, Controller, Paths, PromoteOptions};
use controller::suite::Thresholds;
use gateway::server::Gateway;
use switchyard_api::admin::{Slot, Weights};

/// What the proxy does to a matching admin call.
#[derive(Clone, Copy)]
enum Kind {
    /// Answers 500 with the admin API's error body, without forwarding.
    Status500,
    /// Waits this long before forwarding (dropped if the caller gives up).
    Slow(Duration),
    /// Forwards, answers, then stops listening: the gateway is down.
    DownAfter,
}

struct Fault {
    method: &'static str,
    path_ends: &'static str,
    kind: Kind,
    times: u32,
}

struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    faults: Mutex<Vec<Fault>>,
    down: tokio::sync::Notify,
    /// Calls that met a fault, for the assertions.
    injected: AtomicUsize,
}

async fn proxy_handle(
    State(st): State<Arc<ProxyState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let kind = {
        let mut faults = st.faults.lock().unwrap();
        faults
            .iter_mut()
            .find(|f| f.times > 0 && method == f.method && uri.path().ends_with(f.path_ends))
            .map(|f| {
                f.times -= 1;
                f.kind
            })
    };
    if kind.is_some() {
        st.injected.fetch_add(1, Ordering::Relaxed);
    }
    match kind {
        Some(Kind::Status500) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                [("content-type", "application/json")],
                r#"{"error":"internal error: the routing table could not be stored"}"#,
            )
                .into_response();
        }
        Some(Kind::Slow(d)) => tokio::time::sleep(d).await,
        _ => {}
    }
    let url = format!(
        "{}{}",
        st.upstream,
        uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut request = st.client.request(method, url).body(body);
    for name in ["authorization", "content-type"] {
        if let Some(v) = headers.get(name) {
            request = request.header(name, v);
        }
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = response.status();
    let bytes = response.bytes().await.unwrap_or_default();
    if matches!(kind, Some(Kind::DownAfter)) {
        st.down.notify_one();
    }
    (status, [("content-type", "application/json")], bytes).into_response()
}

/// A fault-injecting proxy in front of one gateway's admin API.
struct Proxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String, addr: &str) -> Proxy {
        let state = Arc::new(ProxyState {
            upstream,
            client: reqwest::Client::new(),
            faults: Mutex::new(Vec::new()),
            down: tokio::sync::Notify::new(),
            injected: AtomicUsize::new(0),
        });
        Proxy::serve(state, addr).await
    }

    async fn serve(state: Arc<ProxyState>, addr: &str) -> Proxy {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(proxy_handle)
            .with_state(state.clone());
        let down = state.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { down.down.notified().await })
                .await
                .unwrap();
        });
        Proxy { addr, state, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn inject(&self, method: &'static str, path_ends: &'static str, kind: Kind, times: u32) {
        self.state.faults.lock().unwrap().push(Fault {
            method,
            path_ends,
            kind,
            times,
        });
    }

    /// Back up on the same address, after a [`Kind::DownAfter`].
    async fn restart(self) -> Proxy {
        self.task.await.unwrap();
        Proxy::serve(self.state, &self.addr.to_string()).await
    }
}

struct World {
    _dir: tempfile::TempDir,
    gateways: Vec<Gateway>,
    proxy: Proxy,
    fleet: LocalFleet,
    paths: Paths,
}

/// Gateway A directly, gateway B through the proxy; both serve v3 of
/// `boosted` in blue.
async fn world(load_timeout: Duration) -> World {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    copy(&root().join("models"), &models);
    let suites = dir.path().join("smoke-tests");
    copy(&root().join("smoke-tests"), &suites);
    let gateways = vec![gateway(&models).await, gateway(&models).await];
    let proxy = Proxy::start(format!("http://{}", gateways[1].addrs.admin), "127.0.0.1:0").await;
    let admins = vec![format!("http://{}", gateways[0].addrs.admin), proxy.url()];
    let fleet = LocalFleet::connect(&admins, None, Duration::from_secs(2), load_timeout)
        .await
        .unwrap();
    let paths = Paths {
        models,
        suites,
        state: dir.path().join("state"),
    };
    World {
        _dir: dir,
        gateways,
        proxy,
        fleet,
        paths,
    }
}

fn canary(version: u64) -> PromoteOptions {
    PromoteOptions {
        version: Some(version),
        strategy: Strategy::Canary,
        steps: vec![50, 100],
        bake: Duration::ZERO,
        shadow_percent: 100,
        thresholds: Thresholds::default(),
        resume: false,
        queries: vec![],
    }
}

/// Asks each gateway directly (not through the proxy) for its route.
async fn direct_routes(w: &World) -> Vec<switchyard_api::admin::RouteView> {
    let mut out = Vec::new();
    for g in &w.gateways {
        let url = format!("http://{}/admin/models/boosted", g.addrs.admin);
        out.push(reqwest::get(url).await.unwrap().json().await.unwrap());
    }
    out
}

async fn assert_all_on_old(w: &World) {
    for (i, route) in direct_routes(w).await.into_iter().enumerate() {
        assert_eq!(route.live, Slot::Blue, "gateway {i}");
        assert_eq!(route.weights, Weights::all_to(Slot::Blue), "gateway {i}");
        assert_eq!(route.blue.unwrap().version, 3, "gateway {i}");
    }
}

fn http_urls(w: &World) -> Vec<String> {
    w.gateways
        .iter()
        .map(|g| format!("http://{}", g.addrs.http))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_answers_500_mid_rollout_is_named_and_all_roll_back() {
    let w = world(Duration::from_secs(60)).await;
    // The first shift (50%) fails on gateway B; A has already applied it.
    w.proxy.inject("PUT", "/weights", Kind::Status500, 1);
    let controller = Controller::new(&w.fleet, w.paths.clone(), |l| eprintln!("{l}"));
    let load = traffic(&http_urls(&w), 1);
    let err = controller.promote("boosted", &canary(2)).await.unwrap_err();
    let (ok, failed) = load.finish().await;
    assert!(matches!(err, ControlError::RolledBack(_)), "{err}");
    assert_eq!(err.exit_code(), 1);
    assert_eq!(
        err.to_string(),
        format!(
            "rolled back: gateway {}: 500 Internal Server Error: internal error: the routing table could not be stored",
            w.proxy.url()
        )
    );
    assert_eq!(w.proxy.state.injected.load(Ordering::Relaxed), 1);
    assert_all_on_old(&w).await;
    assert!(ok > 0);
    assert_eq!(failed, 0, "no live request failed");
    let last = Journal::new(&w.paths.state, "boosted")
        .current()
        .unwrap()
        .unwrap();
    assert_eq!(last.phase, Phase::RolledBack);
    for g in w.gateways {
        g.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_too_slow_to_load_is_named_and_all_roll_back() {
    // A load may take 1.5 s here; gateway B takes longer to answer.
    let w = world(Duration::from_millis(1500)).await;
    w.proxy
        .inject("PUT", "/slots/green", Kind::Slow(Duration::from_secs(5)), 1);
    let controller = Controller::new(&w.fleet, w.paths.clone(), |l| eprintln!("{l}"));
    let load = traffic(&http_urls(&w), 1);
    let t = std::time::Instant::now();
    let err = controller.promote("boosted", &canary(2)).await.unwrap_err();
    let (_, failed) = load.finish().await;
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the controller gave up in time"
    );
    assert_eq!(err.exit_code(), 1, "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "rolled back: gateway {}: did not answer in time",
            w.proxy.url()
        )
    );
    assert_all_on_old(&w).await;
    assert_eq!(failed, 0);
    for g in w.gateways {
        g.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_goes_down_mid_rollout_is_named_and_abort_finishes_the_rollback() {
    let w = world(Duration::from_secs(60)).await;
    // B applies the 50% step, answers, and is gone before the 100% step.
    w.proxy.inject("PUT", "/weights", Kind::DownAfter, 1);
    let controller = Controller::new(&w.fleet, w.paths.clone(), |l| eprintln!("{l}"));
    let load = traffic(&http_urls(&w), 1);
    let err = controller.promote("boosted", &canary(2)).await.unwrap_err();
    let (_, failed) = load.finish().await;
    // B cannot be rolled back while it is down: exit 3, named, with the
    // command that finishes the job.
    assert!(matches!(err, ControlError::Fleet(_)), "{err}");
    assert_eq!(err.exit_code(), 3);
    let text = err.to_string();
    assert!(
        text.starts_with("rollback of boosted is incomplete: gateway "),
        "{text}"
    );
    assert!(text.contains(&w.proxy.url()), "{text}");
    assert!(text.contains("unreachable"), "{text}");
    assert!(text.ends_with("rerun `controller abort boosted`"), "{text}");
    assert_eq!(failed, 0);
    // The gateway that is up is already back on the old version.
    let a = &direct_routes(&w).await[0];
    assert_eq!(a.weights, Weights::all_to(Slot::Blue));
    // B still holds the 50% step it applied before going down.
    let b = &direct_routes(&w).await[1];
    assert_eq!(
        b.weights,
        Weights {
            blue: 50,
            green: 50
        }
    );
    let last = Journal::new(&w.paths.state, "boosted")
        .current()
        .unwrap()
        .unwrap();
    assert_eq!(
        last.phase,
        Phase::RollingBack,
        "the log says what to finish"
    );

    // B is back: abort finishes the rollback everywhere.
    let World {
        _dir,
        gateways,
        proxy,
        fleet,
        paths,
    } = w;
    let proxy = proxy.restart().await;
    let w = World {
        _dir,
        gateways,
        proxy,
        fleet,
        paths,
    };
    let controller = Controller::new(&w.fleet, w.paths.clone(), |l| eprintln!("{l}"));
    let r = controller.abort("boosted").await.unwrap();
    assert_eq!(r.phase, Phase::Aborted);
    assert_all_on_old(&w).await;
    for route in w.fleet.routes("boosted").await.unwrap() {
        assert_eq!(route.weights, Weights::all_to(Slot::Blue));
    }
    for g in w.gateways {
        g.shutdown().await;
    }
}
