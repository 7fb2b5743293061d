#!/usr/bin/env python3
"""The gateway's own cost per request, read off its own histograms.

The issue's measure: the request-duration histogram (from the start of
decoding to the answer's tensors, queue wait included) minus the inference
histogram (the backend call). This script starts a gateway, drives boosted
with `loadgen` at each concurrency and protocol, scrapes `/metrics` before
and after each run, and reports for the requests of that run:

* the mean of each histogram (exact: `_sum / _count`) and their
  difference;
* the median of each, interpolated within buckets as Prometheus'
  `histogram_quantile` does, and their difference;
* the queue-wait median, since under concurrency most of the difference is
  waiting for a batch, not work.

    python3 scripts/bench/overhead.py [--seconds 8] [--concurrency 1,64]

Needs the release binaries (gateway, loadgen) and `.venv`'s ONNX Runtime.
Standard library only.
"""

import argparse
import os
import re
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402 — the driver's helpers: ports, servers, loadgen

SERIES = re.compile(r'^(\w+)\{([^}]*)\} (\S+)$')


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = SERIES.match(line)
        if not m:
            continue
        name, labels, value = m.groups()
        labels = dict(kv.split("=", 1) for kv in re.findall(r'\w+="[^"]*"', labels))
        labels = {k: v.strip('"') for k, v in labels.items()}
        out.setdefault(name, []).append((labels, float(value)))
    return out


def histogram(metrics, name, want):
    """Buckets (le → cumulative count), sum and count of the series whose
    labels include `want`, added up."""
    buckets, total, count = {}, 0.0, 0.0
    for labels, value in metrics.get(f"{name}_bucket", []):
        if all(labels.get(k) == v for k, v in want.items()):
            le = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
            buckets[le] = buckets.get(le, 0.0) + value
    for labels, value in metrics.get(f"{name}_sum", []):
        if all(labels.get(k) == v for k, v in want.items()):
            total += value
    for labels, value in metrics.get(f"{name}_count", []):
        if all(labels.get(k) == v for k, v in want.items()):
            count += value
    return buckets, total, count


def delta(after, before):
    b_after, s_after, c_after = after
    b_before, s_before, c_before = before
    return ({le: v - b_before.get(le, 0.0) for le, v in b_after.items()}, s_after - s_before, c_after - c_before)


def quantile(q, buckets):
    """Prometheus' histogram_quantile: linear within the bucket."""
    les = sorted(buckets)
    total = buckets[les[-1]] if les else 0
    if total <= 0:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for le in les:
        if buckets[le] >= rank:
            if le == float("inf"):
                return lower
            width = buckets[le] - below
            return lower + (le - lower) * ((rank - below) / width if width else 0)
        lower, below = le, buckets[le]
    return lower


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--concurrency", type=run.csv(int), default=[1, 64])
    ap.add_argument("--protocols", type=run.csv(str), default=["http-json", "http-binary", "grpc"])
    ap.add_argument("--rows", type=int, default=1)
    args = ap.parse_args()
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/switchyard/target")) / "release"
    ort = run.ort_library()
    if ort is None:
        sys.exit("overhead: ONNX Runtime is missing from .venv: run `make ort`")

    class Settings:
        duration, warmup, timeout, loadgen_threads = args.seconds, 1.0, 5.0, 1

    lg = run.Loadgen(target / "loadgen", Settings)
    rows = []
    with tempfile.TemporaryDirectory(prefix="switchyard-overhead-") as tmp:
        work = Path(tmp)
        gw = run.Gateway(target / "gateway", ort, work, work)
        metrics_url = f"http://127.0.0.1:{gw.ports['metrics']}/metrics"
        try:
            for protocol in args.protocols:
                label = "grpc" if protocol.startswith("grpc") else "http"
                port = gw.ports["grpc"] if label == "grpc" else gw.ports["http"]
                for c in args.concurrency:
                    before = scrape(metrics_url)
                    r = lg.run(port, protocol, args.rows, c, label="overhead")
                    after = scrape(metrics_url)
                    if "failed" in r:
                        sys.exit(f"overhead: loadgen failed: {r['failed']}")
                    want = {"model": run.MODEL}
                    req = delta(histogram(after, "switchyard_request_duration_seconds", dict(want, protocol=label)),
                                histogram(before, "switchyard_request_duration_seconds", dict(want, protocol=label)))
                    inf = delta(histogram(after, "switchyard_inference_duration_seconds", want),
                                histogram(before, "switchyard_inference_duration_seconds", want))
                    que = delta(histogram(after, "switchyard_queue_duration_seconds", want),
                                histogram(before, "switchyard_queue_duration_seconds", want))
                    # The warm-up's requests are in the scrape too; the means
                    # and medians are over every request of the run.
                    mean_req = req[1] / req[2] * 1e6
                    mean_inf = inf[1] / inf[2] * 1e6
                    med_req = quantile(0.5, req[0]) * 1e6
                    med_inf = quantile(0.5, inf[0]) * 1e6
                    med_que = quantile(0.5, que[0]) * 1e6
                    rows.append((protocol, c, r["req_per_s"], mean_req, mean_inf, med_req, med_inf, med_que,
                                 int(req[2]), int(inf[2]), r["errors"]))
                    print(f"[overhead] {protocol} c={c}: {r['req_per_s']:,.0f} req/s; request mean {mean_req:.1f} µs, "
                          f"inference mean {mean_inf:.1f} µs; medians {med_req:.1f} / {med_inf:.1f} µs, "
                          f"queue median {med_que:.1f} µs", flush=True)
        finally:
            gw.server.stop()
    print(f"\n{args.rows} row(s) per request, {args.seconds:g} s per run; µs; overhead = request − inference\n")
    print("| protocol | c | req/s | request mean | inference mean (per call) | overhead, means | request median "
          "| inference median | overhead, medians | queue median | requests | backend calls | errors |")
    print("|---" * 13 + "|")
    for p, c, rps, mr, mi, dr, di, dq, n, calls, errors in rows:
        print(f"| {p} | {c} | {rps:,.0f} | {mr:.1f} | {mi:.1f} | {mr - mi:.1f} | {dr:.1f} | {di:.1f} | {dr - di:.1f} "
              f"| {dq:.1f} | {n:,} | {calls:,} | {errors} |")


if __name__ == "__main__":
    main()
