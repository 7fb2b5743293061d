//! `controller`: promote, abort, rollback, status, history, smoke, validate,
//! drift, profile.
//! Progress goes to stderr; the result to stdout, as text or `--json`.
//! Exit codes: 0 done, 1 rolled back, 2 bad input (nothing changed),
//! 3 the fleet needs a human, 4 another rollout holds the model, 5 the
//! rollout log is corrupt, 6 paused.

// A command-line tool prints its results.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use controller::fleet::cli::{KubeArgs, TargetKind};
use controller::fleet::{AnyTarget, LocalFleet, Target};
use controller::journal::{Journal, Phase, Rollout, Strategy};
use controller::rollout::{
    ControlError, Controller, Marker, Paths, PromoteOptions, logged_models, terminal,
};
use controller::source::cli::SourceArgs;
use controller::suite::{SuiteFile, parse_duration};
use switchyard_api::Manifest;

#[derive(Parser)]
#[command(
    name = "controller",
    version,
    about = "switchyard's rollout controller: promote a model version across a fleet of gateways with smoke tests, traffic steps, analysis and automatic rollback"
)]
struct Cli {
    /// Print the result as JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Admin URLs of the fleet's gateways, comma-separated.
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_GATEWAYS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8003"
    )]
    gateways: Vec<String>,
    /// Bearer token of the gateways' admin APIs.
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,
    /// The model repository.
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_MODELS",
        default_value = "models"
    )]
    models: PathBuf,
    /// Smoke suites and rollout settings, `<dir>/<model>.toml`.
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_SMOKE_TESTS",
        default_value = "smoke-tests"
    )]
    smoke_tests: PathBuf,
    /// Rollout logs and locks.
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_STATE_DIR",
        default_value = ".state/controller"
    )]
    state_dir: PathBuf,
    /// Base URL of a Prometheus server for the PromQL checks (`[[queries]]`).
    #[arg(long, global = true, env = "SWITCHYARD_PROMETHEUS")]
    prometheus: Option<String>,
    /// How long a gateway may take to answer an admin call.
    #[arg(long, global = true, default_value = "10s")]
    gateway_timeout: String,
    /// Where rollouts act: local (gateways through --gateways) or kubernetes (the Deployments and Services of k8s/).
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_TARGET",
        value_enum,
        default_value = "local"
    )]
    target: TargetKind,
    #[command(flatten)]
    kube: KubeArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum StrategyArg {
    BlueGreen,
    Canary,
    Shadow,
}

