//! The `kubernetes` target: the promote flow on the blue and green gateway
//! Deployments of `k8s/`, through the Kubernetes API.
//!
//! | flow step | what this target does |
//! |---|---|
//! | load `v` into the standby slot | strategic-merge-patch the standby colour's Deployment: its gateway container's `SWITCHYARD_PINNED_VERSIONS` becomes the live colour's pins with this model at `v`, and its replicas the live colour's; then wait (watch, re-read on every close, `410 Gone` or `ERROR`, under one deadline) until every replica of the new revision is available |
//! | smoke tests | through the standby colour's own Service (`<name>-<colour>`); a gateway pod serves what it started with from its *blue* slot, so `x-slot: blue` ([`Target::gateway_slot`]) |
//! | weights 100 to a colour | make sure that colour is up (scale it from 0 and wait if needed), then merge-patch the live Service's selector to it |
//! | canary weights, shadow | refused: a Service selector moves all traffic at once |
//! | promoted | after `--scale-down-delay`, scale the old colour to 0 through `deployments/scale`, unless the live Service has moved meanwhile |
//! | rollback | the selector back (the old colour is scaled up first if it was scaled down) |
//!
//! Every write carries the `resourceVersion` it was computed from; a
//! `409 Conflict` means someone else changed the object, so it is re-read
//! and the change recomputed (a few times, then a clear error).
//!
//! A colour is a whole Deployment: switching it moves every model the
//! gateways serve, which is why the standby colour is given the live
//! colour's pins for every other model.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard_api::admin::{RolloutAnnotation, RouteView, Slot, SlotView, VersionState, Weights};

use super::kube_api::{Deployment, KubeApi, KubeError, PatchType, PodList, Service, Status};
use super::kubeconfig::Credentials;
use super::{FleetError, Target};

/// The pod label that says which colour a gateway pod belongs to.
pub const COLOUR_LABEL: &str = "switchyard.io/colour";
/// The gateway's environment variable that pins the version each model
/// serves at start: `model=version,model=version`.
pub const PIN_ENV: &str = "SWITCHYARD_PINNED_VERSIONS";
/// How often a write is recomputed after a `409 Conflict`.
const CONFLICT_ATTEMPTS: u32 = 5;

/// Settings of the `kubernetes` target.
#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// The namespace; `None` for the credentials' own (else `switchyard`).
    pub namespace: Option<String>,
    /// Base name: Deployments `<name>-blue`/`-green`, live Service `<name>`,
    /// colour Services `<name>-blue`/`-green`.
    pub name: String,
    /// The gateway container in the pod template.
    pub container: String,
    /// How long a colour may take to roll out.
    pub ready_timeout: Duration,
    /// How long the old colour stays up after a promotion.
    pub scale_down_delay: Duration,
    /// Deadline of each API call but watches.
    pub request_timeout: Duration,
    /// How long the API server keeps one watch open (`timeoutSeconds`).
    pub watch_timeout: Duration,
    /// Base URL that reaches the blue colour's pods; default its Service's
    /// cluster DNS name.
    pub blue_url: Option<String>,
    /// The same for green.
    pub green_url: Option<String>,
    /// The gateway's HTTP port (the colour Services').
    pub http_port: u16,
    /// The gateway's metrics port (on each pod).
    pub metrics_port: u16,
}

impl Default for KubeOptions {
    fn default() -> Self {
        KubeOptions {
            namespace: None,
            name: "switchyard-gateway".into(),
            container: "gateway".into(),
            ready_timeout: Duration::from_secs(600),
            scale_down_delay: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            watch_timeout: Duration::from_secs(60),
            blue_url: None,
            green_url: None,
            http_port: 8000,
            metrics_port: 8002,
        }
    }
}

/// Blue and green Deployments behind a Service, driven through the API.
#[derive(Debug)]
pub struct KubernetesTarget {
    api: KubeApi,
    opts: KubeOptions,
    namespace: String,
    /// Metrics URLs of the ready pods of the colour last brought up or
    /// switched to; read by analysis between steps.
    metrics: Mutex<Vec<String>>,
}

/// Where a Deployment's rollout stands.
enum Progress {
    Done,
    Waiting(String),
    Failed(String),
}

