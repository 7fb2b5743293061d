"""The student-dropout example (models/student_dropout.py, models/dropout_traffic.py)
and the reference profiles of every example model, checked offline.

- re-running the script into a temporary folder rewrites models/dropout/** and
  smoke-tests/dropout.toml byte for byte (deterministic, and committed fresh);
- v2 beats v1 on the newest holdout, and the recorded metrics are what
  onnxruntime measures;
- the smoke suite, run offline with onnxruntime the way the controller runs
  it, passes v1 and v2 and fails v3;
- every profile.json's edges, shares, mean, std and prediction shares match a
  recomputation from the training rows, with the binning rule written out
  independently here; the manifests name the profile and its sha256;
- the traffic generator drifts exactly the features named, refuses unknown
  ones naming the valid names, writes rows that read back exactly, and counts
  successes and failures against a stub server.

Run: .venv/bin/python -m pytest python/tests/test_example_model.py -q
"""

from __future__ import annotations

import csv
import hashlib
import http.server
import json
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
SUITE = REPO / "smoke-tests" / "dropout.toml"

sys.dont_write_bytecode = True  # no models/__pycache__: the gateway would read it as a model
sys.path.insert(0, str(MODELS))
import dropout_traffic  # noqa: E402
import make_models  # noqa: E402
import student_dropout as sd  # noqa: E402

sys.path.pop(0)

VERSIONS = (1, 2, 3)


def manifest(model: str, version: int) -> dict:
    return tomllib.loads((MODELS / model / str(version) / "model.toml").read_text())


def session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def run(model: str, version: int, x: np.ndarray):
    return session(MODELS / model / str(version) / "model.onnx").run(
        ["label", "probabilities"], {"input": np.ascontiguousarray(x, dtype=np.float32)}
    )


# --- determinism ------------------------------------------------------------


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    root = tmp_path_factory.mktemp("rebuilt")
    results = sd.build(root / "models", root / "smoke-tests")
    return root, results


def test_rerun_rewrites_byte_identical_files(rebuilt):
    root, _ = rebuilt
    made = sorted(p.relative_to(root / "models") for p in (root / "models").rglob("*") if p.is_file())
    committed = sorted(p.relative_to(MODELS) for p in (MODELS / "dropout").rglob("*") if p.is_file())
    assert made == committed, "run `make models`"
    assert len(made) == 4 * len(VERSIONS)
    for rel in made:
        assert (root / "models" / rel).read_bytes() == (MODELS / rel).read_bytes(), rel
    assert (root / "smoke-tests" / "dropout.toml").read_bytes() == SUITE.read_bytes()


# --- the versions -------------------------------------------------------------


def test_v2_is_better_than_v1_on_the_newest_holdout_and_metrics_are_measured():
    x, y = sd.holdout()
    assert len(y) == sd.HOLDOUT_ROWS and 0.2 < y.mean() < 0.5, "a realistic dropout share"
    measured = {}
    for v in VERSIONS:
        label, proba = run("dropout", v, x)
        measured[v] = sd.score(label, proba, y)
        assert manifest("dropout", v)["provenance"]["metrics"] == measured[v], v
    assert measured[2]["accuracy"] >= measured[1]["accuracy"] + 0.01, measured
    assert measured[2]["auc"] >= measured[1]["auc"] + 0.01, measured
    assert measured[1]["auc"] > 0.85, "v1 is a useful model, only older"
    assert measured[3]["auc"] < 0.6, "v3 learned nothing from shuffled labels"


def test_manifest_carries_the_signature_features_profile_and_drift():
    for v in VERSIONS:
        m = manifest("dropout", v)
        assert m["backends"] == ["forest", "ort"] and m["labels"] == ["graduate", "dropout"]
        assert m["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 12],
                                "features": sd.NAMES}]
        assert [(o["name"], o["datatype"], o["shape"]) for o in m["outputs"]] == [
            ("label", "INT64", [-1]), ("probabilities", "FP32", [-1, 2])]
        assert m["profile"] == "profile.json"
        assert m["drift"] == {"window": "5m", "buckets": 10, "min_rows": 200}
        folder = MODELS / "dropout" / str(v)
        assert sorted(p.name for p in folder.iterdir()) == [
            "golden.json", "model.onnx", "model.toml", "profile.json"]
        for name, sha in m["files"].items():
            assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == sha, name
    text = (MODELS / "dropout" / "1" / "model.toml").read_text().splitlines()
    assert text[text.index('labels = ["graduate", "dropout"]') + 1] == 'profile = "profile.json"'


