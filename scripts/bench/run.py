#!/usr/bin/env python3
"""switchyard's benchmark driver: the gateway and its peers side by side.

One run: builds the gateway and `loadgen` (release), starts the gateway on a
copy of the example models, measures cold start (process start to the first
successful inference) and RSS (from /proc, the whole process tree), runs
loadgen at each concurrency and body size over OIP v2 JSON, the binary
extension and gRPC (a connection per client, and 8 clients' streams per
connection); then the same HTTP cells against the reference servers built
from benches/src/reference.rs (a minimal axum handler calling ONNX Runtime,
and axum answering a constant: the machine's ceilings, measured in the same
run) and each Python peer (FastAPI, `mlflow models serve`, Seldon MLServer,
KServe), each installed into .venv-bench/<peer> from
python/bench-requirements/<peer>.txt. A peer that fails to install or run is
recorded with the reason and skipped. The example manifests run boosted on
the forest backend; --compare-ort measures the same cells a second time with
boosted pinned to ONNX Runtime.

Then three gateway scenarios: a swap burst (20 hot swaps of boosted's blue
slot, alternating v2/v3, under c=64 load), p99 of boosted while mlp's green
slot is loaded and unloaded over and over, and RSS per loaded version.

Raw results go to benches/results/<date>-<time>.json (server logs to
benches/results/raw/); a Markdown table for docs/benchmarks.md is printed
at the end. Standard library only; run it with any python3 >= 3.9.

    python3 scripts/bench/run.py                    # the full run (default 10 s per cell)
    python3 scripts/bench/run.py --duration 3 --warmup 1 --peers fastapi   # a smoke run
"""

import argparse
import datetime as dt
import glob
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PEERS = ["reference", "hello", "fastapi", "mlflow", "mlserver", "kserve"]
# Built from benches/src/reference.rs, not installed: the ceilings.
RUST_PEERS = {"reference", "hello"}
# Streams per connection in the shared-connection gRPC cells.
GRPC_STREAMS_PER_CONNECTION = 8
PEER_DIR = ROOT / "scripts/bench/peers"
MODEL = "boosted"
MODEL_ONNX = ROOT / "models/boosted/2/model.onnx"
GOLDEN = ROOT / "models/boosted/2/golden.json"
MIB = 1024 * 1024


def log(text):
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


# --------------------------------------------------------------------------
# processes, ports, memory


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_of(pid):
    """Every descendant pid of `pid`, from /proc."""
    parents = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue
        # the command name may hold spaces; ppid is the 2nd field after ')'
        fields = text[text.rfind(")") + 2 :].split()
        parents.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in parents.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def status_kib(pid, key):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mib(pid, key="VmRSS"):
    """RSS of a process and all its descendants, MiB (shared pages of forked
    workers count once per process, as `ps` would)."""
    return sum(status_kib(p, key) for p in [pid] + children_of(pid)) / 1024


class Server:
    """A process under test, with its log file, stopped on exit."""

    def __init__(self, name, argv, env, log_path, cwd=None):
        self.name = name
        self.log_path = log_path
        self.log_file = open(log_path, "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True
        )

    def alive(self):
        return self.proc.poll() is None

    def tail(self, n=15):
        try:
            return "\n".join(Path(self.log_path).read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log_file.close()


def http(method, url, body=None, headers=None, timeout=10):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_first_answer(server, url, body, limit_s):
    """Seconds from process start to the first 200 on `url`, or None."""
    deadline = server.started + limit_s
    while time.monotonic() < deadline:
        if not server.alive():
            return None
        try:
            status, _ = http("POST", url, body, timeout=2)
            if status == 200:
                return time.monotonic() - server.started
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.02)
    return None


# --------------------------------------------------------------------------
# loadgen


