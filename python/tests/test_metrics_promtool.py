"""The gateway's Prometheus metrics, after known traffic on every protocol.

This module's gateway (conftest's `gateway` fixture) gets a fixed set of
requests once — OIP v2 over HTTP and gRPC, KServe V1, and failing requests —
and the tests check that `/metrics` (on the metrics port and on the HTTP
port) passes `promtool check metrics` without a single lint complaint, and
that the series hold exactly the values that traffic implies.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import load_golden

LATENCY_BUCKETS = [
    0.000005, 0.00001, 0.000015, 0.00002, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
]
BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Exposition:
    """A parsed text exposition: samples by (name, labels) and TYPE lines."""

    def __init__(self, text: str):
        self.text = text
        self.types: dict[str, str] = {}
        self.samples: dict[tuple[str, frozenset], float] = {}
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(maxsplit=3)
                self.types[name] = kind
                continue
            if line.startswith("#"):
                continue
            m = _SAMPLE.match(line)
            assert m, f"unparsable sample line: {line!r}"
            name, labels, value = m.groups()
            parsed = frozenset(_LABEL.findall(labels or ""))
            key = (name, parsed)
            assert key not in self.samples, f"duplicate series: {line!r}"
            self.samples[key] = float(value)

    def get(self, name: str, **labels) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def value(self, name: str, **labels) -> float:
        v = self.get(name, **labels)
        assert v is not None, f"no series {name}{labels}"
        return v

    def series(self, name: str) -> dict[frozenset, float]:
        return {labels: v for (n, labels), v in self.samples.items() if n == name}

    def label_sets(self, name: str) -> list[dict[str, str]]:
        return [dict(labels) for labels in self.series(name)]


def fetch(url: str) -> requests.Response:
    r = requests.get(url, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4"), r.headers
    return r


def promtool_check(text: str) -> subprocess.CompletedProcess:
    promtool = shutil.which("promtool")
    return subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def promtool_path():
    path = shutil.which("promtool")
    if not path:
        pytest.skip(
            "promtool is not on PATH (`make py-test` puts .tools/prometheus/usr/bin on it; "
            "run scripts/fetch-prometheus.sh once)"
        )
    return path


@pytest.fixture(scope="module")
def traffic(gateway):
    """Sends the module's traffic once; returns what was sent."""
    http = httpclient.InferenceServerClient(gateway.http_addr)
    grpc = grpcclient.InferenceServerClient(gateway.grpc_addr)
    try:
        boosted = load_golden("boosted", 3)
        linear = load_golden("linear", 1)
        mlp = load_golden("mlp", 1)

        # OIP v2 over HTTP: two batches of 32 rows to boosted 3.
        for _ in range(2):
            i = httpclient.InferInput("input", [32, 20], "FP32")
            i.set_data_from_numpy(boosted.input)
            r = http.infer("boosted", [i])
            np.testing.assert_array_equal(r.as_numpy("label"), boosted.label)

        # OIP v2 over gRPC: three single rows to linear 1.
        for row in range(3):
            i = grpcclient.InferInput("input", [1, 20], "FP32")
            i.set_data_from_numpy(linear.input[row:row + 1])
            r = grpc.infer("linear", [i])
            assert r.as_numpy("label").tolist() == [int(linear.label[row])]

        # KServe V1: one request of two instances to mlp 1.
        r = requests.post(
            f"{gateway.http_url}/v1/models/mlp:predict",
            json={"instances": mlp.input[:2].tolist()},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        predictions = r.json()["predictions"]
        assert [p["label"] for p in predictions] == mlp.label[:2].tolist()

        # Failing: a wrong shape over HTTP (reaches boosted 3, refused: 400).
        bad = httpclient.InferInput("input", [1, 19], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 19), np.float32))
        with pytest.raises(InferenceServerException) as e:
            http.infer("boosted", [bad])
        assert e.value.status() == "400"

        # Failing: a version that is not loaded over gRPC (404, no version).
        i = grpcclient.InferInput("input", [1, 20], "FP32")
        i.set_data_from_numpy(boosted.input[:1])
        with pytest.raises(InferenceServerException) as e:
            grpc.infer("boosted", [i], model_version="9")
        assert e.value.status() == "StatusCode.NOT_FOUND"
    finally:
        http.close()
        grpc.close()
    return {
        # (model, version, slot, protocol, code): count
        "requests": {
            ("boosted", "3", "blue", "http", "200"): 2,
            ("linear", "1", "blue", "grpc", "200"): 3,
            ("mlp", "1", "blue", "v1", "200"): 1,
            ("boosted", "3", "blue", "http", "400"): 1,
            ("boosted", "", "", "grpc", "404"): 1,
        },
        # (model, version): (batches, rows)
        "batches": {("boosted", "3"): (2, 64), ("linear", "1"): (3, 3), ("mlp", "1"): (1, 2)},
    }