# --- the smoke suite, offline -------------------------------------------------


def failed_cases(suite: dict, version: int) -> tuple[int, list[str]]:
    """Runs the cases of `version` as the controller does: labels exactly,
    floats within the tolerance. Returns (cases run, names of failures)."""
    cases = [c for c in suite["smoke"]["cases"] if not c["versions"] or version in c["versions"]]
    failures = []
    for case in cases:
        t = case["inputs"]["input"]
        x = np.array(t["data"], dtype=np.float32).reshape(t["shape"])
        got = dict(zip(("label", "probabilities"), run("dropout", version, x)))
        for name, want in case["expect"].items():
            g = got[name].ravel().astype(np.float64)
            w = np.array(want["data"], dtype=np.float64)
            if g.shape != w.shape or np.any(np.abs(g - w) > want.get("tolerance", 0.0)):
                failures.append(case["name"])
    return len(cases), failures


def test_suite_passes_v1_and_v2_and_fails_v3():
    suite = tomllib.loads(SUITE.read_text())
    assert suite["rollout"] == {"strategy": "canary", "steps": [10, 50, 100], "bake": "5s"}
    assert suite["analysis"]["on_inconclusive"] == "fail"
    for v in (1, 2):
        ran, failures = failed_cases(suite, v)
        assert ran >= suite["smoke"]["min_cases"] and failures == [], (v, failures)
    ran, failures = failed_cases(suite, 3)
    assert ran >= suite["smoke"]["min_cases"]
    assert failures and all(f.startswith("known-dropout-") for f in failures), failures
    # The known-answer cases apply to any version, a pipeline's next one too.
    known = [c for c in suite["smoke"]["cases"] if not c["versions"]]
    assert len(known) == suite["smoke"]["min_cases"] == 2 * sd.KNOWN_CASES
    assert sorted({c["expect"]["label"]["data"][0] for c in known}) == [0, 1]


# --- reference profiles --------------------------------------------------------


def training_rows(model: str, version: int) -> np.ndarray:
    if model == "dropout":
        cohort, seed, _, _ = sd.VERSIONS[version]
        return sd.draw_cohort(cohort, sd.TRAIN_ROWS, sd.SEEDS[seed])[0]
    spec = next(s for s in make_models.SPECS if (s.name, s.version) == (model, version))
    return make_models.training_data(make_models.load_data(), spec.sample)[0]


PROFILED = sorted((p.parent.parent.name, int(p.parent.name)) for p in MODELS.glob("*/*/profile.json"))


def test_every_version_has_a_profile():
    versions = {(p.parent.parent.name, int(p.parent.name)) for p in MODELS.glob("*/*/model.toml")}
    assert set(PROFILED) == versions
    assert len(versions) == 5 + len(VERSIONS)


@pytest.mark.parametrize("model,version", PROFILED, ids=[f"{m}/{v}" for m, v in PROFILED])
def test_profile_matches_a_recomputation(model, version):
    m = manifest(model, version)
    folder = MODELS / model / str(version)
    raw = (folder / "profile.json").read_bytes()
    assert m["profile"] == "profile.json"
    assert m["files"]["profile.json"] == hashlib.sha256(raw).hexdigest()
    doc = json.loads(raw)
    x = training_rows(model, version).astype(np.float64)
    names = m["inputs"][0]["features"]
    assert doc["format"] == 1 and doc["rows"] == len(x) and doc["source"]
    assert [f["name"] for f in doc["features"]] == names
    for i, f in enumerate(doc["features"]):
        col = x[:, i]
        assert (f["input"], f["column"], f["missing_share"]) == ("input", i, 0.0)
        assert abs(sum(f["shares"]) - 1) < 1e-9, f["name"]
        if f["kind"] == "categorical":
            assert f["values"] == sorted(set(col.tolist())), f["name"]
            assert f["shares"] == [float(np.mean(col == v)) for v in f["values"]]
            continue
        assert f["kind"] == "numeric"
        edges = sorted(set(np.quantile(col, [i / 10 for i in range(11)]).tolist()))
        assert f["edges"] == edges, f["name"]
        # Bin i: e_i <= v < e_{i+1}; the last bin also holds v == e_k.
        counts = [np.sum((col >= lo) & (col < hi)) for lo, hi in zip(edges, edges[1:])]
        counts[-1] += np.sum(col == edges[-1])
        assert f["shares"] == [float(c / len(col)) for c in counts], f["name"]
        assert f["mean"] == pytest.approx(col.mean(), rel=1e-12)
        assert f["std"] == pytest.approx(col.std(ddof=0), rel=1e-12)
    label, _ = run(model, version, x)
    p = doc["prediction"]
    assert (p["name"], p["output"], p["column"], p["kind"]) == ("label", "label", 0, "categorical")
    assert p["values"] == [0, 1]
    assert p["shares"] == [float(np.mean(label == 0)), float(np.mean(label == 1))]


