"""`make demo`: switchyard's main job on the dropout example, end to end.

A fleet of two gateways serves dropout v1 from a temporary repository (a
copy of models/dropout and its smoke suite). First the same two students
are scored once over each protocol (Open Inference Protocol v2 over HTTP
and over gRPC with tritonclient, KServe V1), and the answers must agree.
Then a traffic generator plays the users. `controller promote`
rolls v2 out (canary: smoke tests, 10 % -> 50 % -> 100 % with a bake and
analysis after each step) with no failed request; then the traffic drifts on
two features and the gateways' drift metrics, `controller drift` and the
drift alert's condition show it; then `controller promote` tries the broken
v3, whose smoke tests fail, and rolls back without touching traffic. A
summary gives the numbers and where to look next.

The copy's `[drift] window` is 10 s (the committed manifests say 5 min) so
the drift shows within seconds; everything else is as committed.

Exit code 0 when every step of the story happened as expected, 1 when one
did not (the message says which), 2 when the demo cannot start (a port in
use, a missing binary). Every process it starts is stopped with SIGTERM and
waited for, on success, failure or Ctrl-C.

Settings (environment):
  SWITCHYARD_GATEWAY_BIN      the gateway binary [target/release/gateway]
  SWITCHYARD_CONTROLLER_BIN   the controller binary [next to the gateway]
  SWITCHYARD_DEMO_PORT_BASE   gateway 1 listens on BASE..BASE+3 (HTTP, gRPC,
                              metrics, admin), gateway 2 on BASE+10.. [8000]
  SWITCHYARD_DEMO_RATE        requests/s in total, split over the fleet [100]
  SWITCHYARD_DEMO_BAKE        the canary's bake time per step [5s]
  SWITCHYARD_DEMO_STEADY      seconds of steady traffic before the promote [4]
  SWITCHYARD_DEMO_DRIFT_WINDOW  the copy's [drift] window [10s]
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.dont_write_bytecode = True  # no models/__pycache__: the gateway would read it as a model
sys.path.insert(0, str(ROOT / "models"))
import dropout_traffic  # noqa: E402

MODEL = "dropout"
DRIFTED = ["admission_grade", "grade_1st_sem"]
LISTENERS = ("HTTP", "gRPC", "metrics", "admin")
T0 = time.monotonic()


class StoryError(Exception):
    """A step of the story did not happen as expected."""


def env_float(name, default):
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        sys.exit(f"demo: {name}={os.environ[name]!r} is not a number")


def say(text):
    print(f"\n== {text}", flush=True)


def note(text):
    print(f"[{time.monotonic() - T0:5.1f}s] {text}", flush=True)


def expect(condition, failure):
    if not condition:
        raise StoryError(failure)


# ---- ports -------------------------------------------------------------------


def port_free(port):
    """Whether 127.0.0.1:port can be bound the way the gateway binds (with
    SO_REUSEADDR, so a closed connection's TIME_WAIT does not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_user(port):
    """The process listening on `port`, from /proc, or why it is unknown."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{f[9]}]")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    return f"pid {pid}: {' '.join(cmd.split())[:100]}"
            except OSError:
                continue
    return "a process this user cannot see" if inodes else "a socket that is not listening"


def check_ports(fleet):
    taken = [(g["name"], what, port) for g in fleet for what, port in g["ports"].items() if not port_free(port)]
    if taken:
        lines = [f"demo: port {port} on 127.0.0.1 ({name}'s {what} listener) is in use by {port_user(port)}"
                 for name, what, port in taken]
        lines.append("demo: stop what listens there, or move the demo with SWITCHYARD_DEMO_PORT_BASE=<port>")
        print("\n".join(lines), file=sys.stderr, flush=True)
        sys.exit(2)


# ---- processes ---------------------------------------------------------------


class Processes:
    """Everything the demo started, stopped in reverse order with SIGTERM."""

    def __init__(self):
        self.running = []

    def start(self, argv, **kw):
        proc = subprocess.Popen(argv, **kw)
        self.running.append(proc)
        return proc

    def stop_all(self):
        for proc in reversed(self.running):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.running):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        codes = [proc.returncode for proc in self.running]
        self.running.clear()
        return codes


def start_gateway(procs, binary, g, models, workdir, pin):
    state = workdir / g["name"]
    state.mkdir()
    env = dict(
        os.environ,
        SWITCHYARD_MODELS=str(models),
        SWITCHYARD_STATE_DIR=str(state),
        SWITCHYARD_PINNED_VERSIONS=pin,
        SWITCHYARD_HTTP_ADDR=f"127.0.0.1:{g['ports']['HTTP']}",
        SWITCHYARD_GRPC_ADDR=f"127.0.0.1:{g['ports']['gRPC']}",
        SWITCHYARD_METRICS_ADDR=f"127.0.0.1:{g['ports']['metrics']}",
        SWITCHYARD_ADMIN_ADDR=f"127.0.0.1:{g['ports']['admin']}",
    )
    g["log"] = workdir / f"{g['name']}.log"
    g["proc"] = procs.start([binary], env=env, stdout=open(g["log"], "w"), stderr=subprocess.STDOUT)


def wait_ready(g, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if g["proc"].poll() is not None:
            raise StoryError(f"{g['name']} exited with code {g['proc'].returncode}:\n{tail(g['log'])}")
        try:
            if requests.get(f"{g['http']}/v2/health/ready", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise StoryError(f"{g['name']} was not ready after {timeout} s:\n{tail(g['log'])}")


def shorten(text, limit=200):
    return text if len(text) <= limit else text[:limit] + " …"


def duration(seconds):
    return f"{seconds * 1e3:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def tail(path, lines=15):
    return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])


def controller(procs, binary, env, *args):
    """Runs `controller *args --json`, echoing its progress lines (stderr)
    as they come; returns its exit code and its JSON result."""
    proc = procs.start([binary, *args, "--json"], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)

    def pump():
        for line in proc.stderr:
            note(f"  controller: {shorten(line.rstrip())}")

    pumper = threading.Thread(target=pump, daemon=True)
    pumper.start()
    out = proc.stdout.read()
    proc.wait()
    pumper.join()
    try:
        return proc.returncode, json.loads(out)
    except json.JSONDecodeError:
        return proc.returncode, {"unparsed": out}


# ---- traffic -----------------------------------------------------------------


class Load:
    """The traffic generator against every gateway of the fleet, one
    phase at a time; each phase's outcomes are kept apart."""

    def __init__(self, fleet, rate):
        self.fleet, self.rate = fleet, rate
        self.rows = {}
        self.current = None
        self.phases = []  # (name, summary)

    def begin(self, name, drift=()):
        self.end()
        key = tuple(drift)
        if key not in self.rows:
            self.rows[key], _ = dropout_traffic.draw_rows(dropout_traffic.POOL_ROWS, seed=0, drift=list(drift))
        senders = [dropout_traffic.Traffic(g["http"], MODEL, self.rows[key], batch=1,
                                           rate=self.rate / len(self.fleet), concurrency=2, timeout=5)
                   for g in self.fleet]
        results = [None] * len(senders)

        def run(i):
            results[i] = senders[i].run(duration=600)  # bounded; ended by end()

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(senders))]
        for t in threads:
            t.start()
        self.current = (name, senders, threads, results)

    def end(self):
        if self.current is None:
            return None
        name, senders, threads, results = self.current
        for s in senders:
            s.stop.set()
        for t in threads:
            t.join()
        self.current = None
        total = {"requests": 0, "failed": 0, "outcomes": {}, "versions": {}, "seconds": max(r["seconds"] for r in results)}
        for r in results:
            total["requests"] += r["requests"]
            total["failed"] += r["failed"]
            for key in ("outcomes", "versions"):
                for k, v in r[key].items():
                    total[key][k] = total[key].get(k, 0) + v
        self.phases.append((name, total))
        note(f"traffic while {name}: {total['requests']} requests in {total['seconds']:.1f} s, "
             f"{total['failed']} failed, answered by versions {total['versions']}")
        return total