class Loadgen:
    def __init__(self, binary, args):
        self.binary = binary
        self.args = args

    def argv(self, port, protocol, rows, concurrency, duration=None, label=None, extra=()):
        a = self.args
        if protocol == "grpc-shared":
            protocol = "grpc"
            connections = max(1, concurrency // GRPC_STREAMS_PER_CONNECTION)
            extra = (*extra, "--connections", str(connections))
        argv = [
            str(self.binary), "--json", "--port", str(port), "--protocol", protocol, "--model", MODEL,
            "--rows", str(rows), "-c", str(concurrency),
            "--duration", f"{duration or a.duration}s", "--warmup", f"{a.warmup}s",
            "--threads", str(a.loadgen_threads), "--timeout", f"{a.timeout}s", "--golden", str(GOLDEN),
        ]
        if label:
            argv += ["--label", label]
        return argv + list(extra)

    def run(self, *args, **kw):
        argv = self.argv(*args, **kw)
        limit = self.args.duration + self.args.warmup + self.args.timeout + 60
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            return {"failed": f"loadgen did not finish in {limit} s"}
        if p.returncode != 0 or not p.stdout.strip():
            return {"failed": (p.stderr.strip() or p.stdout.strip() or f"exit {p.returncode}")[-600:]}
        return json.loads(p.stdout.strip().splitlines()[-1])

    def start(self, *args, **kw):
        """Runs in the background; `.result()` waits and parses."""
        argv = self.argv(*args, **kw)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        class Pending:
            def result(_self):
                out, err = proc.communicate()
                if proc.returncode != 0 or not out.strip():
                    return {"failed": (err.strip() or f"exit {proc.returncode}")[-600:]}
                return json.loads(out.strip().splitlines()[-1])

        return Pending()


def summary(r):
    if "failed" in r:
        return f"FAILED: {r['failed']}"
    lat = r["latency_us"]
    errs = f", errors {r['errors']} {r['errors_by_kind']}" if r["errors"] else ""
    warm = sum(r.get("warmup_errors", {}).values())
    warm = f", warm-up errors {warm}" if warm else ""
    return (
        f"{r['req_per_s']:,.0f} req/s ({r['rows_per_s']:,.0f} rows/s), p50 {lat['p50']} µs, "
        f"p99 {lat['p99']} µs, p99.9 {lat['p999']} µs, max {lat['max']} µs{errs}{warm}"
    )


def run_cells(lg, port, protocols, args, label, extra_for=lambda protocol: ()):
    cells = []
    for protocol in protocols:
        for rows in args.rows:
            for c in args.concurrency:
                reps = []
                for i in range(args.repeat):
                    r = lg.run(port, protocol, rows, c, label=label, extra=extra_for(protocol))
                    reps.append(r)
                    log(f"{label} {protocol} rows={rows} c={c}{f' #{i + 1}' if args.repeat > 1 else ''}: {summary(r)}")
                cells.append({"protocol": protocol, "rows": rows, "concurrency": c, "runs": reps})
    return cells


# --------------------------------------------------------------------------
# the gateway


def ort_library():
    found = sorted(glob.glob(str(ROOT / ".venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.*")))
    return found[0] if found else None


def build(args, target):
    if args.skip_build:
        log("--skip-build: using the binaries already built")
    else:
        log("building the gateway and loadgen (release)")
        subprocess.run(
            ["cargo", "build", "--release", "-p", "gateway", "--bin", "gateway",
             "-p", "switchyard-benches", "--bin", "loadgen", "--bin", "reference"],
            cwd=ROOT, check=True, env=dict(os.environ, CARGO_TARGET_DIR=str(target)),
        )
    for b in ("gateway", "loadgen", "reference"):
        if not (target / "release" / b).is_file():
            sys.exit(f"bench: {target / 'release' / b} is missing (build failed or --skip-build without a build)")
    return target / "release/gateway", target / "release/loadgen"


def infer_body(with_id=False):
    golden = json.loads(GOLDEN.read_text())
    row = golden["inputs"]["input"]["data"][:20]
    body = {"inputs": [{"name": "input", "shape": [1, 20], "datatype": "FP32", "data": row}]}
    if with_id:
        body["id"] = "bench"
    return body


class Gateway:
    def __init__(self, binary, ort, work, raw, name="gateway", extra=()):
        self.ports = {k: free_port() for k in ("http", "grpc", "metrics", "admin")}
        self.models = work / "models"
        if not self.models.exists():
            shutil.copytree(ROOT / "models", self.models, ignore=shutil.ignore_patterns("*.py", "README*"))
        state = work / f"state-{name}"
        shutil.rmtree(state, ignore_errors=True)
        argv = [str(binary), "--models", str(self.models), "--state-dir", str(state)]
        for k, p in self.ports.items():
            argv += [f"--{k}-addr", f"127.0.0.1:{p}"]
        argv += list(extra)
        env = dict(os.environ, ORT_DYLIB_PATH=ort, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        self.server = Server(name, argv, env, raw / f"{name}.log")
        self.admin = f"http://127.0.0.1:{self.ports['admin']}"
        url = f"http://127.0.0.1:{self.ports['http']}/v2/models/{MODEL}/infer"
        self.cold_start_s = wait_first_answer(self.server, url, infer_body(), 60)
        if self.cold_start_s is None:
            self.server.stop()
            raise RuntimeError(f"the gateway did not answer within 60 s:\n{self.server.tail()}")

    def rss(self, key="VmRSS"):
        return rss_mib(self.server.proc.pid, key)

    def put_slot(self, model, slot, version):
        t = time.monotonic()
        status, body = http("PUT", f"{self.admin}/admin/models/{model}/slots/{slot}", {"version": version}, timeout=60)
        return status, time.monotonic() - t, body[:300].decode(errors="replace")

    def delete_slot(self, model, slot):
        t = time.monotonic()
        status, body = http("DELETE", f"{self.admin}/admin/models/{model}/slots/{slot}", timeout=60)
        return status, time.monotonic() - t, body[:300].decode(errors="replace")


def scenario_swap_burst(gw, lg, args):
    """20 hot swaps of boosted's live (blue) slot, alternating v2/v3, under
    c=64 load; compared with a steady run of the same length just before."""
    port = gw.ports["http"]
    steady = lg.run(port, "http-json", 1, 64, label="steady")
    log(f"swap burst: steady c=64: {summary(steady)}")
    pending = lg.start(port, "http-json", 1, 64, label="swap-burst")
    time.sleep(args.warmup + 0.2)
    window = args.duration * 0.8
    swaps = []
    t0 = time.monotonic()
    for i in range(args.swaps):
        version = 2 if i % 2 == 0 else 3
        status, took, body = gw.put_slot(MODEL, "blue", version)
        swaps.append({"version": version, "status": status, "seconds": round(took, 4),
                      **({"error": body} if status != 200 else {})})
        next_at = t0 + window * (i + 1) / args.swaps
        time.sleep(max(0.0, next_at - time.monotonic()))
    burst_s = time.monotonic() - t0
    burst = pending.result()
    failed = [s for s in swaps if s["status"] != 200]
    log(f"swap burst: {len(swaps)} swaps in {burst_s:.2f} s ({len(failed)} refused), "
        f"load: {summary(burst)}")
    if burst_s > args.duration:
        log("swap burst: the swaps outlasted the measured window; raise --duration")
    return {"steady": steady, "burst": burst, "swaps": swaps, "burst_seconds": burst_s,
            "swaps_refused": len(failed), "burst_outlasted_window": burst_s > args.duration}


def scenario_load_while_serving(gw, lg, args, steady):
    """p99 of boosted while mlp v1 is loaded into mlp's green slot and
    unloaded again, over and over."""
    port = gw.ports["http"]
    pending = lg.start(port, "http-json", 1, 64, label="while-loading")
    stop_at = time.monotonic() + args.warmup + args.duration
    cycles, loads, unloads, refused = 0, [], [], []
    while time.monotonic() < stop_at:
        status, took, body = gw.put_slot("mlp", "green", 1)
        loads.append(took)
        if status != 200:
            refused.append(f"load {status}: {body}")
        status, took, body = gw.delete_slot("mlp", "green")
        unloads.append(took)
        if status != 200:
            refused.append(f"unload {status}: {body}")
        cycles += 1
    result = pending.result()
    log(f"while loading: {cycles} load/unload cycles of mlp (load median "
        f"{statistics.median(loads) * 1e3:.1f} ms, {len(refused)} refused), boosted: {summary(result)}")
    return {"steady": steady, "during": result, "cycles": cycles,
            "load_seconds_median": statistics.median(loads) if loads else None,
            "unload_seconds_median": statistics.median(unloads) if unloads else None,
            "refused": refused[:10]}


def scenario_memory(gw, args):
    """RSS before and after loading N more versions (copies of boosted v2
    under new model names, each in its blue slot)."""
    points = [{"extra_versions": 0, "rss_mib": gw.rss()}]
    errors = []
    for i in range(1, args.memory_versions + 1):
        name = f"memcopy{i:02d}"
        src = gw.models / MODEL / "2"
        dst = gw.models / name / "2"
        shutil.copytree(src, dst, dirs_exist_ok=True)
        manifest = (dst / "model.toml").read_text().replace(f'name = "{MODEL}"', f'name = "{name}"', 1)
        (dst / "model.toml").write_text(manifest)
        status, took, body = gw.put_slot(name, "blue", 2)
        if status != 200:
            errors.append(f"{name}: {status} {body}")
        time.sleep(0.2)
        points.append({"extra_versions": i, "rss_mib": gw.rss(), "load_seconds": round(took, 4)})
    n = len(points) - 1
    per = (points[-1]["rss_mib"] - points[0]["rss_mib"]) / n if n else None
    log(f"memory: RSS {points[0]['rss_mib']:.1f} MiB -> {points[-1]['rss_mib']:.1f} MiB after {n} more "
        f"versions of boosted v2: {per:.2f} MiB per loaded version" + (f"; errors {errors}" if errors else ""))
    return {"points": points, "mib_per_version": per, "model": "boosted v2 (100 trees)", "errors": errors}


# --------------------------------------------------------------------------
# peers


def requirements_hash(peer):
    return hashlib.sha256((ROOT / f"python/bench-requirements/{peer}.txt").read_bytes()).hexdigest()


def install_peer(peer, raw):
    """Creates .venv-bench/<peer> from its pinned requirements, once."""
    venv = ROOT / ".venv-bench" / peer
    stamp = venv / ".requirements.sha256"
    want = requirements_hash(peer)
    if stamp.is_file() and stamp.read_text().strip() == want:
        return venv, None
    log(f"{peer}: installing into {venv.relative_to(ROOT)} (once)")
    shutil.rmtree(venv, ignore_errors=True)
    with open(raw / f"install-{peer}.log", "wb") as out:
        for argv in (
            [sys.executable, "-m", "venv", str(venv)],
            [str(venv / "bin/pip"), "install", "--disable-pip-version-check",
             "-r", str(ROOT / f"python/bench-requirements/{peer}.txt")],
        ):
            p = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT)
            if p.returncode != 0:
                tail = "\n".join((raw / f"install-{peer}.log").read_text(errors="replace").splitlines()[-5:])
                return None, f"`{' '.join(argv[:3])} ...` failed with exit {p.returncode}: {tail}"
    stamp.write_text(want)
    return venv, None


def pip_versions(venv, names):
    p = subprocess.run([str(venv / "bin/python"), "-m", "pip", "list", "--format=json",
                        "--disable-pip-version-check"], capture_output=True, text=True)
    try:
        have = {x["name"].lower(): x["version"] for x in json.loads(p.stdout)}
    except json.JSONDecodeError:
        return {}
    return {n: have.get(n) for n in names}


def start_peer(peer, home, work, raw):
    """Starts a peer from `home`: the release folder for the Rust peers, the
    peer's venv for the Python ones. Returns (server, port, protocol,
    loadgen extras, infer url, body)."""
    port = free_port()
    if peer in RUST_PEERS:
        reference = Path(home) / "reference"
        argv = [str(reference), "--port", str(port), "--model", str(MODEL_ONNX)]
        env = dict(os.environ, ORT_DYLIB_PATH=ort_library() or "")
        server = Server(peer, argv, env, raw / f"{peer}.log")
        v2_url = f"http://127.0.0.1:{port}/v2/models/{MODEL}/infer"
        if peer == "hello":
            return server, port, "http-json", ("--path", "/hello"), f"http://127.0.0.1:{port}/hello", {}
        return server, port, "http-json", (), v2_url, infer_body()
    py = str(home / "bin/python")
    # the venv's bin first: `mlflow models serve` runs `uvicorn` by name
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
               PATH=f"{home / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", VIRTUAL_ENV=str(home))
    v2_url = f"http://127.0.0.1:{port}/v2/models/{MODEL}/infer"
    if peer == "fastapi":
        argv = [py, str(PEER_DIR / "fastapi_server.py"), "--model", str(MODEL_ONNX), "--name", MODEL,
                "--port", str(port)]
        return Server(peer, argv, env, raw / f"{peer}.log"), port, "http-json", (), v2_url, infer_body()
    if peer == "kserve":
        # kserve parses sys.argv at import: the server script takes its settings from the environment
        env.update(BENCH_ONNX=str(MODEL_ONNX), BENCH_NAME=MODEL, BENCH_PORT=str(port))
        argv = [py, str(PEER_DIR / "kserve_server.py")]
        return (Server(peer, argv, env, raw / f"{peer}.log"), port, "http-json", ("--with-id",), v2_url,
                infer_body(with_id=True))
    if peer == "mlserver":
        folder = work / "mlserver"
        shutil.rmtree(folder, ignore_errors=True)
        (folder / MODEL).mkdir(parents=True)
        shutil.copy(PEER_DIR / "mlserver_onnx.py", folder / "mlserver_onnx.py")
        (folder / "settings.json").write_text(json.dumps({
            "host": "127.0.0.1", "http_port": port, "grpc_port": free_port(),
            "metrics_port": free_port(), "debug": False,
        }))
        (folder / MODEL / "model-settings.json").write_text(json.dumps({
            "name": MODEL, "implementation": "mlserver_onnx.OnnxModel",
            "parameters": {"uri": str(MODEL_ONNX), "version": "2"},
        }))
        argv = [str(home / "bin/mlserver"), "start", str(folder)]
        env["PYTHONPATH"] = str(folder)
        return Server(peer, argv, env, raw / f"{peer}.log", cwd=folder), port, "http-json", (), v2_url, infer_body()
    if peer == "mlflow":
        model_dir = work / "mlflow-boosted"
        p = subprocess.run([py, str(PEER_DIR / "mlflow_save.py"), "--model", str(MODEL_ONNX), "--out", str(model_dir)],
                           capture_output=True, text=True, env=env, cwd=work)
        if p.returncode != 0:
            raise RuntimeError(f"saving the MLflow model failed: {p.stderr.strip()[-600:]}")
        env["MLFLOW_TRACKING_URI"] = (work / "mlruns").as_uri()
        argv = [str(home / "bin/mlflow"), "models", "serve", "-m", str(model_dir), "--env-manager", "local",
                "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
        golden = json.loads(GOLDEN.read_text())["inputs"]["input"]["data"][:20]
        return (Server(peer, argv, env, raw / f"{peer}.log", cwd=work), port, "mlflow", (),
                f"http://127.0.0.1:{port}/invocations", {"inputs": [golden]})
    raise ValueError(peer)


PEER_TITLES = {
    "reference": "reference: minimal axum handler calling ONNX Runtime (benches/src/reference.rs)",
    "hello": "reference: axum answering a constant, no inference",
    "fastapi": "FastAPI + uvicorn + onnxruntime",
    "mlflow": "`mlflow models serve`, ONNX flavour",
    "mlserver": "Seldon MLServer + custom ONNX runtime",
    "kserve": "KServe Python model server + onnxruntime",
}
PROTOCOL_TITLES = {
    "http-json": "OIP v2 JSON",
    "http-binary": "OIP v2 binary tensors",
    "grpc": "OIP v2 gRPC, a connection per client",
    "grpc-shared": f"OIP v2 gRPC, {GRPC_STREAMS_PER_CONNECTION} clients' streams per connection",
}

PEER_PACKAGES = {
    "reference": [],
    "hello": [],
    "fastapi": ["fastapi", "uvicorn", "onnxruntime"],
    "mlflow": ["mlflow", "onnxruntime"],
    "mlserver": ["mlserver", "uvloop", "onnxruntime"],
    "kserve": ["kserve", "onnxruntime"],
}


def bench_peer(peer, lg, args, work, raw):
    if peer in RUST_PEERS:
        home, versions = Path(lg.binary).parent, {}
    else:
        home, why = install_peer(peer, raw)
        if home is None:
            log(f"{peer}: SKIPPED, install failed: {why}")
            return {"status": "install-failed", "reason": why}
        versions = pip_versions(home, PEER_PACKAGES[peer])
    try:
        server, port, protocol, extra, url, body = start_peer(peer, home, work, raw)
    except Exception as e:  # noqa: BLE001 — any failure is recorded, the run goes on
        log(f"{peer}: SKIPPED, could not start: {e}")
        return {"status": "start-failed", "reason": str(e), "versions": versions}
    try:
        cold = wait_first_answer(server, url, body, args.peer_start_limit)
        if cold is None:
            reason = f"no successful answer within {args.peer_start_limit} s; log tail:\n{server.tail()}"
            log(f"{peer}: SKIPPED, {reason}")
            return {"status": "start-failed", "reason": reason, "versions": versions}
        rss_idle = rss_mib(server.proc.pid)
        log(f"{peer} {versions}: first answer {cold:.2f} s after start, RSS {rss_idle:.0f} MiB")
        cells = run_cells(lg, port, [protocol], args, peer, extra_for=lambda _p: extra)
        return {"status": "ok", "versions": versions, "cold_start_s": cold, "rss_mib_idle": rss_idle,
                "rss_mib_after": rss_mib(server.proc.pid), "alive_at_end": server.alive(), "cells": cells}
    finally:
        server.stop()


# --------------------------------------------------------------------------
# the table


def median_cell(cell):
    ok = [r for r in cell["runs"] if "failed" not in r]
    if not ok:
        return None
    return {
        "req_per_s": statistics.median(r["req_per_s"] for r in ok),
        "rows_per_s": statistics.median(r["rows_per_s"] for r in ok),
        "p50": statistics.median(r["latency_us"]["p50"] for r in ok),
        "p99": statistics.median(r["latency_us"]["p99"] for r in ok),
        "errors": sum(r["errors"] for r in ok) + sum(sum(r.get("warmup_errors", {}).values()) for r in ok),
    }


def fmt_us(v):
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.0f} µs"


