//! The promote flow end to end against two real gateways on 127.0.0.1,
//! under steady traffic: a canary promote with analysis, an operator
//! rollback, a version whose smoke tests fail (rolled back, live traffic
//! untouched), and refusals before anything changes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{copy, gateway, root, traffic};
use controller::fleet::{LocalFleet, Target};
use controller::journal::{Phase, Strategy};
use controller::rollout::{ControlError, Controller, Paths, PromoteOptions};
use controller::suite::{SuiteFile, Thresholds};
use gateway::server::Gateway;
use switchyard_api::admin::{Slot, Weights};

struct World {
    _dir: tempfile::TempDir,
    gateways: Vec<Gateway>,
    fleet: LocalFleet,
    paths: Paths,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    copy(&root().join("models"), &models);
    let suites = dir.path().join("smoke-tests");
    copy(&root().join("smoke-tests"), &suites);
    let gateways = vec![gateway(&models).await, gateway(&models).await];
    let admins: Vec<String> = gateways
        .iter()
        .map(|g| format!("http://{}", g.addrs.admin))
        .collect();
    let fleet = LocalFleet::connect(
        &admins,
        None,
        Duration::from_secs(5),
        Duration::from_secs(60),
    )
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
        fleet,
        paths,
    }
}

fn options(version: u64, strategy: Strategy, steps: Vec<u32>, bake_ms: u64) -> PromoteOptions {
    PromoteOptions {
        version: Some(version),
        strategy,
        steps,
        bake: Duration::from_millis(bake_ms),
        shadow_percent: 100,
        thresholds: Thresholds {
            min_requests: 10,
            ..Thresholds::default()
        },
        resume: false,
        queries: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_promote_then_a_rollback_lose_no_request() {
    let w = world().await;
    let controller = Controller::new(&w.fleet, w.paths.clone(), |l| eprintln!("{l}"));
    let load = traffic(&w.fleet.inference_urls(), 4);

    let r = controller
        .promote("boosted", &options(2, Strategy::Canary, vec![50, 100], 700))
        .await
        .unwrap();
    assert_eq!(r.phase, Phase::Promoted);
    assert_eq!(
        (r.from_version, r.to_version, r.old_slot),
        (Some(3), 2, Slot::Blue)
    );
    assert!(
        r.checks.iter().all(|c| c.verdict == "pass"),
        "{:?}",
        r.checks
    );
    for route in w.fleet.routes("boosted").await.unwrap() {
        assert_eq!(route.live, Slot::Green);
        assert_eq!(route.weights, Weights::all_to(Slot::Green));
        assert_eq!(route.green.unwrap().version, 2);
        assert_eq!(route.blue.unwrap().version, 3, "the old version stays warm");
    }

    // The rollout is visible in every gateway's metrics, for Prometheus.
    for url in w.fleet.metrics_urls() {
        let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        assert!(
            text.contains("switchyard_rollout_phase{model=\"boosted\",phase=\"promoted\"} 1"),
            "{url}"
        );
        assert!(text.contains("switchyard_rollout_phase{model=\"boosted\",phase=\"baking\"} 0"));
        assert!(text.contains(
            "switchyard_rollout_check_passing{check=\"error_rate\",model=\"boosted\"} 1"
        ));
        assert!(text.contains(
            "switchyard_rollout_check_threshold{check=\"p99_latency_ms\",model=\"boosted\"} 250"
        ));
        assert!(text.contains("switchyard_rollout_step{model=\"boosted\"} 2"));
    }

    let back = controller.rollback("boosted").await.unwrap();
    assert_eq!(back.phase, Phase::RolledBack);
    for route in w.fleet.routes("boosted").await.unwrap() {
        assert_eq!(route.weights, Weights::all_to(Slot::Blue));
    }
    let (ok, failed) = load.finish().await;
    assert_eq!(failed, 0, "requests failed during the rollout");
    assert!(ok > 100, "only {ok} requests");

    let history = controller::journal::Journal::new(&w.paths.state, "boosted")
        .read()
        .unwrap();
    let phases: Vec<Phase> = history.iter().map(|r| r.phase).collect();
    for p in [
        Phase::Pending,
        Phase::Loading,
        Phase::SmokeTesting,
        Phase::Shifting,
        Phase::Baking,
        Phase::Promoted,
        Phase::RolledBack,
    ] {
        assert!(phases.contains(&p), "{p:?} missing from {phases:?}");
    }
    for g in w.gateways {
        g.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_fails_its_smoke_tests_never_takes_traffic() {
    let w = world().await;
    // Version 4: the graph of version 1 under the smoke cases of version 2,
    // so its schema is right and its answers are wrong.
    let v4 = w.paths.models.join("boosted/4");
    std::fs::create_dir_all(&v4).unwrap();
    std::fs::copy(
        w.paths.models.join("boosted/1/model.onnx"),
        v4.join("model.onnx"),
    )
    .unwrap();
    let text = std::fs::read_to_string(w.paths.models.join("boosted/1/model.toml")).unwrap();
    let mut m = switchyard_api::Manifest::parse(&text).unwrap();
    m.version = 4;
    m.profile = None;
    m.files.retain(|f, _| f == "model.onnx");
    std::fs::write(v4.join("model.toml"), toml::to_string(&m).unwrap()).unwrap();
    let suite = w.paths.suites.join("boosted.toml");
    let text = std::fs::read_to_string(&suite)
        .unwrap()
        .replace("versions = [2]", "versions = [2, 4]");
    std::fs::write(&suite, text).unwrap();
    assert!(
        !SuiteFile::load(&w.paths.suites, "boosted")
            .unwrap()
            .0
            .cases_for(4)
            .is_empty()
    );

    let controller = Controller::new(&w.fleet, w.paths.clone(), |l| eprintln!("{l}"));
    let load = traffic(&w.fleet.inference_urls(), 4);
    let err = controller
        .promote("boosted", &options(4, Strategy::BlueGreen, vec![], 0))
        .await
        .unwrap_err();
    assert!(matches!(err, ControlError::RolledBack(_)), "{err}");
    assert_eq!(err.exit_code(), 1);
    assert!(err.to_string().contains("smoke tests failed"), "{err}");
    let (_, failed) = load.finish().await;
    assert_eq!(failed, 0);
    for route in w.fleet.routes("boosted").await.unwrap() {
        assert_eq!(
            route.weights,
            Weights::all_to(Slot::Blue),
            "live traffic never moved"
        );
        assert_eq!(route.blue.unwrap().version, 3);
    }
    for g in w.gateways {
        g.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_before_anything_changes() {
    let w = world().await;
    let controller = Controller::new(&w.fleet, w.paths.clone(), |l| eprintln!("{l}"));
    let err = controller
        .promote("boosted", &options(9, Strategy::Canary, vec![10, 100], 0))
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    assert!(err.to_string().contains("version 9"), "{err}");
    let err = controller
        .promote("ghost", &options(1, Strategy::Canary, vec![10, 100], 0))
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    let err = controller
        .promote(
            "boosted",
            &options(2, Strategy::Canary, vec![50, 20, 100], 0),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("must rise"), "{err}");
    // A version whose file does not match its hash.
    std::fs::write(w.paths.models.join("boosted/2/model.onnx"), b"tampered").unwrap();
    let err = controller
        .promote("boosted", &options(2, Strategy::Canary, vec![10, 100], 0))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("sha256 mismatch"), "{err}");
    // A suite that does not parse.
    std::fs::write(w.paths.suites.join("mlp.toml"), "[smoke\n").unwrap();
    let err = controller
        .promote("mlp", &options(1, Strategy::Canary, vec![10, 100], 0))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not parse"), "{err}");
    for route in w.fleet.routes("boosted").await.unwrap() {
        assert!(route.green.is_none(), "nothing was loaded");
    }
    assert!(
        controller::journal::Journal::new(&w.paths.state, "boosted")
            .read()
            .unwrap()
            .is_empty()
    );
    for g in w.gateways {
        g.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_rollout_pauses_resumes_and_aborts_on_request() {
    use controller::rollout::Marker;
    let w = world().await;
    let load = traffic(&w.fleet.inference_urls(), 4);
    let state = w.paths.state.clone();
    // A long bake, so the requests arrive while the rollout runs.
    let paths = w.paths.clone();
    let fleet = w.fleet.clone();
    let runner = tokio::spawn(async move {
        let controller = Controller::new(&fleet, paths, |l| eprintln!("{l}"));
        controller
            .promote(
                "boosted",
                &options(2, Strategy::Canary, vec![10, 50, 100], 1500),
            )
            .await
    });
    let journal = controller::journal::Journal::new(&state, "boosted");
    let wait_for = |phase: Phase| {
        let journal = journal.clone();
        async move {
            for _ in 0..200 {
                if journal.current().unwrap().is_some_and(|r| r.phase == phase) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("the rollout never reached {phase:?}");
        }
    };
    wait_for(Phase::Baking).await;
    Marker::Pause.set(&state, "boosted").unwrap();
    wait_for(Phase::Paused).await;
    let paused = journal.current().unwrap().unwrap();
    assert_eq!(
        paused.step, 1,
        "paused at the second step, holding the first step's weights"
    );
    for route in w.fleet.routes("boosted").await.unwrap() {
        assert_eq!(
            route.weights,
            Weights {
                blue: 90,
                green: 10
            }
        );
    }
    Marker::Pause.clear(&state, "boosted");
    wait_for(Phase::Baking).await;
    // Abort through the command's path: the runner holds the lock.
    let controller = Controller::new(&w.fleet, w.paths.clone(), |l| eprintln!("{l}"));
    let aborted = controller.abort("boosted").await.unwrap();
    assert_eq!(aborted.phase, Phase::Aborted);
    let err = runner.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("aborted by an operator"), "{err}");
    for route in w.fleet.routes("boosted").await.unwrap() {
        assert_eq!(route.weights, Weights::all_to(Slot::Blue));
    }
    assert!(
        !Marker::Abort.present(&state, "boosted"),
        "the request is cleared"
    );
    let (_, failed) = load.finish().await;
    assert_eq!(failed, 0);
    for g in w.gateways {
        g.shutdown().await;
    }
}

/// The controller binary, pointed at the world's fleet.
fn controller_cmd(w: &World, args: &[&str]) -> std::process::Command {
    let gateways: Vec<String> = w
        .gateways
        .iter()
        .map(|g| format!("http://{}", g.addrs.admin))
        .collect();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_controller"));
    cmd.arg("--gateways")
        .arg(gateways.join(","))
        .arg("--models")
        .arg(&w.paths.models)
        .arg("--smoke-tests")
        .arg(&w.paths.suites)
        .arg("--state-dir")
        .arg(&w.paths.state)
        .args(args)
        .env_remove("SWITCHYARD_GATEWAYS");
    cmd
}

/// Runs the controller binary against the world's fleet.
fn controller_bin(w: &World, args: &[&str], failpoint: Option<usize>) -> std::process::Output {
    let mut cmd = controller_cmd(w, args);
    match failpoint {
        Some(n) => cmd.env("SWITCHYARD_FAILPOINT", format!("crash-after-record:{n}")),
        None => cmd.env_remove("SWITCHYARD_FAILPOINT"),
    };
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_every_transition_the_fleet_ends_all_old_or_all_new() {
    let w = world().await;
    let load = traffic(&w.fleet.inference_urls(), 4);
    let promote = [
        "promote",
        "boosted",
        "--version",
        "2",
        "--strategy",
        "canary",
        "--steps",
        "50,100",
        "--bake",
        "300ms",
    ];
    let mut crashes = 0;
    for n in 1.. {
        // Every round starts from v3 live in blue, green empty, no state.
        w.fleet
            .set_weights("boosted", Weights::all_to(Slot::Blue))
            .await
            .unwrap();
        for g in &w.gateways {
            g.serving.unload_slot("boosted", Slot::Green).await.unwrap();
        }
        let _ = std::fs::remove_dir_all(&w.paths.state);

        let out = tokio::task::block_in_place(|| controller_bin(&w, &promote, Some(n)));
        if out.status.success() {
            assert!(n > 3, "a full promote writes more than 3 records");
            break;
        }
        crashes += 1;
        assert_eq!(
            out.status.code(),
            None,
            "round {n}: expected a crash, got {:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );

        // Between the crash and the recovery the fleet agrees with itself.
        let routes = w.fleet.routes("boosted").await.unwrap();
        assert!(
            routes.windows(2).all(|r| r[0].weights == r[1].weights),
            "round {n}: gateways disagree: {routes:?}"
        );
        let last = controller::journal::Journal::new(&w.paths.state, "boosted")
            .current()
            .unwrap()
            .unwrap();

        let (expect, args): (Weights, &[&str]) = if controller::rollout::terminal(last.phase) {
            let expect = if last.phase == Phase::Promoted {
                Weights::all_to(Slot::Green)
            } else {
                Weights::all_to(Slot::Blue)
            };
            (expect, &[])
        } else if n % 2 == 0 {
            (Weights::all_to(Slot::Green), &["resume", "boosted"])
        } else {
            (Weights::all_to(Slot::Blue), &["abort", "boosted"])
        };
        if !args.is_empty() {
            let out = tokio::task::block_in_place(|| controller_bin(&w, args, None));
            assert!(
                out.status.success(),
                "round {n} ({:?} after a crash at {:?}): {}",
                args,
                last.phase,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for route in w.fleet.routes("boosted").await.unwrap() {
            assert_eq!(
                route.weights, expect,
                "round {n}: crashed at {:?}, recovered with {args:?}",
                last.phase
            );
            if expect == Weights::all_to(Slot::Green) {
                assert_eq!(route.green.as_ref().unwrap().version, 2);
            }
            assert_eq!(route.blue.as_ref().unwrap().version, 3);
        }
    }
    assert!(crashes >= 6, "only {crashes} transitions were crashed at");
    let (_, failed) = load.finish().await;
    assert_eq!(
        failed, 0,
        "requests failed while the controller crashed and recovered"
    );
    for g in w.gateways {
        g.shutdown().await;
    }
}

/// A real Prometheus server scraping the world's gateways every second.
struct Prometheus {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn prometheus(w: &World) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let targets: Vec<String> = w
        .gateways
        .iter()
        .map(|g| format!("\"{}\"", g.addrs.metrics))
        .collect();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: switchyard\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prometheus is not on PATH: run the tests through `make test`, which fetches Debian's package");
    let p = Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let client = reqwest::Client::new();
    for _ in 0..200 {
        let up = client
            .get(format!("{}/api/v1/query", p.url))
            .query(&[("query", "count(up == 1)")])
            .send()
            .await;
        if let Ok(r) = up {
            let v: serde_json::Value = r.json().await.unwrap_or_default();
            if v["data"]["result"][0]["value"][1] == "2" {
                return p;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("Prometheus never scraped both gateways");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_checks_gate_a_rollout_and_no_data_never_passes() {
    let w = world().await;
    let prom = prometheus(&w).await;
    let load = traffic(&w.fleet.inference_urls(), 4);
    let suite = w.paths.suites.join("boosted.toml");
    let base = std::fs::read_to_string(&suite).unwrap();
    std::fs::write(
        &suite,
        format!(
            "{base}\n[[queries]]\nname = \"green_answers\"\nquery = 'sum(switchyard_requests_total{{model=\"$model\",version=\"$version\",code=\"200\"}})'\nmin = 1.0\n\n[[queries]]\nname = \"green_server_errors\"\nquery = 'sum(increase(switchyard_requests_total{{model=\"$model\",version=\"$version\",code=~\"5..\"}}[1m])) or vector(0)'\nmax = 0.0\n"
        ),
    )
    .unwrap();
    let mut controller = Controller::new(&w.fleet, w.paths.clone(), |l| eprintln!("{l}"));
    controller.prometheus = Some(prom.url.clone());
    let queries = SuiteFile::load(&w.paths.suites, "boosted")
        .unwrap()
        .0
        .queries;
    assert_eq!(queries.len(), 2);
    let mut opts = options(2, Strategy::Canary, vec![100], 3000);
    opts.queries = queries;

    let r = controller.promote("boosted", &opts).await.unwrap();
    assert_eq!(r.phase, Phase::Promoted);
    let answers = r.checks.iter().find(|c| c.name == "green_answers").unwrap();
    assert_eq!(answers.verdict, "pass", "{answers:?}");
    assert!(answers.value.unwrap() >= 1.0);
    controller.rollback("boosted").await.unwrap();

    // A query that returns nothing fails the rollout, naming the query.
    opts.queries.push(controller::prometheus::QueryCheck {
        name: "nothing_here".into(),
        query: "switchyard_no_such_metric{model=\"$model\"}".into(),
        max: Some(1.0),
        min: None,
    });
    let err = controller.promote("boosted", &opts).await.unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    assert!(
        err.to_string().contains("nothing_here") && err.to_string().contains("returned nothing"),
        "{err}"
    );
    for route in w.fleet.routes("boosted").await.unwrap() {
        assert_eq!(route.weights, Weights::all_to(Slot::Blue));
    }
    let (_, failed) = load.finish().await;
    assert_eq!(failed, 0);
    drop(prom);
    for g in w.gateways {
        g.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_promote_while_one_runs_is_refused() {
    let w = world().await;
    let load = traffic(&w.fleet.inference_urls(), 4);
    let (paths, fleet) = (w.paths.clone(), w.fleet.clone());
    let runner = tokio::spawn(async move {
        let controller = Controller::new(&fleet, paths, |l| eprintln!("{l}"));
        controller
            .promote(
                "boosted",
                &options(2, Strategy::Canary, vec![50, 100], 1500),
            )
            .await
    });
    let journal = controller::journal::Journal::new(&w.paths.state, "boosted");
    for _ in 0..200 {
        if journal
            .current()
            .unwrap()
            .is_some_and(|r| r.phase == Phase::Baking)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let second = Controller::new(&w.fleet, w.paths.clone(), |l| eprintln!("{l}"));
    let err = second
        .promote("boosted", &options(1, Strategy::BlueGreen, vec![], 0))
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 4, "{err}");
    assert!(err.to_string().contains("already running"), "{err}");
    // The first one is untouched and finishes.
    let done = runner.await.unwrap().unwrap();
    assert_eq!((done.phase, done.to_version), (Phase::Promoted, 2));
    let (_, failed) = load.finish().await;
    assert_eq!(failed, 0);
    for g in w.gateways {
        g.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_follows_a_rollout_to_its_end() {
    let w = world().await;
    let load = traffic(&w.fleet.inference_urls(), 4);
    // Nothing running: one report, Healthy, exit 0.
    let out = tokio::task::block_in_place(|| {
        controller_bin(
            &w,
            &["status", "boosted", "--watch", "--interval", "100ms"],
            None,
        )
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("Healthy") && text.contains("live blue v3"),
        "{text}"
    );

    // A canary of 1.2 s: --watch prints Progressing, then ends when it does.
    let promote = controller_bin_spawn(
        &w,
        &[
            "promote",
            "boosted",
            "--version",
            "2",
            "--strategy",
            "canary",
            "--steps",
            "50,100",
            "--bake",
            "600ms",
        ],
    );
    let started = std::time::Instant::now();
    let log = w.paths.state.join("rollouts/boosted.log");
    while !log.exists() && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = tokio::task::block_in_place(|| {
        controller_bin(
            &w,
            &[
                "--json",
                "status",
                "boosted",
                "--watch",
                "--interval",
                "100ms",
            ],
            None,
        )
    });
    let promoted = tokio::task::block_in_place(|| promote.wait_with_output().unwrap());
    assert!(
        promoted.status.success(),
        "{}",
        String::from_utf8_lossy(&promoted.stderr)
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(reports.len() >= 2, "refreshed while it ran: {reports:?}");
    assert_eq!(reports[0][0]["status"], "Progressing");
    let last = reports.last().unwrap();
    assert_eq!(last[0]["status"], "Healthy");
    assert_eq!(last[0]["rollout"]["phase"], "promoted");
    let (_, failed) = load.finish().await;
    assert_eq!(failed, 0);
    for g in w.gateways {
        g.shutdown().await;
    }
}

/// Starts the controller binary against the world's fleet, in the background.
fn controller_bin_spawn(w: &World, args: &[&str]) -> std::process::Child {
    controller_cmd(w, args)
        .env_remove("SWITCHYARD_FAILPOINT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}
