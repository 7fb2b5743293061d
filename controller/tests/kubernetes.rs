//! The `kubernetes` target against a local HTTP server that answers as the
//! Kubernetes API does: Deployment, Service, Pod and Status bodies as the
//! API server writes them (`tests/fixtures/k8s/`), `409 Conflict` when a
//! write carries a stale `resourceVersion`, and watches as newline-delimited
//! JSON events that end without the awaited event, expire with `410 Gone`
//! or an `ERROR` event, or stay silent until their `timeoutSeconds`.
//!
//! Every request the target makes is recorded, so the tests assert the
//! exact exchange: methods, paths, queries, content types and patch bodies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::copy;
use controller::fleet::kubeconfig::{Credentials, CredentialsError};
use controller::fleet::{FleetError, KubeError, KubeOptions, KubernetesTarget, Target};
use controller::journal::{Phase, Strategy};
use controller::rollout::{ControlError, Controller, Paths, PromoteOptions};
use controller::suite::Thresholds;
use serde_json::{Value, json};
use switchyard_api::admin::{Slot, Weights};

const NS: &str = "/apis/apps/v1/namespaces/switchyard/deployments";
const BLUE: &str = "/apis/apps/v1/namespaces/switchyard/deployments/switchyard-gateway-blue";
const GREEN: &str = "/apis/apps/v1/namespaces/switchyard/deployments/switchyard-gateway-green";
const SERVICE: &str = "/api/v1/namespaces/switchyard/services/switchyard-gateway";
const PODS: &str = "/api/v1/namespaces/switchyard/pods";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/k8s")
}

fn fixture(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join(name)).unwrap()).unwrap()
}

/// One request as the stand-in API server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: HashMap<String, String>,
    content_type: Option<String>,
    authorization: Option<String>,
    body: Option<Value>,
}

/// What the next watch on a Deployment does.
enum Watch {
    /// Applies each status to the object and sends it as a MODIFIED
    /// event, then closes the stream (done or not).
    Statuses(Vec<Value>),
    /// Answers 410 Gone before any event.
    Gone,
    /// Sends an ERROR event (410 Expired) and closes.
    ErrorExpired,
}

#[derive(Default)]
struct Fake {
    objects: HashMap<String, Value>,
    seen: Vec<Seen>,
    /// Writes by someone else that land just before the target's next
    /// PATCH of that path (so the target's resourceVersion is stale).
    interfere: HashMap<String, u32>,
    forbidden: Vec<String>,
    watches: VecDeque<Watch>,
    rv: u64,
}

type Shared = Arc<Mutex<Fake>>;