def table(results, args):
    servers = []  # (name, protocol, cells, cold, rss)
    gw = results["gateway"]
    for protocol in args.gateway_protocols:
        servers.append((f"switchyard, {PROTOCOL_TITLES.get(protocol, protocol)}", protocol, gw["cells"], gw["cold_start_s"], gw["rss_mib_after"]))
    if "gateway_ort" in results:
        g = results["gateway_ort"]
        for protocol in args.gateway_protocols:
            servers.append((f"switchyard on ort, {PROTOCOL_TITLES.get(protocol, protocol)}", protocol, g["cells"],
                            g["cold_start_s"], g["rss_mib_after"]))
    for peer, r in results["peers"].items():
        if r.get("status") == "ok":
            versions = ", ".join(f"{k} {v}" for k, v in r["versions"].items() if v)
            label = PEER_TITLES[peer] + (f" ({versions})" if versions else "")
            servers.append((label, r["cells"][0]["protocol"], r["cells"], r["cold_start_s"], r["rss_mib_after"]))
    base = results["peers"].get("fastapi", {})
    base_cells = {(c["rows"], c["concurrency"]): median_cell(c) for c in base.get("cells", [])} if base.get("status") == "ok" else {}

    def cell_of(cells, protocol, rows, c):
        for cell in cells:
            if cell["protocol"] == protocol and cell["rows"] == rows and cell["concurrency"] == c:
                return median_cell(cell)
        return None

    lines = []
    for rows in args.rows:
        head = [f"c={c} req/s" for c in args.concurrency]
        top = max(args.concurrency)
        lines.append(f"\n{rows} row{'s' if rows > 1 else ''} per request, {args.duration:g} s per cell"
                     f"{f', median of {args.repeat}' if args.repeat > 1 else ''}; (×N) = ratio to FastAPI in the same cell\n")
        lines.append("| server | " + " | ".join(head) + f" | c={top} p50 | c={top} p99 | errors | cold start | RSS |")
        lines.append("|---" * (len(head) + 6) + "|")
        for name, protocol, cells, cold, rss in servers:
            row, errors = [], 0
            for c in args.concurrency:
                m = cell_of(cells, protocol, rows, c)
                if m is None:
                    row.append("failed")
                    continue
                errors += m["errors"]
                b = base_cells.get((rows, c))
                ratio = f" ({m['req_per_s'] / b['req_per_s']:.1f}×)" if b and b["req_per_s"] else ""
                row.append(f"{m['req_per_s']:,.0f}{ratio}")
            m = cell_of(cells, protocol, rows, top)
            p50 = fmt_us(m["p50"]) if m else "–"
            p99 = fmt_us(m["p99"]) if m else "–"
            lines.append(f"| {name} | " + " | ".join(row) + f" | {p50} | {p99} | {errors} | {cold:.2f} s | {rss:.0f} MiB |")
    ref = results["peers"].get("reference", {})
    if ref.get("status") == "ok":
        lines.append("\nThe gateway against the reference handler in the same run (req/s ratio; "
                     "above 1: the gateway is faster):\n")
        head = [f"{rows} row{'s' if rows > 1 else ''}, c={c}" for rows in args.rows for c in args.concurrency]
        lines.append("| protocol | " + " | ".join(head) + " |")
        lines.append("|---" * (len(head) + 1) + "|")
        for protocol in args.gateway_protocols:
            row = []
            for rows in args.rows:
                for c in args.concurrency:
                    g = cell_of(gw["cells"], protocol, rows, c)
                    r = cell_of(ref["cells"], "http-json", rows, c)
                    row.append(f"{g['req_per_s'] / r['req_per_s']:.2f}" if g and r and r["req_per_s"] else "–")
            lines.append(f"| {PROTOCOL_TITLES.get(protocol, protocol)} | " + " | ".join(row) + " |")
    skipped = {p: r for p, r in results["peers"].items() if r.get("status") != "ok"}
    for p, r in skipped.items():
        lines.append(f"\n- {p}: not measured ({r['status']}): {r.get('reason', '').splitlines()[0] if r.get('reason') else ''}")
    sc = results.get("scenarios", {})
    if "swap_burst" in sc:
        s = sc["swap_burst"]
        lines.append("\nScenarios (switchyard, boosted, 1 row, c=64, OIP v2 JSON):\n")
        lines.append("| scenario | req/s | p50 | p99 | p99.9 | max | errors |")
        lines.append("|---|---|---|---|---|---|---|")

        def srow(name, r):
            if "failed" in r:
                return f"| {name} | failed | | | | | |"
            l = r["latency_us"]
            return (f"| {name} | {r['req_per_s']:,.0f} | {fmt_us(l['p50'])} | {fmt_us(l['p99'])} | "
                    f"{fmt_us(l['p999'])} | {fmt_us(l['max'])} | {r['errors']} |")

        lines.append(srow("steady", s["steady"]))
        lines.append(srow(f"{len(s['swaps'])} hot swaps of the live slot in {s['burst_seconds']:.1f} s "
                          f"({s['swaps_refused']} refused)", s["burst"]))
        if "load_while_serving" in sc:
            w = sc["load_while_serving"]
            lines.append(srow(f"while mlp is loaded/unloaded ({w['cycles']} cycles)", w["during"]))
    if "memory" in sc and sc["memory"].get("mib_per_version") is not None:
        m = sc["memory"]
        lines.append(f"\nMemory: {m['mib_per_version']:.2f} MiB of RSS per loaded version of {m['model']} "
                     f"({m['points'][0]['rss_mib']:.0f} → {m['points'][-1]['rss_mib']:.0f} MiB over "
                     f"{len(m['points']) - 1} versions).")
    return "\n".join(lines)