# ---- metrics -----------------------------------------------------------------


def samples(text, name):
    """(labels, value) of every sample of the metric `name`."""
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) + 1:].rsplit("} ", 1)
            yield dict(re.findall(r'(\w+)="([^"]*)"', labels)), float(value)


def drift_alerts(fleet, version):
    """The drift alerts' conditions in k8s/base/prometheusrule.yaml,
    evaluated on one scrape of every gateway: SwitchyardFeatureDrift holds for
    a feature when some gateway's ready window marks it drifted (max by
    feature); SwitchyardDatasetDrift when some ready window marks the dataset
    drifted. Returns ({feature: gateways}, gateways with the dataset drifted)."""
    features, dataset = {}, []
    for g in fleet:
        text = requests.get(f"{g['metrics']}/metrics", timeout=5).text
        ready = {lab["version"] for lab, v in samples(text, "switchyard_drift_ready") if lab["model"] == MODEL and v == 1}
        if str(version) not in ready:
            continue
        for lab, v in samples(text, "switchyard_drift_feature_drifted"):
            if lab["model"] == MODEL and lab["version"] == str(version) and v == 1:
                features.setdefault(lab["feature"], []).append(g["name"])
        if any(lab["model"] == MODEL and lab["version"] == str(version) and v == 1
               for lab, v in samples(text, "switchyard_drift_dataset_drifted")):
            dataset.append(g["name"])
    return features, dataset