impl Fake {
    fn bump(&mut self, path: &str, spec_changed: bool) {
        self.rv += 1;
        let rv = self.rv.to_string();
        let object = self.objects.get_mut(path).unwrap();
        object["metadata"]["resourceVersion"] = json!(rv);
        if spec_changed {
            let generation = object["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            object["metadata"]["generation"] = json!(generation);
        }
    }
}

fn status_response(code: u16, name: &str) -> Response {
    (
        StatusCode::from_u16(code).unwrap(),
        [("content-type", "application/json")],
        fixture(name).to_string(),
    )
        .into_response()
}

fn json_response(v: &Value) -> Response {
    ([("content-type", "application/json")], v.to_string()).into_response()
}

/// Strategic merge as the API server applies it to the fields the target
/// writes: replicas, and `containers`/`env` merged by name.
fn strategic_merge(object: &mut Value, patch: &Value) {
    if let Some(r) = patch["spec"].get("replicas") {
        object["spec"]["replicas"] = r.clone();
    }
    let Some(containers) = patch["spec"]["template"]["spec"]["containers"].as_array() else {
        return;
    };
    for pc in containers {
        let list = object["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap();
        let c = list.iter_mut().find(|c| c["name"] == pc["name"]).unwrap();
        for pe in pc["env"].as_array().unwrap() {
            let env = c["env"].as_array_mut().unwrap();
            match env.iter_mut().find(|e| e["name"] == pe["name"]) {
                Some(e) => *e = pe.clone(),
                None => env.push(pe.clone()),
            }
        }
    }
}

/// RFC 7386 merge.
fn merge(object: &mut Value, patch: &Value) {
    match (object, patch) {
        (Value::Object(o), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    o.remove(k);
                } else {
                    merge(o.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (o, p) => *o = p.clone(),
    }
}

async fn handle(
    State(fake): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query: HashMap<String, String> = uri
        .query()
        .map(|q| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), decode(v)))
                .collect()
        })
        .unwrap_or_default();
    let path = uri.path().to_owned();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let seen = Seen {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        content_type: header("content-type"),
        authorization: header("authorization"),
        body: serde_json::from_slice(&body).ok(),
    };
    let mut f = fake.lock().unwrap();
    f.seen.push(seen.clone());
    match (method.as_str(), path.as_str()) {
        ("GET", NS) if query.get("watch").map(String::as_str) == Some("true") => {
            let name = query["fieldSelector"]
                .strip_prefix("metadata.name=")
                .unwrap()
                .to_owned();
            let object = format!("{NS}/{name}");
            let timeout: u64 = query["timeoutSeconds"].parse().unwrap();
            match f.watches.pop_front() {
                Some(Watch::Gone) => status_response(410, "status-gone.json"),
                Some(Watch::ErrorExpired) => {
                    let event = json!({"type": "ERROR", "object": fixture("status-gone.json")});
                    stream(vec![event], None)
                }
                Some(Watch::Statuses(statuses)) => {
                    let mut events = Vec::new();
                    for s in statuses {
                        f.objects.get_mut(&object).unwrap()["status"] = s;
                        f.bump(&object, false);
                        events.push(json!({"type": "MODIFIED", "object": f.objects[&object]}));
                    }
                    stream(events, None)
                }
                // Nothing happens: the server closes the watch at its
                // timeoutSeconds.
                None => stream(vec![], Some(Duration::from_secs(timeout))),
            }
        }
        ("GET", PODS) => json_response(&fixture("pods-green.json")),
        ("GET", p) => match f.objects.get(p) {
            Some(o) => json_response(o),
            None => status_response(404, "status-notfound.json"),
        },
        ("PATCH", p) if p.ends_with("/scale") => {
            let object = p.trim_end_matches("/scale").to_owned();
            let replicas = seen.body.as_ref().unwrap()["spec"]["replicas"].clone();
            f.objects.get_mut(&object).unwrap()["spec"]["replicas"] = replicas.clone();
            f.bump(&object, true);
            let name = f.objects[&object]["metadata"]["name"].clone();
            json_response(&json!({
                "kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": name, "namespace": "switchyard", "resourceVersion": f.rv.to_string()},
                "spec": {"replicas": replicas},
                "status": {"replicas": 3, "selector": "app.kubernetes.io/name=switchyard-gateway"},
            }))
        }
        ("PATCH", p) => {
            if f.forbidden.iter().any(|x| x == p) {
                return status_response(403, "status-forbidden.json");
            }
            if !f.objects.contains_key(p) {
                return status_response(404, "status-notfound.json");
            }
            let p = p.to_owned();
            if let Some(n) = f.interfere.get_mut(&p).filter(|n| **n > 0) {
                *n -= 1;
                f.bump(&p, false);
            }
            let patch = seen.body.clone().unwrap();
            let current = f.objects[&p]["metadata"]["resourceVersion"].clone();
            if let Some(rv) = patch["metadata"].get("resourceVersion")
                && *rv != current
            {
                let name = if p.contains("/services/") {
                    "status-conflict-service.json"
                } else {
                    "status-conflict-deployment.json"
                };
                return status_response(409, name);
            }
            let before = f.objects[&p]["spec"].clone();
            let object = f.objects.get_mut(&p).unwrap();
            let mut patch = patch;
            if let Some(m) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            match seen.content_type.as_deref() {
                Some("application/strategic-merge-patch+json") => {
                    strategic_merge(object, &patch);
                    merge(&mut object["metadata"], &patch["metadata"]);
                }
                Some("application/merge-patch+json") => merge(object, &patch),
                other => panic!("unexpected patch content type {other:?}"),
            }
            let changed = f.objects[&p]["spec"] != before;
            f.bump(&p, changed);
            json_response(&f.objects[&p])
        }
        _ => status_response(404, "status-notfound.json"),
    }
}

