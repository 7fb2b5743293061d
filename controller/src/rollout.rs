//! The rollout state machine:
//! `pending → loading → smoke_testing → [shadowing] → shifting(step) →
//! baking → … → promoted | rolled_back | aborted`.
//!
//! Every transition is appended to the rollout log (synced) *before* it is
//! acted on, and every action is idempotent, so a controller killed at any
//! moment can `--resume` (redo the recorded step) or `abort` (put every
//! gateway back on the old version). The live slot never changes before
//! promotion; a failed check, smoke test or gateway rolls back everywhere.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use switchyard_api::Manifest;
use switchyard_api::admin::{CheckValue, RolloutAnnotation, RouteView, Slot, Weights};

use crate::analysis::{self, Snapshot};
use crate::fleet::{FleetError, Target};
use crate::journal::{CheckResult, Journal, JournalError, Phase, Rollout, Strategy, now_ms};
use crate::smoke;
use crate::suite::{Inconclusive, SuiteError, SuiteFile, Thresholds};

/// What a promote was asked for.
#[derive(Debug, Clone)]
pub struct PromoteOptions {
    /// The version; `None` for the newest in the repository.
    pub version: Option<u64>,
    /// The strategy.
    pub strategy: Strategy,
    /// Green's weight steps (canary).
    pub steps: Vec<u32>,
    /// Bake time after each step.
    pub bake: Duration,
    /// Percent mirrored in the shadow phase.
    pub shadow_percent: u32,
    /// Analysis thresholds.
    pub thresholds: Thresholds,
    /// Continue the interrupted rollout instead of starting one.
    pub resume: bool,
    /// PromQL checks after each bake.
    pub queries: Vec<crate::prometheus::QueryCheck>,
}

/// Why a command could not do its work. Each maps to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Bad input, found before anything changed.
    #[error("{0}")]
    Invalid(String),
    /// A suite that does not fit.
    #[error(transparent)]
    Suite(#[from] SuiteError),
    /// The log or lock.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The rollout failed and every gateway is back on the old version.
    #[error("rolled back: {0}")]
    RolledBack(String),
    /// Gateways could not be brought to one state; a human must look.
    #[error("{0}")]
    Fleet(String),
    /// Stopped for a human (`resume` or `abort` next).
    #[error("paused: {0}")]
    Paused(String),
}

impl ControlError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            ControlError::RolledBack(_) => 1,
            ControlError::Invalid(_) | ControlError::Suite(_) => 2,
            ControlError::Fleet(_) => 3,
            ControlError::Journal(JournalError::Locked { .. }) => 4,
            ControlError::Journal(_) => 5,
            ControlError::Paused(_) => 6,
        }
    }
}

/// Where the controller keeps and finds things.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The model repository.
    pub models: PathBuf,
    /// Smoke suites and rollout settings.
    pub suites: PathBuf,
    /// Rollout logs and locks.
    pub state: PathBuf,
}

/// Runs rollouts against a target, reporting progress as it goes.
#[derive(Debug)]
pub struct Controller<'a, T: Target> {
    /// Where rollouts act.
    pub target: &'a T,
    /// Folders.
    pub paths: Paths,
    /// Progress lines go here (stderr in the CLI).
    pub progress: fn(&str),
    /// HTTP client for smoke tests and scrapes.
    pub client: reqwest::Client,
    /// Base URL of the Prometheus server that answers PromQL checks.
    pub prometheus: Option<String>,
    started: Instant,
}

impl<'a, T: Target> Controller<'a, T> {
    /// A controller over `target`.
    pub fn new(target: &'a T, paths: Paths, progress: fn(&str)) -> Self {
        Controller {
            target,
            paths,
            progress,
            client: reqwest::Client::new(),
            prometheus: None,
            started: Instant::now(),
        }
    }

    fn say(&self, text: &str) {
        (self.progress)(&format!(
            "[{:>7.2}s] {text}",
            self.started.elapsed().as_secs_f64()
        ));
    }

    /// Writes the transition to the log (synced) before anything acts on
    /// it, then tells the gateways, which export it as metrics (best
    /// effort: a gateway that misses it only shows a stale phase).
    async fn record(
        &self,
        journal: &Journal,
        rollout: &mut Rollout,
        phase: Phase,
    ) -> Result<(), ControlError> {
        rollout.phase = phase;
        rollout.updated_ms = now_ms();
        journal.append(rollout)?;
        let annotation = annotation_of(rollout);
        if let Err(e) = self.target.annotate(&rollout.model, &annotation).await {
            self.say(&format!("note: rollout metrics not updated: {e}"));
        }
        Ok(())
    }