ENDPOINTS = ["metrics-port", "http-port"]


def metrics_url(gateway, endpoint: str) -> str:
    base = gateway.metrics_url if endpoint == "metrics-port" else gateway.http_url
    return f"{base}/metrics"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_promtool_accepts_the_exposition(gateway, traffic, promtool_path, endpoint):
    text = fetch(metrics_url(gateway, endpoint)).text
    assert "switchyard_requests_total" in text
    result = promtool_check(text)
    complaints = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, f"promtool exit {result.returncode}:\n{complaints}"
    assert complaints == "", f"promtool complained:\n{complaints}"


def test_both_endpoints_serve_the_same_registry(gateway, traffic):
    a = Exposition(fetch(metrics_url(gateway, "metrics-port")).text)
    b = Exposition(fetch(metrics_url(gateway, "http-port")).text)
    assert a.types == b.types
    assert a.series("switchyard_requests_total") == b.series("switchyard_requests_total")
    assert a.series("switchyard_model_loaded") == b.series("switchyard_model_loaded")


def test_metric_types(gateway, traffic):
    m = Exposition(fetch(metrics_url(gateway, "metrics-port")).text)
    assert m.types["switchyard_requests_total"] == "counter"
    assert m.types["switchyard_request_duration_seconds"] == "histogram"
    assert m.types["switchyard_batch_size_rows"] == "histogram"
    assert m.types["switchyard_model_loaded"] == "gauge"
    assert m.types["switchyard_route_weight_percent"] == "gauge"
    for name, kind in m.types.items():
        assert name.startswith("switchyard_"), name
        if kind == "counter":
            assert name.endswith("_total"), name


def test_requests_total(gateway, traffic):
    m = Exposition(fetch(metrics_url(gateway, "metrics-port")).text)
    series = m.series("switchyard_requests_total")
    for labels in series:
        assert {k for k, _ in labels} == {"model", "version", "slot", "protocol", "code"}
    nonzero = {
        (d["model"], d["version"], d["slot"], d["protocol"], d["code"]): v
        for d, v in ((dict(k), v) for k, v in series.items())
        if v != 0
    }
    assert nonzero == traffic["requests"]


def check_histogram(m: Exposition, name: str, labels: dict, bounds: list, count: int):
    """Checks a histogram's buckets (the documented bounds, cumulative, +Inf
    equal to the count) and its count; returns its sum and its buckets by
    upper bound."""
    buckets: dict[float, float] = {}
    for key, v in m.series(f"{name}_bucket").items():
        d = dict(key)
        le = d.pop("le")
        if d == labels:
            buckets[math.inf if le == "+Inf" else float(le)] = v
    assert sorted(buckets) == [float(b) for b in bounds] + [math.inf], sorted(buckets)
    ordered = [buckets[le] for le in sorted(buckets)]
    assert ordered == sorted(ordered), f"{name}{labels} buckets not cumulative: {ordered}"
    assert buckets[math.inf] == count
    assert m.value(f"{name}_count", **labels) == count
    return m.value(f"{name}_sum", **labels), buckets


def test_request_duration_histogram(gateway, traffic):
    m = Exposition(fetch(metrics_url(gateway, "metrics-port")).text)
    for (model, version, slot, protocol, code), count in traffic["requests"].items():
        if code != "200":
            continue
        labels = dict(model=model, version=version, slot=slot, protocol=protocol)
        total, _ = check_histogram(
            m, "switchyard_request_duration_seconds", labels, LATENCY_BUCKETS, count
        )
        # Real time was spent, but well under the 10 s default deadline each.
        assert 0 < total < 10 * count, (labels, total)
    # A protocol that carried nothing for a version has an empty histogram.
    assert m.value(
        "switchyard_request_duration_seconds_count",
        model="boosted", version="3", slot="blue", protocol="grpc",
    ) == 0