/// A watch body: each event on its own line, then either the end or a
/// silence of `hold` (the server's timeout) before the end.
fn stream(events: Vec<Value>, hold: Option<Duration>) -> Response {
    let lines: Vec<Result<Bytes, std::io::Error>> = events
        .into_iter()
        .map(|e| Ok(Bytes::from(format!("{e}\n"))))
        .collect();
    let body = futures::StreamExt::chain(
        futures::stream::iter(lines),
        futures::StreamExt::filter_map(
            futures::stream::once(async move {
                if let Some(d) = hold {
                    tokio::time::sleep(d).await;
                }
            }),
            |()| async { None::<Result<Bytes, std::io::Error>> },
        ),
    );
    (
        [("content-type", "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}

fn decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

struct Api {
    url: String,
    state: Shared,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Api {
    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// The writes, without the rollout annotations (best-effort extras).
    fn writes(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == "PATCH")
            .filter(|s| {
                s.body
                    .as_ref()
                    .is_none_or(|b| b["metadata"].get("annotations").is_none())
            })
            .collect()
    }

    fn object(&self, path: &str) -> Value {
        self.state.lock().unwrap().objects[path].clone()
    }

    fn with(&self, f: impl FnOnce(&mut Fake)) {
        f(&mut self.state.lock().unwrap());
    }

    async fn target(&self, opts: KubeOptions) -> KubernetesTarget {
        let creds =
            Credentials::from_kubeconfig(std::slice::from_ref(&self.kubeconfig), None).unwrap();
        KubernetesTarget::connect(creds, opts).await.unwrap()
    }
}

async fn api() -> Api {
    let mut fake = Fake {
        rv: 49_000,
        ..Fake::default()
    };
    fake.objects
        .insert(BLUE.into(), fixture("deployment-blue.json"));
    fake.objects
        .insert(GREEN.into(), fixture("deployment-green.json"));
    fake.objects
        .insert(SERVICE.into(), fixture("service-live.json"));
    let state = Arc::new(Mutex::new(fake));
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixtures().join("kubeconfig.yaml"))
        .unwrap()
        .replace("SERVER", &url);
    let kubeconfig = dir.path().join("config");
    std::fs::write(&kubeconfig, text).unwrap();
    std::fs::copy(fixtures().join("ca.crt"), dir.path().join("ca.crt")).unwrap();
    Api {
        url,
        state,
        _dir: dir,
        kubeconfig,
    }
}

fn quick() -> KubeOptions {
    KubeOptions {
        ready_timeout: Duration::from_secs(20),
        scale_down_delay: Duration::ZERO,
        request_timeout: Duration::from_secs(5),
        watch_timeout: Duration::from_secs(5),
        ..KubeOptions::default()
    }
}

/// A Deployment status part way through, and one rolled out.
fn rolling(generation: i64, updated: i32, available: i32, total: i32) -> Value {
    json!({
        "observedGeneration": generation, "replicas": total, "updatedReplicas": updated,
        "readyReplicas": available, "availableReplicas": available,
        "unavailableReplicas": total - available,
        "conditions": [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
            "message": "ReplicaSet \"switchyard-gateway-green-7f9c6b5d4\" is progressing."}],
    })
}

fn rolled(generation: i64, n: i32) -> Value {
    json!({
        "observedGeneration": generation, "replicas": n, "updatedReplicas": n,
        "readyReplicas": n, "availableReplicas": n,
        "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
            "message": "ReplicaSet \"switchyard-gateway-green-7f9c6b5d4\" has successfully progressed."}],
    })
}

