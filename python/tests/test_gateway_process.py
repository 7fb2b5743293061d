"""The gateway as a process: start-up refusals, the admin token, --help,
SIGTERM under load, routing that survives a restart, and the body limit.

Each test starts its own gateways (conftest's `launch` factory) on free
ports with a fresh copy of the models.
"""

from __future__ import annotations

import collections
import gzip
import json
import signal
import socket
import threading
import time

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import base_env, load_golden

LISTENERS = {"http": "HTTP", "grpc": "gRPC", "metrics": "metrics", "admin": "admin"}


def wait_exit(gw, timeout: float) -> tuple[int, float]:
    """Waits for a gateway expected to exit on its own: (code, seconds)."""
    t0 = time.monotonic()
    try:
        code = gw.proc.wait(timeout=timeout)
    except Exception:
        gw.kill()
        pytest.fail(f"gateway still running after {timeout} s\n{gw.stderr()}", pytrace=False)
    return code, time.monotonic() - t0


def infer_body(rows: np.ndarray) -> dict:
    return {
        "inputs": [{
            "name": "input", "shape": list(rows.shape), "datatype": "FP32",
            "data": rows.flatten().tolist(),
        }]
    }


# --- (1) a port that is taken ---------------------------------------------


@pytest.fixture
def taken_port():
    """A port with a listener on it for the length of the test."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    yield s.getsockname()[1]
    s.close()


@pytest.mark.parametrize("listener", list(LISTENERS))
def test_port_taken_exits_nonzero_naming_the_address(launch, taken_port, listener):
    gw = launch.start(ports={listener: taken_port}, wait=False)
    code, seconds = wait_exit(gw, 15)
    err = gw.stderr()
    assert code != 0, err
    assert seconds < 5, f"took {seconds:.1f} s to give up"
    assert f"127.0.0.1:{taken_port}" in err, err
    assert f"for {LISTENERS[listener]}" in err, err
    assert "in use" in err, err
    # Listeners are bound before any model loads.
    assert "version live" not in err, err


def test_port_taken_message_states_the_cause_once(launch, taken_port):
    gw = launch.start(ports={"http": taken_port}, wait=False)
    code, _ = wait_exit(gw, 15)
    err = gw.stderr()
    assert code != 0
    assert err.count("Address already in use") == 1, err


# --- (2) the admin API off loopback needs a token -------------------------


def test_admin_off_loopback_without_token_is_refused(launch):
    gw = launch.start(admin_host="0.0.0.0", wait=False)
    code, seconds = wait_exit(gw, 15)
    err = gw.stderr()
    assert code == 2, err
    assert seconds < 5
    assert "SWITCHYARD_ADMIN_TOKEN" in err, err
    assert f"0.0.0.0:{gw.admin_port}" in err, err
    # Refused before anything listened or loaded.
    assert "listening" not in err and "version live" not in err, err
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{gw.http_url}/v2/health/live", timeout=2)


@pytest.mark.parametrize("how", ["env", "flag"])
def test_admin_off_loopback_with_token_requires_bearer(launch, how):
    token = "t0ken-for-the-test"
    if how == "env":
        gw = launch.start(admin_host="0.0.0.0", env={"SWITCHYARD_ADMIN_TOKEN": token})
    else:
        gw = launch.start("--admin-token", token, admin_host="0.0.0.0")
    url = f"{gw.admin_url}/admin/models"

    r = requests.get(url, timeout=10)
    assert r.status_code == 401, r.text
    assert r.headers.get("www-authenticate") == "Bearer"
    assert "token" in r.json()["error"]

    for header in (f"Bearer {token}x", f"Basic {token}", token, "Bearer "):
        r = requests.get(url, headers={"Authorization": header}, timeout=10)
        assert r.status_code == 401, (header, r.text)

    r = requests.put(
        f"{gw.admin_url}/admin/models/boosted/slots/green", json={"version": 2}, timeout=10
    )
    assert r.status_code == 401, r.text

    auth = {"Authorization": f"Bearer {token}"}
    r = requests.get(url, headers=auth, timeout=10)
    assert r.status_code == 200, r.text
    views = {v["model"]: v for v in r.json()}
    assert sorted(views) == ["boosted", "dropout", "linear", "mlp"]
    # The refused PUT changed nothing.
    assert views["boosted"]["green"] is None
    assert views["boosted"]["blue"]["version"] == 3

    # The inference port needs no token.
    r = requests.get(f"{gw.http_url}/v2/models/boosted/ready", timeout=10)
    assert r.status_code == 200
    gw.stop()


# --- (3) --help --------------------------------------------------------------

FLAGS = [
    "--models", "--http-addr", "--grpc-addr", "--metrics-addr", "--admin-addr",
    "--admin-token", "--state-dir", "--request-timeout", "--max-body-bytes",
    "--inference-threads", "--grpc-keepalive",
]


def test_help_mentions_every_flag(launch):
    secret = "do-not-print-this-token"
    result = launch.run("--help", env={"SWITCHYARD_ADMIN_TOKEN": secret})
    assert result.returncode == 0, result.stderr
    for flag in FLAGS:
        assert flag in result.stdout, f"{flag} missing from --help:\n{result.stdout}"
    # The token's environment variable is named, its value is not shown.
    assert "SWITCHYARD_ADMIN_TOKEN" in result.stdout
    assert secret not in result.stdout + result.stderr


# --- (4) SIGTERM while requests are in flight ------------------------------


def test_sigterm_under_load_drains_and_exits_zero(launch):
    drain_s = 10
    gw = launch.start("--drain-timeout", f"{drain_s}s")
    golden = load_golden("boosted", 3)
    body = json.dumps(infer_body(golden.input[:4]))
    url = f"{gw.http_url}/v2/models/boosted/infer"
    want_labels = golden.label[:4].tolist()

    lock = threading.Lock()
    statuses: collections.Counter = collections.Counter()
    failures: collections.Counter = collections.Counter()
    wrong: list = []
    stop = threading.Event()

    def worker():
        session = requests.Session()
        while not stop.is_set():
            try:
                r = session.post(
                    url, data=body, headers={"content-type": "application/json"}, timeout=15
                )
            except requests.RequestException as e:
                with lock:
                    failures[type(e).__name__] += 1
                time.sleep(0.01)
                continue
            ok = r.status_code == 200
            if ok:
                doc = r.json()
                labels = next(o["data"] for o in doc["outputs"] if o["name"] == "label")
                ok = doc["model_version"] == "3" and labels == want_labels
            with lock:
                statuses[r.status_code] += 1
                if not ok:
                    wrong.append((r.status_code, r.text[:300]))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(16)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with lock:
                if statuses[200] >= 200:
                    break
            time.sleep(0.02)
        with lock:
            before = statuses[200]
        assert before >= 200, f"the load never got going: {statuses} {failures}\n{gw.stderr()}"

        t0 = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        try:
            code = gw.proc.wait(timeout=drain_s + 10)
        except Exception:
            gw.kill()
            pytest.fail(f"no exit {drain_s + 10} s after SIGTERM\n{gw.stderr()}", pytrace=False)
        elapsed = time.monotonic() - t0
        time.sleep(0.3)  # clients keep trying against the closed ports
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=20)

    err = gw.stderr()
    print(f"before SIGTERM: {before} answers; in all {dict(statuses)}; "
          f"client errors {dict(failures)}; exit {code} after {elapsed:.2f} s")
    assert code == 0, err
    assert elapsed < drain_s, f"exit took {elapsed:.1f} s, the drain timeout is {drain_s} s"
    assert wrong == [], f"answers other than a correct 200: {wrong[:5]}"
    assert set(statuses) == {200}, statuses
    assert "drain timeout passed" not in err, err


# --- (5) the routing survives a restart ------------------------------------


def admin_view(gw, model):
    r = requests.get(f"{gw.admin_url}/admin/models/{model}", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_restart_with_the_same_state_dir_restores_routing(launch):
    models = launch.copy_models()
    state = launch.state_dir()
    first = launch.start(models=models, state_dir=state)
    r = requests.put(
        f"{first.admin_url}/admin/models/boosted/slots/green", json={"version": 2}, timeout=30
    )
    assert r.status_code == 200, r.text
    r = requests.put(
        f"{first.admin_url}/admin/models/boosted/weights", json={"blue": 70, "green": 30},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.json()["weights"] == {"blue": 70, "green": 30}
    first.stop()
    assert any(state.iterdir()), "nothing was saved in --state-dir"

    second = launch.start(models=models, state_dir=state)
    view = admin_view(second, "boosted")
    assert view["blue"]["version"] == 3
    assert view["green"]["version"] == 2
    assert view["blue"]["state"] == view["green"]["state"] == "ready"
    assert view["weights"] == {"blue": 70, "green": 30}
    assert view["live"] == "blue"
    for model in ("linear", "mlp"):
        other = admin_view(second, model)
        assert other["blue"]["version"] == 1 and other["green"] is None
        assert other["weights"] == {"blue": 100, "green": 0}

    # Traffic follows the restored weights: exactly 70/30 over 100 requests.
    golden = {v: load_golden("boosted", v) for v in (2, 3)}
    seen = collections.Counter()
    session = requests.Session()
    x = golden[3].input[:2]
    for _ in range(100):
        r = session.post(f"{second.http_url}/v2/models/boosted/infer", json=infer_body(x),
                         timeout=10)
        assert r.status_code == 200, r.text
        version = r.json()["model_version"]
        assert r.headers["x-model-version"] == version
        assert r.headers["x-slot"] == {"3": "blue", "2": "green"}[version]
        seen[version] += 1
    assert seen == {"3": 70, "2": 30}
    second.stop()


# --- (6) the body limit -------------------------------------------------------


def test_body_over_max_body_bytes_gets_413(launch):
    limit = 4096
    gw = launch.start("--max-body-bytes", str(limit))
    golden = load_golden("boosted", 3)
    big = np.tile(golden.input, (2, 1))  # 64 rows: ~10 KB of JSON, 5 KB binary
    small = golden.input[:1]

    big_json = json.dumps(infer_body(big)).encode()
    assert len(big_json) > limit
    r = requests.post(f"{gw.http_url}/v2/models/boosted/infer", data=big_json,
                      headers={"content-type": "application/json"}, timeout=10)
    assert r.status_code == 413, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert "--max-body-bytes" in r.json()["error"]

    r = requests.post(f"{gw.http_url}/v1/models/boosted:predict",
                      json={"instances": big.tolist()}, timeout=10)
    assert r.status_code == 413, r.text
    assert "--max-body-bytes" in r.json()["error"]

    # The limit holds for the decompressed body: a few hundred bytes of gzip
    # that inflate past it are refused the same way.
    padded = json.dumps(infer_body(small)).encode() + b" " * (4 * limit)
    bomb = gzip.compress(padded)
    assert len(bomb) < limit
    r = requests.post(f"{gw.http_url}/v2/models/boosted/infer", data=bomb,
                      headers={"content-type": "application/json", "content-encoding": "gzip"},
                      timeout=10)
    assert r.status_code == 413, r.text
    assert r.headers["x-request-id"].startswith("sy-")
    # Compressed and within the limit once inflated, it is served.
    r = requests.post(f"{gw.http_url}/v2/models/boosted/infer",
                      data=gzip.compress(json.dumps(infer_body(small)).encode()),
                      headers={"content-type": "application/json", "content-encoding": "gzip",
                               "x-request-id": "zipped-1"},
                      timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == "zipped-1"
    # An encoding the gateway can't inflate is refused, not read as JSON.
    r = requests.post(f"{gw.http_url}/v2/models/boosted/infer", data=b"\x00\x01",
                      headers={"content-type": "application/json", "content-encoding": "br"},
                      timeout=10)
    assert r.status_code == 415, r.text

    # Under the limit, the same endpoint answers.
    r = requests.post(f"{gw.http_url}/v2/models/boosted/infer", json=infer_body(small), timeout=10)
    assert r.status_code == 200, r.text
    assert next(o for o in r.json()["outputs"] if o["name"] == "label")["data"] == [
        int(golden.label[0])
    ]

    # tritonclient's binary body is held to the same limit.
    http = httpclient.InferenceServerClient(gw.http_addr)
    try:
        i = httpclient.InferInput("input", list(big.shape), "FP32")
        i.set_data_from_numpy(big)
        with pytest.raises(InferenceServerException) as e:
            http.infer("boosted", [i])
        assert e.value.status() == "413"
        assert "--max-body-bytes" in e.value.message()
        i = httpclient.InferInput("input", [16, 20], "FP32")
        i.set_data_from_numpy(golden.input[:16])
        np.testing.assert_array_equal(http.infer("boosted", [i]).as_numpy("label"),
                                      golden.label[:16])
    finally:
        http.close()

    # And so is a gRPC message.
    grpc = grpcclient.InferenceServerClient(gw.grpc_addr)
    try:
        i = grpcclient.InferInput("input", list(big.shape), "FP32")
        i.set_data_from_numpy(big)
        with pytest.raises(InferenceServerException) as e:
            grpc.infer("boosted", [i])
        # tonic answers OUT_OF_RANGE (grpc-core servers say RESOURCE_EXHAUSTED).
        assert e.value.status() in ("StatusCode.RESOURCE_EXHAUSTED", "StatusCode.OUT_OF_RANGE")
        assert str(limit) in e.value.message()
        i = grpcclient.InferInput("input", [16, 20], "FP32")
        i.set_data_from_numpy(golden.input[:16])
        np.testing.assert_array_equal(grpc.infer("boosted", [i]).as_numpy("label"),
                                      golden.label[:16])
    finally:
        grpc.close()
    gw.stop()


# --- (5) the ONNX Runtime library from the flag alone -------------------------


def test_ort_library_flag_alone_is_enough(launch):
    # ORT_DYLIB_PATH empty: only --ort-library says where the library is. The
    # gateway once built ONNX Runtime's thread-pool options before loading
    # the configured library, so ort went looking for `libonnxruntime.so`
    # itself and panicked.
    lib = base_env()["ORT_DYLIB_PATH"]
    gw = launch.start("--ort-library", lib, env={"ORT_DYLIB_PATH": ""})
    # linear's manifest prefers ort (the tree models prefer forest).
    r = requests.get(f"{gw.http_url}/v2/models/linear", timeout=10)
    assert r.status_code == 200, r.text
    listed = requests.get(f"{gw.admin_url}/admin/models/linear", timeout=10).json()
    assert listed["blue"]["backend"] == "ort", listed
    gw.stop()
    assert "panicked" not in gw.stderr_path.read_text(errors="replace")
