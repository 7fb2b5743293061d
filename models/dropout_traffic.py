#!/usr/bin/env python3
"""Live traffic for the dropout model: students drawn like the newest cohort,
optionally drifted, sent to a gateway or written to a file.

    # 20 requests/s from 4 threads for 30 s, one student per request
    .venv/bin/python models/dropout_traffic.py --url http://127.0.0.1:8000 \\
        --rate 20 --concurrency 4 --duration 30

    # the same with the admission and first-semester grades drifted
    .venv/bin/python models/dropout_traffic.py --drift admission_grade,grade_1st_sem

    # 10 000 rows to a file instead (CSV; .parquet needs pyarrow)
    .venv/bin/python models/dropout_traffic.py --out rows.csv --rows 10000

Rows come from student_dropout.draw_cohort("2022-2024", ...) with --seed, so
the same flags send the same rows. At the end it prints the counts of
successes and failures (by HTTP status, or the exception for requests that got
no answer), which version answered, and latency percentiles; --json prints
the same as one JSON object. Exit code 0 when every request succeeded, 1 when
any failed, 2 on bad arguments.

Drift (--drift a,b,...): each named feature moves by a fixed, documented
amount and nothing else changes, row for row:
- a numeric feature is shifted up by DRIFT_STDS (1.0) times its standard
  deviation in the newest cohort (v2's training rows, profile.json's `std`),
  then clipped to the feature's valid range (student_dropout.FEATURES);
- a categorical (0/1) feature is flipped: v -> 1 - v.
A name the model doesn't have is an error that lists the valid names.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.dont_write_bytecode = True  # no models/__pycache__: the gateway would read it as a model
sys.path.insert(0, str(Path(__file__).resolve().parent))
import student_dropout as sd  # noqa: E402

DRIFT_STDS = 1.0
POOL_ROWS = 10000  # rows drawn up front and cycled through


class DriftError(ValueError):
    """--drift names a feature the model doesn't have."""


def reference_std() -> np.ndarray:
    """Each feature's population std in the newest cohort's training rows."""
    x, _, _ = sd.draw_cohort(sd.NEW, sd.TRAIN_ROWS, sd.SEEDS["v2"])
    return x.astype(np.float64).std(axis=0)


def parse_drift(spec: str | None) -> list[str]:
    names = [n.strip() for n in (spec or "").split(",") if n.strip()]
    unknown = [n for n in names if n not in sd.COL]
    if unknown:
        raise DriftError(
            f"--drift names {', '.join(repr(n) for n in unknown)}, which the {sd.MODEL} model "
            f"does not have; valid features: {', '.join(sd.NAMES)}"
        )
    return names


def apply_drift(x: np.ndarray, names: list[str]) -> np.ndarray:
    """A copy of `x` with the named features drifted as documented above."""
    out = x.copy()
    std = reference_std() if names else None
    for name in names:
        i, f = sd.COL[name], sd.FEATURES[sd.COL[name]]
        if f.kind == "categorical":
            out[:, i] = 1 - out[:, i]
        else:
            out[:, i] = np.clip(out[:, i] + DRIFT_STDS * std[i], f.low, f.high)
    return out