impl KubernetesTarget {
    /// Connects and checks that both Deployments and the live Service exist
    /// and that the Service selects a colour.
    ///
    /// # Errors
    /// [`FleetError::Kubernetes`] naming the object that is missing or refused.
    pub async fn connect(creds: Credentials, opts: KubeOptions) -> Result<Self, FleetError> {
        let namespace = opts
            .namespace
            .clone()
            .or_else(|| creds.namespace.clone())
            .unwrap_or_else(|| "switchyard".into());
        let api = KubeApi::new(creds, opts.request_timeout).map_err(KubeError::from)?;
        let target = KubernetesTarget {
            api,
            opts,
            namespace,
            metrics: Mutex::new(Vec::new()),
        };
        let live = target.live_colour().await?;
        for colour in [Slot::Blue, Slot::Green] {
            target.deployment(colour).await?;
        }
        tracing::info!(namespace = %target.namespace, live = %live, server = %target.api.credentials().server, "kubernetes target ready");
        Ok(target)
    }

    fn deployment_name(&self, colour: Slot) -> String {
        format!("{}-{colour}", self.opts.name)
    }

    fn deployment_path(&self, colour: Slot) -> String {
        format!(
            "/apis/apps/v1/namespaces/{}/deployments/{}",
            self.namespace,
            self.deployment_name(colour)
        )
    }

    fn deployment_what(&self, colour: Slot) -> String {
        format!(
            "Deployment {}/{}",
            self.namespace,
            self.deployment_name(colour)
        )
    }

    fn service_path(&self) -> String {
        format!(
            "/api/v1/namespaces/{}/services/{}",
            self.namespace, self.opts.name
        )
    }

    fn service_what(&self) -> String {
        format!("Service {}/{}", self.namespace, self.opts.name)
    }

    /// The base URL that reaches one colour's pods (its own Service).
    pub fn colour_url(&self, colour: Slot) -> String {
        let given = match colour {
            Slot::Blue => self.opts.blue_url.as_ref(),
            Slot::Green => self.opts.green_url.as_ref(),
        };
        given.map_or_else(
            || {
                format!(
                    "http://{}-{colour}.{}.svc:{}",
                    self.opts.name, self.namespace, self.opts.http_port
                )
            },
            |u| u.trim_end_matches('/').to_owned(),
        )
    }

    async fn deployment(&self, colour: Slot) -> Result<Deployment, KubeError> {
        self.api
            .get(
                &self.deployment_what(colour),
                "a Deployment",
                &self.deployment_path(colour),
            )
            .await
    }

    async fn service(&self) -> Result<Service, KubeError> {
        self.api
            .get(&self.service_what(), "a Service", &self.service_path())
            .await
    }

    /// The colour the live Service selects.
    ///
    /// # Errors
    /// [`KubeError`], or a selector that names no colour.
    pub async fn live_colour(&self) -> Result<Slot, KubeError> {
        let service = self.service().await?;
        colour_of(&service).ok_or_else(|| KubeError::Failed {
            what: self.service_what(),
            message: format!(
                "its selector {:?} names no colour: it needs {COLOUR_LABEL}: blue or green",
                service.spec.selector
            ),
        })
    }

    /// The pins of a Deployment's gateway container.
    fn pins(&self, d: &Deployment, colour: Slot) -> Result<BTreeMap<String, u64>, KubeError> {
        let container = d
            .spec
            .template
            .spec
            .containers
            .iter()
            .find(|c| c.name == self.opts.container)
            .ok_or_else(|| KubeError::Failed {
                what: self.deployment_what(colour),
                message: format!(
                    "has no container named {:?} (--gateway-container)",
                    self.opts.container
                ),
            })?;
        let text = container
            .env
            .iter()
            .find(|e| e.name == PIN_ENV)
            .and_then(|e| e.value.clone())
            .unwrap_or_default();
        parse_pins(&text).map_err(|message| KubeError::Failed {
            what: self.deployment_what(colour),
            message: format!("{PIN_ENV} {text:?}: {message}"),
        })
    }

    /// Reads, computes a patch from what it read, and writes it with that
    /// read's `resourceVersion`; on `409 Conflict`, again from a fresh read.
    /// `change` answers `None` when the object already is as wanted.
    async fn update_deployment(
        &self,
        colour: Slot,
        change: impl Fn(&Deployment) -> Result<Option<serde_json::Value>, KubeError>,
    ) -> Result<Deployment, KubeError> {
        let what = self.deployment_what(colour);
        for attempt in 1..=CONFLICT_ATTEMPTS {
            let current = self.deployment(colour).await?;
            let Some(mut patch) = change(&current)? else {
                return Ok(current);
            };
            patch["metadata"]["resourceVersion"] = json!(current.metadata.resource_version);
            match self
                .api
                .patch(
                    &what,
                    "a Deployment",
                    &self.deployment_path(colour),
                    PatchType::StrategicMerge,
                    &patch,
                )
                .await
            {
                Err(e) if e.code() == Some(409) => {
                    tracing::info!(%what, attempt, "conflict: re-reading");
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                }
                other => return other,
            }
        }
        Err(KubeError::Conflict {
            what,
            attempts: CONFLICT_ATTEMPTS,
        })
    }