fn route_of(seen: &Seen) -> (&str, &str) {
    (seen.method.as_str(), seen.path.as_str())
}

#[tokio::test]
async fn load_patches_green_and_waits_through_closed_and_expired_watches() {
    let api = api().await;
    let target = api.target(quick()).await;
    // Green's generation goes 2 -> 3 with the patch.
    api.with(|f| {
        f.watches.extend([
            // The server ends the watch before green is ready.
            Watch::Statuses(vec![rolling(3, 1, 0, 1)]),
            // The resourceVersion read is already compacted away.
            Watch::Gone,
            // Expired while watching.
            Watch::ErrorExpired,
            Watch::Statuses(vec![rolling(3, 3, 2, 3), rolled(3, 3)]),
        ]);
    });
    let before = api.seen().len();
    target.load("boosted", Slot::Green, 3).await.unwrap();
    let seen: Vec<Seen> = api.seen().split_off(before);
    let calls: Vec<(&str, &str)> = seen.iter().map(route_of).collect();
    assert_eq!(
        calls,
        vec![
            ("GET", SERVICE),
            ("GET", BLUE),
            ("GET", GREEN),
            ("PATCH", GREEN),
            ("GET", GREEN),
            ("GET", NS),
            ("GET", GREEN),
            ("GET", NS),
            ("GET", GREEN),
            ("GET", NS),
            ("GET", GREEN),
            ("GET", NS),
            ("GET", GREEN),
            ("GET", PODS),
        ],
        "{seen:#?}"
    );
    // The patch: strategic merge, guarded by the resourceVersion read,
    // green at blue's replicas, blue's pins with boosted moved to 3.
    let patch = &seen[3];
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    assert_eq!(
        patch.body.as_ref().unwrap(),
        &json!({
            "metadata": {"resourceVersion": "48152"},
            "spec": {
                "replicas": 3,
                "template": {"spec": {"containers": [{"name": "gateway", "env": [
                    {"name": "SWITCHYARD_PINNED_VERSIONS", "value": "boosted=3,linear=1"}
                ]}]}},
            },
        })
    );
    // Each watch starts from the resourceVersion of the read just before it.
    let watches: Vec<&Seen> = seen.iter().filter(|s| s.path == NS).collect();
    for w in &watches {
        assert_eq!(w.query["watch"], "true");
        assert_eq!(
            w.query["fieldSelector"],
            "metadata.name=switchyard-gateway-green"
        );
        assert_eq!(w.query["allowWatchBookmarks"], "true");
        assert_eq!(w.query["timeoutSeconds"], "5");
    }
    assert_eq!(watches[0].query["resourceVersion"], "49001");
    assert_eq!(watches[1].query["resourceVersion"], "49002");
    // The token of the kubeconfig's user on every call.
    assert!(seen.iter().all(|s| s.authorization.as_deref()
        == Some("Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.test-token")));
    // Green now is what the patch said, and the pods were listed by its
    // selector for analysis: the two ready ones.
    let green = api.object(GREEN);
    assert_eq!(green["spec"]["replicas"], 3);
    assert_eq!(
        seen.last().unwrap().query["labelSelector"],
        "app.kubernetes.io/name=switchyard-gateway,switchyard.io/colour=green"
    );
    assert_eq!(
        target.metrics_urls(),
        vec![
            "http://10.244.1.17:8002/metrics",
            "http://10.244.2.23:8002/metrics"
        ]
    );
    // Loading the same again changes nothing: no patch.
    let before = api.seen().len();
    target.load("boosted", Slot::Green, 3).await.unwrap();
    assert!(
        api.seen()[before..].iter().all(|s| s.method == "GET"),
        "an idempotent load writes nothing"
    );
}

