//! The gateway's core: the routing table behind `ArcSwap`, and every change
//! to it — start-up, load, unload, weights, shadow — made the same way:
//! prepare off the request path, then publish a new table in one store.
//!
//! Changes to one model are serialised by that model's lock; changes to
//! different models run in parallel and publish with `rcu`, so neither
//! loses the other's update. Loads run on their own threads, at most
//! `load_threads` at once, so loading never starves the serving runtime.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use switchyard_api::admin::{RouteView, Slot, SlotView, VersionState, Weights};
use switchyard_api::drift::{DriftReport, VersionDrift};

use crate::backend::backend_name;
use crate::loader::{LoadContext, LoadError};
use crate::metrics::Metrics;
use crate::model::LoadedModel;
use crate::persist::{PersistError, SavedRoute, SavedRouting, StateStore};
use crate::repository::SourceError;
use crate::routing::{Route, RoutingTable, live_after};

/// Why an admin change was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The model has no route.
    #[error("model {0:?} is not loaded")]
    UnknownModel(String),
    /// The request is malformed (a field's value is out of range).
    #[error("{0}")]
    Invalid(String),
    /// The change conflicts with the current routing.
    #[error("{0}")]
    Conflict(String),
    /// The version was refused at load.
    #[error("cannot load {model} version {version}")]
    Load {
        /// The model.
        model: String,
        /// The version.
        version: u64,
        /// Why.
        #[source]
        source: LoadError,
    },
    /// The routing could not be saved; the change was not made.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// The gateway is stopping.
    #[error("the gateway is shutting down")]
    ShuttingDown,
}

/// A version's progress, for readiness and the repository index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionStatus {
    /// Where it is.
    pub state: VersionState,
    /// Why it failed.
    pub error: Option<String>,
}

/// Settings of the core.
#[derive(Debug, Clone)]
pub struct ServingSettings {
    /// Deadline of a request that brings none.
    pub default_timeout: Duration,
    /// Concurrent loads.
    pub load_threads: usize,
    /// Ready only when every model of the repository serves.
    pub strict_readiness: bool,
    /// Versions served at start instead of the newest.
    pub pinned: BTreeMap<String, u64>,
}

/// The gateway's shared state.
#[derive(Debug)]
pub struct Serving {
    table: ArcSwap<RoutingTable>,
    loader: LoadContext,
    metrics: Metrics,
    settings: ServingSettings,
    statuses: Statuses,
    model_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    loads: Arc<tokio::sync::Semaphore>,
    store: Option<StateStore>,
    persist_lock: tokio::sync::Mutex<()>,
    ready: AtomicBool,
    stopping: AtomicBool,
}

impl Serving {
    /// A core with an empty routing table; [`Serving::start`] fills it.
    pub fn new(
        loader: LoadContext,
        settings: ServingSettings,
        store: Option<StateStore>,
    ) -> Serving {
        Serving {
            table: ArcSwap::from_pointee(RoutingTable::default()),
            metrics: loader.metrics.clone(),
            loads: Arc::new(tokio::sync::Semaphore::new(settings.load_threads.max(1))),
            loader,
            settings,
            statuses: Statuses::default(),
            model_locks: Mutex::new(HashMap::new()),
            store,
            persist_lock: tokio::sync::Mutex::new(()),
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        }
    }

    /// The routing table as it is now. Hold it only briefly, never across
    /// an `.await`: clone what you need out of it.
    pub fn table(&self) -> arc_swap::Guard<Arc<RoutingTable>> {
        self.table.load()
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The settings.
    pub fn settings(&self) -> &ServingSettings {
        &self.settings
    }

    /// The model source.
    pub fn source(&self) -> &Arc<dyn crate::repository::ModelSource> {
        &self.loader.source
    }

    /// Whether every configured model is loaded and warm.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.stopping.load(Ordering::Acquire)
    }

