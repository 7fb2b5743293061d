#!/usr/bin/env python3
"""What live drift tracking costs the gateway: boosted (20 features, a
profile, gradient-boosted trees) at concurrency 8 and 64, one row per
request, OIP v2 JSON, with drift tracking on and off (SWITCHYARD_DRIFT).

    python3 scripts/bench/drift_cost.py --duration 10 --repeat 3

The two settings alternate (on, off, on, off, ...) with a fresh gateway
each run, so a machine that slows down over the run penalises neither; the
table gives the median of the repeats and the cost as a share of the
throughput without tracking. Reuses run.py's gateway, loadgen and build
helpers. Writes JSON to --out (default target/bench/drift_cost.json).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (the sibling driver's helpers)


def cpu_seconds(pid):
    """User + system CPU time of a process so far (from /proc, 1/100 s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--warmup", type=float, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--concurrency", default="8,64")
    p.add_argument("--timeout", type=float, default=5)
    p.add_argument("--loadgen-threads", type=int, default=1)
    p.add_argument("--skip-build", action="store_true")
    p.add_argument("--out", type=Path, default=bench.ROOT / "target/bench/drift_cost.json")
    args = p.parse_args()
    concurrency = [int(c) for c in args.concurrency.split(",")]

    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/switchyard/target"))
    gateway_bin, loadgen_bin = bench.build(args, target)
    ort = bench.ort_library()
    if ort is None:
        sys.exit("drift_cost: onnxruntime's library is missing from .venv; run `make ort`")
    lg = bench.Loadgen(loadgen_bin, args)
    work = Path(tempfile.mkdtemp(prefix="switchyard-drift-cost-"))
    raw = work / "raw"
    raw.mkdir()

    results = {"on": {c: [] for c in concurrency}, "off": {c: [] for c in concurrency}}
    for i in range(args.repeat):
        for mode in ("on", "off"):
            os.environ["SWITCHYARD_DRIFT"] = "true" if mode == "on" else "false"
            gw = bench.Gateway(gateway_bin, ort, work, raw, name=f"gateway-{mode}-{i}")
            try:
                for c in concurrency:
                    cpu0 = cpu_seconds(gw.server.proc.pid)
                    r = lg.run(gw.ports["http"], "http-json", 1, c, label=f"drift-{mode}")
                    if "failed" not in r:
                        # CPU per request is what tracking adds; unlike req/s it
                        # hardly moves when a neighbour takes the machine.
                        served = r["requests"] + r.get("warmup_ok", 0)
                        r["gateway_cpu_us_per_request"] = (
                            (cpu_seconds(gw.server.proc.pid) - cpu0) * 1e6 / max(served, 1))
                    bench.log(f"drift {mode} c={c} #{i + 1}: {bench.summary(r)}")
                    results[mode][c].append(r)
                if mode == "on":
                    text = bench.http("GET", f"http://127.0.0.1:{gw.ports['metrics']}/metrics")[1].decode()
                    rows = [l for l in text.splitlines()
                            if l.startswith('switchyard_drift_window_rows{model="boosted"')]
                    bench.log(f"  counted: {rows}")
            finally:
                gw.server.stop()
            time.sleep(1)

    def median_rps(runs):
        ok = [r["req_per_s"] for r in runs if "failed" not in r and not r.get("errors")]
        return statistics.median(ok) if ok else None

    def median_p99(runs):
        ok = [r["latency_us"]["p99"] for r in runs if "failed" not in r]
        return statistics.median(ok) if ok else None

    def paired_cost(c):
        # Runs i of both settings are neighbours in time: their ratio cancels
        # most of what the machine did meanwhile.
        ratios = [on["req_per_s"] / off["req_per_s"]
                  for on, off in zip(results["on"][c], results["off"][c])
                  if "failed" not in on and "failed" not in off and off["req_per_s"]]
        return (1 - statistics.median(ratios)) if ratios else None

    def median_cpu(runs):
        ok = [r["gateway_cpu_us_per_request"] for r in runs if "gateway_cpu_us_per_request" in r]
        return statistics.median(ok) if ok else None

    lines = [
        "| concurrency | drift off req/s | drift on req/s | cost (medians) | cost (median of paired runs) "
        "| gateway CPU µs/request off | on | CPU cost | p99 off | p99 on |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    table = []
    for c in concurrency:
        off, on = median_rps(results["off"][c]), median_rps(results["on"][c])
        cost = None if not off or not on else (off - on) / off
        cpu_off, cpu_on = median_cpu(results["off"][c]), median_cpu(results["on"][c])
        row = {
            "cpu_us_per_request_off": cpu_off,
            "cpu_us_per_request_on": cpu_on,
            "cpu_cost": (cpu_on - cpu_off) / cpu_off if cpu_off and cpu_on else None,
            "paired_cost": paired_cost(c),
            "concurrency": c,
            "off_req_per_s": off,
            "on_req_per_s": on,
            "cost": cost,
            "off_p99_us": median_p99(results["off"][c]),
            "on_p99_us": median_p99(results["on"][c]),
        }
        table.append(row)
        lines.append(
            f"| {c} | {off:,.0f} | {on:,.0f} | {cost * 100:+.1f}% | {row['paired_cost'] * 100:+.1f}% "
            f"| {cpu_off:.1f} | {cpu_on:.1f} | {row['cpu_cost'] * 100:+.1f}% "
            f"| {row['off_p99_us']} µs | {row['on_p99_us']} µs |"
            if cost is not None else f"| {c} | {off} | {on} | n/a | | |"
        )
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "duration_s": args.duration,
        "repeat": args.repeat,
        "load_average_at_end": os.getloadavg(),
        "table": table,
        "runs": results,
    }, indent=2, default=str))
    bench.log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
