#!/usr/bin/env python3
"""The loop's own figure: from a new model version pushed by the pipeline
(or registered in MLflow) to 100% of traffic on it, broken down by stage.

    .venv/bin/python scripts/bench/loop.py                 # release binaries, 3 runs per scenario
    .venv/bin/python scripts/bench/loop.py --runs 1 --no-mlflow --out /tmp/loop.json

Each scenario starts N release gateways (1, then 2) on free 127.0.0.1 ports
over a temporary copy of `models/dropout` (v1 and v2), pinned to v1, and
drives them with the dropout traffic generator (100 requests/s in all, 8
threads per gateway; enough for the analysis' 20 requests at the 10% step,
unless the machine is so busy that the senders starve: then the analysis is
inconclusive and the rollout rolls back, which the table counts).
Each run then:

1. pushes a new version as the pipeline's export does: v2's files copied
   into the next version folder, `model.toml`'s `version` set to its number
   (`--from mlflow`: the pipeline logs that folder to a real `mlflow server`
   and registers it with the alias `champion`; the clock starts once the
   version is registered);
2. runs `controller promote dropout [--from mlflow --alias champion] --json`
   with the suite's canary steps (10, 50, 100) and a 5 s bake.

Stages come from the controller's rollout log (`controller history dropout
--json`: one record per transition, stamped when it was written) and the
gateways' `switchyard_model_load_duration_seconds` (verify + load + warm-up
inside the gateway, the slowest gateway of the fleet):

  start+fetch  controller process start -> the rollout's first record
               (--from mlflow: download, sha256 check, import into the repository)
  plan         manifest and sha256 of every file, the fleet's routes
  load         the admin load call on every gateway, of which `gateway
               verify+load+warm-up` is the gateways' own figure
  smoke        the smoke suite against the standby slot alone, every gateway
  step N%      shift (weights on every gateway), bake (the configured 5 s),
               analysis (the rest of the baking stage: two scrapes per gateway)
  to 100%      push -> the weights at 100% on every gateway (the last bake starts)
  promoted     push -> the final analysis passed and the rollout is recorded done

Median of --runs runs per scenario; a table on stdout, every run in JSON
(`--out`, default target/bench/loop.json). Failed requests are counted; a
run with one is reported as such.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.dont_write_bytecode = True
sys.path.insert(0, str(ROOT / "models"))
import dropout_traffic  # noqa: E402

MODEL = "dropout"
BAKE = "5s"
RATE = 100.0
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/switchyard/target")) / "release"
MLFLOW_VENV = ROOT / ".venv-mlflow"

REGISTER = r"""
import sys
import mlflow
from mlflow import MlflowClient
client = MlflowClient()
mlflow.set_experiment("switchyard-loop-bench")
if not client.search_registered_models(filter_string="name = 'dropout'"):
    client.create_registered_model("dropout")
with mlflow.start_run() as run:
    mlflow.log_artifacts(sys.argv[1], artifact_path="switchyard")
