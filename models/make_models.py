#!/usr/bin/env python3
"""Build switchyard's example model repository (the folders next to this file).

Trains small scikit-learn classifiers on a synthetic dataset, exports them to
ONNX with skl2onnx and writes, for every model version, a folder

    models/<name>/<version>/model.onnx    the graph
    models/<name>/<version>/golden.json   32 test rows and onnxruntime's outputs
    models/<name>/<version>/profile.json  the reference profile: the training
                                          rows' feature and prediction distributions
    models/<name>/<version>/model.toml    the manifest the gateway reads

Run from the repository root:

    .venv/bin/python models/make_models.py

Everything is seeded, and the ONNX header fields skl2onnx would otherwise fill
with random or varying values are set explicitly, so re-running on the same
machine and package versions rewrites byte-identical files. (Another CPU or
BLAS build may change the last bits of trained weights; the golden outputs
always match the model.onnx written next to them.)

The data
--------
make_classification(n_samples=20000, n_features=20, n_informative=10,
random_state=0), cast to float32 (the dtype the graphs take), split with
train_test_split(test_size=0.25, random_state=0) into 15000 train and 5000 test
rows. Every model is scored on the same test split. The "newer data" used by
boosted/3 is a bootstrap resample of the train split (sklearn.utils.resample,
replace=True, same size, random_state=1): the same distribution, a different
sample, as a retrain on fresh data would see. It never touches the test rows.

The reference profile of each version (profile.json, the gateway's baseline
for live drift) is computed on the rows that version was trained on, by
student_dropout.reference_profile(): every f00..f19 is numeric.

The dropout example has its own script, models/student_dropout.py.

tests: python/tests/test_models.py imports load_data() and SPECS from here.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import tomllib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
import sklearn
import skl2onnx
from onnx import helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.utils import resample

sys.dont_write_bytecode = True  # no models/__pycache__: the gateway would read it as a model
from student_dropout import profile_json, reference_profile  # noqa: E402

MODELS_DIR = Path(__file__).resolve().parent

# --- data -------------------------------------------------------------------
N_SAMPLES = 20000
N_FEATURES = 20
N_INFORMATIVE = 10
DATA_SEED = 0
TEST_SIZE = 0.25
SPLIT_SEED = 0
RESAMPLE_SEED = 1
GOLDEN_ROWS = 32

DATA_DESC = (
    f"make_classification(n_samples={N_SAMPLES}, n_features={N_FEATURES}, "
    f"n_informative={N_INFORMATIVE}, random_state={DATA_SEED})"
)

# --- graph ------------------------------------------------------------------
MAIN_OPSET = 17
ML_OPSET = 3
INPUT_NAME = "input"
LABELS = ["negative", "positive"]
FEATURES = [f"f{i:02d}" for i in range(N_FEATURES)]
BATCHING = {"max_batch_size": 64, "max_queue_delay_us": 0, "queue_capacity": 1024}
FILES = ("model.onnx", "golden.json", "profile.json")  # hashed into [files]; plus model.toml
DRIFT = {"window": '"5m"', "buckets": 10, "min_rows": 200}

# Operators whose version changes when the declared opset is raised from what
# skl2onnx picked to MAIN_OPSET / ML_OPSET, and which mean the same thing after
# the raise: the newer versions only add optional attributes or allowed types.
#   Identity 14 -> 16: v16 adds optional/sequence types to the type constraint.
#   TreeEnsembleClassifier 1 -> 3: v3 adds the optional *_as_tensor attributes.
# Anything else that would change version makes the script stop. As a second
# guard, onnxruntime must give bit-identical outputs before and after the raise.
_SAME_MEANING_UPGRADES = {
    ("", "Identity", 14, 16),
    ("ai.onnx.ml", "TreeEnsembleClassifier", 1, 3),
}

_ORT_DATATYPES = {"tensor(float)": "FP32", "tensor(int64)": "INT64"}


@dataclass(frozen=True)
class Dataset:
    x_train: np.ndarray  # float32 [15000, 20]
    y_train: np.ndarray  # int64 [15000]
    x_test: np.ndarray  # float32 [5000, 20]
    y_test: np.ndarray  # int64 [5000]


def load_data() -> Dataset:
    x, y = make_classification(
        n_samples=N_SAMPLES,
        n_features=N_FEATURES,
        n_informative=N_INFORMATIVE,
        random_state=DATA_SEED,
    )
    x = x.astype(np.float32)
    y = y.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_SIZE, random_state=SPLIT_SEED
    )
    return Dataset(x_train, y_train, x_test, y_test)


def training_data(data: Dataset, sample: str) -> tuple[np.ndarray, np.ndarray]:
    if sample == "train":
        return data.x_train, data.y_train
    if sample == "resample":
        x, y = resample(
            data.x_train, data.y_train, replace=True, random_state=RESAMPLE_SEED
        )
        return x, y
    raise ValueError(f"unknown sample {sample!r}")


_SAMPLE_DESC = {
    "train": f"{DATA_DESC}, train split (test_size={TEST_SIZE}, random_state={SPLIT_SEED})",
    "resample": (
        f"{DATA_DESC}, bootstrap resample of the train split (test_size={TEST_SIZE}, "
        f"random_state={SPLIT_SEED}; sklearn.utils.resample replace=True, "
        f"random_state={RESAMPLE_SEED})"
    ),
}


@dataclass(frozen=True)
class Spec:
    name: str
    version: int
    description: str
    backends: tuple[str, ...]
    sample: str  # "train" or "resample", see training_data()
    estimator: Callable[[], object]


SPECS: tuple[Spec, ...] = (
    Spec(
        "linear",
        1,
        "logistic regression on the synthetic 20-feature dataset",
        ("ort", "tract"),
        "train",
        lambda: LogisticRegression(max_iter=1000),
    ),
    Spec(
        "boosted",
        1,
        "gradient-boosted trees (50 trees, depth 3) on the synthetic 20-feature dataset",
        ("forest", "ort"),
        "train",
        lambda: GradientBoostingClassifier(n_estimators=50, max_depth=3, random_state=0),
    ),
    Spec(
        "boosted",
        2,
        "gradient-boosted trees (100 trees, depth 3) on the synthetic 20-feature dataset",
        ("forest", "ort"),
        "train",
        lambda: GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0),
    ),
    Spec(
        "boosted",
        3,
        "gradient-boosted trees (100 trees, depth 3, seed 1) on a bootstrap resample "
        "of the synthetic 20-feature dataset",
        ("forest", "ort"),
        "resample",
        lambda: GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=1),
    ),
    Spec(
        "mlp",
        1,
        "multi-layer perceptron (ReLU layers of 64 and 32) on the synthetic 20-feature dataset",
        ("ort", "tract"),
        "train",
        lambda: MLPClassifier(hidden_layer_sizes=(64, 32), max_iter=300, random_state=0),
    ),
)


# --- ONNX -------------------------------------------------------------------
def ort_session(model_bytes: bytes) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # one thread: same reduction order every run
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(
        model_bytes, sess_options=opts, providers=["CPUExecutionProvider"]
    )


def run(sess: ort.InferenceSession, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    label, proba = sess.run(["label", "probabilities"], {INPUT_NAME: x})
    return label, proba


def pin_opsets(model: onnx.ModelProto) -> None:
    """Declare exactly ai.onnx 17 and ai.onnx.ml 3 (skl2onnx declares the lowest
    versions its nodes need, and sometimes lists the default domain twice)."""
    declared: dict[str, int] = {}
    for imp in model.opset_import:
        dom = "" if imp.domain in ("", "ai.onnx") else imp.domain
        declared[dom] = max(declared.get(dom, 0), imp.version)
    target = {"": MAIN_OPSET, "ai.onnx.ml": ML_OPSET}
    for node in model.graph.node:
        dom = "" if node.domain in ("", "ai.onnx") else node.domain
        if dom not in target:
            raise SystemExit(f"node {node.name}: unexpected domain {node.domain!r}")
        old = onnx.defs.get_schema(node.op_type, declared[dom], dom).since_version
        new = onnx.defs.get_schema(node.op_type, target[dom], dom).since_version
        if old != new and (dom, node.op_type, old, new) not in _SAME_MEANING_UPGRADES:
            raise SystemExit(
                f"node {node.name}: {node.op_type} changes from version {old} to {new} "
                f"when raising the opset; check the change and extend _SAME_MEANING_UPGRADES"
            )
    del model.opset_import[:]
    model.opset_import.extend(
        [helper.make_opsetid("", MAIN_OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)]
    )


def export(spec: Spec, clf: object) -> bytes:
    onx = convert_sklearn(
        clf,
        name=f"switchyard_{spec.name}_v{spec.version}",  # default is a random uuid
        initial_types=[(INPUT_NAME, FloatTensorType([None, N_FEATURES]))],
        options={id(clf): {"zipmap": False}},
        target_opset={"": MAIN_OPSET, "ai.onnx.ml": ML_OPSET},
    )
    as_exported = onx.SerializeToString(deterministic=True)
    pin_opsets(onx)
    onx.producer_name = "skl2onnx"
    onx.producer_version = skl2onnx.__version__
    onx.domain = "ai.onnx"
    onx.model_version = spec.version
    onx.doc_string = f"switchyard example model {spec.name} version {spec.version}"
    onnx.checker.check_model(onx, full_check=True)
    data = onx.SerializeToString(deterministic=True)

    probe = np.random.default_rng(12345).normal(size=(257, N_FEATURES)).astype(np.float32)
    before, after = run(ort_session(as_exported), probe), run(ort_session(data), probe)
    if not all(np.array_equal(a, b) for a, b in zip(before, after)):
        raise SystemExit(f"{spec.name}/{spec.version}: outputs changed when raising the opset")
    return data


def check_signature(spec: Spec, sess: ort.InferenceSession) -> None:
    def sig(args):
        return [
            (
                a.name,
                _ORT_DATATYPES.get(a.type, a.type),
                [d if isinstance(d, int) else -1 for d in a.shape],
            )
            for a in args
        ]

    want_in = [(INPUT_NAME, "FP32", [-1, N_FEATURES])]
    want_out = [("label", "INT64", [-1]), ("probabilities", "FP32", [-1, len(LABELS)])]
    got_in, got_out = sig(sess.get_inputs()), sig(sess.get_outputs())
    if got_in != want_in or got_out != want_out:
        raise SystemExit(
            f"{spec.name}/{spec.version}: graph signature {got_in} -> {got_out}, "
            f"want {want_in} -> {want_out}"
        )


# --- files ------------------------------------------------------------------
def floats(a: np.ndarray) -> list[float]:
    # a float32 widened to a Python float prints (repr) as a decimal that reads
    # back as that same float32, through f64 or directly.
    return [float(v) for v in np.asarray(a, dtype=np.float32).ravel()]


def golden_json(x: np.ndarray, label: np.ndarray, proba: np.ndarray) -> bytes:
    doc = {
        "inputs": {
            INPUT_NAME: {"datatype": "FP32", "shape": list(x.shape), "data": floats(x)}
        },
        "outputs": {
            "label": {
                "datatype": "INT64",
                "shape": list(label.shape),
                "data": [int(v) for v in label.ravel()],
            },
            "probabilities": {
                "datatype": "FP32",
                "shape": list(proba.shape),
                "data": floats(proba),
            },
        },
    }
    return (json.dumps(doc) + "\n").encode("utf-8")


def q(s: str) -> str:
    """A TOML basic string (JSON's escapes are a subset of TOML's)."""
    return json.dumps(s, ensure_ascii=False)


def qlist(items) -> str:
    return "[" + ", ".join(q(i) for i in items) + "]"


def model_toml(spec: Spec, accuracy: float, hashes: dict[str, str]) -> str:
    lines = [
        "# written by models/make_models.py \u2014 do not edit by hand; re-run the script",
        f"name = {q(spec.name)}",
        f"version = {spec.version}",
        f"description = {q(spec.description)}",
        'platform = "onnx"',
        f"backends = {qlist(spec.backends)}",
        f"labels = {qlist(LABELS)}",
        'profile = "profile.json"',
        "",
        "[[inputs]]",
        f"name = {q(INPUT_NAME)}",
        'datatype = "FP32"',
        f"shape = [-1, {N_FEATURES}]",
        f"features = {qlist(FEATURES)}",
        "",
        "[[outputs]]",
        'name = "label"',
        'datatype = "INT64"',
        "shape = [-1]",
        "",
        "[[outputs]]",
        'name = "probabilities"',
        'datatype = "FP32"',
        f"shape = [-1, {len(LABELS)}]",
        "",
        "[batching]",
        *(f"{k} = {v}" for k, v in BATCHING.items()),
        "",
        "[drift]",
        *(f"{k} = {v}" for k, v in DRIFT.items()),
        "",
        "[provenance]",
        f"training_run = {q(f'make_models.py:{spec.name}:v{spec.version}')}",
        f"data = {q(_SAMPLE_DESC[spec.sample])}",
        f"trained_with = {q(f'scikit-learn {sklearn.__version__}, skl2onnx {skl2onnx.__version__}')}",
        f"metrics = {{ accuracy = {accuracy:.4f} }}",
        "",
        "[files]",
        *(f"{q(f)} = {q(hashes[f])}" for f in FILES),
    ]
    text = "\n".join(lines) + "\n"
    parsed = tomllib.loads(text)  # must be valid TOML with the values meant
    assert parsed["files"] == hashes and parsed["version"] == spec.version, parsed
    assert parsed["provenance"]["metrics"]["accuracy"] == round(accuracy, 4), parsed
    return text


# --- main -------------------------------------------------------------------
def build(spec: Spec, data: Dataset) -> dict:
    t0 = time.perf_counter()
    x_fit, y_fit = training_data(data, spec.sample)
    clf = spec.estimator()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(x_fit, y_fit)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    if list(clf.classes_) != [0, 1]:
        raise SystemExit(f"{spec.name}/{spec.version}: classes {clf.classes_}")

    onnx_bytes = export(spec, clf)
    sess = ort_session(onnx_bytes)
    check_signature(spec, sess)

    # Accuracy of what is served: onnxruntime on the whole test split.
    label, proba = run(sess, data.x_test)
    accuracy = float(np.mean(label == data.y_test))
    sk_label = clf.predict(data.x_test)
    sk_proba = clf.predict_proba(data.x_test)
    agreement = float(np.mean(sk_label == label))
    proba_diff = float(np.max(np.abs(sk_proba - proba)))
    if agreement < 0.999 or proba_diff > 1e-4:
        raise SystemExit(
            f"{spec.name}/{spec.version}: onnx and scikit-learn disagree "
            f"(labels {agreement:.4%}, max |dp| {proba_diff:.2e})"
        )

    gx = np.ascontiguousarray(data.x_test[:GOLDEN_ROWS])
    g_label, g_proba = run(sess, gx)
    # The gateway batches requests together, so a row's answer should not
    # depend on the batch it came in. Measure it on the golden rows.
    singles = [run(sess, gx[i : i + 1]) for i in range(GOLDEN_ROWS)]
    single_label = np.concatenate([s[0] for s in singles])
    single_proba = np.concatenate([s[1] for s in singles])
    if not np.array_equal(single_label, g_label):
        raise SystemExit(f"{spec.name}/{spec.version}: labels depend on the batch size")
    batch_diff = float(np.max(np.abs(single_proba - g_proba)))

    folder = MODELS_DIR / spec.name / str(spec.version)
    folder.mkdir(parents=True, exist_ok=True)
    train_label, _ = run(sess, np.ascontiguousarray(x_fit))
    profile = reference_profile(
        x_fit, ["numeric"] * N_FEATURES, FEATURES, train_label, len(LABELS),
        f"the {len(x_fit)} training rows of {spec.name} v{spec.version}: {_SAMPLE_DESC[spec.sample]}",
    )
    contents = {
        "model.onnx": onnx_bytes,
        "golden.json": golden_json(gx, g_label, g_proba),
        "profile.json": profile_json(profile),
    }
    for fname, blob in contents.items():
        (folder / fname).write_bytes(blob)
    hashes = {f: hashlib.sha256(contents[f]).hexdigest() for f in FILES}
    (folder / "model.toml").write_text(model_toml(spec, accuracy, hashes), encoding="utf-8")

    extra = sorted(p.name for p in folder.iterdir() if p.name not in (*FILES, "model.toml"))
    if extra:
        raise SystemExit(f"{folder}: unexpected files {extra}; the gateway expects only "
                         f"model.toml and {', '.join(FILES)} here")
    return {
        "model": f"{spec.name}/{spec.version}",
        "accuracy": accuracy,
        "sklearn_accuracy": float(np.mean(sk_label == data.y_test)),
        "onnx_vs_sklearn_max_dp": proba_diff,
        "batch1_vs_batch32_max_dp": batch_diff,
        "converged": converged,
        "bytes": len(onnx_bytes),
        "seconds": time.perf_counter() - t0,
    }


SMOKE_ROWS = 4
SMOKE_DIR = Path(__file__).resolve().parent.parent / "smoke-tests"


def write_smoke_suites() -> None:
    """Writes smoke-tests/<model>.toml from every version's golden outputs.

    Each version gets its own cases (its golden rows and onnxruntime's
    answers, recorded at export), so any version, an older one included, can
    be promoted and smoke-tested.
    """
    SMOKE_DIR.mkdir(exist_ok=True)
    root = Path(__file__).resolve().parent
    ours = {spec.name for spec in SPECS}  # dropout's suite is student_dropout.py's
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name in ours):
        versions = sorted(int(v.name) for v in model_dir.iterdir() if (v / "golden.json").is_file())
        if not versions:
            continue
        lines = [
            "# written by models/make_models.py from each version's golden.json — re-run it, don't edit",
            f"# smoke suite and rollout settings of {model_dir.name!r} for `controller promote {model_dir.name}`",
            "",
            "[rollout]",
            'strategy = "canary"',
            "steps = [10, 50, 100]",
            'bake = "30s"',
            "",
            "[analysis]",
            "max_error_rate = 0.01",
            "max_p99_ms = 250.0",
            "min_requests = 20",
            "min_shadow_agreement = 0.95",
            'on_inconclusive = "fail"',
            "",
            "[smoke]",
            "latency_budget_ms = 500.0",
            f"min_cases = {SMOKE_ROWS}",
        ]
        for v in versions:
            g = json.loads((model_dir / str(v) / "golden.json").read_text())
            x = g["inputs"]["input"]
            width = x["shape"][1]
            labels = g["outputs"]["label"]["data"]
            probs = g["outputs"]["probabilities"]["data"]
            classes = g["outputs"]["probabilities"]["shape"][1]
            for row in range(SMOKE_ROWS):
                data = x["data"][row * width:(row + 1) * width]
                p = probs[row * classes:(row + 1) * classes]
                lines += [
                    "",
                    "[[smoke.cases]]",
                    f'name = "v{v}-row{row}"',
                    f"versions = [{v}]",
                    f'inputs = {{ input = {{ datatype = "FP32", shape = [1, {width}], data = [{", ".join(repr(float(d)) for d in data)}] }} }}',
                    f"expect = {{ label = {{ data = [{labels[row]}] }}, probabilities = {{ data = [{', '.join(repr(float(q)) for q in p)}], tolerance = 1e-4 }} }}",
                ]
        (SMOKE_DIR / f"{model_dir.name}.toml").write_text("\n".join(lines) + "\n")
        print(f"smoke-tests/{model_dir.name}.toml: {len(versions)} versions x {SMOKE_ROWS} cases")


def main() -> int:
    if "--suites-only" in sys.argv:
        write_smoke_suites()
        return 0
    t0 = time.perf_counter()
    data = load_data()
    print(f"data: {len(data.y_train)} train rows, {len(data.y_test)} test rows")
    for spec in SPECS:
        r = build(spec, data)
        print(
            f"{r['model']:<10} accuracy {r['accuracy']:.4f} (sklearn {r['sklearn_accuracy']:.4f})"
            f"  model.onnx {r['bytes']:>7} B  onnx-vs-sklearn max|dp| "
            f"{r['onnx_vs_sklearn_max_dp']:.1e}  batch1-vs-32 max|dp| "
            f"{r['batch1_vs_batch32_max_dp']:.1e}"
            f"{'' if r['converged'] else '  (stopped at max_iter)'}  {r['seconds']:.1f}s"
        )
    write_smoke_suites()
    print(f"done in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