    /// Points the live Service at `colour`, guarded by its resourceVersion.
    async fn switch_to(&self, colour: Slot) -> Result<(), KubeError> {
        let what = self.service_what();
        for attempt in 1..=CONFLICT_ATTEMPTS {
            let current = self.service().await?;
            if colour_of(&current) == Some(colour) {
                return Ok(());
            }
            let patch = json!({
                "metadata": {"resourceVersion": current.metadata.resource_version},
                "spec": {"selector": {COLOUR_LABEL: colour.as_str()}},
            });
            let result: Result<Service, KubeError> = self
                .api
                .patch(
                    &what,
                    "a Service",
                    &self.service_path(),
                    PatchType::Merge,
                    &patch,
                )
                .await;
            match result {
                Err(e) if e.code() == Some(409) => {
                    tracing::info!(%what, attempt, "conflict: re-reading");
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e),
                Ok(s) if colour_of(&s) == Some(colour) => {
                    tracing::info!(%what, %colour, "live Service switched");
                    return Ok(());
                }
                Ok(s) => {
                    return Err(KubeError::Failed {
                        what,
                        message: format!(
                            "selector is {:?} after switching it to {colour}",
                            s.spec.selector
                        ),
                    });
                }
            }
        }
        Err(KubeError::Conflict {
            what,
            attempts: CONFLICT_ATTEMPTS,
        })
    }

    /// Sets a colour's replica count through `deployments/scale`.
    async fn scale(&self, colour: Slot, replicas: i32) -> Result<(), KubeError> {
        let _: serde_json::Value = self
            .api
            .patch(
                &format!("{} (scale)", self.deployment_what(colour)),
                "a Scale",
                &format!("{}/scale", self.deployment_path(colour)),
                PatchType::Merge,
                &json!({"spec": {"replicas": replicas}}),
            )
            .await?;
        tracing::info!(deployment = %self.deployment_name(colour), replicas, "scaled");
        Ok(())
    }