mv = client.create_model_version("dropout", source=f"{run.info.artifact_uri}/switchyard", run_id=run.info.run_id)
client.set_registered_model_alias("dropout", "champion", mv.version)
print(mv.version)
"""


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Fleet:
    """N gateways on a copy of the dropout model, pinned to v1."""

    def __init__(self, n, gateway_bin, workdir):
        self.models = workdir / "models"
        for v in ("1", "2"):
            shutil.copytree(ROOT / "models" / MODEL / v, self.models / MODEL / v)
        self.suites = workdir / "smoke-tests"
        self.suites.mkdir()
        # Without the cases of the repository's broken v3: the pushed
        # versions take its number (and the next ones), and the suite's
        # known-answer cases (any version) are what a new version must pass.
        head, *cases = (ROOT / "smoke-tests" / f"{MODEL}.toml").read_text().split("\n[[smoke.cases]]\n")
        kept = [c for c in cases if "versions = [3]" not in c]
        (self.suites / f"{MODEL}.toml").write_text("\n[[smoke.cases]]\n".join([head, *kept]))
        self.procs, self.http, self.metrics, self.admin = [], [], [], []
        for i in range(n):
            http, grpc, metrics, admin = free_ports(4)
            env = dict(os.environ, SWITCHYARD_MODELS=str(self.models), SWITCHYARD_PINNED_VERSIONS=f"{MODEL}=1",
                       SWITCHYARD_STATE_DIR=str(workdir / f"gateway-{i}"), SWITCHYARD_HTTP_ADDR=f"127.0.0.1:{http}",
                       SWITCHYARD_GRPC_ADDR=f"127.0.0.1:{grpc}", SWITCHYARD_METRICS_ADDR=f"127.0.0.1:{metrics}",
                       SWITCHYARD_ADMIN_ADDR=f"127.0.0.1:{admin}", SWITCHYARD_LOG="warn")
            log = open(workdir / f"gateway-{i}.log", "w")
            self.procs.append(subprocess.Popen([gateway_bin], env=env, stdout=log, stderr=subprocess.STDOUT))
            self.http.append(f"http://127.0.0.1:{http}")
            self.metrics.append(f"http://127.0.0.1:{metrics}/metrics")
            self.admin.append(f"http://127.0.0.1:{admin}")
        for url, proc in zip(self.http, self.procs):
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"loop: a gateway exited with {proc.returncode}; see {workdir}")
                try:
                    if requests.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"loop: {url} not ready in 60 s")
                time.sleep(0.1)

    def load_seconds(self):
        """Per gateway: (sum, count) of switchyard_model_load_duration_seconds for dropout."""
        out = []
        for url in self.metrics:
            text = requests.get(url, timeout=5).text
            got = {}
            for kind in ("sum", "count"):
                m = re.search(rf'^switchyard_model_load_duration_seconds_{kind}{{[^}}]*model="{MODEL}"[^}}]*}} (\S+)$',
                              text, re.M)
                got[kind] = float(m.group(1)) if m else 0.0
            out.append((got["sum"], got["count"]))
        return out

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class Traffic:
    """Steady traffic on every gateway in the background; failures counted."""

    def __init__(self, urls):
        rows, _ = dropout_traffic.draw_rows(dropout_traffic.POOL_ROWS, seed=0)
        self.senders = [dropout_traffic.Traffic(u, MODEL, rows, 1, RATE / len(urls), 8, 5) for u in urls]
        self.threads = [threading.Thread(target=s.run, args=(3600,), daemon=True) for s in self.senders]
        for t in self.threads:
            t.start()

    def failed(self):
        with_lock = [(s.lock, s) for s in self.senders]
        total = 0
        for lock, s in with_lock:
            with lock:
                total += sum(n for k, n in s.outcomes.items() if k != "200")
        return total

    def sent(self):
        return sum(s.sent for s in self.senders)

    def stop(self):
        for s in self.senders:
            s.stop.set()
        for t in self.threads:
            t.join()


def push_repository(fleet, version):
    """The pipeline's export: v2's files as the next version folder."""
    dest = fleet.models / MODEL / str(version)
    staging = fleet.models / MODEL / f".push-{version}"
    shutil.copytree(fleet.models / MODEL / "2", staging)
    manifest = staging / "model.toml"
    manifest.write_text(re.sub(r"(?m)^version = \d+$", f"version = {version}", manifest.read_text()))
    staging.rename(dest)  # the version appears whole, as an atomic export would make it


def push_mlflow(fleet, version, url, workdir):
    """The pipeline's export logged to MLflow and registered as the champion.
    The description differs per run: otherwise the controller would rightly
    reuse the identical version already in the repository."""
    folder = workdir / f"export-{version}"
    shutil.copytree(fleet.models / MODEL / "2", folder)
    manifest = folder / "model.toml"
    manifest.write_text(re.sub(r'(?m)^description = "(.*)"$', rf'description = "\1 (loop bench export {version})"',
                               manifest.read_text()))
    env = dict(os.environ, MLFLOW_TRACKING_URI=url, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    done = subprocess.run([str(MLFLOW_VENV / "bin/python"), "-c", REGISTER, str(folder)], env=env,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"loop: registering in MLflow failed:\n{done.stderr[-3000:]}")


def stages(records, t0_ms, ctl_start_ms, load_s):
    """The stage breakdown of one rollout, in seconds, from its records."""
    first = records[0]
    out = {"start+fetch": (first["started_ms"] - ctl_start_ms) / 1e3}
    at = {}
    for a, b in zip(records, records[1:]):
        key = a["phase"] if a["phase"] not in ("shifting", "baking") else f"{a['phase']} {a['steps'][a['step']]}"
        at[key] = at.get(key, 0.0) + (b["updated_ms"] - a["updated_ms"]) / 1e3
    out["plan"] = at.get("pending", 0.0)
    out["load"] = at.get("loading", 0.0)
    out["gateway verify+load+warm-up"] = load_s
    out["smoke"] = at.get("smoke_testing", 0.0)
    bake = first["bake_ms"] / 1e3
    for step in first["steps"]:
        out[f"step {step}% shift"] = at.get(f"shifting {step}", 0.0)
        out[f"step {step}% bake"] = bake
        out[f"step {step}% analysis"] = at.get(f"baking {step}", 0.0) - bake
    last = first["steps"][-1]
    full = next(r for r in records if r["phase"] == "baking" and r["steps"][r["step"]] == last)
    out["to 100%"] = (full["updated_ms"] - t0_ms) / 1e3
    out["promoted"] = (records[-1]["updated_ms"] - t0_ms) / 1e3
    return out


def one_run(fleet, traffic, ctl, workdir, version, mlflow_url):
    env = dict(os.environ, SWITCHYARD_GATEWAYS=",".join(fleet.admin), SWITCHYARD_MODELS=str(fleet.models),
               SWITCHYARD_SMOKE_TESTS=str(fleet.suites), SWITCHYARD_STATE_DIR=str(workdir / "controller"))
    failed_before, sent_before, started = traffic.failed(), traffic.sent(), time.monotonic()
    loads_before = fleet.load_seconds()
    if mlflow_url:
        push_mlflow(fleet, version, mlflow_url, workdir)
        env["MLFLOW_TRACKING_URI"] = mlflow_url
        source = ["--from", "mlflow", "--alias", "champion"]
        t0 = time.time()
    else:
        t0 = time.time()
        push_repository(fleet, version)
        source = ["--version", str(version)]
    ctl_start = time.time()
    done = subprocess.run([ctl, "promote", MODEL, *source, "--strategy", "canary", "--bake", BAKE, "--json"],
                          env=env, capture_output=True, text=True, timeout=300)
    result = json.loads(done.stdout or "{}")
    if done.returncode != 0 or result.get("phase") != "promoted":
        # A rollout the analysis refused (a starved machine's p99, say) is a
        # result too: kept, left out of the medians, shown in the table.
        return {"rolled back": result.get("error") or done.stderr[-500:], "exit code": done.returncode,
                "failed requests": traffic.failed() - failed_before,
                "requests/s sent": (traffic.sent() - sent_before) / (time.monotonic() - started)}
    history = json.loads(subprocess.run([ctl, "history", MODEL, "--json"], env=env, capture_output=True,
                                        text=True, timeout=60).stdout)
    records = [r for r in history if r["id"] == result["id"]]
    loads_after = fleet.load_seconds()
    gateway_load = max(a[0] - b[0] for a, b in zip(loads_after, loads_before))
    run = stages(records, int(t0 * 1000), int(ctl_start * 1000), gateway_load)
    run["failed requests"] = traffic.failed() - failed_before
    run["requests/s sent"] = (traffic.sent() - sent_before) / (time.monotonic() - started)
    run["version"] = result["to_version"]
    return run


def mlflow_server(workdir):
    port = free_ports(1)[0]
    root = workdir / "mlflow"
    root.mkdir()
    log = open(root / "server.log", "w")
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    proc = subprocess.Popen([str(MLFLOW_VENV / "bin/mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                             "--artifacts-destination", str(root / "artifacts")],
                            cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except requests.RequestException:
            pass
        time.sleep(0.25)
    os.killpg(proc.pid, signal.SIGTERM)
    raise SystemExit(f"loop: mlflow server not up; see {root / 'server.log'}")


def scenario(n, source, runs, gateway_bin, ctl):
    workdir = Path(tempfile.mkdtemp(prefix="switchyard-loop-"))
    server = None
    fleet = traffic = None
    try:
        mlflow_url = None
        if source == "mlflow":
            server, mlflow_url = mlflow_server(workdir)
        fleet = Fleet(n, gateway_bin, workdir)
        traffic = Traffic(fleet.http)
        time.sleep(2)
        out = []
        for i in range(runs):
            run = one_run(fleet, traffic, ctl, workdir, 3 + i, mlflow_url)
            if "rolled back" in run:
                print(f"  {n} gateway(s), {source}, run {i + 1}: ROLLED BACK: {run['rolled back']}",
                      file=sys.stderr, flush=True)
            else:
                print(f"  {n} gateway(s), {source}, run {i + 1}: to 100% {run['to 100%']:.2f} s, promoted "
                      f"{run['promoted']:.2f} s, failed requests {run['failed requests']}", file=sys.stderr, flush=True)
            out.append(run)
        return {"gateways": n, "source": source, "requests": traffic.sent(), "runs": out}
    finally:
        if traffic:
            traffic.stop()
        if fleet:
            fleet.stop()
        if server and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


def medians(runs):
    """Medians over the promoted runs (None when none was)."""
    done = [r for r in runs if "rolled back" not in r]
    if not done:
        return None
    keys = [k for k in done[0] if k != "version"]
    return {k: statistics.median(r[k] for r in done) for k in keys}


def table(results):
    results = [r for r in results if r["median"]]
    if not results:
        return "no run was promoted"
    cols = [f"{r['gateways']} gw, {r['source']}" for r in results]
    meds = [r["median"] for r in results]
    lines = ["| stage (median of runs, s) | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    lines.append("| runs promoted | " + " | ".join(
        f"{sum('rolled back' not in x for x in r['runs'])} of {len(r['runs'])}" for r in results) + " |")
    for key in meds[0]:
        cells = [f"{m[key]:.0f}" if key in ("failed requests", "requests/s sent") else f"{m[key]:.3f}" for m in meds]
        label = f"**{key}**" if key in ("to 100%", "promoted") else key
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "target/bench/loop.json")
    p.add_argument("--no-mlflow", action="store_true", help="skip the --from mlflow scenarios")
    p.add_argument("--gateways", default="1,2", help="fleet sizes, comma-separated")
    args = p.parse_args()
    gateway_bin = os.environ.get("SWITCHYARD_GATEWAY_BIN", str(TARGET / "gateway"))
    ctl = os.environ.get("SWITCHYARD_CONTROLLER_BIN", str(Path(gateway_bin).with_name("controller")))
    sources = ["repository"] + ([] if args.no_mlflow or not (MLFLOW_VENV / "bin/mlflow").exists() else ["mlflow"])
    results = []
    for source in sources:
        for n in (int(x) for x in args.gateways.split(",")):
            r = scenario(n, source, args.runs, gateway_bin, ctl)
            r["median"] = medians(r["runs"])
            results.append(r)
    print(table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(),
            "bake": BAKE, "rate": RATE, "gateway": gateway_bin, "controller": ctl,
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                     text=True).stdout.strip()}
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(f"\nwrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