# --- the traffic generator -----------------------------------------------------


def test_drift_shifts_only_the_named_features_by_the_documented_amount():
    named = ["admission_grade", "grade_1st_sem", "debtor"]
    base, y0 = dropout_traffic.draw_rows(2000, seed=7)
    drifted, y1 = dropout_traffic.draw_rows(2000, seed=7, drift=named)
    assert np.array_equal(y0, y1)
    std = dropout_traffic.reference_std()
    v2 = json.loads((MODELS / "dropout" / "2" / "profile.json").read_text())
    numeric = [(i, f["std"]) for i, f in enumerate(v2["features"]) if f["kind"] == "numeric"]
    assert len(numeric) == 8
    assert [std[i] for i, _ in numeric] == pytest.approx([s for _, s in numeric], rel=1e-12)
    for i, name in enumerate(sd.NAMES):
        if name not in named:
            assert np.array_equal(base[:, i], drifted[:, i]), name
    assert np.array_equal(drifted[:, sd.COL["debtor"]], 1 - base[:, sd.COL["debtor"]])
    adm = sd.COL["admission_grade"]
    want = np.clip(base[:, adm] + std[adm], 95, 190).astype(np.float32)
    assert np.array_equal(drifted[:, adm], want)
    assert drifted[:, adm].mean() - base[:, adm].mean() > 0.9 * std[adm]


def test_unknown_drift_feature_is_an_error_naming_it_and_the_valid_ones():
    r = subprocess.run(
        [sys.executable, str(MODELS / "dropout_traffic.py"), "--drift", "admission_grade,gpa"],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 2, r.stderr
    assert "'gpa'" in r.stderr and "'admission_grade'" not in r.stderr
    assert all(name in r.stderr for name in sd.NAMES), r.stderr
    assert not (MODELS / "__pycache__").exists()


def test_rows_written_to_csv_read_back_exactly(tmp_path):
    out = tmp_path / "rows.csv"
    assert dropout_traffic.main(["--out", str(out), "--rows", "50", "--labels", "--seed", "3"]) == 0
    with open(out) as f:
        rows = list(csv.reader(f))
    assert rows[0] == sd.NAMES + ["dropout"]
    x, y = dropout_traffic.draw_rows(50, seed=3)
    got = np.array([[float(v) for v in r[:-1]] for r in rows[1:]], dtype=np.float32)
    assert np.array_equal(got, x) and [int(r[-1]) for r in rows[1:]] == y.tolist()


class _Stub(http.server.BaseHTTPRequestHandler):
    """Answers every 4th infer request 503, the others 200 from version 2."""

    seen: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        with threading.Lock():
            _Stub.seen.append((self.path, body["inputs"][0]["shape"]))
            n = len(_Stub.seen)
        code = 503 if n % 4 == 0 else 200
        self.send_response(code)
        self.send_header("x-model-version", "2")
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def test_sender_counts_successes_and_failures_against_a_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        x, _ = dropout_traffic.draw_rows(100, seed=1)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        summary = dropout_traffic.Traffic(url, "dropout", x, batch=3, rate=200, concurrency=4,
                                          timeout=5).run(duration=30, limit=40)
    finally:
        server.shutdown()
    assert summary["requests"] == 40
    assert summary["outcomes"] == {"200": 30, "503": 10}
    assert (summary["succeeded"], summary["failed"]) == (30, 10)
    assert summary["versions"] == {"2": 30}
    assert {p for p, _ in _Stub.seen} == {"/v2/models/dropout/infer"}
    assert {tuple(s) for _, s in _Stub.seen} == {(3, 12)}
    assert summary["seconds"] >= 39 / 200, "the rate is respected"
