#!/usr/bin/env python3
"""Times switchyard's headline rollout figures: a blue-green promote and a
rollback on one gateway and on a fleet of five, under load, with the smoke
suite's share broken out and the failed requests counted.

    python3 scripts/bench/rollout.py            # after `make build-release` and a built loadgen

Starts N release gateways on free 127.0.0.1 ports over a copy of models/,
drives boosted on every gateway with loadgen (c=64 in all, split across
the gateways), runs `controller promote boosted --version 2 --full --bake 0`
and `controller rollback boosted`, and prints a Markdown table. Standard
library only. `zero_downtime.py` reuses the fleet helpers below.
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
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/switchyard/target")) / "release"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"gateway on {port} not ready")


def ort_library():
    if Path(os.environ.get("ORT_DYLIB_PATH", "")).is_file():
        return os.environ["ORT_DYLIB_PATH"]
    found = sorted((ROOT / ".venv/lib").glob("python3*/site-packages/onnxruntime/capi/libonnxruntime.so.*"))
    if not found:
        sys.exit("no libonnxruntime.so.* under .venv: run `make ort` first")
    return str(found[0])


def copy_models(work):
    """A private copy of models/, so a promote never touches the tree."""
    shutil.copytree(ROOT / "models", work / "models", ignore=shutil.ignore_patterns("__pycache__"))
    return work / "models"


def start_gateways(models, fleet_size, binary=None, extra_env=None, log_dir=None):
    """Starts `fleet_size` gateways on free loopback ports and waits until
    each is ready; returns [(process, ports)]. Logs go to `log_dir` if set."""
    env = dict(os.environ, ORT_DYLIB_PATH=ort_library(), **(extra_env or {}))
    gateways = []
    for i in range(fleet_size):
        ports = {k: free_port() for k in ("http", "grpc", "metrics", "admin")}
        out = open(log_dir / f"gateway-{i}.log", "wb") if log_dir else subprocess.DEVNULL
        proc = subprocess.Popen(
            [str(binary or TARGET / "gateway"), "--models", str(models),
             "--http-addr", f"127.0.0.1:{ports['http']}", "--grpc-addr", f"127.0.0.1:{ports['grpc']}",
             "--metrics-addr", f"127.0.0.1:{ports['metrics']}", "--admin-addr", f"127.0.0.1:{ports['admin']}"],
            env=env, stdout=out, stderr=subprocess.STDOUT if log_dir else subprocess.DEVNULL)
        gateways.append((proc, ports))
    try:
        for _, ports in gateways:
            wait_ready(ports["http"])
    except BaseException:
        stop_gateways(gateways)
        raise
    return gateways


def stop_gateways(gateways):
    for proc, _ in gateways:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc, _ in gateways:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def admin_urls(gateways):
    return ",".join(f"http://127.0.0.1:{p['admin']}" for _, p in gateways)


def controller_argv(gateways, work, *args, binary=None):
    """The controller on this fleet, with its state in `work`."""
    return [str(binary or TARGET / "controller"), "--gateways", admin_urls(gateways),
            "--models", str(work / "models"), "--smoke-tests", str(ROOT / "smoke-tests"),
            "--state-dir", str(work / "state"), *args]


def run(fleet_size, duration_each=8):
    work = Path(tempfile.mkdtemp(prefix="switchyard-rollout-bench-"))
    gateways = start_gateways(copy_models(work), fleet_size)
    try:
        per = max(1, 64 // fleet_size)
        results = {}
        for action, args in (("promote", ["promote", "boosted", "--version", "2", "--full", "--bake", "0ms"]),
                             ("rollback", ["rollback", "boosted"])):
            loads = [subprocess.Popen(
                [str(TARGET / "loadgen"), "--port", str(p["http"]), "--concurrency", str(per),
                 "--duration", f"{duration_each}s", "--warmup", "1s", "--json"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for _, p in gateways]
            time.sleep(3)
            t0 = time.monotonic()
            out = subprocess.run(controller_argv(gateways, work, *args), capture_output=True, text=True)
            elapsed = time.monotonic() - t0
            reports = [json.loads(l.communicate()[0]) for l in loads]
            if out.returncode != 0:
                sys.exit(f"{action} failed: {out.stderr}")
            smoke = re.search(r"smoke tests passed: .*", out.stderr)
            lines = out.stderr.strip().splitlines()
            stamps = {}
            for line in lines:
                m = re.match(r"\[\s*([\d.]+)s\] (.*)", line)
                if m:
                    stamps[m.group(2)[:24]] = float(m.group(1))
            results[action] = {
                "seconds": elapsed,
                "errors": sum(r.get("errors", 0) if isinstance(r.get("errors"), int) else sum(r.get("errors", {}).values()) for r in reports),
                "requests": sum(r.get("ok", 0) for r in reports),
                "p99_ms": max(r.get("p99_us", r.get("latency_us", {}).get("p99", 0)) for r in reports) / 1000,
                "log": lines,
                "smoke": smoke.group(0) if smoke else "",
            }
        return results
    finally:
        stop_gateways(gateways)
        shutil.rmtree(work, ignore_errors=True)


def main():
    rows = []
    for n in (1, 5):
        r = run(n)
        for action in ("promote", "rollback"):
            x = r[action]
            rows.append((n, action, x))
            print(f"--- {n} gateway(s), {action}: {x['seconds']:.3f} s, {x['requests']} requests, {x['errors']} errors")
            for line in x["log"]:
                print("   ", line)
    print("\n| gateways | action | wall time (process) | requests under load | failed | worst p99 |")
    print("|---|---|---|---|---|---|")
    for n, action, x in rows:
        print(f"| {n} | {action} | {x['seconds'] * 1000:.0f} ms | {x['requests']:,} | {x['errors']} | {x['p99_ms']:.2f} ms |")


if __name__ == "__main__":
    main()