    /// The newest version of a model in the repository.
    fn newest(&self, model: &str) -> Result<u64, ControlError> {
        let dir = self.paths.models.join(model);
        let entries = std::fs::read_dir(&dir).map_err(|_| {
            ControlError::Invalid(format!(
                "model {model:?} is not in the repository {}",
                self.paths.models.display()
            ))
        })?;
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().and_then(|v| v.parse::<u64>().ok()))
            .filter(|v| dir.join(v.to_string()).join("model.toml").is_file())
            .max()
            .ok_or_else(|| ControlError::Invalid(format!("model {model:?} has no versions")))
    }

    /// Checks a version's files and its suite before anything is loaded.
    fn verify(&self, model: &str, version: u64) -> Result<SuiteFile, ControlError> {
        let dir = self.paths.models.join(model).join(version.to_string());
        if !dir.join("model.toml").is_file() {
            return Err(ControlError::Invalid(format!(
                "version {version} of model {model:?} is not in the repository"
            )));
        }
        let manifest = Manifest::load(&dir).map_err(|e| ControlError::Invalid(e.to_string()))?;
        manifest
            .verify_files(&dir)
            .map_err(|e| ControlError::Invalid(e.to_string()))?;
        let (suite, path) = SuiteFile::load(&self.paths.suites, model)?;
        let problems = suite.problems(&manifest);
        if !problems.is_empty() {
            return Err(SuiteError::Mismatch {
                path,
                model: model.to_owned(),
                version,
                problems,
            }
            .into());
        }
        Ok(suite)
    }

    /// The fleet's route of a model, which every gateway must agree on.
    async fn fleet_route(&self, model: &str) -> Result<RouteView, ControlError> {
        let routes = self
            .target
            .routes(model)
            .await
            .map_err(|e| ControlError::Invalid(e.to_string()))?;
        let first = routes
            .first()
            .cloned()
            .ok_or_else(|| ControlError::Invalid("no gateways".into()))?;
        let key = |r: &RouteView| {
            (
                r.live,
                r.weights,
                r.blue.as_ref().map(|s| s.version),
                r.green.as_ref().map(|s| s.version),
            )
        };
        if let Some(other) = routes.iter().find(|r| key(r) != key(&first)) {
            return Err(ControlError::Fleet(format!(
                "the gateways disagree about {model}: {:?} vs {:?}; run `controller abort {model}` or fix by hand",
                key(&first),
                key(other)
            )));
        }
        Ok(first)
    }

    /// `promote`: plan or resume a rollout and drive it to the end.
    ///
    /// # Errors
    /// [`ControlError`]; the fleet is then all on the old version unless
    /// the error says otherwise.
    pub async fn promote(
        &self,
        model: &str,
        opts: &PromoteOptions,
    ) -> Result<Rollout, ControlError> {
        let _lock = Journal::lock(&self.paths.state, model)?;
        let journal = Journal::new(&self.paths.state, model);
        let current = journal.current()?;
        let mut rollout = match (opts.resume, current) {
            (true, Some(r)) if !terminal(r.phase) => {
                self.say(&format!(
                    "resuming rollout {} of {model} v{} at {:?}",
                    r.id, r.to_version, r.phase
                ));
                r
            }
            (true, _) => {
                return Err(ControlError::Invalid(format!(
                    "{model} has no interrupted rollout to resume"
                )));
            }
            (false, Some(r)) if !terminal(r.phase) => {
                return Err(ControlError::Invalid(format!(
                    "rollout {} of {model} v{} stopped at {:?}; `controller promote {model} --resume` finishes it, `controller abort {model}` undoes it",
                    r.id, r.to_version, r.phase
                )));
            }
            (false, _) => match self.plan(model, opts).await? {
                Some(r) => r,
                None => {
                    return Ok(journal.current()?.unwrap_or_else(|| noop(model)));
                }
            },
        };
        let suite = self.verify(model, rollout.to_version)?;
        if rollout.phase == Phase::Pending {
            self.record(&journal, &mut rollout, Phase::Pending).await?;
        }
        // A resumed rollout goes on with the settings it began with.
        let opts = &PromoteOptions {
            strategy: rollout.strategy,
            steps: rollout.steps.clone(),
            bake: Duration::from_millis(rollout.bake_ms),
            shadow_percent: rollout.shadow_percent.max(1),
            thresholds: rollout.thresholds,
            queries: rollout.queries.clone(),
            ..opts.clone()
        };
        match self.drive(&journal, &mut rollout, &suite, opts).await {
            Ok(()) => Ok(rollout),
            Err(Step::Failed(reason)) => {
                self.say(&format!("FAILED: {reason}; rolling back"));
                self.roll_back(&journal, &mut rollout, &reason, Phase::RolledBack)
                    .await?;
                Err(ControlError::RolledBack(reason))
            }
            Err(Step::Paused(reason)) => {
                rollout.reason = Some(reason.clone());
                self.record(&journal, &mut rollout, Phase::Paused).await?;
                self.say(&format!(
                    "PAUSED: {reason}; `controller resume {model}` or `controller abort {model}`"
                ));
                Err(ControlError::Paused(reason))
            }
            Err(Step::Aborted) => {
                self.say("ABORT requested by an operator; rolling back");
                self.roll_back(
                    &journal,
                    &mut rollout,
                    "aborted by an operator",
                    Phase::Aborted,
                )
                .await?;
                Marker::Abort.clear(&self.paths.state, model);
                Marker::Pause.clear(&self.paths.state, model);
                Err(ControlError::RolledBack("aborted by an operator".into()))
            }
            Err(Step::Abort(e)) => Err(e),
        }
    }

    async fn plan(
        &self,
        model: &str,
        opts: &PromoteOptions,
    ) -> Result<Option<Rollout>, ControlError> {
        let version = match opts.version {
            Some(v) => v,
            None => self.newest(model)?,
        };
        self.verify(model, version)?;
        let route = self.fleet_route(model).await?;
        let live = route.live;
        let from = match live {
            Slot::Blue => route.blue.as_ref(),
            Slot::Green => route.green.as_ref(),
        }
        .map(|s| s.version);
        if from == Some(version) && route.weights.of(live) == 100 {
            self.say(&format!(
                "{model} v{version} is already live on {}; nothing to do",
                self.target.describe()
            ));
            return Ok(None);
        }
        let steps = match opts.strategy {
            Strategy::Canary => opts.steps.clone(),
            Strategy::BlueGreen | Strategy::Shadow => vec![100],
        };
        if steps.is_empty()
            || steps.last() != Some(&100)
            || steps.windows(2).any(|w| w[0] >= w[1])
            || steps[0] == 0
        {
            return Err(ControlError::Invalid(format!(
                "steps {steps:?} must rise from above 0 to end at 100"
            )));
        }
        let now = now_ms();
        Ok(Some(Rollout {
            id: format!("{model}-{version}-{now}"),
            model: model.to_owned(),
            strategy: opts.strategy,
            from_version: from,
            to_version: version,
            old_slot: live,
            steps,
            step: 0,
            phase: Phase::Pending,
            weights: route.weights,
            reason: None,
            checks: Vec::new(),
            bake_ms: u64::try_from(opts.bake.as_millis()).unwrap_or(u64::MAX),
            shadow_percent: opts.shadow_percent,
            thresholds: opts.thresholds,
            queries: opts.queries.clone(),
            started_ms: now,
            updated_ms: now,
        }))
    }

    async fn drive(
        &self,
        journal: &Journal,
        r: &mut Rollout,
        suite: &SuiteFile,
        opts: &PromoteOptions,
    ) -> Result<(), Step> {
        let (model, version, new) = (r.model.clone(), r.to_version, r.old_slot.other());
        if matches!(r.phase, Phase::RollingBack) {
            return Err(Step::Failed(
                r.reason
                    .clone()
                    .unwrap_or_else(|| "an interrupted rollback".into()),
            ));
        }
        if matches!(r.phase, Phase::Pending | Phase::Loading) {
            self.record(journal, r, Phase::Loading)
                .await
                .map_err(Step::Abort)?;
            self.say(&format!(
                "loading {model} v{version} into {new} on {}",
                self.target.describe()
            ));
            let t = Instant::now();
            self.target
                .load(&model, new, version)
                .await
                .map_err(fleet_failed)?;
            self.say(&format!(
                "loaded and warm everywhere in {:.0} ms",
                t.elapsed().as_secs_f64() * 1e3
            ));
        }
        if matches!(r.phase, Phase::Loading | Phase::SmokeTesting) {
            self.record(journal, r, Phase::SmokeTesting)
                .await
                .map_err(Step::Abort)?;
            // The target says where `new` is reached and which slot of
            // those gateways holds it (a Kubernetes colour serves from its
            // pods' blue slot).
            let report = smoke::run(
                &self.client,
                &self.target.slot_urls(new),
                suite,
                &model,
                version,
                self.target.gateway_slot(new),
            )
            .await;
            if !report.passed() {
                return Err(Step::Failed(format!(
                    "smoke tests failed: {}",
                    report.failures.join("; ")
                )));
            }
            self.say(&format!(
                "smoke tests passed: {} runs against {new} alone, slowest {:.1} ms",
                report.runs, report.slowest_ms
            ));
        }
        if r.strategy == Strategy::Shadow
            && matches!(r.phase, Phase::SmokeTesting | Phase::Shadowing)
        {
            self.shadow_phase(journal, r, opts).await?;
        }
        while r.step < r.steps.len() {
            self.checkpoint(journal, r).await?;
            let w = r.steps[r.step];
            let weights = weights_for(r.old_slot, w);
            if r.phase != Phase::Baking || r.weights != weights {
                r.weights = weights;
                r.checks.clear();
                self.record(journal, r, Phase::Shifting)
                    .await
                    .map_err(Step::Abort)?;
                self.target
                    .set_weights(&model, weights)
                    .await
                    .map_err(fleet_failed)?;
                self.say(&format!(
                    "step {}/{}: {new} {w}% ({}: {}%)",
                    r.step + 1,
                    r.steps.len(),
                    r.old_slot,
                    100 - w
                ));
                self.record(journal, r, Phase::Baking)
                    .await
                    .map_err(Step::Abort)?;
            }
            if !opts.bake.is_zero() {
                let checks = self.bake(&model, version, new, opts).await?;
                r.checks.clone_from(&checks);
                self.record(journal, r, Phase::Baking)
                    .await
                    .map_err(Step::Abort)?;
                judge(&checks, &opts.thresholds)?;
            }
            r.step += 1;
        }
        r.reason = None;
        self.record(journal, r, Phase::Promoted)
            .await
            .map_err(Step::Abort)?;
        self.say(&format!(
            "PROMOTED: {model} v{version} is live in {new}; v{} stays warm in {} for an instant rollback",
            r.from_version.map_or_else(|| "-".into(), |v| v.to_string()),
            r.old_slot
        ));
        // Promotion stands whatever happens here: the target only tidies up.
        if let Err(e) = self.target.promoted(&model, new).await {
            self.say(&format!("note: after promotion: {e}"));
        }
        Ok(())
    }

    async fn shadow_phase(
        &self,
        journal: &Journal,
        r: &mut Rollout,
        opts: &PromoteOptions,
    ) -> Result<(), Step> {
        let (model, version, new) = (r.model.clone(), r.to_version, r.old_slot.other());
        self.record(journal, r, Phase::Shadowing)
            .await
            .map_err(Step::Abort)?;
        self.target
            .set_shadow(&model, opts.shadow_percent)
            .await
            .map_err(fleet_failed)?;
        self.say(&format!(
            "shadowing {}% of live traffic to {new} for {:?}",
            opts.shadow_percent, opts.bake
        ));
        let before = self.scrape(&model, version, new).await;
        self.watchful_sleep(&model, opts.bake).await?;
        let after = self.scrape(&model, version, new).await;
        let check = match (before, after) {
            (Ok(b), Ok(a)) => analysis::shadow_check(&a.since(&b), &opts.thresholds),
            (Err(e), _) | (_, Err(e)) => {
                scrape_failed("shadow_agreement", opts.thresholds.min_shadow_agreement, &e)
            }
        };
        self.report(&check);
        r.checks = vec![check.clone()];
        self.target
            .set_shadow(&model, 0)
            .await
            .map_err(fleet_failed)?;
        judge(&[check], &opts.thresholds)
    }

    async fn bake(
        &self,
        model: &str,
        version: u64,
        slot: Slot,
        opts: &PromoteOptions,
    ) -> Result<Vec<CheckResult>, Step> {
        self.say(&format!("baking {:?}", opts.bake));
        let before = self.scrape(model, version, slot).await;
        self.watchful_sleep(model, opts.bake).await?;
        let after = self.scrape(model, version, slot).await;
        let mut checks = match (before, after) {
            (Ok(b), Ok(a)) => {
                let window = a.since(&b);
                let mut checks = analysis::traffic_checks(&window, &opts.thresholds);
                checks.extend(analysis::drift_check(&window, &opts.thresholds));
                checks
            }
            (Err(e), _) | (_, Err(e)) => {
                let mut checks = vec![
                    scrape_failed("error_rate", opts.thresholds.max_error_rate, &e),
                    scrape_failed("p99_latency_ms", opts.thresholds.max_p99_ms, &e),
                ];
                if let Some(max) = opts.thresholds.max_drift_share {
                    checks.push(scrape_failed("drift_share", max, &e));
                }
                checks
            }
        };
        for q in &opts.queries {
            checks.push(
                q.run(&self.client, self.prometheus.as_deref(), model, version)
                    .await,
            );
        }
        for c in &checks {
            self.report(c);
        }
        Ok(checks)
    }

    /// Sleeps, waking every 100 ms to honour an abort request.
    async fn watchful_sleep(&self, model: &str, total: Duration) -> Result<(), Step> {
        let until = Instant::now() + total;
        while Instant::now() < until {
            if Marker::Abort.present(&self.paths.state, model) {
                return Err(Step::Aborted);
            }
            tokio::time::sleep(Duration::from_millis(100).min(until - Instant::now())).await;
        }
        Ok(())
    }

    /// Between steps: an abort request stops here; a pause request waits
    /// here (recorded as paused) until `resume` or `abort`.
    async fn checkpoint(&self, journal: &Journal, r: &mut Rollout) -> Result<(), Step> {
        let state = self.paths.state.clone();
        if Marker::Abort.present(&state, &r.model) {
            return Err(Step::Aborted);
        }
        if !Marker::Pause.present(&state, &r.model) {
            return Ok(());
        }
        let before = r.phase;
        r.reason = Some("paused by an operator".into());
        self.record(journal, r, Phase::Paused)
            .await
            .map_err(Step::Abort)?;
        self.say(&format!(
            "PAUSED at step {}/{}; `controller resume {}` or `controller abort {}`",
            r.step + 1,
            r.steps.len(),
            r.model,
            r.model
        ));
        while Marker::Pause.present(&state, &r.model) {
            if Marker::Abort.present(&state, &r.model) {
                return Err(Step::Aborted);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        r.reason = None;
        self.record(journal, r, before).await.map_err(Step::Abort)?;
        self.say("resumed");
        Ok(())
    }

    fn report(&self, c: &CheckResult) {
        let value = c
            .value
            .map_or_else(|| "n/a".to_owned(), |v| format!("{v:.4}"));
        self.say(&format!(
            "  check {:<18} {:<12} value {value} threshold {} — {}",
            c.name, c.verdict, c.threshold, c.detail
        ));
    }

    async fn scrape(&self, model: &str, version: u64, slot: Slot) -> Result<Snapshot, String> {
        let slot = self.target.gateway_slot(slot);
        let mut snapshot = Snapshot::default();
        for url in self.target.metrics_urls() {
            let text = self
                .client
                .get(&url)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| format!("scrape of {url} failed: {e}"))?
                .text()
                .await
                .map_err(|e| format!("scrape of {url} failed: {e}"))?;
            snapshot.add(&text, model, version, slot);
        }
        Ok(snapshot)
    }

    async fn roll_back(
        &self,
        journal: &Journal,
        r: &mut Rollout,
        reason: &str,
        end: Phase,
    ) -> Result<(), ControlError> {
        r.reason = Some(reason.to_owned());
        self.record(journal, r, Phase::RollingBack).await?;
        let t = Instant::now();
        let model = r.model.clone();
        // Both, even when the first fails: a gateway that is down must not
        // keep the reachable ones on the new version.
        let unshadowed = self.target.set_shadow(&model, 0).await;
        let reweighted = self
            .target
            .set_weights(&model, Weights::all_to(r.old_slot))
            .await;
        let undone = unshadowed.and(reweighted);
        if let Err(e) = undone {
            return Err(ControlError::Fleet(format!(
                "rollback of {model} is incomplete: {e}; the log keeps it as rolling back — rerun `controller abort {model}`"
            )));
        }
        r.weights = Weights::all_to(r.old_slot);
        self.record(journal, r, end).await?;
        self.say(&format!(
            "every gateway is back on v{} in {} ({:.0} ms)",
            r.from_version.map_or_else(|| "-".into(), |v| v.to_string()),
            r.old_slot,
            t.elapsed().as_secs_f64() * 1e3
        ));
        Ok(())
    }

    /// `abort`: undo an interrupted or running rollout on every gateway.
    ///
    /// # Errors
    /// [`ControlError`].
    pub async fn abort(&self, model: &str) -> Result<Rollout, ControlError> {
        let _lock = match Journal::lock(&self.paths.state, model) {
            Ok(lock) => lock,
            Err(JournalError::Locked { .. }) => return self.abort_running(model).await,
            Err(e) => return Err(e.into()),
        };
        Marker::Abort.clear(&self.paths.state, model);
        Marker::Pause.clear(&self.paths.state, model);
        let journal = Journal::new(&self.paths.state, model);
        let mut r = journal
            .current()?
            .filter(|r| !terminal(r.phase))
            .ok_or_else(|| {
                ControlError::Invalid(format!("{model} has no rollout in progress to abort"))
            })?;
        self.say(&format!(
            "aborting rollout {} of {model} v{} (at {:?})",
            r.id, r.to_version, r.phase
        ));
        self.roll_back(&journal, &mut r, "aborted by an operator", Phase::Aborted)
            .await?;
        Ok(r)
    }

    /// Asks the process running a rollout to abort it, and waits (at most a
    /// minute) until the log shows it undone.
    async fn abort_running(&self, model: &str) -> Result<Rollout, ControlError> {
        Marker::Abort
            .set(&self.paths.state, model)
            .map_err(|e| ControlError::Fleet(format!("cannot leave the abort request: {e}")))?;
        self.say(&format!(
            "a controller is rolling {model} out; asked it to abort"
        ));
        let journal = Journal::new(&self.paths.state, model);
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            if let Some(r) = journal.current()?.filter(|r| terminal(r.phase)) {
                return Ok(r);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(ControlError::Fleet(format!(
            "the running controller did not abort {model} within a minute; if it is stuck, stop it and run `controller abort {model}` again"
        )))
    }

    /// `rollback` / `undo`: after a promotion, put the previous version
    /// (still warm in the other slot) back in front of all traffic.
    ///
    /// # Errors
    /// [`ControlError`].
    pub async fn rollback(&self, model: &str) -> Result<Rollout, ControlError> {
        let _lock = Journal::lock(&self.paths.state, model)?;
        let journal = Journal::new(&self.paths.state, model);
        if let Some(r) = journal.current()?.filter(|r| !terminal(r.phase)) {
            return Err(ControlError::Invalid(format!(
                "rollout {} of {model} is in progress; use `controller abort {model}`",
                r.id
            )));
        }
        let route = self.fleet_route(model).await?;
        let standby = route.live.other();
        let previous = match standby {
            Slot::Blue => route.blue.as_ref(),
            Slot::Green => route.green.as_ref(),
        }
        .map(|s| s.version)
        .ok_or_else(|| {
            ControlError::Invalid(format!(
                "{model} has no previous version loaded in {standby} to roll back to"
            ))
        })?;
        let live_version = match route.live {
            Slot::Blue => route.blue.as_ref(),
            Slot::Green => route.green.as_ref(),
        }
        .map(|s| s.version);
        let now = now_ms();
        let mut r = Rollout {
            id: format!("{model}-rollback-{now}"),
            model: model.to_owned(),
            strategy: Strategy::BlueGreen,
            from_version: Some(previous),
            to_version: live_version.unwrap_or(previous),
            old_slot: standby,
            steps: vec![],
            step: 0,
            phase: Phase::Pending,
            weights: route.weights,
            reason: None,
            checks: vec![],
            bake_ms: 0,
            shadow_percent: 0,
            thresholds: Thresholds::default(),
            queries: vec![],
            started_ms: now,
            updated_ms: now,
        };
        self.say(&format!("rolling {model} back to v{previous} in {standby}"));
        self.roll_back(
            &journal,
            &mut r,
            "rollback by an operator",
            Phase::RolledBack,
        )
        .await?;
        Ok(r)
    }
}

enum Step {
    Failed(String),
    Paused(String),
    Aborted,
    Abort(ControlError),
}

/// Requests from another `controller` process to the one running a
/// rollout, as files beside the rollout log: the runner holds the lock, so
/// `pause`, `resume` and `abort` talk to it this way.
#[derive(Debug, Clone, Copy)]
pub enum Marker {
    /// Stop at the next step boundary.
    Pause,
    /// Roll back at the next check.
    Abort,
}

impl Marker {
    fn path(self, state: &Path, model: &str) -> PathBuf {
        let suffix = match self {
            Marker::Pause => "pause",
            Marker::Abort => "abort",
        };
        state.join("rollouts").join(format!("{model}.{suffix}"))
    }

    /// Whether the request is standing.
    pub fn present(self, state: &Path, model: &str) -> bool {
        self.path(state, model).exists()
    }

    /// Makes the request.
    ///
    /// # Errors
    /// I/O.
    pub fn set(self, state: &Path, model: &str) -> std::io::Result<()> {
        let path = self.path(state, model);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, b"")
    }

    /// Withdraws the request.
    pub fn clear(self, state: &Path, model: &str) {
        let _ = std::fs::remove_file(self.path(state, model));
    }
}