#[tokio::test]
async fn the_selector_switch_and_the_delayed_scale_down() {
    let api = api().await;
    let target = api.target(quick()).await;
    api.with(|f| {
        let green = f.objects.get_mut(GREEN).unwrap();
        green["spec"]["replicas"] = json!(3);
        green["status"] = rolled(2, 3);
    });
    target
        .set_weights("boosted", Weights::all_to(Slot::Green))
        .await
        .unwrap();
    let writes = api.writes();
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert_eq!(route_of(&writes[0]), ("PATCH", SERVICE));
    assert_eq!(
        writes[0].content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(
        writes[0].body.as_ref().unwrap(),
        &json!({"metadata": {"resourceVersion": "48120"},
                "spec": {"selector": {"switchyard.io/colour": "green"}}})
    );
    let service = api.object(SERVICE);
    assert_eq!(
        service["spec"]["selector"],
        json!({"app.kubernetes.io/name": "switchyard-gateway", "switchyard.io/colour": "green"})
    );
    let route = &target.routes("boosted").await.unwrap()[0];
    assert_eq!(route.live, Slot::Green);
    assert_eq!(route.weights, Weights::all_to(Slot::Green));
    assert_eq!(route.blue.as_ref().unwrap().version, 2);

    // After the delay, blue goes to 0 through the scale subresource.
    let slow = KubernetesTarget::connect(
        Credentials::from_kubeconfig(std::slice::from_ref(&api.kubeconfig), None).unwrap(),
        KubeOptions {
            scale_down_delay: Duration::from_millis(300),
            ..quick()
        },
    )
    .await
    .unwrap();
    let t = std::time::Instant::now();
    slow.promoted("boosted", Slot::Green).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
    let scale = api.writes().pop().unwrap();
    assert_eq!(
        route_of(&scale),
        ("PATCH", format!("{BLUE}/scale").as_str())
    );
    assert_eq!(
        scale.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(scale.body.unwrap(), json!({"spec": {"replicas": 0}}));
    assert_eq!(api.object(BLUE)["spec"]["replicas"], 0);

    // Rolling back to a colour scaled to 0: it is scaled up to green's
    // size and waited for before the selector moves.
    api.with(|f| {
        f.watches
            .push_back(Watch::Statuses(vec![rolling(6, 3, 1, 3), rolled(6, 3)]));
    });
    let before = api.writes().len();
    target
        .set_weights("boosted", Weights::all_to(Slot::Blue))
        .await
        .unwrap();
    let writes: Vec<Seen> = api.writes().split_off(before);
    let calls: Vec<(&str, &str)> = writes.iter().map(route_of).collect();
    let blue_scale = format!("{BLUE}/scale");
    assert_eq!(
        calls,
        vec![("PATCH", blue_scale.as_str()), ("PATCH", SERVICE)]
    );
    assert_eq!(writes[0].body, Some(json!({"spec": {"replicas": 3}})));
    assert_eq!(
        api.object(SERVICE)["spec"]["selector"]["switchyard.io/colour"],
        "blue"
    );
}

#[tokio::test]
async fn conflicts_are_retried_from_a_fresh_read_and_then_named() {
    let api = api().await;
    let target = api.target(quick()).await;
    api.with(|f| {
        f.interfere.insert(GREEN.into(), 2);
        f.interfere.insert(SERVICE.into(), 1);
        f.watches.push_back(Watch::Statuses(vec![rolled(3, 3)]));
    });
    target.load("boosted", Slot::Green, 3).await.unwrap();
    let patches: Vec<Seen> = api
        .writes()
        .into_iter()
        .filter(|s| s.path == GREEN)
        .collect();
    assert_eq!(patches.len(), 3, "two conflicts, then through");
    // Each try carries the resourceVersion of the read just before it.
    let rvs: Vec<&Value> = patches
        .iter()
        .map(|p| &p.body.as_ref().unwrap()["metadata"]["resourceVersion"])
        .collect();
    assert_eq!(rvs, vec!["48152", "49001", "49002"]);
    assert_eq!(
        api.object(GREEN)["spec"]["template"]["spec"]["containers"][0]["env"][3]["value"],
        "boosted=3,linear=1"
    );
    target
        .set_weights("boosted", Weights::all_to(Slot::Green))
        .await
        .unwrap();
    let selector_patches = api.writes().iter().filter(|s| s.path == SERVICE).count();
    assert_eq!(selector_patches, 2);

    // Someone who never stops writing: a clear error after five tries.
    api.with(|f| {
        f.interfere.insert(SERVICE.into(), 100);
    });
    let err = target
        .set_weights("boosted", Weights::all_to(Slot::Blue))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        FleetError::Kubernetes(KubeError::Conflict { attempts: 5, .. })
    ));
    assert_eq!(
        err.to_string(),
        "Service switchyard/switchyard-gateway: changed by someone else 5 times in a row while being updated (409 Conflict each time); try again when whatever else edits it is done"
    );
    assert_eq!(
        api.object(SERVICE)["spec"]["selector"]["switchyard.io/colour"],
        "green",
        "nothing was written over the other writer"
    );
}