    /// Marks the gateway as stopping: not ready, no more loads.
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
        self.metrics.set_ready(false);
    }

    /// A version's status, if it was ever loaded.
    pub fn status(&self, model: &str, version: u64) -> Option<VersionStatus> {
        self.statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(model.to_owned(), version))
            .cloned()
    }

    /// Loads the saved routing, or else each model's newest version that
    /// passes every check into its blue slot; then marks the gateway ready.
    ///
    /// # Errors
    /// Only when the repository or the state file can't be read at all;
    /// a version that fails is logged and skipped.
    pub async fn start(&self) -> Result<(), StartError> {
        let saved = match &self.store {
            Some(store) => store.read()?,
            None => None,
        };
        let models = self.loader.source.models()?;
        let mut all_served = true;
        for model in self.settings.pinned.keys() {
            if !models.contains(model) {
                tracing::error!(
                    model,
                    "a version of this model is pinned, but the repository has no such model"
                );
                all_served = false;
            }
        }
        for model in &models {
            let served = match (
                saved.as_ref().and_then(|s| s.models.get(model)),
                self.settings.pinned.get(model),
            ) {
                (Some(route), _) => self.restore(model, route).await,
                (None, Some(&version)) => self.start_pinned(model, version).await,
                (None, None) => self.start_newest(model).await,
            };
            all_served &= served;
        }
        let ready = all_served || !self.settings.strict_readiness;
        self.ready.store(ready, Ordering::Release);
        self.metrics.set_ready(ready);
        if !ready {
            tracing::error!(
                "not ready: a model of the repository has no version that loads (strict readiness)"
            );
        }
        Ok(())
    }

    /// The pinned version or nothing: serving another version than the one
    /// asked for (a Deployment's pin, say) would be worse than not serving.
    async fn start_pinned(&self, model: &str, version: u64) -> bool {
        match self.load(model, version, Slot::Blue).await {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(model, version, error = %error_chain(&e), "pinned version refused");
                false
            }
        }
    }

    async fn start_newest(&self, model: &str) -> bool {
        let versions = match self.loader.source.versions(model) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(model, error = %e, "cannot list versions");
                return false;
            }
        };
        for &version in versions.iter().rev() {
            match self.load(model, version, Slot::Blue).await {
                Ok(_) => return true,
                Err(e) => {
                    tracing::error!(model, version, error = %error_chain(&e), "version refused; trying the one before");
                }
            }
        }
        tracing::error!(model, "no version of the model passes its checks");
        false
    }

    async fn restore(&self, model: &str, saved: &SavedRoute) -> bool {
        let mut any = false;
        for (slot, version) in [(Slot::Blue, saved.blue), (Slot::Green, saved.green)] {
            if let Some(v) = version {
                match self.load(model, v, slot).await {
                    Ok(_) => any = true,
                    Err(e) => {
                        tracing::error!(model, version = v, %slot, error = %error_chain(&e), "saved version refused");
                    }
                }
            }
        }
        if !any {
            return self.start_newest(model).await;
        }
        let route = self.table().routes.get(model).cloned();
        if let Some(route) = route {
            let both = route.slot(Slot::Blue).is_some() && route.slot(Slot::Green).is_some();
            let weights = if both { saved.weights } else { route.weights };
            if let Err(e) = self.set_weights(model, weights).await {
                tracing::error!(model, error = %e, "saved weights refused");
            }
            if both && saved.shadow_percent > 0 {
                let _ = self.set_shadow(model, saved.shadow_percent).await;
            }
        }
        true
    }

    /// Loads a version into a slot and publishes it. Idempotent: when the
    /// slot already holds that version, nothing changes.
    ///
    /// # Errors
    /// [`AdminError::Load`] naming the file and reason; the routing is then
    /// exactly as before.
    pub async fn load(
        &self,
        model: &str,
        version: u64,
        slot: Slot,
    ) -> Result<Arc<LoadedModel>, AdminError> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(AdminError::ShuttingDown);
        }
        let lock = self.model_lock(model);
        let _guard = lock.lock().await;
        if let Some(current) = self.slot_of(model, slot)
            && current.version() == version
        {
            return Ok(current);
        }
        let loaded = self.load_off_thread(model, version, slot).await?;
        let loaded = Arc::new(loaded);
        let previous = self.publish(model, |route| {
            let mut slots = route.map_or([None, None], |r| r.slots.clone());
            slots[slot.index()] = Some(loaded.clone());
            let (weights, live, shadow) = route.map_or((Weights::all_to(slot), slot, 0), |r| {
                (r.weights, r.live, r.shadow_percent)
            });
            Some(Route::new(model.to_owned(), slots, weights, live, shadow))
        });
        if let Some(old) = previous.as_ref().and_then(|r| r.slot(slot)) {
            self.metrics.set_loaded(
                model,
                old.version(),
                slot.as_str(),
                backend_name(old.backend),
                false,
            );
        }
        self.metrics.set_loaded(
            model,
            version,
            slot.as_str(),
            backend_name(loaded.backend),
            true,
        );
        self.persist().await?;
        tracing::info!(model, version, %slot, backend = backend_name(loaded.backend),
            load_ms = loaded.load_seconds * 1e3, "version live in slot");
        Ok(loaded)
    }

    async fn load_off_thread(
        &self,
        model: &str,
        version: u64,
        slot: Slot,
    ) -> Result<LoadedModel, AdminError> {
        let permit = self
            .loads
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| AdminError::ShuttingDown)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let loader = self.loader.clone();
        let key = (model.to_owned(), version);
        let statuses = self.statuses_handle();
        let name = model.to_owned();
        std::thread::Builder::new()
            .name(format!("load-{model}-{version}"))
            .spawn(move || {
                let mut report = |state| set_status(&statuses, &key, state, None);
                let result = loader.load(&name, version, slot, &mut report);
                if let Err(e) = &result {
                    set_status(&statuses, &key, VersionState::Failed, Some(error_chain(e)));
                }
                drop(permit);
                let _ = tx.send(result);
            })
            .map_err(|e| AdminError::Load {
                model: model.to_owned(),
                version,
                source: LoadError::Thread(e),
            })?;
        let result = rx.await.map_err(|_| AdminError::ShuttingDown)?;
        result.map_err(|source| match source {
            LoadError::Source(SourceError::UnknownModel(m)) => AdminError::UnknownModel(m),
            source => AdminError::Load {
                model: model.to_owned(),
                version,
                source,
            },
        })
    }

    /// Empties a slot that carries no traffic.
    ///
    /// # Errors
    /// [`AdminError::Conflict`] when the slot has weight or is the only one.
    pub async fn unload_slot(&self, model: &str, slot: Slot) -> Result<(), AdminError> {
        let lock = self.model_lock(model);
        let _guard = lock.lock().await;
        let route = self.route(model)?;
        let Some(current) = route.slot(slot).cloned() else {
            return Ok(());
        };
        if route.weights.of(slot) > 0 {
            return Err(AdminError::Conflict(format!(
                "the {slot} slot of {model} carries {}% of traffic; shift the weights away first",
                route.weights.of(slot)
            )));
        }
        self.publish(model, |r| {
            let r = r?;
            let mut slots = r.slots.clone();
            slots[slot.index()] = None;
            Some(Route::new(model.to_owned(), slots, r.weights, r.live, 0))
        });
        self.metrics.set_loaded(
            model,
            current.version(),
            slot.as_str(),
            backend_name(current.backend),
            false,
        );
        self.persist().await
    }

    /// Stops serving a model entirely.
    ///
    /// # Errors
    /// [`AdminError::UnknownModel`].
    pub async fn unload_model(&self, model: &str) -> Result<(), AdminError> {
        let lock = self.model_lock(model);
        let _guard = lock.lock().await;
        let route = self.route(model)?;
        self.publish(model, |_| None);
        for loaded in route.slots.iter().flatten() {
            self.metrics.set_loaded(
                model,
                loaded.version(),
                loaded.slot.as_str(),
                backend_name(loaded.backend),
                false,
            );
        }
        self.metrics.remove_route(model);
        self.persist().await
    }

    /// Sets a model's weights; the heavier slot becomes live.
    ///
    /// # Errors
    /// [`AdminError::Invalid`] when they don't add up to 100,
    /// [`AdminError::Conflict`] when a slot with weight is empty.
    pub async fn set_weights(
        &self,
        model: &str,
        weights: Weights,
    ) -> Result<RouteView, AdminError> {
        weights.check().map_err(AdminError::Invalid)?;
        let lock = self.model_lock(model);
        let _guard = lock.lock().await;
        let route = self.route(model)?;
        for slot in [Slot::Blue, Slot::Green] {
            if weights.of(slot) > 0 && route.slot(slot).is_none() {
                return Err(AdminError::Conflict(format!(
                    "cannot send {}% of {model} to the {slot} slot: it is empty",
                    weights.of(slot)
                )));
            }
        }
        self.publish(model, |r| {
            let r = r?;
            let live = live_after(weights, r.live);
            Some(Route::new(
                model.to_owned(),
                r.slots.clone(),
                weights,
                live,
                r.shadow_percent,
            ))
        });
        self.persist().await?;
        self.view(model)
    }

    /// Sets the share of live requests mirrored to the standby slot.
    ///
    /// # Errors
    /// [`AdminError::Invalid`] over 100, [`AdminError::Conflict`] when the
    /// standby slot is empty.
    pub async fn set_shadow(&self, model: &str, percent: u32) -> Result<RouteView, AdminError> {
        if percent > 100 {
            return Err(AdminError::Invalid(format!(
                "shadow percent {percent} is over 100"
            )));
        }
        let lock = self.model_lock(model);
        let _guard = lock.lock().await;
        let route = self.route(model)?;
        let standby = route.live.other();
        if percent > 0 && route.slot(standby).is_none() {
            return Err(AdminError::Conflict(format!(
                "cannot shadow {model}: its standby ({standby}) slot is empty"
            )));
        }
        self.publish(model, |r| {
            let r = r?;
            Some(Route::new(
                model.to_owned(),
                r.slots.clone(),
                r.weights,
                r.live,
                percent,
            ))
        });
        self.persist().await?;
        self.view(model)
    }

    /// Every model's routing.
    pub fn views(&self) -> Vec<RouteView> {
        let table = self.table();
        table.routes.values().map(|r| self.view_of(r)).collect()
    }

    /// One model's routing.
    ///
    /// # Errors
    /// [`AdminError::UnknownModel`].
    pub fn view(&self, model: &str) -> Result<RouteView, AdminError> {
        let route = self.route(model)?;
        Ok(self.view_of(&route))
    }

    /// One model's live drift, per loaded version.
    ///
    /// # Errors
    /// [`AdminError::UnknownModel`].
    pub fn drift_report(&self, model: &str) -> Result<DriftReport, AdminError> {
        let route = self.route(model)?;
        Ok(drift_of(&route, Instant::now()))
    }

    /// Every model's live drift, for `/metrics`.
    pub fn drift_reports(&self) -> Vec<DriftReport> {
        let now = Instant::now();
        let table = self.table();
        table.routes.values().map(|r| drift_of(r, now)).collect()
    }

    /// The Prometheus text of every metric, drift computed now included.
    pub fn render_metrics(&self) -> String {
        let mut text = self.metrics().render();
        crate::drift::render(&self.drift_reports(), &mut text);
        text
    }

    fn view_of(&self, route: &Route) -> RouteView {
        let slot_view = |slot: Slot| {
            route.slot(slot).map(|m| SlotView {
                version: m.version(),
                state: VersionState::Ready,
                error: None,
                backend: Some(backend_name(m.backend).to_owned()),
            })
        };
        RouteView {
            model: route.model.clone(),
            live: route.live,
            blue: slot_view(Slot::Blue),
            green: slot_view(Slot::Green),
            weights: route.weights,
            shadow_percent: route.shadow_percent,
        }
    }

    fn route(&self, model: &str) -> Result<Arc<Route>, AdminError> {
        self.table()
            .routes
            .get(model)
            .cloned()
            .ok_or_else(|| AdminError::UnknownModel(model.to_owned()))
    }

    fn slot_of(&self, model: &str, slot: Slot) -> Option<Arc<LoadedModel>> {
        self.table()
            .routes
            .get(model)
            .and_then(|r| r.slot(slot).cloned())
    }

    /// Publishes a new table in which `model`'s route is `change(old)`;
    /// returns the old route.
    fn publish(
        &self,
        model: &str,
        change: impl Fn(Option<&Route>) -> Option<Route>,
    ) -> Option<Arc<Route>> {
        let mut previous = None;
        self.table.rcu(|table| {
            let mut routes = table.routes.clone();
            previous = routes.get(model).cloned();
            match change(previous.as_deref()) {
                Some(route) => {
                    routes.insert(model.to_owned(), Arc::new(route));
                }
                None => {
                    routes.remove(model);
                }
            }
            RoutingTable { routes }
        });
        if let Some(route) = self.table().routes.get(model) {
            self.metrics.set_route(
                model,
                route.weights.blue,
                route.weights.green,
                route.shadow_percent,
            );
        }
        previous
    }

    async fn persist(&self) -> Result<(), AdminError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        // Serialised so an older snapshot never overwrites a newer one.
        let _guard = self.persist_lock.lock().await;
        let saved = SavedRouting {
            models: self
                .table()
                .routes
                .iter()
                .map(|(name, r)| {
                    let version = |s: Slot| r.slot(s).map(|m| m.version());
                    let saved = SavedRoute {
                        blue: version(Slot::Blue),
                        green: version(Slot::Green),
                        weights: r.weights,
                        live: r.live,
                        shadow_percent: r.shadow_percent,
                    };
                    (name.clone(), saved)
                })
                .collect(),
        };
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.write(&saved))
            .await
            .map_err(|_| AdminError::ShuttingDown)??;
        Ok(())
    }

    fn model_lock(&self, model: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.model_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(model.to_owned())
            .or_default()
            .clone()
    }

    fn statuses_handle(&self) -> Statuses {
        self.statuses.clone()
    }
}