// Used as a `map_err` callback, which hands over the error by value.
#[allow(clippy::needless_pass_by_value)]
fn fleet_failed(e: FleetError) -> Step {
    Step::Failed(e.to_string())
}

fn scrape_failed(name: &str, threshold: f64, e: &str) -> CheckResult {
    CheckResult {
        name: name.to_owned(),
        value: None,
        threshold,
        verdict: "inconclusive".into(),
        detail: e.to_owned(),
    }
}

fn annotation_of(r: &Rollout) -> RolloutAnnotation {
    let phase = serde_json::to_value(r.phase)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let in_step = matches!(r.phase, Phase::Shifting | Phase::Baking);
    RolloutAnnotation {
        id: r.id.clone(),
        phase,
        step: u32::try_from(r.step + usize::from(in_step)).unwrap_or(u32::MAX),
        steps: u32::try_from(r.steps.len()).unwrap_or(u32::MAX),
        to_version: r.to_version,
        checks: r
            .checks
            .iter()
            .map(|c| CheckValue {
                name: c.name.clone(),
                value: c.value,
                threshold: c.threshold,
                verdict: c.verdict.clone(),
            })
            .collect(),
    }
}

/// Fails on any failed check; an inconclusive one fails or pauses as set.
fn judge(checks: &[CheckResult], t: &Thresholds) -> Result<(), Step> {
    if let Some(c) = checks.iter().find(|c| c.verdict == "fail") {
        return Err(Step::Failed(format!(
            "check {} failed: {}",
            c.name, c.detail
        )));
    }
    if let Some(c) = checks.iter().find(|c| c.verdict == "inconclusive") {
        let reason = format!("check {} is inconclusive: {}", c.name, c.detail);
        return Err(match t.on_inconclusive {
            Inconclusive::Fail => Step::Failed(reason),
            Inconclusive::Pause => Step::Paused(reason),
        });
    }
    Ok(())
}