# ---- rollout history -----------------------------------------------------------


STAGES = {"pending": "plan", "loading": "load", "smoke_testing": "smoke", "shadowing": "shadow",
          "shifting": "shift", "baking": "bake+analysis", "rolling_back": "rollback", "paused": "paused"}


def timings(records):
    """Per rollout: (to_version, final phase, total s, [(stage, s)], reason)
    from the log's records, each written when its phase began; records of
    the same phase and step (a bake, then its analysis result) are one stage."""
    rollouts = {}
    for r in records:
        rollouts.setdefault(r["id"], []).append(r)
    out = []
    for rs in rollouts.values():
        stages = []
        for a, b in zip(rs, rs[1:]):
            stage = STAGES.get(a["phase"], a["phase"])
            if a["phase"] in ("shifting", "baking") and a["steps"]:
                stage += f" {a['steps'][a['step']]}%"
            seconds = (b["updated_ms"] - a["updated_ms"]) / 1e3
            if stages and stages[-1][0] == stage:
                stages[-1] = (stage, stages[-1][1] + seconds)
            else:
                stages.append((stage, seconds))
        total = (rs[-1]["updated_ms"] - rs[0]["started_ms"]) / 1e3
        out.append((rs[-1]["to_version"], rs[-1]["phase"], total, stages, rs[-1].get("reason")))
    return out


# ---- the story -----------------------------------------------------------------


def prepare_repository(workdir, window):
    """A copy of models/dropout and its smoke suite, with a short drift window."""
    models = workdir / "models"
    shutil.copytree(ROOT / "models" / MODEL, models / MODEL, ignore=shutil.ignore_patterns("__pycache__"))
    for manifest in (models / MODEL).glob("*/model.toml"):
        text = manifest.read_text()
        text = re.sub(r'(?m)^window = ".*"$', f'window = "{window}"', text)
        manifest.write_text(text)  # model.toml is not under [files]: no hash changes
    suites = workdir / "smoke-tests"
    suites.mkdir()
    shutil.copy(ROOT / "smoke-tests" / f"{MODEL}.toml", suites)
    return models, suites


def live_versions(fleet):
    out = []
    for g in fleet:
        route = requests.get(f"{g['admin']}/admin/models/{MODEL}", timeout=5).json()
        out.append(route[route["live"]]["version"] if route.get(route["live"]) else None)
    return out