# --------------------------------------------------------------------------


def csv(kind):
    return lambda text: [kind(x) for x in text.split(",") if x.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per cell (spec: 15)")
    ap.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each cell")
    ap.add_argument("--timeout", type=float, default=5.0, help="per-request timeout, seconds")
    ap.add_argument("--repeat", type=int, default=1, help="runs per cell; the table shows the median")
    ap.add_argument("--concurrency", type=csv(int), default=[1, 8, 64])
    ap.add_argument("--rows", type=csv(int), default=[1, 64])
    ap.add_argument("--gateway-protocols", type=csv(str), default=list(PROTOCOL_TITLES))
    ap.add_argument("--peers", type=csv(str), default=PEERS, help=f"comma list from {','.join(PEERS)}, or 'none'")
    ap.add_argument("--scenarios", type=csv(str), default=["swap", "load", "memory"],
                    help="comma list of swap,load,memory, or 'none'")
    ap.add_argument("--swaps", type=int, default=20)
    ap.add_argument("--memory-versions", type=int, default=8)
    ap.add_argument("--loadgen-threads", type=int, default=1)
    ap.add_argument("--peer-start-limit", type=float, default=120.0, help="seconds a peer may take to answer")
    ap.add_argument("--compare-ort", action="store_true",
                    help="also run the gateway with the benchmark model on ONNX Runtime instead of forest")
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "benches/results")
    args = ap.parse_args()
    peers = [p for p in args.peers if p != "none"]
    unknown = set(peers) - set(PEERS)
    if unknown:
        sys.exit(f"bench: unknown peers {sorted(unknown)}; known: {PEERS}")
    if args.duration <= 0 or args.duration > 600 or args.warmup < 0 or args.repeat < 1:
        sys.exit("bench: --duration must be in (0, 600], --warmup >= 0, --repeat >= 1")

    stamp = dt.datetime.now().strftime("%Y-%m-%d-%H%M%S")
    raw = args.out / "raw" / stamp
    raw.mkdir(parents=True, exist_ok=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/switchyard/target"))
    load1 = os.getloadavg()[0]
    if load1 > 0.5:
        log(f"warning: load average {load1:.2f}: the machine is not quiet, numbers will be noisy")

    ort = ort_library()
    if ort is None:
        log("ONNX Runtime's library is missing from .venv: running `make ort`")
        subprocess.run(["make", "ort"], cwd=ROOT, check=True)
        ort = ort_library()
    gateway_bin, loadgen_bin = build(args, target)
    lg = Loadgen(loadgen_bin, args)

    results = {
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg_at_start": os.getloadavg(),
                    "mem_total_mib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / MIB)},
        "git": subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "model": "boosted v2 (scikit-learn GradientBoostingClassifier, 100 trees, depth 3) from models/boosted/2",
        "peers": {},
        "scenarios": {},
    }
    out_file = args.out / f"{stamp}.json"

    def save():
        out_file.write_text(json.dumps(results, indent=1) + "\n")

    with tempfile.TemporaryDirectory(prefix="switchyard-bench-") as tmp:
        work = Path(tmp)
        log(f"gateway: starting {gateway_bin}")
        gw = Gateway(gateway_bin, ort, work, raw)
        try:
            rss_idle = gw.rss()
            log(f"gateway: first answer {gw.cold_start_s:.3f} s after start, RSS {rss_idle:.0f} MiB")
            grpc = [p for p in args.gateway_protocols if p.startswith("grpc")]
            http_protocols = [p for p in args.gateway_protocols if p not in grpc]
            cells = run_cells(lg, gw.ports["http"], http_protocols, args, "switchyard")
            cells += run_cells(lg, gw.ports["grpc"], grpc, args, "switchyard")
            results["gateway"] = {"cold_start_s": gw.cold_start_s, "rss_mib_idle": rss_idle,
                                  "rss_mib_after": gw.rss(), "rss_mib_peak": gw.rss("VmHWM"),
                                  "ports": gw.ports, "cells": cells}
            save()
            scenarios = [s for s in args.scenarios if s != "none"]
            if "swap" in scenarios or "load" in scenarios:
                swap = scenario_swap_burst(gw, lg, args) if "swap" in scenarios else None
                if swap:
                    results["scenarios"]["swap_burst"] = swap
                if "load" in scenarios:
                    steady = swap["steady"] if swap else lg.run(gw.ports["http"], "http-json", 1, 64, label="steady")
                    results["scenarios"]["load_while_serving"] = scenario_load_while_serving(gw, lg, args, steady)
            if "memory" in scenarios:
                results["scenarios"]["memory"] = scenario_memory(gw, args)
            save()
        finally:
            gw.server.stop()

        if args.compare_ort:
            # The same gateway with the benchmark model pinned to ONNX Runtime
            # (its manifest prefers forest): the backend's share, in one run.
            config = work / "ort.toml"
            config.write_text(f'[model.{MODEL}]\nbackends = ["ort"]\n')
            log("gateway (ort): starting")
            gw = Gateway(gateway_bin, ort, work, raw, name="gateway-ort", extra=["--config", str(config)])
            try:
                grpc = [p for p in args.gateway_protocols if p.startswith("grpc")]
                http_protocols = [p for p in args.gateway_protocols if p not in grpc]
                cells = run_cells(lg, gw.ports["http"], http_protocols, args, "switchyard-ort")
                cells += run_cells(lg, gw.ports["grpc"], grpc, args, "switchyard-ort")
                results["gateway_ort"] = {"cold_start_s": gw.cold_start_s, "rss_mib_after": gw.rss(),
                                          "cells": cells}
                save()
            finally:
                gw.server.stop()

        for peer in peers:
            try:
                results["peers"][peer] = bench_peer(peer, lg, args, work, raw)
            except Exception as e:  # noqa: BLE001 — record and go on to the next peer
                log(f"{peer}: FAILED: {e}")
                results["peers"][peer] = {"status": "failed", "reason": str(e)}
            save()

    results["finished"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    save()
    md = table(results, args)
    (raw / "table.md").write_text(md + "\n")
    print(md)
    log(f"raw results: {out_file.relative_to(ROOT) if out_file.is_relative_to(ROOT) else out_file}; logs: {raw}")


if __name__ == "__main__":
    main()
