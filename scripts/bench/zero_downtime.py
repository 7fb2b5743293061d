#!/usr/bin/env python3
"""Proves zero downtime: a blue-green promote, a canary promote and a
rollback under 64 concurrent clients, with no failed request and p99 during
each rollout within twice the steady state (issue 3, item 8).

    python3 scripts/bench/zero_downtime.py                 # builds, then 1 and 5 gateways, 3 repeats
    python3 scripts/bench/zero_downtime.py --skip-build --gateways 1 --repeat 1

One run: N release gateways on free 127.0.0.1 ports over a copy of
models/, boosted pinned to v1 at start; `loadgen --timeline` drives boosted
on every gateway (64 clients in all, split across the gateways) for the
whole run and writes every request's start, latency and outcome. After a
2 s warm-up, a steady window (default 10 s); then, one after another with a
settling gap between them, a control (`controller status boosted`: the same
process start and a call to every gateway, no change) and:

    controller promote boosted --version 2 --full --bake 0ms       blue-green   v1 -> v2
    controller promote boosted --version 3 --strategy canary --steps 10,50,100 --bake 1s
                                                                   canary       v2 -> v3
    controller rollback boosted                                    rollback     v3 -> v2

Each rollout's window is the controller process, start to exit. For every
window: requests (those in flight at any moment of it), failures, p50, p99
and max, and p99 over steady p99; the rollout's own duration from the
controller's rollout log (`controller history --json`): start to all
gateways switched, the load and the smoke suite's share. Medians of
`--repeat` runs go to a Markdown table; everything to `--out` as JSON.

Exits 1 if any request of any run failed (warm-up included) or a median
p99 ratio exceeds --max-ratio (2.0): a proof, not just a report. Standard
library only.
"""

import argparse
import bisect
import csv
import json
import math
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rollout import ROOT, TARGET, controller_argv, copy_models, ort_library, start_gateways, stop_gateways  # noqa: E402