def drift_line(procs, ctl, ctl_env):
    """The fleet's drift of v2 in one line (from `controller drift --json`),
    and whether its window is ready."""
    _, report = controller(procs, ctl, ctl_env, "drift", MODEL)
    v2 = next((v for v in report.get("versions", []) if v["version"] == 2), None)
    if v2 is None or v2.get("drifted_share") is None:
        return f"not measured yet ({(v2 or {}).get('reason', 'no window')})", False
    value = {f["name"]: (f.get("stats") or {}).get(f["stat"]) for f in v2["features"]}
    stat = {f["name"]: f["stat"] for f in v2["features"]}
    other = max((n for n in value if n not in DRIFTED), key=lambda n: value[n] or 0)
    return (", ".join(f"{n} {stat[n]} {value[n]:.3f}" for n in DRIFTED)
            + f"; largest of the others: {other} {value[other]:.3f} ({v2['rows']} rows)"), True


def watch_drift(fleet, procs, ctl, ctl_env, window):
    """Polls until a whole window of drifted traffic has been seen and every
    gateway flags the drifted features; returns the alert's features."""
    start = time.monotonic()
    limit = 3 * window + 15
    while True:
        time.sleep(2)
        line, _ = drift_line(procs, ctl, ctl_env)
        features, _ = drift_alerts(fleet, 2)
        flagged = ", ".join(f"{f} on {len(gs)}/{len(fleet)}" for f, gs in sorted(features.items())) or "none"
        note(f"v2's drift: {line}; alert condition: {flagged}")
        everywhere = all(len(features.get(f, [])) == len(fleet) for f in DRIFTED)
        waited = time.monotonic() - start
        if (everywhere and waited >= window) or waited > limit:
            break
    expect(everywhere, f"{', '.join(DRIFTED)} should be flagged by every gateway within {limit} s; flagged: {features}")


def story(fleet, procs, ctl, ctl_env, load, settings):
    """The protocols, then the three acts; returns the fleet's drift report
    of the second."""
    ctx = (fleet, procs, ctl, ctl_env, load, settings)
    protocols(fleet[0])
    promote_v2(*ctx)
    report = drift_act(*ctx)
    promote_v3(*ctx)
    return report