def test_batch_size_histogram(gateway, traffic):
    m = Exposition(fetch(metrics_url(gateway, "metrics-port")).text)
    for (model, version), (batches, rows) in traffic["batches"].items():
        labels = dict(model=model, version=version)
        total, buckets = check_histogram(
            m, "switchyard_batch_size_rows", labels, BATCH_BUCKETS, batches
        )
        # Sequential requests and no queue delay: each request is one batch
        # of its own rows (warm-up batches are not counted).
        assert total == rows
        # Every batch of a version here has the same size: the buckets jump
        # from 0 to all of them at the first bound that holds it.
        size = rows // batches
        assert all(v == (batches if le >= size else 0) for le, v in buckets.items()), buckets
    _, boosted = check_histogram(
        m, "switchyard_batch_size_rows", dict(model="boosted", version="3"), BATCH_BUCKETS, 2
    )
    assert (boosted[16.0], boosted[32.0], boosted[64.0]) == (0, 2, 2)


def test_model_loaded(gateway, traffic):
    m = Exposition(fetch(metrics_url(gateway, "metrics-port")).text)
    loaded = {
        (d["model"], d["version"], d["slot"], d["backend"]): v
        for d, v in ((dict(k), v) for k, v in m.series("switchyard_model_loaded").items())
    }
    assert loaded == {
        ("boosted", "3", "blue", "forest"): 1,
        ("dropout", "3", "blue", "forest"): 1,
        ("linear", "1", "blue", "ort"): 1,
        ("mlp", "1", "blue", "ort"): 1,
    }


def test_route_weights(gateway, traffic):
    m = Exposition(fetch(metrics_url(gateway, "metrics-port")).text)
    weights = {
        (d["model"], d["slot"]): v
        for d, v in ((dict(k), v) for k, v in m.series("switchyard_route_weight_percent").items())
    }
    assert weights == {
        (model, slot): (100 if slot == "blue" else 0)
        for model in ("boosted", "dropout", "linear", "mlp")
        for slot in ("blue", "green")
    }


def test_routing_changes_show_in_the_gauges(gateway, traffic, promtool_path):
    admin = gateway.admin_url
    r = requests.put(f"{admin}/admin/models/boosted/slots/green", json={"version": 2}, timeout=30)
    assert r.status_code == 200, r.text
    try:
        r = requests.put(
            f"{admin}/admin/models/boosted/weights", json={"blue": 80, "green": 20}, timeout=30
        )
        assert r.status_code == 200, r.text
        text = fetch(metrics_url(gateway, "metrics-port")).text
        m = Exposition(text)
        assert m.value("switchyard_route_weight_percent", model="boosted", slot="blue") == 80
        assert m.value("switchyard_route_weight_percent", model="boosted", slot="green") == 20
        assert m.value(
            "switchyard_model_loaded", model="boosted", version="2", slot="green", backend="forest"
        ) == 1
        assert m.value(
            "switchyard_model_loaded", model="boosted", version="3", slot="blue", backend="forest"
        ) == 1
        result = promtool_check(text)
        assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
            result.stdout + result.stderr
        )
    finally:
        r = requests.put(
            f"{admin}/admin/models/boosted/weights", json={"blue": 100, "green": 0}, timeout=30
        )
        assert r.status_code == 200, r.text
        r = requests.delete(f"{admin}/admin/models/boosted/slots/green", timeout=30)
        assert r.status_code == 200, r.text

    m = Exposition(fetch(metrics_url(gateway, "metrics-port")).text)
    assert m.value("switchyard_route_weight_percent", model="boosted", slot="blue") == 100
    assert m.value("switchyard_route_weight_percent", model="boosted", slot="green") == 0
    # The emptied slot's series is gone rather than left at 0.
    assert [d for d in m.label_sets("switchyard_model_loaded") if d["slot"] == "green"] == []


def test_unknown_model_names_do_not_become_label_values(launch):
    # A gateway of its own, so the made-up names can't disturb the counts above.
    gateway = launch.start()
    names = [f"made-up-model-{n}" for n in range(3)]
    for name in names:
        r = requests.post(
            f"{gateway.http_url}/v2/models/{name}/infer",
            json={"inputs": [{"name": "input", "shape": [1, 20], "datatype": "FP32",
                              "data": [0.0] * 20}]},
            timeout=10,
        )
        assert r.status_code == 404, r.text
        assert name in r.json()["error"]
    m = Exposition(fetch(metrics_url(gateway, "metrics-port")).text)
    models = {d["model"] for d in m.label_sets("switchyard_requests_total")}
    assert models <= {"boosted", "dropout", "linear", "mlp", "_unknown_"}, sorted(models)
    # They are all counted, under the one placeholder.
    assert m.value("switchyard_requests_total", model="_unknown_", version="", slot="",
                   protocol="http", code="404") == 3
