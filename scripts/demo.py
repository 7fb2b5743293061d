"""`make demo`: a gateway on the example models, answering every protocol.

Starts the gateway (release build) on Triton's ports, waits until it is
ready, then sends requests over Open Inference Protocol v2 JSON, v2 binary
(tritonclient HTTP), gRPC (tritonclient gRPC) and KServe V1, loads a second
version into the green slot, smoke-tests it alone by pinning, shifts traffic
to it, and shows the metrics. Stops the gateway with SIGTERM at the end.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

ROOT = Path(__file__).resolve().parent.parent
PORTS = {"HTTP": 8000, "gRPC": 8001, "metrics": 8002, "admin": 8003}


def say(text):
    print(f"\n== {text}", flush=True)


def port_taken(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def main():
    taken = [f"{name} port {port}" for name, port in PORTS.items() if port_taken(port)]
    if taken:
        sys.exit(f"demo: {', '.join(taken)} already in use on 127.0.0.1; stop what listens there and retry")
    binary = os.environ.get("SWITCHYARD_GATEWAY_BIN", str(ROOT / "target/release/gateway"))
    state = tempfile.mkdtemp(prefix="switchyard-demo-")
    env = dict(os.environ, SWITCHYARD_MODELS=str(ROOT / "models"), SWITCHYARD_STATE_DIR=state)
    say(f"starting {binary}")
    started = time.monotonic()
    gateway = subprocess.Popen([binary], env=env)
    try:
        run(started)
    finally:
        gateway.send_signal(signal.SIGTERM)
        code = gateway.wait(timeout=30)
        say(f"gateway stopped on SIGTERM with exit code {code}")
        shutil.rmtree(state, ignore_errors=True)


def run(started):
    http = "http://127.0.0.1:8000"
    admin = "http://127.0.0.1:8003"
    for _ in range(200):
        try:
            if requests.get(f"{http}/v2/health/ready", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    else:
        sys.exit("demo: the gateway did not become ready in 10 s")
    print(f"ready after {time.monotonic() - started:.2f} s")

    golden = json.loads((ROOT / "models/boosted/2/golden.json").read_text())
    rows = np.array(golden["inputs"]["input"]["data"], dtype=np.float32).reshape(32, 20)[:3]

    say("server metadata (GET /v2)")
    print(requests.get(f"{http}/v2").json())
    say("routes (GET :8003/admin/models)")
    for route in requests.get(f"{admin}/admin/models").json():
        print(route)

    say("OIP v2 JSON: POST /v2/models/boosted/infer, 3 rows")
    body = {"id": "demo-1", "inputs": [{"name": "input", "shape": [3, 20], "datatype": "FP32", "data": rows.flatten().tolist()}]}
    r = requests.post(f"{http}/v2/models/boosted/infer", json=body)
    print("x-model-version:", r.headers["x-model-version"], "x-slot:", r.headers["x-slot"])
    print(json.dumps(r.json(), indent=None))

    say("OIP v2 binary tensors through tritonclient.http")
    client = httpclient.InferenceServerClient("127.0.0.1:8000")
    inp = httpclient.InferInput("input", list(rows.shape), "FP32")
    inp.set_data_from_numpy(rows, binary_data=True)
    result = client.infer("boosted", [inp])
    print("labels:", result.as_numpy("label"), "probabilities:", result.as_numpy("probabilities").round(4).tolist())

    say("OIP v2 over gRPC through tritonclient.grpc")
    gclient = grpcclient.InferenceServerClient("127.0.0.1:8001")
    ginp = grpcclient.InferInput("input", list(rows.shape), "FP32")
    ginp.set_data_from_numpy(rows)
    gresult = gclient.infer("mlp", [ginp])
    print("model_version:", gresult.get_response().model_version, "labels:", gresult.as_numpy("label"))

    say("KServe V1: POST /v1/models/linear:predict")
    r = requests.post(f"{http}/v1/models/linear:predict", json={"instances": rows[:2].tolist()})
    print(r.json())

    say("hot swap: load boosted v2 into the green slot, smoke-test it alone (x-slot: green)")
    t0 = time.monotonic()
    r = requests.put(f"{admin}/admin/models/boosted/slots/green", json={"version": 2})
    print(f"loaded in {time.monotonic() - t0:.3f} s:", r.json())
    r = requests.post(f"{http}/v2/models/boosted/infer", json=body, headers={"x-slot": "green"})
    want = golden["outputs"]["label"]["data"][:3]
    got = r.json()["outputs"][0]["data"]
    print(f"green answered version {r.headers['x-model-version']}: labels {got}, golden {want}:", "PASS" if got == want else "FAIL")

    say("canary: 90/10, then all traffic to green")
    requests.put(f"{admin}/admin/models/boosted/weights", json={"blue": 90, "green": 10})
    seen = {}
    for _ in range(100):
        v = requests.post(f"{http}/v2/models/boosted/infer", json=body).headers["x-model-version"]
        seen[v] = seen.get(v, 0) + 1
    print("100 requests at 90/10 answered by versions:", seen)
    print(requests.put(f"{admin}/admin/models/boosted/weights", json={"blue": 0, "green": 100}).json())

    say("bad input gets a clear error")
    r = requests.post(f"{http}/v2/models/boosted/infer", json={"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]})
    print(r.status_code, r.json())

    say("metrics (a few lines of :8002/metrics)")
    for line in requests.get("http://127.0.0.1:8002/metrics").text.splitlines():
        if line.startswith(("switchyard_requests_total", "switchyard_route_weight_percent", "switchyard_model_loaded")):
            print(line)


if __name__ == "__main__":
    main()