#[tokio::test]
async fn a_colour_that_never_gets_ready_times_out_with_its_name_and_state() {
    let api = api().await;
    let target = api
        .target(KubeOptions {
            ready_timeout: Duration::from_millis(2500),
            watch_timeout: Duration::from_secs(1),
            ..quick()
        })
        .await;
    api.with(|f| {
        f.watches
            .push_back(Watch::Statuses(vec![rolling(3, 3, 1, 3)]));
    });
    let t = std::time::Instant::now();
    let err = target.load("boosted", Slot::Green, 3).await.unwrap_err();
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(2500) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with("Deployment switchyard/switchyard-gateway-green: not rolled out after"),
        "{text}"
    );
    assert!(
        text.ends_with(": 1 of 3 updated replicas available"),
        "{text}"
    );
    // The silent watches were each closed by the server at timeoutSeconds
    // and followed by a fresh read.
    let watches = api.seen().iter().filter(|s| s.path == NS).count();
    assert!(watches >= 3, "{watches} watches");
    assert!(
        api.writes().iter().all(|s| s.path != SERVICE),
        "traffic never moved"
    );
}

#[tokio::test]
async fn kubernetes_giving_up_and_refusals_are_reported_as_such() {
    let api = api().await;
    let target = api.target(quick()).await;
    api.with(|f| {
        f.watches.push_back(Watch::Statuses(vec![json!({
            "observedGeneration": 3, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 0,
            "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                "message": "ReplicaSet \"switchyard-gateway-green-7f9c6b5d4\" has timed out progressing."}],
        })]));
    });
    let err = target.load("boosted", Slot::Green, 3).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "Deployment switchyard/switchyard-gateway-green: Kubernetes gave up on the rollout (ProgressDeadlineExceeded): ReplicaSet \"switchyard-gateway-green-7f9c6b5d4\" has timed out progressing."
    );

    // Loading into the live colour is refused before any write.
    let before = api.writes().len();
    let err = target.load("boosted", Slot::Blue, 3).await.unwrap_err();
    assert!(err.to_string().contains("is the live colour"), "{err}");
    assert_eq!(api.writes().len(), before);

    // Canary weights and shadowing cannot be done with a selector.
    let err = target
        .set_weights(
            "boosted",
            Weights {
                blue: 90,
                green: 10,
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--strategy blue-green"), "{err}");
    target.set_shadow("boosted", 0).await.unwrap();
    assert!(target.set_shadow("boosted", 50).await.is_err());

    // A Role without `patch` on Services: the API's message and the fix.
    api.with(|f| {
        f.forbidden.push(SERVICE.into());
        let green = f.objects.get_mut(GREEN).unwrap();
        green["status"] = rolled(3, 3);
    });
    let err = target
        .set_weights("boosted", Weights::all_to(Slot::Green))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Service switchyard/switchyard-gateway: the API server answered 403 Forbidden: services \"switchyard-gateway\" is forbidden: User \"system:serviceaccount:switchyard:switchyard-controller\" cannot patch resource \"services\" in API group \"\" in the namespace \"switchyard\" (the controller's Role does not allow it: apply k8s/base/controller-rbac.yaml and run as the switchyard-controller ServiceAccount)"
    );

    // A Deployment that is not there, at connect.
    api.with(|f| {
        f.objects.remove(GREEN);
    });
    let creds = Credentials::from_kubeconfig(std::slice::from_ref(&api.kubeconfig), None).unwrap();
    let err = KubernetesTarget::connect(creds, quick()).await.unwrap_err();
    assert!(
        err.to_string().starts_with(
            "Deployment switchyard/switchyard-gateway-green: the API server answered 404 NotFound: deployments.apps \"switchyard-gateway-green\" not found"
        ),
        "{err}"
    );
}