def draw_rows(n: int, seed: int, drift: list[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """`n` students like the newest cohort (x float32, true labels int64)."""
    x, y, _ = sd.draw_cohort(sd.NEW, n, seed)
    return apply_drift(x, list(drift)), y


def write_rows(path: Path, x: np.ndarray, y: np.ndarray, with_labels: bool) -> None:
    columns = {name: x[:, i] for i, name in enumerate(sd.NAMES)}
    if with_labels:
        columns["dropout"] = y
    if path.suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise SystemExit(f"{path}: writing Parquet needs pyarrow (pip install pyarrow); "
                             "or write .csv") from None
        pq.write_table(pa.table(columns), path)
        return
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for row in zip(*columns.values()):
            w.writerow([str(v) if isinstance(v, np.floating) else int(v) for v in row])  # float32 str reads back exactly


class Traffic:
    """Sends rows to /v2/models/<model>/infer from `concurrency` threads at
    `rate` requests/s in total (0: as fast as they go)."""

    def __init__(self, url: str, model: str, x: np.ndarray, batch: int, rate: float,
                 concurrency: int, timeout: float):
        self.endpoint = f"{url.rstrip('/')}/v2/models/{model}/infer"
        self.x, self.batch, self.rate = x, batch, rate
        self.concurrency, self.timeout = concurrency, timeout
        self.lock = threading.Lock()
        self.sent = 0
        self.next_at = 0.0
        self.outcomes: Counter = Counter()  # "200", "503", "ConnectionError", ...
        self.versions: Counter = Counter()
        self.latencies: list[float] = []
        self.stop = threading.Event()  # set it to end run() early

    def _claim(self, deadline: float, limit: int | None) -> tuple[int, float] | None:
        with self.lock:
            if self.stop.is_set() or (limit is not None and self.sent >= limit):
                return None
            at = max(self.next_at, time.monotonic()) if self.rate else time.monotonic()
            if at >= deadline:
                return None
            self.next_at = at + (1 / self.rate if self.rate else 0)
            k = self.sent
            self.sent += 1
            return k, at

    def _body(self, k: int) -> bytes:
        start = (k * self.batch) % len(self.x)
        rows = np.take(self.x, range(start, start + self.batch), axis=0, mode="wrap")
        return json.dumps({"inputs": [{
            "name": sd.INPUT, "datatype": "FP32", "shape": list(rows.shape),
            "data": [float(v) for v in rows.ravel()],
        }]}).encode()

    def _worker(self, deadline: float, limit: int | None) -> None:
        import requests

        session = requests.Session()
        while (claim := self._claim(deadline, limit)) is not None:
            k, at = claim
            time.sleep(max(0.0, at - time.monotonic()))
            t0 = time.monotonic()
            try:
                r = session.post(self.endpoint, data=self._body(k), timeout=self.timeout,
                                 headers={"content-type": "application/json"})
                outcome, version = str(r.status_code), r.headers.get("x-model-version")
            except requests.RequestException as e:
                outcome, version = type(e).__name__, None
            with self.lock:
                self.outcomes[outcome] += 1
                self.latencies.append(time.monotonic() - t0)
                if version is not None and outcome == "200":
                    self.versions[version] += 1

    def run(self, duration: float, limit: int | None = None) -> dict:
        t0 = time.monotonic()
        deadline = t0 + duration
        threads = [threading.Thread(target=self._worker, args=(deadline, limit), daemon=True)
                   for _ in range(self.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ok = self.outcomes.get("200", 0)
        lat = np.array(self.latencies or [0.0]) * 1e3
        return {
            "requests": sum(self.outcomes.values()),
            "rows_per_request": self.batch,
            "succeeded": ok,
            "failed": sum(self.outcomes.values()) - ok,
            "outcomes": dict(sorted(self.outcomes.items())),
            "versions": dict(sorted(self.versions.items())),
            "seconds": round(time.monotonic() - t0, 3),
            "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 2),
                           "p99": round(float(np.percentile(lat, 99)), 2)},
        }


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the gateway's HTTP base URL")
    p.add_argument("--model", default=sd.MODEL)
    p.add_argument("--rate", type=float, default=20.0, help="requests/s in total; 0: no limit")
    p.add_argument("--concurrency", type=int, default=4, help="threads sending")
    p.add_argument("--duration", type=float, default=10.0, help="seconds to send for")
    p.add_argument("--requests", type=int, help="stop after this many requests")
    p.add_argument("--batch", type=int, default=1, help="students per request")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    p.add_argument("--drift", help=f"features to drift, comma-separated, from: {', '.join(sd.NAMES)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="write rows to this .csv or .parquet instead of sending")
    p.add_argument("--rows", type=int, default=POOL_ROWS, help="rows to write with --out")
    p.add_argument("--labels", action="store_true", help="with --out: add the true `dropout` column")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = p.parse_args(argv)
    if args.batch < 1 or args.concurrency < 1 or args.rate < 0 or args.rows < 1:
        p.error("--batch, --concurrency and --rows must be at least 1, --rate at least 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        drift = parse_drift(args.drift)
    except DriftError as e:
        print(f"dropout_traffic: {e}", file=sys.stderr)
        return 2
    if args.out:
        x, y = draw_rows(args.rows, args.seed, drift)
        write_rows(args.out, x, y, args.labels)
        print(f"wrote {len(x)} rows to {args.out}" + (f" (drifted: {', '.join(drift)})" if drift else ""))
        return 0
    x, _ = draw_rows(POOL_ROWS, args.seed, drift)
    traffic = Traffic(args.url, args.model, x, args.batch, args.rate, args.concurrency, args.timeout)
    summary = traffic.run(args.duration, args.requests)
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print(f"{summary['requests']} requests in {summary['seconds']} s: "
              f"{summary['succeeded']} succeeded, {summary['failed']} failed; "
              f"by outcome {summary['outcomes']}; answered by versions {summary['versions']}; "
              f"latency p50 {summary['latency_ms']['p50']} ms, p99 {summary['latency_ms']['p99']} ms")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