    /// Waits until every replica of the Deployment's current revision is
    /// available: a watch from the last read, re-read whenever the server
    /// ends it, expires it (`410 Gone`, or an `ERROR` event) or the network
    /// cuts it; all under one deadline.
    ///
    /// # Errors
    /// [`KubeError::Timeout`] with the last state seen,
    /// [`KubeError::Failed`] when Kubernetes reports the rollout stuck
    /// (`ProgressDeadlineExceeded`) or the Deployment deleted.
    pub async fn wait_rolled_out(&self, colour: Slot) -> Result<Deployment, KubeError> {
        let what = self.deployment_what(colour);
        let started = Instant::now();
        let deadline = started + self.opts.ready_timeout;
        let mut state: String;
        let timed_out = |state: &str| KubeError::Timeout {
            what: what.clone(),
            waited: started.elapsed(),
            state: state.to_owned(),
        };
        loop {
            let current = self.deployment(colour).await?;
            match progress(&current) {
                Progress::Done => return Ok(current),
                Progress::Failed(message) => return Err(KubeError::Failed { what, message }),
                Progress::Waiting(s) => state = s,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out(&state));
            }
            let server_timeout = self
                .opts
                .watch_timeout
                .min(left)
                .max(Duration::from_secs(1));
            let query = [
                (
                    "fieldSelector",
                    format!("metadata.name={}", self.deployment_name(colour)),
                ),
                ("watch", "true".to_owned()),
                ("resourceVersion", current.metadata.resource_version.clone()),
                ("allowWatchBookmarks", "true".to_owned()),
                ("timeoutSeconds", server_timeout.as_secs().to_string()),
            ];
            let list = format!("/apis/apps/v1/namespaces/{}/deployments", self.namespace);
            let watched = tokio::time::timeout_at(
                deadline.into(),
                self.watch_until_done(&what, &list, &query, server_timeout, &mut state),
            )
            .await;
            match watched {
                Err(_) => return Err(timed_out(&state)),
                Ok(Ok(Some(d))) => return Ok(d),
                Ok(Ok(None)) => {}
                // The version read is too old to watch from: read again.
                Ok(Err(e)) if e.code() == Some(410) => {
                    tracing::debug!(%what, "watch expired (410): re-reading");
                }
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    /// One watch: `Some` once done, `None` when the watch ended first.
    async fn watch_until_done(
        &self,
        what: &str,
        list: &str,
        query: &[(&str, String)],
        server_timeout: Duration,
        state: &mut String,
    ) -> Result<Option<Deployment>, KubeError> {
        let mut stream = self
            .api
            .watch(what, list, query, Duration::from_secs(5), server_timeout)
            .await?;
        while let Some(event) = stream.next().await? {
            match event.kind.as_str() {
                "ADDED" | "MODIFIED" => {
                    let d: Deployment =
                        serde_json::from_value(event.object).map_err(|e| KubeError::Decode {
                            what: what.to_owned(),
                            expected: "a Deployment in a watch event",
                            detail: e.to_string(),
                        })?;
                    match progress(&d) {
                        Progress::Done => return Ok(Some(d)),
                        Progress::Failed(message) => {
                            return Err(KubeError::Failed {
                                what: what.to_owned(),
                                message,
                            });
                        }
                        Progress::Waiting(s) => *state = s,
                    }
                }
                "DELETED" => {
                    return Err(KubeError::Failed {
                        what: what.to_owned(),
                        message: "was deleted while the controller waited for it".into(),
                    });
                }
                "ERROR" => {
                    let status: Status = serde_json::from_value(event.object).unwrap_or_default();
                    return Err(KubeError::Api {
                        what: what.to_owned(),
                        code: status.code,
                        reason: status.reason,
                        message: status.message,
                    });
                }
                // BOOKMARK: only a newer resourceVersion; the next watch
                // starts from a fresh read anyway.
                _ => {}
            }
        }
        Ok(None)
    }

    /// Scales `colour` up to the other colour's size if it is at 0, and
    /// waits until it is rolled out: no traffic goes to a colour that is
    /// not ready.
    async fn bring_up(&self, colour: Slot) -> Result<(), KubeError> {
        let d = self.deployment(colour).await?;
        if d.spec.replicas == Some(0) {
            let other = self.deployment(colour.other()).await?;
            let replicas = other.spec.replicas.unwrap_or(1).max(1);
            self.scale(colour, replicas).await?;
        }
        self.wait_rolled_out(colour).await?;
        self.refresh_metrics(colour).await;
        Ok(())
    }

    /// Remembers the metrics URLs of `colour`'s ready pods for analysis.
    /// Best effort: without them a check is inconclusive, never a pass.
    async fn refresh_metrics(&self, colour: Slot) {
        let urls = match self.ready_pod_ips(colour).await {
            Ok(ips) => ips
                .into_iter()
                .map(|ip| {
                    let host = if ip.contains(':') {
                        format!("[{ip}]")
                    } else {
                        ip
                    };
                    format!("http://{host}:{}/metrics", self.opts.metrics_port)
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the gateway pods; analysis will have no metrics");
                Vec::new()
            }
        };
        *self.metrics.lock().unwrap_or_else(PoisonError::into_inner) = urls;
    }

    async fn ready_pod_ips(&self, colour: Slot) -> Result<Vec<String>, KubeError> {
        let d = self.deployment(colour).await?;
        let selector = d
            .spec
            .selector
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let path = format!(
            "/api/v1/namespaces/{}/pods?labelSelector={}",
            self.namespace,
            encode(&selector)
        );
        let pods: PodList = self
            .api
            .get(
                &format!("pods of {}", self.deployment_what(colour)),
                "a PodList",
                &path,
            )
            .await?;
        Ok(pods
            .items
            .into_iter()
            .filter(super::kube_api::Pod::ready)
            .filter_map(|p| p.status.pod_ip)
            .collect())
    }

    fn slot_view(
        &self,
        d: &Deployment,
        colour: Slot,
        model: &str,
    ) -> Result<Option<SlotView>, KubeError> {
        let pins = self.pins(d, colour)?;
        Ok(pins.get(model).map(|&version| {
            let state = match progress(d) {
                Progress::Done if d.spec.replicas.unwrap_or(1) > 0 => VersionState::Ready,
                Progress::Failed(_) => VersionState::Failed,
                _ => VersionState::Loading,
            };
            SlotView {
                version,
                state,
                error: (d.spec.replicas == Some(0)).then(|| "scaled to 0 replicas".to_owned()),
                backend: None,
            }
        }))
    }
}

impl Target for KubernetesTarget {
    fn describe(&self) -> String {
        format!(
            "Deployments {}-blue/-green in namespace {}",
            self.opts.name, self.namespace
        )
    }

    async fn routes(&self, model: &str) -> Result<Vec<RouteView>, FleetError> {
        let live = self.live_colour().await?;
        let blue = self.deployment(Slot::Blue).await?;
        let green = self.deployment(Slot::Green).await?;
        Ok(vec![RouteView {
            model: model.to_owned(),
            live,
            blue: self.slot_view(&blue, Slot::Blue, model)?,
            green: self.slot_view(&green, Slot::Green, model)?,
            weights: Weights::all_to(live),
            shadow_percent: 0,
        }])
    }

    async fn load(&self, model: &str, slot: Slot, version: u64) -> Result<(), FleetError> {
        let live = self.live_colour().await?;
        if slot == live {
            return Err(KubeError::Unsupported {
                what: self.deployment_what(slot),
                message: format!(
                    "is the live colour; a new version goes to the standby colour ({})",
                    slot.other()
                ),
            }
            .into());
        }
        let source = self.deployment(live).await?;
        let mut pins = self.pins(&source, live)?;
        pins.insert(model.to_owned(), version);
        let wanted = format_pins(&pins);
        let replicas = source.spec.replicas.unwrap_or(1).max(1);
        let container = self.opts.container.clone();
        self.update_deployment(slot, |d| {
            let current = self.pins(d, slot)?;
            if current == pins && d.spec.replicas == Some(replicas) {
                return Ok(None);
            }
            // Strategic merge: `containers` and `env` merge by name, so
            // this touches one variable of one container.
            Ok(Some(json!({
                "spec": {
                    "replicas": replicas,
                    "template": {"spec": {"containers": [
                        {"name": container, "env": [{"name": PIN_ENV, "value": wanted}]}
                    ]}},
                },
            })))
        })
        .await?;
        tracing::info!(deployment = %self.deployment_name(slot), pins = %wanted, replicas, "standby colour updated");
        self.wait_rolled_out(slot).await?;
        self.refresh_metrics(slot).await;
        Ok(())
    }

    async fn set_weights(&self, model: &str, weights: Weights) -> Result<(), FleetError> {
        let colour = match (weights.blue, weights.green) {
            (100, 0) => Slot::Blue,
            (0, 100) => Slot::Green,
            _ => {
                return Err(KubeError::Unsupported {
                    what: self.service_what(),
                    message: format!(
                        "cannot split {model}'s traffic blue {} / green {}: its selector sends everything to one colour; promote with --strategy blue-green (or --full)",
                        weights.blue, weights.green
                    ),
                }
                .into());
            }
        };
        self.bring_up(colour).await?;
        self.switch_to(colour).await?;
        Ok(())
    }

    async fn set_shadow(&self, model: &str, percent: u32) -> Result<(), FleetError> {
        if percent == 0 {
            // Nothing is ever mirrored here, so "no shadow" always holds.
            return Ok(());
        }
        Err(KubeError::Unsupported {
            what: self.service_what(),
            message: format!(
                "cannot mirror {percent}% of {model}'s traffic: a Service does not mirror; promote with --strategy blue-green (or --full)"
            ),
        }
        .into())
    }

    async fn annotate(
        &self,
        model: &str,
        annotation: &RolloutAnnotation,
    ) -> Result<(), FleetError> {
        let key = format!("switchyard.io/rollout.{model}");
        if !annotation_name_ok(&key) {
            return Ok(());
        }
        let value = serde_json::to_string(annotation).unwrap_or_default();
        let _: Service = self
            .api
            .patch(
                &self.service_what(),
                "a Service",
                &self.service_path(),
                PatchType::Merge,
                &json!({"metadata": {"annotations": {key: value}}}),
            )
            .await?;
        Ok(())
    }

    fn inference_urls(&self) -> Vec<String> {
        vec![format!(
            "http://{}.{}.svc:{}",
            self.opts.name, self.namespace, self.opts.http_port
        )]
    }

    fn metrics_urls(&self) -> Vec<String> {
        self.metrics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn gateway_slot(&self, _slot: Slot) -> Slot {
        // A gateway pod starts with its pinned versions in its blue slot,
        // whatever its Deployment's colour.
        Slot::Blue
    }

    fn slot_urls(&self, slot: Slot) -> Vec<String> {
        vec![self.colour_url(slot)]
    }

    async fn promoted(&self, model: &str, live: Slot) -> Result<(), FleetError> {
        let old = live.other();
        tracing::info!(model, deployment = %self.deployment_name(old), delay = ?self.opts.scale_down_delay, "scaling the old colour down after the delay");
        tokio::time::sleep(self.opts.scale_down_delay).await;
        // A rollback during the delay moved traffic back: keep that colour.
        if self.live_colour().await? != live {
            tracing::warn!(
                model,
                "the live Service moved during the delay; the old colour stays up"
            );
            return Ok(());
        }
        self.scale(old, 0).await?;
        Ok(())
    }
}

fn colour_of(s: &Service) -> Option<Slot> {
    match s.spec.selector.get(COLOUR_LABEL).map(String::as_str) {
        Some("blue") => Some(Slot::Blue),
        Some("green") => Some(Slot::Green),
        _ => None,
    }
}

/// Where a Deployment's rollout stands, judged as `kubectl rollout status`
/// judges it.
fn progress(d: &Deployment) -> Progress {
    let (spec, status) = (&d.spec, &d.status);
    if d.metadata.generation > status.observed_generation {
        return Progress::Waiting(format!(
            "the Deployment controller has not seen generation {} yet",
            d.metadata.generation
        ));
    }
    if let Some(c) = status.conditions.iter().find(|c| {
        c.kind == "Progressing" && c.status == "False" && c.reason == "ProgressDeadlineExceeded"
    }) {
        return Progress::Failed(format!(
            "Kubernetes gave up on the rollout (ProgressDeadlineExceeded): {}",
            c.message
        ));
    }
    let want = spec.replicas.unwrap_or(1);
    if status.updated_replicas < want {
        return Progress::Waiting(format!(
            "{} of {want} replicas updated",
            status.updated_replicas
        ));
    }
    if status.replicas > status.updated_replicas {
        return Progress::Waiting(format!(
            "{} old replicas still terminating",
            status.replicas - status.updated_replicas
        ));
    }
    if status.available_replicas < status.updated_replicas {
        return Progress::Waiting(format!(
            "{} of {} updated replicas available",
            status.available_replicas, status.updated_replicas
        ));
    }
    Progress::Done
}

/// `model=version,model=version`; empty is no pins.
///
/// # Errors
/// A message naming the entry that is not `model=version`.
pub fn parse_pins(text: &str) -> Result<BTreeMap<String, u64>, String> {
    let mut pins = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (model, version) = entry
            .split_once('=')
            .and_then(|(m, v)| Some((m.trim(), v.trim().parse::<u64>().ok()?)))
            .filter(|(m, v)| !m.is_empty() && *v > 0)
            .ok_or_else(|| format!("entry {entry:?} is not model=version"))?;
        pins.insert(model.to_owned(), version);
    }
    Ok(pins)
}

/// The inverse of [`parse_pins`], sorted so equal pins are equal text.
pub fn format_pins(pins: &BTreeMap<String, u64>) -> String {
    pins.iter()
        .map(|(m, v)| format!("{m}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// An annotation's name part: up to 63 of `[A-Za-z0-9._-]`, alphanumeric
/// at both ends.
fn annotation_name_ok(key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or_default();
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric())
}

/// Percent-encodes a query value (label selectors hold `=`, `,`, `/`).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_round_trip_sorted() {
        let pins = parse_pins(" linear=1, boosted=12 ,").unwrap();
        assert_eq!(format_pins(&pins), "boosted=12,linear=1");
        assert!(parse_pins("boosted").is_err());
        assert!(parse_pins("boosted=0").is_err());
        assert!(parse_pins("=3").is_err());
        assert!(parse_pins("").unwrap().is_empty());
    }

    #[test]
    fn annotation_names_follow_kubernetes_rules() {
        assert!(annotation_name_ok("switchyard.io/rollout.boosted"));
        assert!(!annotation_name_ok("switchyard.io/rollout.bad name"));
        assert!(!annotation_name_ok(&format!(
            "switchyard.io/rollout.{}",
            "x".repeat(60)
        )));
    }

    #[test]
    fn selectors_are_percent_encoded() {
        assert_eq!(
            encode("app.kubernetes.io/name=gw,switchyard.io/colour=green"),
            "app.kubernetes.io%2Fname%3Dgw%2Cswitchyard.io%2Fcolour%3Dgreen"
        );
    }
}