#[test]
fn credentials_come_from_a_kubeconfig_or_the_pod() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        std::fs::read_to_string(fixtures().join("kubeconfig.yaml"))
            .unwrap()
            .replace("SERVER", "https://203.0.113.10:6443/"),
    )
    .unwrap();
    std::fs::copy(fixtures().join("ca.crt"), dir.path().join("ca.crt")).unwrap();
    let c = Credentials::from_kubeconfig(std::slice::from_ref(&config), None).unwrap();
    assert_eq!(c.server, "https://203.0.113.10:6443");
    assert_eq!(c.namespace.as_deref(), Some("switchyard"));
    // The relative CA file is found beside the kubeconfig and accepted.
    c.client(Duration::from_secs(1)).unwrap();
    assert!(
        !format!("{c:?}").contains("test-token"),
        "no secret in logs"
    );

    // A context whose user runs an exec plugin is refused with the fix.
    let err = Credentials::from_kubeconfig(std::slice::from_ref(&config), Some("eks")).unwrap_err();
    assert!(matches!(err, CredentialsError::Kubeconfig { .. }));
    assert!(
        err.to_string()
            .contains("user \"aws\": uses an exec plugin"),
        "{err}"
    );
    let err =
        Credentials::from_kubeconfig(std::slice::from_ref(&config), Some("nope")).unwrap_err();
    assert!(
        err.to_string().ends_with("context \"nope\" is not defined"),
        "{err}"
    );

    // KUBECONFIG-style lists: the first file's current-context wins and
    // a missing file is skipped.
    let extra = dir.path().join("extra");
    std::fs::write(
        &extra,
        "current-context: eks\ncontexts: []\nclusters: []\nusers: []\n",
    )
    .unwrap();
    let c =
        Credentials::from_kubeconfig(&[dir.path().join("missing"), config.clone(), extra], None)
            .unwrap();
    assert_eq!(c.server, "https://203.0.113.10:6443");

    // In a pod: the service account's token, CA and namespace.
    let sa = tempfile::tempdir().unwrap();
    std::fs::write(sa.path().join("token"), "pod-token\n").unwrap();
    std::fs::copy(fixtures().join("ca.crt"), sa.path().join("ca.crt")).unwrap();
    std::fs::write(sa.path().join("namespace"), "switchyard").unwrap();
    let c = Credentials::in_cluster("10.96.0.1", "443", sa.path()).unwrap();
    assert_eq!(c.server, "https://10.96.0.1:443");
    assert_eq!(c.namespace.as_deref(), Some("switchyard"));
    c.client(Duration::from_secs(1)).unwrap();
    let c6 = Credentials::in_cluster("fd00::1", "443", sa.path()).unwrap();
    assert_eq!(c6.server, "https://[fd00::1]:443");
    // Without a mounted token: named.
    std::fs::remove_file(sa.path().join("token")).unwrap();
    let err = Credentials::in_cluster("10.96.0.1", "443", sa.path()).unwrap_err();
    assert!(err.to_string().contains("token"), "{err}");
}