/// Green's share `w` with the rest on the old slot.
pub fn weights_for(old: Slot, w: u32) -> Weights {
    match old {
        Slot::Blue => Weights {
            blue: 100 - w,
            green: w,
        },
        Slot::Green => Weights {
            blue: w,
            green: 100 - w,
        },
    }
}

/// Whether a phase ends a rollout.
pub fn terminal(p: Phase) -> bool {
    matches!(p, Phase::Promoted | Phase::RolledBack | Phase::Aborted)
}

fn noop(model: &str) -> Rollout {
    Rollout {
        id: String::new(),
        model: model.to_owned(),
        strategy: Strategy::BlueGreen,
        from_version: None,
        to_version: 0,
        old_slot: Slot::Blue,
        steps: vec![],
        step: 0,
        phase: Phase::Promoted,
        weights: Weights::all_to(Slot::Blue),
        reason: Some("already live".into()),
        checks: vec![],
        bake_ms: 0,
        shadow_percent: 0,
        thresholds: Thresholds::default(),
        queries: vec![],
        started_ms: 0,
        updated_ms: 0,
    }
}

/// The folder that holds `<model>.log` files, for `status` over all models.
pub fn logged_models(state: &Path) -> Vec<String> {
    let mut models: Vec<String> = std::fs::read_dir(state.join("rollouts"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".log"))
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    models.sort();
    models
}