type Statuses = Arc<Mutex<BTreeMap<(String, u64), VersionStatus>>>;

fn set_status(
    statuses: &Statuses,
    key: &(String, u64),
    state: VersionState,
    error: Option<String>,
) {
    statuses
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key.clone(), VersionStatus { state, error });
}

/// An error and every cause under it, on one line.
fn drift_of(route: &Route, now: Instant) -> DriftReport {
    let mut per_version: BTreeMap<u64, Vec<VersionDrift>> = BTreeMap::new();
    let mut untracked = Vec::new();
    for slot in [Slot::Blue, Slot::Green] {
        let Some(m) = route.slot(slot) else { continue };
        match &m.drift {
            Some(tracker) => {
                let mut report = tracker.report(m.version(), now);
                report.slots = vec![slot.as_str().to_owned()];
                per_version.entry(m.version()).or_default().push(report);
            }
            None => untracked.push(m.version()),
        }
    }
    untracked.sort_unstable();
    untracked.dedup();
    DriftReport {
        model: route.model.clone(),
        versions: per_version
            .values()
            .filter_map(|r| VersionDrift::merged(r))
            .collect(),
        untracked,
    }
}

pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Why the gateway could not start serving.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The saved routing is unreadable.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// The repository is unreadable.
    #[error(transparent)]
    Source(#[from] SourceError),
}
