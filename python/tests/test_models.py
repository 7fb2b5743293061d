"""Checks every model version in the repository (models/*/*/model.toml).

For each manifest: the folder holds exactly the files the manifest lists (plus
model.toml) and their sha256 match; the manifest uses only the keys the gateway
accepts; the ONNX graph's signature is the manifest's; onnxruntime reproduces
golden.json; and the test-split accuracy is above a floor and, for the models
models/make_models.py writes, is what that script's data really gives.

Run: .venv/bin/python -m pytest python/tests/test_models.py -q
Point SWITCHYARD_MODELS_DIR at another folder to check a different repository.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

REPO = Path(__file__).resolve().parents[2]
MODELS = Path(os.environ.get("SWITCHYARD_MODELS_DIR", REPO / "models")).resolve()
MANIFESTS = sorted(MODELS.glob("*/*/model.toml"))

# Accuracy floor on the test split. make_classification puts each class in
# clusters around hypercube vertices that no single hyperplane separates, so
# logistic regression scores about 0.72 on this data (C=1 and C=100 alike);
# every other model must clear 0.8.
MIN_ACCURACY = {"linear": 0.7}
DEFAULT_MIN_ACCURACY = 0.8
PROBA_ATOL = 1e-6

# What the gateway accepts (api/src/manifest.rs parses with serde
# deny_unknown_fields and validates the values); mirrored here so a manifest
# this test passes is one the gateway loads.
TOP_KEYS = {
    "name", "version", "description", "platform", "backends", "labels",
    "inputs", "outputs", "batching", "provenance", "files", "profile", "drift",
}
REQUIRED_TOP_KEYS = {"name", "version", "inputs", "outputs", "files"}
TENSOR_KEYS = {"name", "datatype", "shape", "features"}
BATCHING_KEYS = {"max_batch_size", "max_queue_delay_us", "queue_capacity"}
PROVENANCE_KEYS = {"training_run", "data", "trained_with", "metrics"}
BACKENDS = {"forest", "ort", "tract"}
MAX_BATCH_LIMIT = 4096
QUEUE_CAPACITY_LIMIT = 1 << 20
SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")

ORT_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
}
NP_TYPES = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP32": np.float32, "FP64": np.float64,
}


def _load_make_models():
    # Import without leaving models/__pycache__ behind: the gateway reads every
    # folder under models/ as a model.
    sys.dont_write_bytecode = True
    sys.path.insert(0, str(REPO / "models"))
    try:
        import make_models
    finally:
        sys.path.pop(0)
    return make_models


make_models = _load_make_models()


def _id(path: Path) -> str:
    return f"{path.parent.parent.name}/{path.parent.name}"


def _manifest(path: Path) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def _session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(
        str(path), sess_options=opts, providers=["CPUExecutionProvider"]
    )


def _signature(args) -> list[tuple[str, str, list[int]]]:
    return [
        (a.name, ORT_TYPES.get(a.type, a.type), [d if isinstance(d, int) else -1 for d in a.shape])
        for a in args
    ]


def _tensor(entry: dict) -> np.ndarray:
    data = np.asarray(entry["data"], dtype=NP_TYPES[entry["datatype"]])
    assert data.size == math.prod(entry["shape"]), "data length does not match shape"
    return data.reshape(entry["shape"])


per_model = pytest.mark.parametrize("path", MANIFESTS, ids=[_id(p) for p in MANIFESTS])


def test_repository_has_the_generated_models():
    assert MANIFESTS, f"no models/*/*/model.toml under {MODELS}"
    found = {_id(p) for p in MANIFESTS}
    for spec in make_models.SPECS:
        want = f"{spec.name}/{spec.version}"
        assert want in found, f"{want} missing; run .venv/bin/python models/make_models.py"
        folder = MODELS / spec.name / str(spec.version)
        assert sorted(p.name for p in folder.iterdir()) == [
            "golden.json", "model.onnx", "model.toml", "profile.json"
        ]


def _safe(name: str) -> bool:
    return bool(SAFE_NAME.fullmatch(name)) and not name.startswith(".")


@per_model
def test_manifest_keys_and_values(path: Path):
    m = _manifest(path)
    assert set(m) <= TOP_KEYS, f"unknown keys {set(m) - TOP_KEYS}"
    assert REQUIRED_TOP_KEYS <= set(m), f"missing keys {REQUIRED_TOP_KEYS - set(m)}"
    assert _safe(m["name"]) and m["name"] == path.parent.parent.name
    assert isinstance(m["version"], int) and m["version"] > 0
    assert str(m["version"]) == path.parent.name
    assert m.get("platform", "onnx") == "onnx"
    backends = m.get("backends", [])
    assert set(backends) <= BACKENDS and len(set(backends)) == len(backends)
    assert m["inputs"] and m["outputs"]
    names = [t["name"] for t in m["inputs"] + m["outputs"]]
    assert len(set(names)) == len(names), "a tensor name is declared twice"
    for t in m["inputs"] + m["outputs"]:
        assert set(t) <= TENSOR_KEYS and {"name", "datatype", "shape"} <= set(t), t
        assert t["datatype"] in ORT_TYPES.values(), t["datatype"]
        shape = t["shape"]
        assert shape and shape[0] == -1, "the first dimension is the batch dimension, -1"
        assert all(d == -1 or d > 0 for d in shape), shape
        if t.get("features"):
            columns = 1 if len(shape) == 1 else shape[-1]
            assert columns == len(t["features"]), "one feature name per column"
    b = m.get("batching", {})
    assert set(b) <= BATCHING_KEYS, f"unknown keys {set(b) - BATCHING_KEYS}"
    assert 1 <= b.get("max_batch_size", 64) <= MAX_BATCH_LIMIT
    assert 1 <= b.get("queue_capacity", 1024) <= QUEUE_CAPACITY_LIMIT
    assert 0 <= b.get("max_queue_delay_us", 0) <= 1_000_000
    prov = m.get("provenance", {})
    assert set(prov) <= PROVENANCE_KEYS, f"unknown keys {set(prov) - PROVENANCE_KEYS}"
    assert all(isinstance(v, (int, float)) for v in prov.get("metrics", {}).values())
    for name, sha in m["files"].items():
        assert _safe(name) and name != "model.toml", name
        assert re.fullmatch(r"[0-9a-f]{64}", sha), f"{name}: sha256 must be 64 lower-case hex"
    assert "model.onnx" in m["files"]


@per_model
def test_files_match_sha256(path: Path):
    m = _manifest(path)
    folder = path.parent
    on_disk = sorted(p.name for p in folder.iterdir() if p.name != "model.toml")
    assert on_disk == sorted(m["files"]), "[files] must list every file but model.toml"
    for name, want in m["files"].items():
        got = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert got == want, f"{name}: sha256 {got}, manifest says {want}"


@per_model
def test_graph_signature_matches_manifest(path: Path):
    m = _manifest(path)
    sess = _session(path.parent / "model.onnx")

    def declared(ts):
        return [(t["name"], t["datatype"], t["shape"]) for t in ts]

    assert _signature(sess.get_inputs()) == declared(m["inputs"])
    assert _signature(sess.get_outputs()) == declared(m["outputs"])
    for t in m["outputs"]:
        if t["name"] == "probabilities" and "labels" in m:
            assert t["shape"][-1] == len(m["labels"])


@per_model
def test_golden_outputs_reproduce(path: Path):
    m = _manifest(path)
    folder = path.parent
    if "golden.json" not in m["files"]:
        pytest.skip("no golden.json")
    golden = json.loads((folder / "golden.json").read_text(encoding="utf-8"))
    declared = {t["name"]: t for t in m["inputs"] + m["outputs"]}
    assert set(golden["inputs"]) == {t["name"] for t in m["inputs"]}
    assert set(golden["outputs"]) == {t["name"] for t in m["outputs"]}
    for name, entry in {**golden["inputs"], **golden["outputs"]}.items():
        assert entry["datatype"] == declared[name]["datatype"], name
        want = declared[name]["shape"]
        got = entry["shape"]
        assert len(got) == len(want) and all(w in (-1, g) for w, g in zip(want, got)), name

    inputs = {name: _tensor(e) for name, e in golden["inputs"].items()}
    for name, e in golden["inputs"].items():
        if e["datatype"] == "FP32":  # written so they read back exactly
            assert [float(v) for v in inputs[name].ravel()] == e["data"], name
    sess = _session(folder / "model.onnx")
    names = list(golden["outputs"])
    got = dict(zip(names, sess.run(names, inputs)))
    for name, e in golden["outputs"].items():
        want = _tensor(e)
        assert got[name].shape == want.shape, name
        if e["datatype"].startswith("FP"):
            np.testing.assert_allclose(got[name], want, rtol=0, atol=PROBA_ATOL, err_msg=name)
        else:
            np.testing.assert_array_equal(got[name], want, err_msg=name)

    # The gateway batches requests, so a row's answer must not depend on its
    # batch: one row at a time gives the golden outputs too.
    rows = {len(x) for x in inputs.values()}
    assert len(rows) == 1, "golden inputs disagree on the batch size"
    for i in range(rows.pop()):
        row = dict(zip(names, sess.run(names, {k: x[i : i + 1] for k, x in inputs.items()})))
        for name, e in golden["outputs"].items():
            want = _tensor(e)[i : i + 1]
            if e["datatype"].startswith("FP"):
                np.testing.assert_allclose(row[name], want, rtol=0, atol=PROBA_ATOL)
            else:
                np.testing.assert_array_equal(row[name], want)


@pytest.fixture(scope="module")
def split():
    data = make_models.load_data()
    return data.x_test, data.y_test


@per_model
def test_accuracy(path: Path, split):
    m = _manifest(path)
    accuracy = m.get("provenance", {}).get("metrics", {}).get("accuracy")
    if accuracy is None:
        pytest.skip("no provenance.metrics.accuracy")
    if m["name"] == "dropout" and m["version"] == 3:
        # Broken on purpose (trained on shuffled labels) so its smoke suite
        # fails; test_example_model.py checks that it does.
        assert accuracy < 0.7, f"dropout v3 is meant to be wrong, yet scores {accuracy}"
        return
    floor = MIN_ACCURACY.get(m["name"], DEFAULT_MIN_ACCURACY)
    assert accuracy > floor, f"test-split accuracy {accuracy} is not above {floor}"

    if not m["provenance"]["training_run"].startswith("make_models.py:"):
        return
    # The recorded number is what the served graph scores on the test split.
    x, y = split
    label = _session(path.parent / "model.onnx").run(["label"], {"input": x})[0]
    measured = float(np.mean(label == y))
    assert round(measured, 4) == accuracy, f"measured {measured:.4f}, manifest says {accuracy}"