#[derive(Subcommand)]
enum Command {
    /// Roll a version out: load into standby, smoke-test, shift, analyse, promote or roll back.
    Promote {
        /// The model.
        model: String,
        /// The version [default: the newest in the repository]; with --from mlflow, MLflow's version number.
        #[arg(long)]
        version: Option<u64>,
        /// How traffic moves [default: the model's file, else canary].
        #[arg(long, value_enum)]
        strategy: Option<StrategyArg>,
        /// Canary steps for the new version, in percent [default: 10,50,100].
        #[arg(long, value_delimiter = ',')]
        steps: Option<Vec<u32>>,
        /// Bake time after each step, e.g. 30s [default: 30s].
        #[arg(long)]
        bake: Option<String>,
        /// Skip the steps: all traffic at once after the smoke tests.
        #[arg(long)]
        full: bool,
        /// Percent of live traffic mirrored in the shadow phase [default: 100].
        #[arg(long)]
        shadow_percent: Option<u32>,
        /// Continue the interrupted rollout of this model.
        #[arg(long)]
        resume: bool,
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Stop a running rollout at its next step, holding its weights, until `resume` or `abort`.
    Pause {
        /// The model.
        model: String,
    },
    /// Continue a paused rollout, or finish an interrupted one (promote --resume).
    Resume {
        /// The model.
        model: String,
    },
    /// Undo a rollout in progress: every gateway back on the old version.
    Abort {
        /// The model.
        model: String,
    },
    /// After a promotion, put the previous version back in front of all traffic.
    #[command(alias = "undo")]
    Rollback {
        /// The model.
        model: String,
    },
    /// Rollout phase and fleet routing of one model or all.
    Status {
        /// The model [default: every model with a rollout log].
        model: Option<String>,
        /// Print it again every --interval until interrupted; with a model, until its rollout ends (exit 0 Healthy, 1 otherwise).
        #[arg(long)]
        watch: bool,
        /// How often --watch refreshes.
        #[arg(long, default_value = "1s")]
        interval: String,
    },
    /// Every rollout of a model, oldest first.
    History {
        /// The model.
        model: String,
    },
    /// Run a version's smoke suite against the slot that holds it; no traffic change.
    Smoke {
        /// The model.
        model: String,
        /// The version, which must be loaded in a slot.
        #[arg(long)]
        version: u64,
    },
    /// Check every version's manifest and file hashes in the repository.
    Validate,
    /// Live drift of a model's loaded versions against their training data, per feature, added up over the fleet (--gateways).
    Drift {
        /// The model.
        model: String,
    },
    /// Write a version's reference profile (for drift) from its training data, and name it in its manifest.
    Profile {
        /// The model.
        model: String,
        /// The version, a folder of the repository.
        version: u64,
        /// The training data: a .csv with a header row, or a .parquet file; columns named as the manifest's features.
        #[arg(long)]
        data: PathBuf,
        /// Quantile bins per numeric feature.
        #[arg(long, default_value_t = 10)]
        bins: usize,
        /// Columns to treat as categorical whatever their values, comma-separated.
        #[arg(long, value_delimiter = ',')]
        categorical: Vec<String>,
        /// Whole-number columns with at most this many distinct values are categorical.
        #[arg(long, default_value_t = 20)]
        max_categories: usize,
        /// The column holding the model's predictions on these rows [default: one named like the first output, if any].
        #[arg(long)]
        prediction_column: Option<String>,
        /// Replace an existing profile.
        #[arg(long)]
        force: bool,
    },
}

fn progress(line: &str) {
    eprintln!("{line}");
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("controller: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let paths = Paths {
        models: cli.models.clone(),
        suites: cli.smoke_tests.clone(),
        state: cli.state_dir.clone(),
    };
    if let Command::Validate = cli.command {
        return validate(&paths.models, cli.json);
    }
    if let Command::Profile {
        model,
        version,
        data,
        bins,
        categorical,
        max_categories,
        prediction_column,
        force,
    } = &cli.command
    {
        let opts = controller::profiling::ProfileOptions {
            bins: *bins,
            categorical: categorical.clone(),
            max_categories: *max_categories,
            prediction_column: prediction_column.clone(),
            force: *force,
        };
        let dir = paths.models.join(model).join(version.to_string());
        return finish(cli.json, profile(&dir, data, &opts), |v| {
            format!(
                "wrote {} ({} rows; numeric: {}; categorical: {}); reload the version for the gateway to track drift",
                v["profile"].as_str().unwrap_or_default(),
                v["rows"],
                v["numeric"].as_array().map_or(0, Vec::len),
                v["categorical"].as_array().map_or(0, Vec::len),
            )
        });
    }
    if let Command::Drift { model } = &cli.command {
        let timeout = parse_duration(&cli.gateway_timeout).unwrap_or(Duration::from_secs(10));
        let report = controller::drift::fleet_drift(
            &reqwest::Client::new(),
            &cli.gateways,
            cli.admin_token.as_deref(),
            model,
            timeout,
        )
        .await
        .map_err(|e| ControlError::Fleet(e.to_string()))
        .map(|r| serde_json::json!(r));
        return finish(cli.json, report, |v| {
            serde_json::from_value(v.clone())
                .map(|r| controller::drift::table(&r))
                .unwrap_or_default()
        });
    }
    if let Command::History { model } = &cli.command {
        return finish(
            cli.json,
            Journal::new(&paths.state, model)
                .read()
                .map_err(ControlError::from)
                .map(|h| serde_json::json!(h)),
            |v| {
                v.as_array()
                    .map(|rs| rs.iter().map(line).collect::<Vec<_>>().join("\n"))
                    .unwrap_or_default()
            },
        );
    }
    let timeout = match parse_duration(&cli.gateway_timeout) {
        Ok(t) => t,
        Err(e) => {
            return fail(
                cli.json,
                &ControlError::Invalid(format!("--gateway-timeout: {e}")),
            );
        }
    };
    let fleet = match cli.target {
        TargetKind::Local => LocalFleet::connect(
            &cli.gateways,
            cli.admin_token.clone(),
            timeout,
            timeout * 12,
        )
        .await
        .map(AnyTarget::Local),
        TargetKind::Kubernetes => cli
            .kube
            .connect()
            .await
            .map(|t| AnyTarget::Kubernetes(Box::new(t))),
    };
    let fleet = match fleet {
        Ok(f) => f,
        Err(e) => return fail(cli.json, &ControlError::Invalid(e.to_string())),
    };
    let mut controller = Controller::new(&fleet, paths.clone(), progress);
    controller.prometheus.clone_from(&cli.prometheus);
    if let Command::Status {
        model,
        watch: true,
        interval,
    } = &cli.command
    {
        let every = match parse_duration(interval) {
            Ok(d) if !d.is_zero() => d,
            _ => {
                return fail(
                    cli.json,
                    &ControlError::Invalid(format!(
                        "--interval {interval:?}: give a duration such as 1s"
                    )),
                );
            }
        };
        return watch_status(cli.json, &fleet, &paths, model.clone(), every).await;
    }
    let result = match cli.command {
        Command::Promote {
            model,
            version,
            strategy,
            steps,
            bake,
            full,
            shadow_percent,
            resume,
            source,
        } => {
            match options(
                &paths,
                &model,
                version,
                strategy,
                steps,
                bake,
                full,
                shadow_percent,
                resume,
            )
            .and_then(|opts| {
                fleet
                    .supports(opts.strategy)
                    .map(|()| opts)
                    .map_err(ControlError::Invalid)
            }) {
                // The source is read only once every other flag is known good.
                Ok(opts) => match source
                    .resolve(&paths, &model, version, resume, progress)
                    .await
                {
                    Ok(from) => controller
                        .promote(
                            &model,
                            &PromoteOptions {
                                version: from.version,
                                ..opts
                            },
                        )
                        .await
                        .map(|r| from.annotate(serde_json::json!(r))),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
        }
        Command::Pause { model } => pause(&paths, &model),
        Command::Resume { model } => {
            // A paused runner holds the lock and waits for its request to go;
            // otherwise this process finishes the interrupted rollout.
            let paused_runner = Marker::Pause.present(&paths.state, &model);
            Marker::Pause.clear(&paths.state, &model);
            let free = Journal::lock(&paths.state, &model).is_ok();
            if paused_runner && !free {
                Ok(serde_json::json!({"model": model, "resumed": true}))
            } else {
                match options(&paths, &model, None, None, None, None, false, None, true) {
                    Ok(opts) => controller
                        .promote(&model, &opts)
                        .await
                        .map(|r| serde_json::json!(r)),
                    Err(e) => Err(e),
                }
            }
        }
        Command::Abort { model } => controller.abort(&model).await.map(|r| serde_json::json!(r)),
        Command::Rollback { model } => controller
            .rollback(&model)
            .await
            .map(|r| serde_json::json!(r)),
        Command::Status { model, .. } => status(&fleet, &paths, model).await,
        Command::Smoke { model, version } => {
            smoke(&controller, &fleet, &paths, &model, version).await
        }
        Command::History { .. }
        | Command::Validate
        | Command::Drift { .. }
        | Command::Profile { .. } => unreachable_command(),
    };
    finish(cli.json, result, |v| {
        if v.get("phase").is_some() {
            line(v)
        } else if is_status(v) {
            status_text(v)
        } else {
            serde_json::to_string_pretty(v).unwrap_or_default()
        }
    })
}

fn unreachable_command() -> Result<serde_json::Value, ControlError> {
    Err(ControlError::Invalid("handled above".into()))
}

#[allow(clippy::too_many_arguments, clippy::fn_params_excessive_bools)]
fn options(
    paths: &Paths,
    model: &str,
    version: Option<u64>,
    strategy: Option<StrategyArg>,
    steps: Option<Vec<u32>>,
    bake: Option<String>,
    full: bool,
    shadow_percent: Option<u32>,
    resume: bool,
) -> Result<PromoteOptions, ControlError> {
    let (file, _) = SuiteFile::load(&paths.suites, model)?;
    let strategy = match strategy {
        Some(StrategyArg::BlueGreen) => Strategy::BlueGreen,
        Some(StrategyArg::Canary) => Strategy::Canary,
        Some(StrategyArg::Shadow) => Strategy::Shadow,
        None => match file.rollout.strategy.as_deref() {
            None | Some("canary") => Strategy::Canary,
            Some("blue-green") => Strategy::BlueGreen,
            Some("shadow") => Strategy::Shadow,
            Some(other) => {
                return Err(ControlError::Invalid(format!(
                    "rollout.strategy {other:?} must be blue-green, canary or shadow"
                )));
            }
        },
    };
    let strategy = if full { Strategy::BlueGreen } else { strategy };
    let bake = match bake {
        Some(b) => parse_duration(&b).map_err(ControlError::Invalid)?,
        None => file
            .rollout
            .bake()
            .map_err(ControlError::Invalid)?
            .unwrap_or(Duration::from_secs(30)),
    };
    let shadow_percent = shadow_percent
        .or(file.rollout.shadow_percent)
        .unwrap_or(100);
    if shadow_percent == 0 || shadow_percent > 100 {
        return Err(ControlError::Invalid(format!(
            "shadow percent {shadow_percent} must be 1 to 100"
        )));
    }
    Ok(PromoteOptions {
        version,
        strategy,
        steps: steps
            .or(file.rollout.steps)
            .unwrap_or_else(|| vec![10, 50, 100]),
        bake,
        shadow_percent,
        thresholds: file.analysis,
        resume,
        queries: file.queries,
    })
}

fn pause(paths: &Paths, model: &str) -> Result<serde_json::Value, ControlError> {
    let running = Journal::new(&paths.state, model)
        .current()?
        .filter(|r| !terminal(r.phase));
    let Some(r) = running else {
        return Err(ControlError::Invalid(format!(
            "{model} has no rollout in progress to pause"
        )));
    };
    Marker::Pause
        .set(&paths.state, model)
        .map_err(|e| ControlError::Fleet(format!("cannot leave the pause request: {e}")))?;
    Ok(serde_json::json!({"model": model, "rollout": r.id, "pausing": true}))
}

async fn status(
    fleet: &AnyTarget,
    paths: &Paths,
    model: Option<String>,
) -> Result<serde_json::Value, ControlError> {
    let models = match model {
        Some(m) => vec![m],
        None => logged_models(&paths.state),
    };
    let mut out = Vec::new();
    for model in models {
        let rollout = Journal::new(&paths.state, &model).current()?;
        let routes = fleet.routes(&model).await;
        let consistent = routes.as_ref().is_ok_and(|rs| {
            rs.windows(2)
                .all(|w| w[0].weights == w[1].weights && w[0].live == w[1].live)
        });
        let health = match rollout.as_ref().map(|r| r.phase) {
            Some(Phase::Paused) => "Paused",
            Some(p) if !terminal(p) => "Progressing",
            _ if !consistent => "Degraded",
            Some(Phase::RolledBack) => "Degraded",
            _ => "Healthy",
        };
        out.push(serde_json::json!({
            "model": model,
            "status": health,
            "rollout": rollout,
            "gateways": routes.map_err(|e| e.to_string()),
        }));
    }
    Ok(serde_json::json!(out))
}

fn is_status(v: &serde_json::Value) -> bool {
    v.as_array()
        .is_some_and(|a| a.iter().all(|m| m.get("status").is_some()))
}

/// One line per model: its health, the fleet's routing and the last rollout.
fn status_text(v: &serde_json::Value) -> String {
    let Some(models) = v.as_array() else {
        return String::new();
    };
    if models.is_empty() {
        return "no rollout recorded yet (name a model to see its routing)".into();
    }
    models
        .iter()
        .map(|m| {
            let routes = match m["gateways"].get("Ok").and_then(|r| r.as_array()) {
                Some(rs) => {
                    let first = rs.first();
                    let live = first.and_then(|r| r["live"].as_str()).unwrap_or("-");
                    let version = first
                        .and_then(|r| r[live]["version"].as_u64())
                        .map_or_else(|| "-".into(), |v| v.to_string());
                    let weights = first.map_or_else(String::new, |r| {
                        format!(
                            "blue {} / green {}",
                            r["weights"]["blue"], r["weights"]["green"]
                        )
                    });
                    format!(
                        "live {live} v{version} ({weights}) on {} gateway(s)",
                        rs.len()
                    )
                }
                None => format!(
                    "gateways: {}",
                    m["gateways"]["Err"].as_str().unwrap_or("unreachable")
                ),
            };
            let rollout = if m["rollout"].is_null() {
                "no rollout recorded".into()
            } else {
                format!("last rollout: {}", line(&m["rollout"]))
            };
            format!(
                "{:<16} {:<12} {routes}; {rollout}",
                m["model"].as_str().unwrap_or("?"),
                m["status"].as_str().unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `status --watch`: the status again every `every`; with a model, until
/// its rollout is no longer progressing or paused.
async fn watch_status(
    json: bool,
    fleet: &AnyTarget,
    paths: &Paths,
    model: Option<String>,
    every: Duration,
) -> ExitCode {
    let started = std::time::Instant::now();
    loop {
        let v = match status(fleet, paths, model.clone()).await {
            Ok(v) => v,
            Err(e) => return fail(json, &e),
        };
        if json {
            println!("{v}");
        } else {
            println!(
                "[{:>7.1}s] {}",
                started.elapsed().as_secs_f64(),
                status_text(&v)
            );
        }
        let health = v[0]["status"].as_str().unwrap_or_default().to_owned();
        if model.is_some() && health != "Progressing" && health != "Paused" {
            return if health == "Healthy" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            };
        }
        tokio::time::sleep(every).await;
    }
}

async fn smoke(
    controller: &Controller<'_, AnyTarget>,
    fleet: &AnyTarget,
    paths: &Paths,
    model: &str,
    version: u64,
) -> Result<serde_json::Value, ControlError> {
    let dir = paths.models.join(model).join(version.to_string());
    let manifest = Manifest::load(&dir).map_err(|e| ControlError::Invalid(e.to_string()))?;
    let (suite, path) = SuiteFile::load(&paths.suites, model)?;
    let problems = suite.problems(&manifest);
    if !problems.is_empty() {
        return Err(controller::suite::SuiteError::Mismatch {
            path,
            model: model.into(),
            version,
            problems,
        }
        .into());
    }
    let routes = fleet
        .routes(model)
        .await
        .map_err(|e| ControlError::Invalid(e.to_string()))?;
    let slot = routes
        .first()
        .and_then(|r| {
            [r.live, r.live.other()].into_iter().find(|&s| {
                match s {
                    switchyard_api::admin::Slot::Blue => r.blue.as_ref(),
                    switchyard_api::admin::Slot::Green => r.green.as_ref(),
                }
                .is_some_and(|v| v.version == version)
            })
        })
        .ok_or_else(|| {
            ControlError::Invalid(format!(
                "version {version} of {model} is not loaded in a slot; load it first (promote does)"
            ))
        })?;
    let report = controller::smoke::run(
        &controller.client,
        &fleet.slot_urls(slot),
        &suite,
        model,
        version,
        fleet.gateway_slot(slot),
    )
    .await;
    if report.passed() {
        Ok(
            serde_json::json!({"model": model, "version": version, "slot": slot, "passed": true, "report": report}),
        )
    } else {
        Err(ControlError::RolledBack(format!(
            "smoke tests failed (no traffic was changed): {}",
            report.failures.join("; ")
        )))
    }
}

fn line(v: &serde_json::Value) -> String {
    let r: Option<Rollout> = serde_json::from_value(v.clone()).ok();
    match r {
        Some(r) => format!(
            "{} {:?} {} v{} -> v{} weights blue {} / green {}{}",
            r.id,
            r.phase,
            r.model,
            r.from_version.map_or_else(|| "-".into(), |x| x.to_string()),
            r.to_version,
            r.weights.blue,
            r.weights.green,
            r.reason.map(|x| format!(" ({x})")).unwrap_or_default()
        ),
        None => v.to_string(),
    }
}

fn finish(
    json: bool,
    result: Result<serde_json::Value, ControlError>,
    text: impl Fn(&serde_json::Value) -> String,
) -> ExitCode {
    match result {
        Ok(v) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                println!("{}", text(&v));
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(json, &e),
    }
}

fn fail(json: bool, e: &ControlError) -> ExitCode {
    if json {
        println!(
            "{}",
            serde_json::json!({"error": e.to_string(), "exit_code": e.exit_code()})
        );
    }
    eprintln!("controller: {e}");
    ExitCode::from(e.exit_code())
}

fn profile(
    dir: &std::path::Path,
    data: &std::path::Path,
    opts: &controller::profiling::ProfileOptions,
) -> Result<serde_json::Value, ControlError> {
    use controller::profiling::{Table, build, install, summary};
    let invalid = |e: controller::profiling::ProfilingError| ControlError::Invalid(e.to_string());
    let manifest = Manifest::load(dir).map_err(|e| ControlError::Invalid(e.to_string()))?;
    let table = Table::read(data).map_err(invalid)?;
    let source = data
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let profile = build(&manifest, &table, opts, &source).map_err(invalid)?;
    let path = install(dir, &profile, opts.force).map_err(invalid)?;
    let kinds = summary(&profile);
    Ok(serde_json::json!({
        "profile": path,
        "rows": profile.rows,
        "numeric": kinds.get("numeric").cloned().unwrap_or_default(),
        "categorical": kinds.get("categorical").cloned().unwrap_or_default(),
        "prediction": profile.prediction.as_ref().map(|p| &p.name),
    }))
}

fn validate(root: &std::path::Path, json: bool) -> ExitCode {
    let mut findings = Vec::new();
    let mut models: Vec<PathBuf> = match std::fs::read_dir(root) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect(),
        Err(e) => {
            return fail(
                json,
                &ControlError::Invalid(format!("cannot read repository {}: {e}", root.display())),
            );
        }
    };
    models.sort();
    for model in models {
        let mut versions: Vec<PathBuf> = std::fs::read_dir(&model)
            .map(|e| {
                e.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.join("model.toml").is_file())
                    .collect()
            })
            .unwrap_or_default();
        versions.sort();
        for dir in versions {
            let result = Manifest::load(&dir).and_then(|m| m.verify_files(&dir));
            findings.push(serde_json::json!({
                "version": dir.strip_prefix(root).unwrap_or(&dir).display().to_string(),
                "ok": result.is_ok(),
                "error": result.err().map(|e| e.to_string()),
            }));
        }
    }
    let failed = findings.iter().filter(|f| f["ok"] == false).count();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&findings).unwrap_or_default()
        );
    } else {
        for f in &findings {
            match f["error"].as_str() {
                None => println!("ok      {}", f["version"].as_str().unwrap_or("")),
                Some(e) => println!("FAILED  {}: {e}", f["version"].as_str().unwrap_or("")),
            }
        }
        println!("{} versions, {failed} failed", findings.len());
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}
