#!/usr/bin/env python3
"""Drift: switchyard's live verdicts side by side with Evidently's data drift
report, on the same reference and the same current windows.

    .venv/bin/python scripts/bench/drift_evidently.py              # 10k and 100k rows
    .venv/bin/python scripts/bench/drift_evidently.py --sizes 10000,100000,1000000

Reference: the rows dropout v2's profile was made from (the example's
training rows, student_dropout.draw_cohort("2022-2024", 15000, seed=102)).
Windows, from the example's generator (models/dropout_traffic.py): no drift,
each feature drifted alone, and two sets of several, at each size
(1,000,000 rows only for no drift and the several-feature windows).

Evidently: `DataDriftPreset()` with its default per-column tests, the
columns typed as the profile types them (numeric or categorical), run in its
own venv (.venv-evidently, created from scripts/bench/evidently-requirements.txt
on first run; a stamp of that file's sha256 says when to reinstall). One
worker process per size: time per window is the report's (Dataset.from_pandas
and Report.run), peak memory the worker's peak RSS.

switchyard: a real gateway (release build if present, else debug) serving a
copy of dropout v2 under a new version number per window, so each window
starts empty (window 1h: nothing ages out). Each window is sent as
pre-encoded JSON requests of 64 rows (the model's max_batch_size) from two threads (the wall clock of
that is the gateway decoding, inferring and counting, plus loopback HTTP),
then the admin drift report is fetched (its wall clock is the statistics).

Prints a table and writes JSON to target/bench/drift_evidently.json (--out).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "scripts" / "bench" / "evidently-requirements.txt"
EVIDENTLY_VENV = ROOT / ".venv-evidently"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/switchyard/target"))
MODEL, VERSION = "dropout", 2
BATCH = 64  # rows per request: the example's max_batch_size
SEVERAL = {
    "several-3": ["admission_grade", "grade_1st_sem", "scholarship_holder"],
    "several-7": ["age_at_enrollment", "debtor", "admission_grade", "previous_qualification_grade",
                  "grade_2nd_sem", "units_approved_2nd_sem", "unemployment_rate"],
}
BIG = 1_000_000
# Evidently's statistics where drift means a large value; the rest are
# p-values, where drift means a small one.
DISTANCES = {"Jensen-Shannon distance", "Wasserstein distance (normed)", "PSI",
             "Hellinger distance", "Kullback-Leibler divergence", "Energy-distance"}


def log(message: str) -> None:
    print(f"[drift_evidently] {message}", file=sys.stderr, flush=True)


# --- the Evidently side (runs in .venv-evidently) ------------------------------------------


def evidently_worker(work: Path) -> None:
    """Runs Evidently on every window in `work` (spec.json, reference.npy,
    <window>.npy); writes evidently.json there."""
    import numpy as np
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    spec = json.loads((work / "spec.json").read_text())
    names, kinds = spec["names"], spec["kinds"]
    definition = DataDefinition(
        numerical_columns=[n for n, k in zip(names, kinds) if k == "numeric"],
        categorical_columns=[n for n, k in zip(names, kinds) if k == "categorical"],
    )
    reference = pd.DataFrame(np.load(work / "reference.npy"), columns=names)
    results = {}
    for window in spec["windows"]:
        current = pd.DataFrame(np.load(work / f"{window}.npy"), columns=names)
        t0 = time.perf_counter()
        snapshot = Report([DataDriftPreset()]).run(
            current_data=Dataset.from_pandas(current, data_definition=definition),
            reference_data=Dataset.from_pandas(reference, data_definition=definition),
        )
        seconds = time.perf_counter() - t0
        columns = {}
        for metric in snapshot.dict()["metrics"]:
            config = metric["config"]
            if config["type"].endswith("ValueDrift"):
                method, threshold, value = config["method"], config["threshold"], metric["value"]
                if method in DISTANCES:
                    drifted = value >= threshold
                elif method.startswith("K-S"):
                    drifted = value <= threshold
                else:
                    drifted = value < threshold
                columns[config["column"]] = {"method": method, "threshold": threshold,
                                             "value": value, "drifted": bool(drifted)}
        results[window] = {"seconds": seconds, "columns": columns}
        print(f"evidently {window}: {seconds:.2f} s", file=sys.stderr, flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    import evidently

    (work / "evidently.json").write_text(json.dumps({
        "windows": results, "peak_rss_bytes": peak,
        "versions": {"evidently": evidently.__version__, "pandas": pd.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
    }))


def evidently_venv() -> Path:
    """.venv-evidently with the pinned requirements (scripts/venv.sh: cached
    outside the work tree, created once)."""
    subprocess.run([str(ROOT / "scripts" / "venv.sh"), str(EVIDENTLY_VENV), str(REQUIREMENTS)],
                   check=True)
    return EVIDENTLY_VENV


def run_evidently(venv: Path, work: Path) -> dict:
    subprocess.run([str(venv / "bin/python"), __file__, "--evidently-worker", str(work)],
                   check=True)
    return json.loads((work / "evidently.json").read_text())


# --- the switchyard side ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    """A gateway over a repository holding dropout v2's files under one
    version number per window."""

    def __init__(self, binary: Path, work: Path, windows: int):
        source = ROOT / "models" / MODEL / str(VERSION)
        manifest = (source / "model.toml").read_text()
        manifest = re.sub(r'(?m)^window = ".*"$', 'window = "1h"', manifest)
        self.models = work / "models"
        for version in range(1, windows + 1):
            dest = self.models / MODEL / str(version)
            dest.mkdir(parents=True)
            for name in ("model.onnx", "profile.json"):
                shutil.copy(source / name, dest / name)
            text = re.sub(r"(?m)^version = \d+$", f"version = {version}", manifest)
            text = re.sub(r'(?m)^"golden.json" = .*\n', "", text)
            (dest / "model.toml").write_text(text)
        self.ports = {k: free_port() for k in ("http", "grpc", "metrics", "admin")}
        env = dict(os.environ)
        env.setdefault("ORT_DYLIB_PATH", next(str(p) for p in (ROOT / ".venv/lib").glob(
            "python3*/site-packages/onnxruntime/capi/libonnxruntime.so.*")))
        env["SWITCHYARD_LOG"] = "warn"
        self.log = open(work / "gateway.log", "wb")
        self.proc = subprocess.Popen(
            [str(binary), "--models", str(self.models), "--state-dir", str(work / "state"),
             *(a for k, p in self.ports.items() for a in (f"--{k}-addr", f"127.0.0.1:{p}"))],
            env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        self.http = f"http://127.0.0.1:{self.ports['http']}"
        self.admin = f"http://127.0.0.1:{self.ports['admin']}"
        import requests

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.http}/v2/health/ready", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        sys.exit(f"gateway not ready; see {work / 'gateway.log'}")

    def fresh_window(self, version: int) -> None:
        import requests

        r = requests.put(f"{self.admin}/admin/models/{MODEL}/slots/blue",
                         json={"version": version}, timeout=60)
        r.raise_for_status()
        report = self.report(version)
        assert report["rows"] == 0, report

    def report(self, version: int) -> dict:
        import requests

        r = requests.get(f"{self.admin}/admin/models/{MODEL}/drift", timeout=60)
        r.raise_for_status()
        (v,) = [v for v in r.json()["versions"] if v["version"] == version]
        return v

    def send(self, bodies: list[bytes], threads: int = 2) -> None:
        import requests

        failures = []
        queue = iter(bodies)
        lock = threading.Lock()

        def worker():
            session = requests.Session()
            while True:
                with lock:
                    body = next(queue, None)
                if body is None:
                    return
                r = session.post(f"{self.http}/v2/models/{MODEL}/infer", data=body,
                                 headers={"content-type": "application/json"}, timeout=60)
                if r.status_code != 200:
                    failures.append(r.text)

        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        if failures:
            sys.exit(f"{len(failures)} requests failed: {failures[0]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def bodies_of(x) -> list[bytes]:
    return [json.dumps({"inputs": [{
        "name": "input", "datatype": "FP32", "shape": [len(chunk), x.shape[1]],
        "data": chunk.ravel().tolist(),
    }]}).encode() for chunk in (x[i:i + BATCH] for i in range(0, len(x), BATCH))]


def gateway_binary(choice: str | None) -> Path:
    if choice:
        return Path(choice)
    for build in ("release", "debug"):
        path = TARGET / build / "gateway"
        if path.is_file():
            return path
    sys.exit("no gateway binary: cargo build --release -p gateway --bin gateway")


# --- the run ---------------------------------------------------------------------------------


def windows_for(size: int, names: list[str]) -> dict[str, list[str]]:
    if size >= BIG:
        return {"none": [], **SEVERAL}
    return {"none": [], **{f"only-{n}": [n] for n in names}, **SEVERAL}


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.system()} {platform.release()}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000", help="rows per window, comma-separated")
    p.add_argument("--gateway", help="the gateway binary (default: release, else debug)")
    p.add_argument("--out", type=Path, default=ROOT / "target" / "bench" / "drift_evidently.json")
    p.add_argument("--evidently-worker", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.evidently_worker:
        evidently_worker(args.evidently_worker)
        return 0

    import numpy as np

    sys.dont_write_bytecode = True  # no models/__pycache__ (the gateway would read it)
    sys.path.insert(0, str(ROOT / "models"))
    import dropout_traffic
    import student_dropout as sd

    sizes = [int(s) for s in args.sizes.split(",")]
    venv = evidently_venv()
    reference, _, _ = sd.draw_cohort(sd.NEW, sd.TRAIN_ROWS, sd.SEEDS["v2"])
    kinds = [f.kind for f in sd.FEATURES]
    plan = [(size, name, drift) for size in sizes
            for name, drift in windows_for(size, sd.NAMES).items()]
    binary = gateway_binary(args.gateway)
    rows_out = []
    evidently_meta = {}
    with tempfile.TemporaryDirectory(prefix="switchyard-drift-bench-") as tmp:
        work = Path(tmp)
        gateway = Gateway(binary, work, len(plan))
        try:
            version = 0
            for size in sizes:
                size_dir = work / f"evidently-{size}"
                size_dir.mkdir()
                np.save(size_dir / "reference.npy", reference)
                windows = windows_for(size, sd.NAMES)
                gateway_results = {}
                for seed, (name, drift) in enumerate(windows.items(), start=1000):
                    x, _ = dropout_traffic.draw_rows(size, seed, drift)
                    np.save(size_dir / f"{name}.npy", x)
                    bodies = bodies_of(x)
                    version += 1
                    gateway.fresh_window(version)
                    t0 = time.perf_counter()
                    gateway.send(bodies)
                    send_s = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    report = gateway.report(version)
                    report_s = time.perf_counter() - t0
                    assert report["rows"] == size and report["ready"], report
                    gateway_results[name] = {
                        "drifted": sorted(f["name"] for f in report["features"] if f["drifted"]),
                        "send_seconds": send_s, "report_seconds": report_s,
                        "values": {f["name"]: {"stat": f["stat"], "value": f["stats"][f["stat"]]}
                                   for f in report["features"]},
                        "dataset_drifted": report["dataset_drifted"],
                    }
                    log(f"switchyard {size} {name}: send {send_s:.2f} s, report {report_s * 1e3:.1f} ms")
                (size_dir / "spec.json").write_text(json.dumps(
                    {"names": sd.NAMES, "kinds": kinds, "windows": list(windows)}))
                ev = run_evidently(venv, size_dir)
                evidently_meta = ev["versions"]
                for name, drift in windows.items():
                    e = ev["windows"][name]
                    s = gateway_results[name]
                    e_drifted = sorted(c for c, r in e["columns"].items() if r["drifted"])
                    rows_out.append({
                        "window": name, "rows": size, "shifted": sorted(drift),
                        "evidently": {"drifted": e_drifted, "seconds": e["seconds"],
                                      "columns": e["columns"],
                                      "worker_peak_rss_bytes": ev["peak_rss_bytes"]},
                        "switchyard": s,
                        "agree": e_drifted == s["drifted"],
                    })
                for f in (size_dir / "reference.npy", *size_dir.glob("*.npy")):
                    f.unlink(missing_ok=True)
        finally:
            gateway.stop()

    result = {
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "gateway": str(binary),
        "evidently": evidently_meta,
        "reference_rows": len(reference),
        "windows": rows_out,
        "medians": {
            str(size): {
                "evidently_seconds": statistics.median(r["evidently"]["seconds"] for r in rows_out if r["rows"] == size),
                "switchyard_send_seconds": statistics.median(r["switchyard"]["send_seconds"] for r in rows_out if r["rows"] == size),
                "switchyard_report_seconds": statistics.median(r["switchyard"]["report_seconds"] for r in rows_out if r["rows"] == size),
                "evidently_worker_peak_rss_bytes": max(r["evidently"]["worker_peak_rss_bytes"] for r in rows_out if r["rows"] == size),
                "windows": sum(1 for r in rows_out if r["rows"] == size),
                "agree": sum(1 for r in rows_out if r["rows"] == size and r["agree"]),
            } for size in sizes
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print_table(result)
    print(f"\nwritten to {args.out}")
    return 0


def print_table(result: dict) -> None:
    def names(xs):
        return ", ".join(xs) or "–"

    print("| window | rows | Evidently drifted | switchyard drifted | agree | Evidently s | switchyard send s | report ms |")
    print("|---|---:|---|---|---|---:|---:|---:|")
    for r in result["windows"]:
        print(f"| {r['window']} | {r['rows']:,} | {names(r['evidently']['drifted'])} | "
              f"{names(r['switchyard']['drifted'])} | {'yes' if r['agree'] else '**no**'} | "
              f"{r['evidently']['seconds']:.2f} | {r['switchyard']['send_seconds']:.2f} | "
              f"{r['switchyard']['report_seconds'] * 1e3:.1f} |")
    print()
    for size, m in result["medians"].items():
        print(f"{int(size):,} rows: {m['agree']}/{m['windows']} windows agree; median Evidently "
              f"{m['evidently_seconds']:.2f} s (worker peak RSS "
              f"{m['evidently_worker_peak_rss_bytes'] / 2**20:.0f} MiB), switchyard send "
              f"{m['switchyard_send_seconds']:.2f} s + report {m['switchyard_report_seconds'] * 1e3:.1f} ms")


if __name__ == "__main__":
    sys.exit(main())