#[tokio::test]
async fn in_cluster_tokens_are_reread_on_every_call() {
    let api = api().await;
    // In-cluster credentials point at https; aim them at the stand-in by
    // writing the same files into a kubeconfig that names a tokenFile.
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "first\n").unwrap();
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        format!(
            "current-context: c\ncontexts: [{{name: c, context: {{cluster: k, user: u, namespace: switchyard}}}}]\nclusters: [{{name: k, cluster: {{server: '{}'}}}}]\nusers: [{{name: u, user: {{tokenFile: token}}}}]\n",
            api.url
        ),
    )
    .unwrap();
    let creds = Credentials::from_kubeconfig(std::slice::from_ref(&config), None).unwrap();
    let target = KubernetesTarget::connect(creds, quick()).await.unwrap();
    std::fs::write(&token, "rotated\n").unwrap();
    target.routes("boosted").await.unwrap();
    let auth: Vec<String> = api
        .seen()
        .iter()
        .filter_map(|s| s.authorization.clone())
        .collect();
    assert_eq!(auth.first().map(String::as_str), Some("Bearer first"));
    assert_eq!(auth.last().map(String::as_str), Some("Bearer rotated"));
}

fn blue_green(version: u64) -> PromoteOptions {
    PromoteOptions {
        version: Some(version),
        strategy: Strategy::BlueGreen,
        steps: vec![],
        bake: Duration::ZERO,
        shadow_percent: 100,
        thresholds: Thresholds::default(),
        resume: false,
        queries: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_promote_flow_runs_unchanged_on_kubernetes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths {
        models: dir.path().join("models"),
        suites: dir.path().join("smoke-tests"),
        state: dir.path().join("state"),
    };
    copy(&root.join("models"), &paths.models);
    copy(&root.join("smoke-tests"), &paths.suites);
    // A fresh gateway serves the newest version (3) from its blue slot,
    // as a green pod pinned to 3 would.
    let green = common::gateway(&paths.models).await;
    let api = api().await;
    let target = api
        .target(KubeOptions {
            green_url: Some(format!("http://{}", green.addrs.http)),
            blue_url: Some(format!("http://{}", green.addrs.http)),
            ..quick()
        })
        .await;
    api.with(|f| f.watches.push_back(Watch::Statuses(vec![rolled(3, 3)])));
    let controller = Controller::new(&target, paths.clone(), |l| eprintln!("{l}"));
    let r = controller.promote("boosted", &blue_green(3)).await.unwrap();
    assert_eq!(r.phase, Phase::Promoted);
    assert_eq!(
        (r.from_version, r.to_version, r.old_slot),
        (Some(2), 3, Slot::Blue)
    );
    let writes: Vec<(String, String)> = api
        .writes()
        .iter()
        .map(|s| (s.method.clone(), s.path.clone()))
        .collect();
    let blue_scale = format!("{BLUE}/scale");
    assert_eq!(
        writes,
        vec![
            ("PATCH".to_owned(), GREEN.to_owned()),
            ("PATCH".to_owned(), SERVICE.to_owned()),
            ("PATCH".to_owned(), blue_scale),
        ]
    );
    // Every transition is also on the live Service, for `kubectl describe`.
    let annotation: Value = serde_json::from_str(
        api.object(SERVICE)["metadata"]["annotations"]["switchyard.io/rollout.boosted"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(annotation["phase"], "promoted");
    assert_eq!(annotation["to_version"], 3);

    // Back to 2 on blue, whose pods (the same gateway) serve 3: the smoke
    // tests fail, the rollout is rolled back and the selector never moved.
    // Blue's generation: 4, 5 when scaled to 0, 6 when brought back.
    api.with(|f| f.watches.push_back(Watch::Statuses(vec![rolled(6, 3)])));
    let before = api.writes().len();
    let err = controller
        .promote("boosted", &blue_green(2))
        .await
        .unwrap_err();
    assert!(matches!(err, ControlError::RolledBack(_)), "{err}");
    assert!(err.to_string().contains("smoke tests failed"), "{err}");
    assert!(
        api.writes()[before..].iter().all(|s| s.path != SERVICE),
        "the live Service never moved"
    );
    assert_eq!(
        api.object(SERVICE)["spec"]["selector"]["switchyard.io/colour"],
        "green"
    );
    green.shutdown().await;
}
