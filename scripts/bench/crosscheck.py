#!/usr/bin/env python3
"""The gateway and the reference handler measured by clients written in C.

`loadgen` shares the two cores with the server it measures, and its own
cost differs by protocol (hyper's HTTP/2 client costs more per call than
its HTTP/1.1 client), so a protocol comparison made with it is partly a
comparison of client libraries. This script measures the same cells with
Debian's `wrk` (HTTP/1.1) and `h2load` from `nghttp2-client` (HTTP/1.1 and
HTTP/2; gRPC calls as pre-encoded length-prefixed messages, `-m` streams per
connection), alternating the servers in each round, and prints the median
of each cell, plus the gateway's CPU time per request (from /proc).

    python3 scripts/bench/crosscheck.py [--rounds 5] [--seconds 4]

Needs the release binaries (`cargo build --release -p gateway -p
switchyard-benches`), `.venv`'s ONNX Runtime (`make ort`), and `wrk` and
`h2load` on PATH (`apt-get install wrk nghttp2-client`). Standard library
only.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402 — the driver's helpers: ports, servers, ONNX Runtime

ROOT = run.ROOT


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(number, payload):
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def grpc_frame(rows):
    """ModelInferRequest for boosted with `rows` rows in raw_input_contents,
    framed for the wire (flag, big-endian length, message)."""
    golden = json.loads(run.GOLDEN.read_text())["inputs"]["input"]["data"]
    width, available = 20, len(golden) // 20
    values = [golden[(r % available) * width + j] for r in range(rows) for j in range(width)]
    shape = varint(rows) + varint(width)
    tensor = field(1, b"input") + field(2, b"FP32") + field(3, shape)
    message = field(1, run.MODEL.encode()) + field(5, tensor) + field(7, struct.pack(f"<{len(values)}f", *values))
    return b"\x00" + struct.pack(">I", len(message)) + message


def json_body(rows):
    golden = json.loads(run.GOLDEN.read_text())["inputs"]["input"]["data"]
    width, available = 20, len(golden) // 20
    values = [golden[(r % available) * width + j] for r in range(rows) for j in range(width)]
    return json.dumps({"inputs": [{"name": "input", "shape": [rows, width], "datatype": "FP32", "data": values}]})


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(port, path, lua, conns, seconds):
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "-s", lua, "--latency",
                          f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1, "ms": 1000, "s": 1e6}[p50.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, float(p50.group(1)) * scale, int(non2xx.group(1)) if non2xx else 0


def h2load(url, body_file, conns, streams, seconds, h1=False, grpc=False):
    argv = ["h2load", "-D", str(seconds), "-c", str(conns), "-t", "1", "-d", str(body_file)]
    if h1:
        argv += ["--h1", "-H", "content-type: application/json"]
    else:
        argv += ["-m", str(streams)]
    if grpc:
        argv += ["-H", "content-type: application/grpc", "-H", "te: trailers"]
    out = subprocess.run(argv + [url], capture_output=True, text=True).stdout
    rps = float(re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out).group(1))
    failed = int(re.search(r"(\d+) failed", out).group(1)) + int(re.search(r"(\d+) errored", out).group(1))
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1, "ms": 1000, "s": 1e6}[mean.group(2)]
    return rps, float(mean.group(1)) * scale, failed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=4)
    args = ap.parse_args()
    for tool in ("wrk", "h2load"):
        if shutil.which(tool) is None:
            sys.exit(f"crosscheck: {tool} is not on PATH (apt-get install wrk nghttp2-client)")
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/switchyard/target")) / "release"
    for b in ("gateway", "reference"):
        if not (target / b).is_file():
            sys.exit(f"crosscheck: {target / b} is missing: cargo build --release -p gateway -p switchyard-benches")
    ort = run.ort_library()
    if ort is None:
        sys.exit("crosscheck: ONNX Runtime is missing from .venv: run `make ort`")

    with tempfile.TemporaryDirectory(prefix="switchyard-crosscheck-") as tmp:
        work = Path(tmp)
        for rows in (1, 64):
            (work / f"body{rows}.json").write_text(json_body(rows))
            (work / f"post{rows}.lua").write_text(
                'wrk.method="POST"\nwrk.headers["Content-Type"]="application/json"\n'
                f"wrk.body=[[{json_body(rows)}]]\n")
            (work / f"grpc{rows}.bin").write_bytes(grpc_frame(rows))
        gw = run.Gateway(target / "gateway", ort, work, work)
        ref_port = run.free_port()
        ref = run.Server("reference", [str(target / "reference"), "--port", str(ref_port), "--model", str(run.MODEL_ONNX)],
                         dict(os.environ, ORT_DYLIB_PATH=ort), work / "reference.log")
        if run.wait_first_answer(ref, f"http://127.0.0.1:{ref_port}/v2/models/{run.MODEL}/infer", run.infer_body(), 30) is None:
            sys.exit(f"crosscheck: the reference server did not answer:\n{ref.tail()}")
        infer = f"/v2/models/{run.MODEL}/infer"
        grpc_url = f"http://127.0.0.1:{gw.ports['grpc']}/inference.GRPCInferenceService/ModelInfer"
        cells = {
            "HTTP JSON, wrk, 1 row, c=1": [
                ("gateway", lambda: wrk(gw.ports["http"], infer, work / "post1.lua", 1, args.seconds)),
                ("reference", lambda: wrk(ref_port, infer, work / "post1.lua", 1, args.seconds))],
            "HTTP JSON, wrk, 1 row, c=64": [
                ("gateway", lambda: wrk(gw.ports["http"], infer, work / "post1.lua", 64, args.seconds)),
                ("reference", lambda: wrk(ref_port, infer, work / "post1.lua", 64, args.seconds))],
            "HTTP JSON, wrk, 64 rows, c=64": [
                ("gateway", lambda: wrk(gw.ports["http"], infer, work / "post64.lua", 64, args.seconds)),
                ("reference", lambda: wrk(ref_port, infer, work / "post64.lua", 64, args.seconds))],
            "gateway, h2load, 1 row, 64 in flight": [
                ("HTTP/1.1 JSON, 64 connections", lambda: h2load(f"http://127.0.0.1:{gw.ports['http']}{infer}",
                                                               work / "body1.json", 64, 1, args.seconds, h1=True)),
                ("gRPC, 64 connections", lambda: h2load(grpc_url, work / "grpc1.bin", 64, 1, args.seconds, grpc=True)),
                ("gRPC, 8 connections × 8 streams", lambda: h2load(grpc_url, work / "grpc1.bin", 8, 8, args.seconds, grpc=True))],
            "gateway, h2load, 1 row, 1 in flight": [
                ("HTTP/1.1 JSON", lambda: h2load(f"http://127.0.0.1:{gw.ports['http']}{infer}",
                                                 work / "body1.json", 1, 1, args.seconds, h1=True)),
                ("gRPC", lambda: h2load(grpc_url, work / "grpc1.bin", 1, 1, args.seconds, grpc=True))],
            "gateway, h2load, 64 rows, 64 in flight": [
                ("HTTP/1.1 JSON, 64 connections", lambda: h2load(f"http://127.0.0.1:{gw.ports['http']}{infer}",
                                                               work / "body64.json", 64, 1, args.seconds, h1=True)),
                ("gRPC, 8 connections × 8 streams", lambda: h2load(grpc_url, work / "grpc64.bin", 8, 8, args.seconds, grpc=True))],
        }
        results = {}
        try:
            for r in range(args.rounds):
                for cell, runs in cells.items():
                    for name, fn in runs:
                        pid = gw.server.proc.pid if name != "reference" else ref.proc.pid
                        before = cpu_seconds(pid)
                        rps, lat, failed = fn()
                        cpu = cpu_seconds(pid) - before
                        results.setdefault((cell, name), []).append((rps, lat, failed, cpu / max(rps * args.seconds, 1)))
                        print(f"[crosscheck round {r + 1}] {cell} / {name}: {rps:,.0f} req/s, {lat:.0f} µs, "
                              f"{failed} failed, {cpu / max(rps * args.seconds, 1) * 1e6:.1f} µs CPU per request",
                              flush=True)
        finally:
            gw.server.stop()
            ref.stop()
    print(f"\nmedians of {args.rounds} rounds, {args.seconds} s each (latency: wrk p50, h2load mean)\n")
    print("| cell | server / protocol | req/s | latency | server CPU per request | failed |")
    print("|---|---|---|---|---|---|")
    for (cell, name), v in results.items():
        print(f"| {cell} | {name} | {statistics.median(x[0] for x in v):,.0f} | "
              f"{statistics.median(x[1] for x in v):.0f} µs | {statistics.median(x[3] for x in v) * 1e6:.1f} µs | "
              f"{sum(x[2] for x in v)} |")


if __name__ == "__main__":
    main()