def protocols(g, students=2):
    """The same students scored over each protocol, printed; the answers
    must name v1 and agree to the last bit, since one session scores them."""
    import numpy as np
    import tritonclient.grpc as grpcclient

    x, _ = dropout_traffic.draw_rows(students, seed=3)  # one of each label
    labels = dropout_traffic.sd.LABELS
    say(f"{students} students of the newest cohort, scored once over each protocol by {g['name']}")
    answers = {}

    http = requests.post(f"{g['http']}/v2/models/{MODEL}/infer", timeout=10, json={
        "id": "demo-1",
        "inputs": [{"name": dropout_traffic.sd.INPUT, "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]})
    expect(http.status_code == 200, f"OIP v2 over HTTP answered {http.status_code}: {shorten(http.text)}")
    body = http.json()
    out = {o["name"]: o for o in body["outputs"]}
    answers["OIP v2, HTTP/JSON"] = (f"POST /v2/models/{MODEL}/infer", body["model_version"],
                                    out["label"]["data"], np.asarray(out["probabilities"]["data"]).reshape(-1, 2))

    client = grpcclient.InferenceServerClient(url=f"127.0.0.1:{g['ports']['gRPC']}")
    try:
        tensor = grpcclient.InferInput(dropout_traffic.sd.INPUT, list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer(MODEL, [tensor], request_id="demo-2", client_timeout=10)
    except Exception as e:  # tritonclient raises its own InferenceServerException
        raise StoryError(f"OIP v2 over gRPC failed: {e}") from e
    finally:
        client.close()
    answers["OIP v2, gRPC"] = ("inference.GRPCInferenceService/ModelInfer", result.get_response().model_version,
                               result.as_numpy("label").tolist(), result.as_numpy("probabilities"))

    v1 = requests.post(f"{g['http']}/v1/models/{MODEL}:predict", timeout=10,
                       json={"instances": x.tolist()})
    expect(v1.status_code == 200, f"KServe V1 answered {v1.status_code}: {shorten(v1.text)}")
    body = v1.json()
    answers["KServe V1"] = (f"POST /v1/models/{MODEL}:predict", body["model_version"],
                            [p["label"] for p in body["predictions"]],
                            np.asarray([p["probabilities"] for p in body["predictions"]]))

    for name, (call, version, label, proba) in answers.items():
        print(f"  {name:<18} {call:<42} v{version}: {', '.join(labels[int(k)] for k in label)}; "
              f"P(dropout) {', '.join(f'{p:.4f}' for p in proba[:, 1])}", flush=True)
    first = next(iter(answers.values()))
    for name, (_, version, label, proba) in answers.items():
        expect(version == "1", f"{name} was answered by v{version}, not the pinned v1")
        expect(list(label) == list(first[2]) and np.array_equal(np.asarray(proba, dtype=np.float32),
                                                                 np.asarray(first[3], dtype=np.float32)),
               f"{name} disagrees with OIP v2 over HTTP: {label} {proba.tolist()} against {first[2]} {first[3].tolist()}")


def promote_v2(fleet, procs, ctl, ctl_env, load, settings):
    say(f"steady traffic: {settings['rate']:.0f} requests/s over {len(fleet)} gateways, students of the newest cohort")
    load.begin("serving v1")
    time.sleep(settings["steady"])
    steady = load.end()
    expect(steady["failed"] == 0 and set(steady["versions"]) == {"1"},
           f"v1 should have answered every request: {steady}")

    say(f"controller promote {MODEL} --version 2 --strategy canary --bake {settings['bake']}  (under traffic)")
    load.begin("promoting v2")
    code, result = controller(procs, ctl, ctl_env, "promote", MODEL, "--version", "2",
                              "--strategy", "canary", "--bake", settings["bake"])
    during = load.end()
    expect(code == 0 and result.get("phase") == "promoted",
           f"promote of v2 should succeed, exited {code}: {result.get('reason') or result}")
    expect(during["failed"] == 0, f"requests failed during the promote of v2: {during['outcomes']}")
    expect(live_versions(fleet) == [2] * len(fleet), f"v2 should be live everywhere: {live_versions(fleet)}")
    note(f"v2 is live on every gateway; {during['requests']} requests during the rollout, none failed")


def drift_act(fleet, procs, ctl, ctl_env, load, settings):
    before = drift_line(procs, ctl, ctl_env)[0]
    note(f"v2's drift before: {before}")

    say(f"the world changes: traffic drifts on {', '.join(DRIFTED)} (one standard deviation up)")
    load.begin("drifted traffic", drift=DRIFTED)
    watch_drift(fleet, procs, ctl, ctl_env, settings["window_s"])
    code, report = controller(procs, ctl, ctl_env, "drift", MODEL)
    expect(code == 0, f"controller drift failed: {report}")
    features, dataset = drift_alerts(fleet, 2)
    v2 = next(v for v in report["versions"] if v["version"] == 2)
    table = subprocess.run([ctl, "drift", MODEL], env=ctl_env, capture_output=True, text=True, timeout=30)
    print(f"\n$ controller drift {MODEL}\n{table.stdout.rstrip()}", flush=True)
    print(f"\nalert SwitchyardFeatureDrift: condition met for {', '.join(sorted(features))} "
          f"(the rule's `for: 15m` would then fire it)")
    print(f"alert SwitchyardDatasetDrift: {'condition met' if dataset else 'not met'} "
          f"(on the worst gateway {len(features)} of {len(v2['features'])} features drifted; "
          f"the dataset counts as drifted from a share of {v2['settings']['drift_share']})")
    return report


def promote_v3(fleet, procs, ctl, ctl_env, load, settings):
    say(f"controller promote {MODEL} --version 3  (broken on purpose: its smoke tests must fail)")
    load.begin("promoting v3 (rolled back)", drift=DRIFTED)
    time.sleep(1)
    code, result = controller(procs, ctl, ctl_env, "promote", MODEL, "--version", "3",
                              "--strategy", "canary", "--bake", settings["bake"])
    time.sleep(2)  # traffic goes on after the rollback, counted in the same phase
    during3 = load.end()
    expect(code == 1 and result.get("exit_code") == 1,
           f"promote of v3 should roll back (exit 1), exited {code}: {result}")
    expect(during3["failed"] == 0, f"requests failed during the promote of v3: {during3['outcomes']}")
    expect(set(during3["versions"]) == {"2"}, f"only v2 should have answered while v3 was tried: {during3['versions']}")
    expect(live_versions(fleet) == [2] * len(fleet), f"v2 should still be live everywhere: {live_versions(fleet)}")
    cases = result.get("error", "").count(' case "')
    note(f"v3 rolled back after {cases} failed smoke cases over the fleet; v2 still live everywhere; "
         f"{during3['requests']} requests from 1 s before to 2 s after, none failed")


def summary(fleet, load, ctl, ctl_env, report, wall):
    say("summary")
    print(f"{'phase':<28} {'requests':>9} {'failed':>7}  answered by")
    for name, t in load.phases:
        print(f"{name:<28} {t['requests']:>9} {t['failed']:>7}  "
              + ", ".join(f"v{v}: {n}" for v, n in sorted(t["versions"].items())))
    total = sum(t["requests"] for _, t in load.phases)
    failed = sum(t["failed"] for _, t in load.phases)
    print(f"{'all':<28} {total:>9} {failed:>7}")

    history = json.loads(subprocess.run([ctl, "history", MODEL, "--json"], env=ctl_env, capture_output=True,
                                        text=True, timeout=30).stdout)
    print("\nrollouts (from `controller history dropout --json`):")
    for version, phase, seconds, stages, reason in timings(history):
        print(f"  v{version}: {phase} after {duration(seconds)}: " + ", ".join(f"{s} {duration(t)}" for s, t in stages))
        if reason:
            print(f"        reason: {shorten(reason)}")

    v2 = next(v for v in report["versions"] if v["version"] == 2)
    print(f"\ndrift of v2 per feature over the fleet ({v2['rows']} rows in the last {v2['window_seconds']:.0f} s):")
    for f in v2["features"]:
        value = (f.get("stats") or {}).get(f["stat"])
        shown = "withheld" if value is None else f"{value:.3f}"
        print(f"  {f['name']:<30} {f['stat']:<14} {shown:>8}  (threshold {f['threshold']})"
              + ("  DRIFTED" if f.get("drifted") else ""))

    g = fleet[0]
    drift_doc = "docs/drift.md, " if (ROOT / "docs/drift.md").exists() else ""
    print(f"""
where to look next
  docs: README.md ("A five-minute tour": these steps by hand), docs/controller.md, {drift_doc}docs/gateway.md
  metrics: a gateway's /metrics (here {g['metrics']}/metrics while the demo ran): switchyard_requests_total,
           switchyard_rollout_*, switchyard_drift_*; the alert rules in k8s/base/prometheusrule.yaml
  commands: controller status {MODEL} | controller history {MODEL} | controller drift {MODEL} | controller rollback {MODEL}
            with SWITCHYARD_GATEWAYS set to the fleet's admin URLs (here {','.join(x['admin'] for x in fleet)})
demo finished in {wall:.1f} s""")


def fleet_of(base):
    fleet = []
    for i, offset in enumerate((0, 10), start=1):
        ports = {what: base + offset + k for k, what in enumerate(LISTENERS)}
        fleet.append({"name": f"gateway-{i}", "ports": ports, "http": f"http://127.0.0.1:{ports['HTTP']}",
                      "metrics": f"http://127.0.0.1:{ports['metrics']}",
                      "admin": f"http://127.0.0.1:{ports['admin']}"})
    return fleet


def binaries():
    gateway = Path(os.environ.get("SWITCHYARD_GATEWAY_BIN", ROOT / "target/release/gateway"))
    ctl = Path(os.environ.get("SWITCHYARD_CONTROLLER_BIN", gateway.with_name("controller")))
    for b in (gateway, ctl):
        if not os.access(b, os.X_OK):
            print(f"demo: {b} is not an executable; run `make demo` (it builds both)", file=sys.stderr)
            sys.exit(2)
    return str(gateway), str(ctl)


def on_signal(_signum, _frame):
    raise KeyboardInterrupt


def main():
    # Also when started in the background, where SIGINT arrives ignored.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    settings = {
        "rate": env_float("SWITCHYARD_DEMO_RATE", 100),
        "bake": os.environ.get("SWITCHYARD_DEMO_BAKE", "5s"),
        "steady": env_float("SWITCHYARD_DEMO_STEADY", 4),
        "window": os.environ.get("SWITCHYARD_DEMO_DRIFT_WINDOW", "10s"),
    }
    m = re.fullmatch(r"(\d+)s", settings["window"])
    if not m:
        sys.exit("demo: SWITCHYARD_DEMO_DRIFT_WINDOW must be whole seconds, e.g. 10s")
    settings["window_s"] = int(m.group(1))
    fleet = fleet_of(int(env_float("SWITCHYARD_DEMO_PORT_BASE", 8000)))
    gateway_bin, ctl = binaries()
    check_ports(fleet)

    workdir = Path(tempfile.mkdtemp(prefix="switchyard-demo-"))
    procs = Processes()
    load = Load(fleet, settings["rate"])
    failure = None
    try:
        models, suites = prepare_repository(workdir, settings["window"])
        say(f"a fleet of {len(fleet)} gateways on a copy of the repository ({workdir}), "
            f"pinned to {MODEL} v1 (the newest, v3, is the broken one)")
        note(f"{MODEL}'s [drift] window in the copy: {settings['window']} (committed: 5m), so drift shows in seconds")
        for g in fleet:
            start_gateway(procs, gateway_bin, g, models, workdir, f"{MODEL}=1")
        for g in fleet:
            wait_ready(g)
            note(f"{g['name']} ready: HTTP {g['http']}, metrics {g['metrics']}, admin {g['admin']}")
        ctl_env = dict(os.environ, SWITCHYARD_GATEWAYS=",".join(g["admin"] for g in fleet),
                       SWITCHYARD_MODELS=str(models), SWITCHYARD_SMOKE_TESTS=str(suites),
                       SWITCHYARD_STATE_DIR=str(workdir / "controller"))
        report = story(fleet, procs, ctl, ctl_env, load, settings)
        load.end()
        summary(fleet, load, ctl, ctl_env, report, time.monotonic() - T0)
    except StoryError as e:
        failure = str(e)
    except KeyboardInterrupt:
        failure = "interrupted"
    finally:
        load.end()
        procs.stop_all()
        gateway_codes = [g["proc"].returncode for g in fleet if "proc" in g]
        note(f"stopped everything with SIGTERM; gateways exited with {gateway_codes}")
        if failure is None and any(c != 0 for c in gateway_codes):
            failure = f"a gateway did not stop cleanly: exit codes {gateway_codes}"
        if failure and failure != "interrupted":
            for g in fleet:
                if "log" in g and g["log"].exists():
                    print(f"--- last lines of {g['name']}'s log\n{tail(g['log'])}", file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)
    if failure:
        print(f"\ndemo: FAILED: {failure}", file=sys.stderr, flush=True)
        sys.exit(130 if failure == "interrupted" else 1)


if __name__ == "__main__":
    main()