CLIENTS = 64
WARMUP_S = 2.0
ACTIONS = ("blue-green", "canary", "rollback")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gateways", default="1,5", help="fleet sizes to run, comma-separated")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--steady", type=float, default=10.0, help="steady-state window, seconds")
    p.add_argument("--gap", type=float, default=3.0, help="settling time before each rollout, seconds")
    p.add_argument("--steps", default="10,50,100", help="canary steps")
    p.add_argument("--bake", default="1s", help="canary bake per step")
    p.add_argument("--max-ratio", type=float, default=2.0, help="largest median p99 ratio that passes")
    p.add_argument("--out", type=Path, default=ROOT / "target/bench/zero_downtime.json")
    p.add_argument("--skip-build", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep each run's folder (timelines, logs)")
    p.add_argument("--split-ab", action="store_true",
                   help="instead: alternate each fleet between 100/0 and 50/50 under the same load, "
                        "to tell the cost of a split (two versions serving) from the machine's noise")
    return p.parse_args()


def build():
    subprocess.run(["cargo", "build", "--release", "-p", "gateway", "-p", "controller",
                    "-p", "switchyard-benches", "--bin", "gateway", "--bin", "controller",
                    "--bin", "loadgen"], cwd=ROOT, check=True)


def snapshot_binaries(into):
    """Copies of the three binaries: other builds in the shared target
    folder must not swap them in the middle of a run."""
    into.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in ("gateway", "controller", "loadgen"):
        src = TARGET / name
        if not src.is_file():
            sys.exit(f"{src} is missing: build first (or drop --skip-build)")
        shutil.copy2(src, into / name)
        out[name] = into / name
    # The same for ONNX Runtime's library: .venv may be rebuilt meanwhile.
    lib = into / Path(ort_library()).name
    shutil.copy2(ort_library(), lib)
    os.environ["ORT_DYLIB_PATH"] = str(lib)
    return out


def split_clients(n):
    """64 clients over n gateways, as evenly as whole numbers allow."""
    return [CLIENTS // n + (1 if i < CLIENTS % n else 0) for i in range(n)]


def bake_seconds(text):
    m = re.fullmatch(r"([\d.]+)(ms|s)", text)
    if not m:
        sys.exit(f"--bake {text!r}: use e.g. 1s or 500ms")
    return float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)


def actions(args):
    return {
        "blue-green": ["promote", "boosted", "--version", "2", "--full", "--bake", "0ms"],
        "canary": ["promote", "boosted", "--version", "3", "--strategy", "canary",
                   "--steps", args.steps, "--bake", args.bake],
        "rollback": ["rollback", "boosted"],
    }


def children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_controller(bins, gateways, work, argv):
    """One controller command; its wall window (unix seconds), CPU time and output."""
    cpu0 = children_cpu_s()
    t0 = time.time()
    out = subprocess.run(controller_argv(gateways, work, "--json", *argv, binary=bins["controller"]),
                         capture_output=True, text=True, timeout=300)
    t1 = time.time()
    cpu = children_cpu_s() - cpu0
    if out.returncode != 0:
        raise SystemExit(f"controller {' '.join(argv)} exited {out.returncode}:\n{out.stderr}")
    return {"start": t0, "end": t1, "cpu_s": cpu, "stdout": out.stdout, "progress": out.stderr.strip().splitlines()}


def history(bins, gateways, work):
    out = subprocess.run(controller_argv(gateways, work, "--json", "history", "boosted", binary=bins["controller"]),
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def phases_of(records, started_after_ms):
    """The rollout log's records of the first rollout that began at or after
    `started_after_ms`: [(phase, updated_ms, weights)] and the rollout itself."""
    mine = [r for r in records if r["started_ms"] >= started_after_ms]
    if not mine:
        return None, []
    rid = mine[0]["id"]
    recs = [r for r in mine if r["id"] == rid]
    return recs[-1], [(r["phase"], r["updated_ms"], r.get("weights")) for r in recs]


def timings(rollout, phases, action):
    """Durations from the rollout log, in ms: start (the planned record) to
    all gateways switched, the load and the smoke suite's share."""
    start = rollout["started_ms"]
    first = lambda name: next((t for p, t, _ in phases if p == name), None)  # noqa: E731
    out = {"start_to_end_ms": phases[-1][1] - start}
    if action == "rollback":
        out["start_to_switched_ms"] = (first("rolled_back") or phases[-1][1]) - start
        return out
    loading, smoke = first("loading"), first("smoke_testing")
    shifting = first("shifting")
    out["load_ms"] = smoke - loading if smoke and loading else None
    out["smoke_ms"] = shifting - smoke if shifting and smoke else None
    # All switched: the record after the weights call of the last step,
    # i.e. the first `baking` record that holds the final weights.
    final = phases[-1][2]
    switched = next((t for p, t, w in phases if p == "baking" and w == final), None)
    out["start_to_switched_ms"] = switched - start if switched else None
    return out


def read_timelines(paths):
    """Every request of the run: sorted [(start_us, end_us, latency_us, ok)]."""
    rows = []
    for path in paths:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            next(reader)
            for start, lat, outcome in reader:
                s, lt = int(start), int(lat)
                rows.append((s, s + lt, lt, outcome == "ok", outcome))
    rows.sort()
    return rows


def nearest_rank(sorted_values, q):
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


class Timeline:
    """The run's requests, sorted by start, with the longest latency seen,
    so the requests in flight during a window are found by bisection."""

    def __init__(self, rows):
        self.rows = rows
        self.starts = [r[0] for r in rows]
        self.longest = max((r[2] for r in rows), default=0)

    def overlapping(self, a_us, b_us):
        lo = bisect.bisect_left(self.starts, a_us - self.longest)
        hi = bisect.bisect_right(self.starts, b_us)
        return [r for r in self.rows[lo:hi] if r[1] >= a_us]


def window_stats(timeline, a_us, b_us):
    """Requests in flight at any moment of [a, b]: count, failures, percentiles (µs)."""
    inside = timeline.overlapping(a_us, b_us)
    lat = sorted(r[2] for r in inside if r[3])
    failed = [r[4] for r in inside if not r[3]]
    # A stall shows as a long stretch in which no request completes.
    ends = sorted([a_us] + [r[1] for r in inside if a_us <= r[1] <= b_us] + [b_us])
    return {
        "requests": len(inside),
        "completed_per_s": (len(ends) - 2) / max((b_us - a_us) / 1e6, 1e-9),
        "longest_without_completion_us": max(y - x for x, y in zip(ends, ends[1:])),
        "failures": len(failed),
        "failure_kinds": sorted(set(failed)),
        "p50_us": nearest_rank(lat, 0.50),
        "p99_us": nearest_rank(lat, 0.99),
        "max_us": lat[-1] if lat else None,
        "seconds": (b_us - a_us) / 1e6,
    }


def noise_floor(timeline, steady, length_us, steady_p99, max_ratio):
    """The p99 ratio of windows as long as a rollout's, slid over the steady
    window (half-overlapping): how often noise alone exceeds the target."""
    a, b = steady
    step = max(length_us // 2, 10_000)
    ratios = []
    t = a
    while t + length_us <= b:
        p99 = window_stats(timeline, t, t + length_us)["p99_us"]
        if p99:
            ratios.append(p99 / steady_p99)
        t += step
    ratios.sort()
    if not ratios:
        return None
    return {"windows": len(ratios), "median": nearest_rank(ratios, 0.5), "p90": nearest_rank(ratios, 0.9),
            "max": ratios[-1], "share_over_max_ratio": sum(r > max_ratio for r in ratios) / len(ratios)}


def step_stats(timeline, phases, steady_p99):
    """Per traffic step of a promote (from its `shifting` record to the next
    one, the last to `promoted`): green's weight, throughput and p99, to tell
    a split fleet's cost from the controller's own."""
    cuts = [(t, w) for p, t, w in phases if p == "shifting"]
    end = next((t for p, t, _ in phases if p == "promoted"), phases[-1][1])
    out = []
    for (t0, w), (t1, _) in zip(cuts, cuts[1:] + [(end, None)]):
        x = window_stats(timeline, t0 * 1000, t1 * 1000)
        out.append({"weights": w, "seconds": x["seconds"], "completed_per_s": x["completed_per_s"],
                    "p99_us": x["p99_us"], "p99_ratio": x["p99_us"] / steady_p99 if x["p99_us"] else None})
    return out


def one_run(args, bins, fleet_size, index, keep_root):
    work = Path(tempfile.mkdtemp(prefix=f"switchyard-zd-{fleet_size}-{index}-"))
    logs = work / "logs"
    logs.mkdir()
    models = copy_models(work)
    bake = bake_seconds(args.bake)
    steps = len(args.steps.split(","))
    # Long enough for every rollout; a rollout that outlives the load fails the run.
    duration = args.steady + 4 * args.gap + steps * (bake + 1.5) + 8.0
    loadavg = Path("/proc/loadavg").read_text().split()[:3]
    gateways = start_gateways(models, fleet_size, binary=bins["gateway"],
                              extra_env={"SWITCHYARD_PINNED_VERSIONS": "boosted=1"}, log_dir=logs)
    loads = []
    try:
        for i, ((_, ports), clients) in enumerate(zip(gateways, split_clients(fleet_size))):
            loads.append(subprocess.Popen(
                [str(bins["loadgen"]), "--port", str(ports["http"]), "--model", "boosted",
                 "-c", str(clients), "--warmup", f"{WARMUP_S}s", "--duration", f"{duration:.1f}s",
                 "--timeline", str(work / f"timeline-{i}.csv"), "--json"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT))
        t_load = time.time()
        # The steady window starts after the warm-up (and loadgen's first request).
        time.sleep(WARMUP_S + 0.3)
        steady = (time.time(), time.time() + args.steady)
        time.sleep(args.steady)
        windows = {}
        # The control: a controller process that reads every gateway's route
        # and changes nothing, measured like a rollout.
        time.sleep(args.gap)
        windows["control"] = run_controller(bins, gateways, work, ["status", "boosted"])
        for action, argv in actions(args).items():
            time.sleep(args.gap)
            windows[action] = run_controller(bins, gateways, work, argv)
        records = history(bins, gateways, work)
        reports = []
        for lg in loads:
            out, err = lg.communicate(timeout=duration + 60)
            if lg.returncode != 0:
                raise SystemExit(f"loadgen exited {lg.returncode}: {err}")
            reports.append(json.loads(out))
        load_end = min(r["started_unix_ms"] / 1e3 + r["warmup_s"] + r["duration_s"] for r in reports)
        last = windows["rollback"]["end"]
        if last + 1.0 > load_end:
            raise SystemExit(f"the load ended {last + 1.0 - load_end:.1f} s too early; the rollouts took longer than planned")
    finally:
        for lg in loads:
            if lg.poll() is None:
                lg.kill()
        stop_gateways(gateways)
    rows = read_timelines(sorted(work.glob("timeline-*.csv")))
    timeline = Timeline(rows)
    steady_us = (int(steady[0] * 1e6), int(steady[1] * 1e6))
    result = {
        "fleet": fleet_size, "run": index, "loadavg_at_start": loadavg,
        "clients": split_clients(fleet_size),
        "all_requests": len(rows), "all_failures": sum(1 for r in rows if not r[3]),
        "all_failure_kinds": sorted({r[4] for r in rows if not r[3]}),
        "loadgen": [{k: r[k] for k in ("req_per_s", "requests", "errors", "errors_by_kind", "warmup_errors", "latency_us")} for r in reports],
        "steady": window_stats(timeline, *steady_us),
    }
    steady_p99 = result["steady"]["p99_us"]
    w = windows["control"]
    a, b = int(w["start"] * 1e6), int(w["end"] * 1e6)
    result["control"] = {"during": window_stats(timeline, a, b), "wall_ms": (b - a) / 1e3,
                         "controller_cpu_ms": w["cpu_s"] * 1e3,
                         "noise_floor": noise_floor(timeline, steady_us, b - a, steady_p99, args.max_ratio)}
    result["control"]["p99_ratio"] = result["control"]["during"]["p99_us"] / steady_p99
    for action in ACTIONS:
        w = windows[action]
        a, b = int(w["start"] * 1e6), int(w["end"] * 1e6)
        during = window_stats(timeline, a, b)
        after = window_stats(timeline, a, b + 1_000_000)
        rollout, phases = phases_of(records, int(w["start"] * 1000) - 5)
        if rollout is None or rollout["phase"] not in ("promoted", "rolled_back"):
            raise SystemExit(f"{action}: the rollout log shows no finished rollout: {rollout}")
        result[action] = {
            "during": during, "during_plus_1s": after,
            "p99_ratio": during["p99_us"] / result["steady"]["p99_us"],
            "p99_ratio_plus_1s": after["p99_us"] / result["steady"]["p99_us"],
            "wall_ms": (w["end"] - w["start"]) * 1e3,
            "controller_cpu_ms": w["cpu_s"] * 1e3,
            "noise_floor": noise_floor(timeline, steady_us, b - a, steady_p99, args.max_ratio),
            "steps": step_stats(timeline, phases, steady_p99) if action != "rollback" else None,
            "timings": timings(rollout, phases, action),
            "phases": phases, "to_version": rollout["to_version"], "from_version": rollout["from_version"],
            "progress": w["progress"],
        }
    if args.keep:
        dest = keep_root / f"{fleet_size}-{index}"
        shutil.copytree(work, dest, ignore=shutil.ignore_patterns("models"))
    shutil.rmtree(work, ignore_errors=True)
    return result


def admin_put(port, path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 method="PUT", headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()


def split_ab(args, bins, fleet_size, segment_s=1.5, pairs=8):
    """v1 in blue, v2 warm in green; the weights alternate 100/0 and 50/50
    every `segment_s` under the same 64 clients. Paired segments cancel
    the slow drift of a shared machine's load."""
    work = Path(tempfile.mkdtemp(prefix=f"switchyard-zd-ab-{fleet_size}-"))
    models = copy_models(work)
    gateways = start_gateways(models, fleet_size, binary=bins["gateway"],
                              extra_env={"SWITCHYARD_PINNED_VERSIONS": "boosted=1"})
    loads, cuts = [], []
    try:
        for _, ports in gateways:
            admin_put(ports["admin"], "/admin/models/boosted/slots/green", {"version": 2})
        duration = WARMUP_S + 1 + 2 * pairs * segment_s + 3
        for i, ((_, ports), clients) in enumerate(zip(gateways, split_clients(fleet_size))):
            loads.append(subprocess.Popen(
                [str(bins["loadgen"]), "--port", str(ports["http"]), "-c", str(clients), "--warmup", f"{WARMUP_S}s",
                 "--duration", f"{duration - WARMUP_S:.1f}s", "--timeline", str(work / f"timeline-{i}.csv"), "--json"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT))
        time.sleep(WARMUP_S + 1)
        for k in range(2 * pairs):
            w = {"blue": 100, "green": 0} if k % 2 == 0 else {"blue": 50, "green": 50}
            for _, ports in gateways:
                admin_put(ports["admin"], "/admin/models/boosted/weights", w)
            cuts.append((time.time(), w["green"]))
            time.sleep(segment_s)
        cuts.append((time.time(), None))
        for lg in loads:
            lg.communicate(timeout=duration + 60)
    finally:
        for lg in loads:
            if lg.poll() is None:
                lg.kill()
        stop_gateways(gateways)
    timeline = Timeline(read_timelines(sorted(work.glob("timeline-*.csv"))))
    shutil.rmtree(work, ignore_errors=True)
    segs = [window_stats(timeline, int(t0 * 1e6), int(t1 * 1e6)) for (t0, _), (t1, _) in zip(cuts, cuts[1:])]
    one, split = segs[0::2], segs[1::2]
    return {
        "fleet": fleet_size, "segment_s": segment_s, "pairs": pairs,
        "failures": sum(x["failures"] for x in segs),
        "p99_us_100_0": med([x["p99_us"] for x in one]), "p99_us_50_50": med([x["p99_us"] for x in split]),
        "req_per_s_100_0": med([x["completed_per_s"] for x in one]), "req_per_s_50_50": med([x["completed_per_s"] for x in split]),
        "paired_p99_ratio": med([b["p99_us"] / a["p99_us"] for a, b in zip(one, split)]),
        "paired_p99_ratios": [round(b["p99_us"] / a["p99_us"], 2) for a, b in zip(one, split)],
        "paired_throughput_ratio": med([b["completed_per_s"] / a["completed_per_s"] for a, b in zip(one, split)]),
    }


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(runs):
    """Medians per fleet size and action over the repeats."""
    out = {}
    for n in sorted({r["fleet"] for r in runs}):
        mine = [r for r in runs if r["fleet"] == n]
        s = {"steady_p99_us": med([r["steady"]["p99_us"] for r in mine]),
             "steady_p50_us": med([r["steady"]["p50_us"] for r in mine]),
             "steady_req_per_s": med([r["steady"]["requests"] / r["steady"]["seconds"] for r in mine]),
             "failures": sum(r["all_failures"] for r in mine), "requests": sum(r["all_requests"] for r in mine)}
        for a in ACTIONS:
            xs = [r[a] for r in mine]
            s[a] = {
                "requests": med([x["during"]["requests"] for x in xs]),
                "failures": sum(x["during"]["failures"] for x in xs),
                "p50_us": med([x["during"]["p50_us"] for x in xs]),
                "p99_us": med([x["during"]["p99_us"] for x in xs]),
                "max_us": med([x["during"]["max_us"] for x in xs]),
                "p99_ratio": med([x["p99_ratio"] for x in xs]),
                "p99_ratios": [round(x["p99_ratio"], 2) for x in xs],
                "p99_ratio_plus_1s": med([x["p99_ratio_plus_1s"] for x in xs]),
                "noise_p90_ratio": med([x["noise_floor"]["p90"] for x in xs if x["noise_floor"]]),
                "noise_share_over": med([x["noise_floor"]["share_over_max_ratio"] for x in xs if x["noise_floor"]]),
                "wall_ms": med([x["wall_ms"] for x in xs]),
                "controller_cpu_ms": med([x["controller_cpu_ms"] for x in xs]),
                **{k: med([x["timings"].get(k) for x in xs])
                   for k in ("start_to_switched_ms", "start_to_end_ms", "load_ms", "smoke_ms")},
            }
        s["control"] = {"p99_ratio": med([r["control"]["p99_ratio"] for r in mine]),
                        "p99_ratios": [round(r["control"]["p99_ratio"], 2) for r in mine],
                        "wall_ms": med([r["control"]["wall_ms"] for r in mine]),
                        "controller_cpu_ms": med([r["control"]["controller_cpu_ms"] for r in mine])}
        out[str(n)] = s
    return out


def ms(us):
    return "–" if us is None else f"{us / 1000:.2f} ms"


def table(summary):
    lines = ["| gateways | rollout | start → all switched | load | smoke suite | controller process | requests in window | failed | p50 | p99 | max | steady p99 | p99 ratio (runs) | noise: p90 ratio / share > 2 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for n, s in summary.items():
        for a in ACTIONS:
            x = s[a]
            f = lambda v: "–" if v is None else f"{v:.0f} ms"  # noqa: E731
            lines.append(
                f"| {n} | {a} | {f(x['start_to_switched_ms'])} | {f(x['load_ms'])} | {f(x['smoke_ms'])} | "
                f"{f(x['wall_ms'])} | {x['requests']:,.0f} | {x['failures']} | {ms(x['p50_us'])} | {ms(x['p99_us'])} | "
                f"{ms(x['max_us'])} | {ms(s['steady_p99_us'])} | {x['p99_ratio']:.2f} ({', '.join(map(str, x['p99_ratios']))}) | "
                + ("n/a |" if x["noise_p90_ratio"] is None else f"{x['noise_p90_ratio']:.2f} / {x['noise_share_over']:.0%} |"))
        c = s["control"]
        lines.append(f"| {n} | control: `controller status` | – | – | – | {c['wall_ms']:.0f} ms | | | | | | {ms(s['steady_p99_us'])} | "
                     f"{c['p99_ratio']:.2f} ({', '.join(map(str, c['p99_ratios']))}) | |")
    return "\n".join(lines)


def verdict(runs, summary, max_ratio):
    problems = []
    for r in runs:
        if r["all_failures"]:
            problems.append(f"{r['fleet']} gateway(s), run {r['run']}: {r['all_failures']} failed requests ({', '.join(r['all_failure_kinds'])})")
    for n, s in summary.items():
        for a in ACTIONS:
            if s[a]["p99_ratio"] > max_ratio:
                problems.append(f"{n} gateway(s), {a}: median p99 ratio {s[a]['p99_ratio']:.2f} > {max_ratio}")
    return problems


def main():
    args = parse_args()
    if not args.skip_build:
        build()
    fleets = [int(n) for n in args.gateways.split(",")]
    stamp = time.strftime("%Y-%m-%d-%H%M%S")
    keep_root = ROOT / "target/bench" / f"zero_downtime-{stamp}"
    bin_dir = Path(tempfile.mkdtemp(prefix="switchyard-zd-bin-"))
    runs = []
    try:
        bins = snapshot_binaries(bin_dir)
        if args.split_ab:
            found = [split_ab(args, bins, n) for _ in range(args.repeat) for n in fleets]
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(found, indent=1))
            for x in found:
                print(json.dumps(x))
            return
        for i in range(args.repeat):
            for n in fleets:
                print(f"--- {n} gateway(s), run {i + 1}/{args.repeat}", file=sys.stderr, flush=True)
                r = one_run(args, bins, n, i + 1, keep_root)
                runs.append(r)
                print(f"    steady p99 {ms(r['steady']['p99_us'])}, failed {r['all_failures']} of {r['all_requests']:,}; "
                      + "; ".join(f"{a} {r[a]['wall_ms']:.0f} ms, p99 {ms(r[a]['during']['p99_us'])} "
                                  f"(x{r[a]['p99_ratio']:.2f})" for a in ACTIONS), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(bin_dir, ignore_errors=True)
    summary = summarise(runs)
    problems = verdict(runs, summary, args.max_ratio)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "date": stamp, "commit": commit, "nproc": os.cpu_count(), "clients": CLIENTS,
        "settings": {k: str(v) for k, v in vars(args).items()},
        "summary": summary, "runs": runs, "problems": problems,
    }, indent=1))
    print(table(summary))
    print(f"\nraw: {args.out}")
    if problems:
        print("NOT PROVED:\n  " + "\n  ".join(problems), file=sys.stderr)
        sys.exit(1)
    print(f"proved: 0 failed requests; every median p99 ratio <= {args.max_ratio}")


if __name__ == "__main__":
    main()
