#!/usr/bin/env python3
"""The student-dropout example: a model's whole life, and the template for yours.

A university wants to know, early, which students are likely to drop out. This
script trains that classifier with scikit-learn, exports it to ONNX and writes
every version switchyard serves, with everything the gateway and the
controller read:

    models/dropout/<v>/model.onnx    the graph (skl2onnx, zipmap off, ort backend)
    models/dropout/<v>/model.toml    the manifest, sha256 of every file under [files]
    models/dropout/<v>/golden.json   32 holdout rows and onnxruntime's answers
    models/dropout/<v>/profile.json  the reference profile the gateway measures drift against
    smoke-tests/dropout.toml         the smoke suite and rollout settings

Run from the repository root (about 20 s; `make models` runs it):

    .venv/bin/python models/student_dropout.py

The versions
------------
v1  trained on the 2019-2021 cohorts (15 000 students);
v2  trained on the 2022-2024 cohorts, the newest data, and better on them;
v3  a broken retrain: the 2022-2024 rows with their labels shuffled. Its graph
    has the right signature and loads fine, but its answers are wrong, so its
    smoke suite fails and `controller promote dropout --version 3` rolls back.
All three are scored on the same holdout: 5 000 students of the newest cohorts
that no version trained on (provenance.metrics: accuracy and ROC AUC).

The data
--------
No data is downloaded. `draw_cohort()` simulates students with seeded numpy:
ability drives the admission grade and how many course units a student passes
each semester, money (debt, tuition, scholarship) and age add risk, and the
dropout label is drawn from a logistic model of all of it. The two cohorts
differ in their feature distributions (unemployment, scholarships, debt) and in
how much each factor matters, which is why a model of the old cohorts does
worse on the new ones. Feature names follow the UCI "Predict students' dropout
and academic success" dataset; the values are made up.

Determinism: fixed seeds, one onnxruntime thread, fixed ONNX header fields and
sorted JSON keys, so re-running rewrites byte-identical files.

Functions the pipelines reuse (examples/airflow, examples/kubeflow):
draw_cohort, check_rows, train, export_onnx, score, next_version,
write_version and write_suite.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODEL = "dropout"
LABELS = ["graduate", "dropout"]
INPUT = "input"
MODELS_DIR = Path(__file__).resolve().parent
SMOKE_DIR = MODELS_DIR.parent / "smoke-tests"

TRAIN_ROWS = 15000
HOLDOUT_ROWS = 5000
GOLDEN_ROWS = 32
GOLDEN_CASES = 2  # per-version golden cases in the suite
KNOWN_CASES = 4  # known-answer cases per class, for every version
OLD, NEW = "2019-2021", "2022-2024"
SEEDS = {"v1": 101, "v2": 102, "holdout": 103, "shuffle": 104}
TRAIN_SEED = 0

BATCHING = {"max_batch_size": 64, "max_queue_delay_us": 0, "queue_capacity": 1024}
DRIFT = {"window": "5m", "buckets": 10, "min_rows": 200}
ROLLOUT = ['strategy = "canary"', "steps = [10, 50, 100]", 'bake = "5s"']
ANALYSIS = ["max_error_rate = 0.01", "max_p99_ms = 250.0", "min_requests = 20",
            "min_shadow_agreement = 0.95", 'on_inconclusive = "fail"']


def toml_value(v) -> str:
    """A TOML literal of a flat setting (string, number, bool, list)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return repr(v)


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str  # "numeric" or "categorical" (integer-coded)
    low: float  # the valid range, checked by check_rows()
    high: float
    meaning: str


FEATURES: tuple[Feature, ...] = (
    Feature("age_at_enrollment", "numeric", 17, 70, "age in years when enrolling"),
    Feature("gender", "categorical", 0, 1, "1 male, 0 female"),
    Feature("debtor", "categorical", 0, 1, "1 if the student owes the university money"),
    Feature("scholarship_holder", "categorical", 0, 1, "1 with a scholarship"),
    Feature("admission_grade", "numeric", 95, 190, "admission grade, 0-200 scale"),
    Feature("tuition_up_to_date", "categorical", 0, 1, "1 if tuition fees are paid"),
    Feature("previous_qualification_grade", "numeric", 95, 190, "secondary school grade, 0-200"),
    Feature("grade_1st_sem", "numeric", 0, 20, "mean grade of the 1st semester, 0-20 (0: none passed)"),
    Feature("grade_2nd_sem", "numeric", 0, 20, "mean grade of the 2nd semester, 0-20 (0: none passed)"),
    Feature("units_approved_1st_sem", "numeric", 0, 8, "course units passed in the 1st semester"),
    Feature("units_approved_2nd_sem", "numeric", 0, 8, "course units passed in the 2nd semester"),
    Feature("unemployment_rate", "numeric", 0, 30, "national unemployment rate (%) at enrolment"),
)
NAMES = [f.name for f in FEATURES]
COL = {name: i for i, name in enumerate(NAMES)}


# --- data -------------------------------------------------------------------
@dataclass(frozen=True)
class Cohort:
    """How one group of intakes looks and behaves."""

    unemployment: tuple[float, ...]  # one rate per intake year, drawn uniformly
    scholarship: float
    debtor: float
    tuition_late: float
    older: float  # share of mature students (25+)
    # Dropout log-odds: intercept and weights on the (centred) factors.
    weights: dict


COHORTS = {
    OLD: Cohort(
        unemployment=(10.8, 12.4, 13.9), scholarship=0.25, debtor=0.10, tuition_late=0.10,
        older=0.18,
        weights={"bias": -1.7, "units2": -0.55, "units1": -0.25, "grade2": -0.12,
                 "late": 2.0, "debtor": 0.6, "scholar": -0.9, "age": 0.25,
                 "admission": -0.15, "unemp": 0.05, "none1": 0.0},
    ),
    NEW: Cohort(
        unemployment=(7.6, 8.9, 9.4), scholarship=0.31, debtor=0.14, tuition_late=0.13,
        older=0.24,
        weights={"bias": -1.65, "units2": -0.35, "units1": -0.55, "grade2": -0.05,
                 "late": 3.0, "debtor": 1.4, "scholar": -0.3, "age": 0.6,
                 "admission": -0.35, "unemp": 0.25, "none1": 1.2},
    ),
}


def draw_cohort(cohort: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` simulated students of `cohort`: (x float32 [n, 12], y int64 [n], the
    true dropout probability float64 [n]). The same arguments give the same rows."""
    c = COHORTS[cohort]
    rng = np.random.default_rng(seed)
    ability = rng.normal(size=n)
    older = rng.random(n) < c.older
    age = np.where(older, 25 + rng.gamma(2.0, 4.0, n), 17 + rng.gamma(1.5, 1.0, n))
    age = np.clip(np.round(age), 17, 70)
    gender = (rng.random(n) < 0.36).astype(float)
    debtor = (rng.random(n) < c.debtor).astype(float)
    scholar = (rng.random(n) < c.scholarship + 0.1 * (ability > 1)).astype(float)
    late = rng.random(n) < c.tuition_late + 0.25 * debtor
    admission = np.clip(np.round(127 + 14 * (0.8 * ability + 0.6 * rng.normal(size=n)), 1), 95, 190)
    previous = np.clip(np.round(0.6 * admission + 53 + 9 * rng.normal(size=n), 1), 95, 190)
    unemp = rng.choice(np.array(c.unemployment), n)
    # Passing units falls with low ability, late tuition and age; a semester
    # with no unit passed has grade 0, as in the registry data this mimics.
    pass1 = 1 / (1 + np.exp(-(1.3 * ability + 1.2 - 1.5 * late - 0.04 * (age - 20))))
    units1 = rng.binomial(6, pass1).astype(float)
    pass2 = 1 / (1 + np.exp(-(1.2 * ability + 1.0 - 1.8 * late + 0.25 * (units1 - 4))))
    units2 = rng.binomial(6, pass2).astype(float)

    def grade(units):
        g = np.clip(np.round(12 + 1.6 * ability + 1.0 * rng.normal(size=n), 2), 10, 19)
        return np.where(units > 0, g, 0.0)

    grade1, grade2 = grade(units1), grade(units2)
    w = c.weights
    logit = (
        w["bias"] + w["units2"] * (units2 - 4.5) + w["units1"] * (units1 - 4.5)
        + w["grade2"] * (np.where(units2 > 0, grade2, 10) - 12) + w["late"] * late
        + w["debtor"] * debtor + w["scholar"] * scholar + w["age"] * (age - 20) / 5
        + w["admission"] * (admission - 127) / 14 + w["unemp"] * (unemp - 10.5)
        + w["none1"] * (units1 == 0)
    )
    p = 1 / (1 + np.exp(-logit))
    y = (rng.random(n) < p).astype(np.int64)
    cols = {
        "age_at_enrollment": age, "gender": gender, "debtor": debtor,
        "scholarship_holder": scholar, "admission_grade": admission,
        "tuition_up_to_date": (~late).astype(float), "previous_qualification_grade": previous,
        "grade_1st_sem": grade1, "grade_2nd_sem": grade2,
        "units_approved_1st_sem": units1, "units_approved_2nd_sem": units2,
        "unemployment_rate": unemp,
    }
    x = np.stack([cols[name] for name in NAMES], axis=1).astype(np.float32)
    return x, y, p


def check_rows(x: np.ndarray, min_rows: int = 1000) -> list[str]:
    """Every way a batch of rows is unfit to train on: shape, row count,
    missing values, values out of range, categorical codes other than 0/1."""
    if x.ndim != 2 or x.shape[1] != len(FEATURES):
        return [f"rows have shape {list(x.shape)}; want [n, {len(FEATURES)}] ({', '.join(NAMES)})"]
    problems = []
    if len(x) < min_rows:
        problems.append(f"{len(x)} rows, fewer than {min_rows}")
    for i, f in enumerate(FEATURES):
        col = x[:, i]
        if np.isnan(col).any():
            problems.append(f"{f.name}: {int(np.isnan(col).sum())} missing values")
        bad = (col < f.low) | (col > f.high)
        if bad.any():
            problems.append(f"{f.name}: {int(bad.sum())} values outside [{f.low}, {f.high}]")
        if f.kind == "categorical" and not np.isin(col[~np.isnan(col)], (0, 1)).all():
            problems.append(f"{f.name}: codes other than 0 and 1")
    return problems


# --- model ------------------------------------------------------------------
def train(x: np.ndarray, y: np.ndarray, seed: int = TRAIN_SEED):
    from sklearn.ensemble import GradientBoostingClassifier

    clf = GradientBoostingClassifier(n_estimators=120, max_depth=3, learning_rate=0.1,
                                     random_state=seed)
    clf.fit(x, y)
    if list(clf.classes_) != [0, 1]:
        raise SystemExit(f"training data has classes {list(clf.classes_)}; want [0, 1]")
    return clf


def export_onnx(clf, version: int) -> bytes:
    """The fitted classifier as ONNX: `input` FP32 [-1, 12] -> `label` INT64
    [-1], `probabilities` FP32 [-1, 2]; header fields fixed for determinism."""
    import onnx
    import skl2onnx
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onx = convert_sklearn(
        clf,
        name=f"switchyard_{MODEL}_v{version}",  # default: a random uuid
        initial_types=[(INPUT, FloatTensorType([None, len(FEATURES)]))],
        options={id(clf): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    # skl2onnx lists the opset imports in no fixed order (and sometimes the
    # default domain twice): one entry per domain, sorted, for stable bytes.
    declared: dict[str, int] = {}
    for imp in onx.opset_import:
        domain = "" if imp.domain in ("", "ai.onnx") else imp.domain
        declared[domain] = max(declared.get(domain, 0), imp.version)
    del onx.opset_import[:]
    onx.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in sorted(declared.items()))
    onx.producer_name = "skl2onnx"
    onx.producer_version = skl2onnx.__version__
    onx.domain = "ai.onnx"
    onx.model_version = version
    onx.doc_string = f"switchyard example model {MODEL} version {version}"
    onnx.checker.check_model(onx)
    return onx.SerializeToString(deterministic=True)


def session(onnx_bytes: bytes):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # one thread: the same sums in the same order
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_bytes, sess_options=opts, providers=["CPUExecutionProvider"])


def predict(onnx_bytes: bytes, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    label, proba = session(onnx_bytes).run(["label", "probabilities"], {INPUT: x})
    return label, proba


def score(label: np.ndarray, proba: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy and ROC AUC of predictions against the truth, 4 places."""
    from sklearn.metrics import roc_auc_score

    return {
        "accuracy": round(float(np.mean(label == y)), 4),
        "auc": round(float(roc_auc_score(y, proba[:, 1])), 4),
    }


# --- reference profile ------------------------------------------------------
def numeric_profile(col: np.ndarray) -> dict:
    """Decile edges and bin shares of one column, the gateway's binning rule:
    bin i holds e_i <= v < e_{i+1}, the last bin also v == e_k."""
    col = np.asarray(col, dtype=np.float64)
    present = col[~np.isnan(col)]
    # The levels are i / 10 exactly (np.linspace would give 0.30000000000000004).
    edges = np.unique(np.quantile(present, [i / 10 for i in range(11)]))
    if len(edges) == 1:  # a constant column: one bin of width one around it
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    bins = np.clip(np.searchsorted(edges, present, side="right") - 1, 0, len(edges) - 2)
    counts = np.bincount(bins, minlength=len(edges) - 1)
    # Shares of all rows: with missing_share they add up to one.
    return {
        "kind": "numeric",
        "edges": [float(e) for e in edges],
        "shares": [float(c / len(col)) for c in counts],
        "missing_share": float(np.isnan(col).mean()),
        "mean": float(present.mean()),
        "std": float(present.std()),
    }


def categorical_profile(col: np.ndarray, values=None) -> dict:
    """Value shares of an integer-coded column (`values`: the codes to list,
    default the ones present)."""
    col = np.asarray(col, dtype=np.float64)
    present = col[~np.isnan(col)]
    codes = sorted(set(present.tolist()) if values is None else values)
    return {
        "kind": "categorical",
        "values": [int(v) for v in codes],
        "shares": [float(np.sum(present == v) / len(col)) for v in codes],
        "missing_share": float(np.isnan(col).mean()),
    }


def reference_profile(x, kinds, names, predicted, n_labels: int, source: str) -> dict:
    """profile.json's document for the rows `x` of input `input` (one kind and
    name per column) and the model's predicted labels on them."""
    features = []
    for i, (name, kind) in enumerate(zip(names, kinds)):
        stats = numeric_profile(x[:, i]) if kind == "numeric" else categorical_profile(x[:, i])
        features.append({"name": name, "input": INPUT, "column": i, **stats})
    prediction = categorical_profile(predicted, values=range(n_labels))
    return {
        "format": 1,
        "rows": int(len(x)),
        "source": source,
        "features": features,
        "prediction": {"name": "label", "output": "label", "column": 0, **prediction},
    }


def profile_json(doc: dict) -> bytes:
    return (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode("utf-8")


# --- files ------------------------------------------------------------------
def q(s: str) -> str:
    """A TOML basic string (JSON's escapes are a subset of TOML's)."""
    return json.dumps(s, ensure_ascii=False)


def floats(a) -> list[float]:
    # float32 widened to a Python float: its repr reads back as that float32.
    return [float(v) for v in np.asarray(a, dtype=np.float32).ravel()]


def golden_json(x, label, proba) -> bytes:
    doc = {
        "inputs": {INPUT: {"datatype": "FP32", "shape": list(x.shape), "data": floats(x)}},
        "outputs": {
            "label": {"datatype": "INT64", "shape": list(label.shape),
                      "data": [int(v) for v in label]},
            "probabilities": {"datatype": "FP32", "shape": list(proba.shape),
                              "data": floats(proba)},
        },
    }
    return (json.dumps(doc) + "\n").encode("utf-8")


def manifest(version: int, description: str, provenance: dict, hashes: dict) -> str:
    metrics = ", ".join(f"{k} = {v:.4f}" for k, v in provenance["metrics"].items())
    lines = [
        "# written by models/student_dropout.py \u2014 do not edit by hand; re-run the script",
        f"name = {q(MODEL)}",
        f"version = {version}",
        f"description = {q(description)}",
        'platform = "onnx"',
        'backends = ["forest", "ort"]',
        f"labels = [{', '.join(q(label) for label in LABELS)}]",
        'profile = "profile.json"',
        "",
        "[[inputs]]",
        f"name = {q(INPUT)}",
        'datatype = "FP32"',
        f"shape = [-1, {len(FEATURES)}]",
        f"features = [{', '.join(q(n) for n in NAMES)}]",
        "",
        "[[outputs]]", 'name = "label"', 'datatype = "INT64"', "shape = [-1]",
        "",
        "[[outputs]]", 'name = "probabilities"', 'datatype = "FP32"',
        f"shape = [-1, {len(LABELS)}]",
        "",
        "[batching]", *(f"{k} = {v}" for k, v in BATCHING.items()),
        "",
        "[drift]", *(f"{k} = {q(v) if isinstance(v, str) else v}" for k, v in DRIFT.items()),
        "",
        "[provenance]",
        f"training_run = {q(provenance['training_run'])}",
        f"data = {q(provenance['data'])}",
        f"trained_with = {q(provenance['trained_with'])}",
        f"metrics = {{ {metrics} }}",
        "",
        "[files]",
        *(f"{q(f)} = {q(h)}" for f, h in hashes.items()),
    ]
    text = "\n".join(lines) + "\n"
    parsed = tomllib.loads(text)  # valid TOML holding the values meant
    assert parsed["files"] == hashes and parsed["profile"] == "profile.json", parsed
    return text


def trained_with() -> str:
    import sklearn
    import skl2onnx

    return f"scikit-learn {sklearn.__version__}, skl2onnx {skl2onnx.__version__}"


def write_version(models_dir: Path, version: int, onnx_bytes: bytes, x_train: np.ndarray,
                  holdout: tuple[np.ndarray, np.ndarray], *, description: str, data: str,
                  training_run: str) -> dict[str, float]:
    """Writes models_dir/dropout/<version>/ (model.onnx, golden.json,
    profile.json, model.toml; the manifest last, so a half-written folder is
    never a loadable version) and returns the holdout metrics it recorded."""
    x_hold, y_hold = holdout
    label, proba = predict(onnx_bytes, x_hold)
    metrics = score(label, proba, y_hold)
    gx = np.ascontiguousarray(x_hold[:GOLDEN_ROWS])
    g_label, g_proba = predict(onnx_bytes, gx)
    for i in range(GOLDEN_ROWS):  # a row's answer must not depend on its batch
        one_label, one_proba = predict(onnx_bytes, gx[i : i + 1])
        if one_label[0] != g_label[i] or np.max(np.abs(one_proba[0] - g_proba[i])) > 1e-6:
            raise SystemExit(f"{MODEL}/{version}: row {i}'s answer depends on the batch")
    train_label, _ = predict(onnx_bytes, x_train)
    profile = reference_profile(
        x_train, [f.kind for f in FEATURES], NAMES, train_label, len(LABELS),
        f"the {len(x_train)} training rows of {MODEL} v{version}: {data}",
    )
    contents = {
        "model.onnx": onnx_bytes,
        "golden.json": golden_json(gx, g_label, g_proba),
        "profile.json": profile_json(profile),
    }
    folder = models_dir / MODEL / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    for name, blob in contents.items():
        (folder / name).write_bytes(blob)
    hashes = {name: hashlib.sha256(blob).hexdigest() for name, blob in contents.items()}
    provenance = {"training_run": training_run, "data": data, "trained_with": trained_with(),
                  "metrics": metrics}
    text = manifest(version, description, provenance, hashes)
    tmp = folder / ".model.toml.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(folder / "model.toml")
    return metrics


def next_version(models_dir: Path) -> int:
    folder = models_dir / MODEL
    taken = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
    return max(taken, default=0) + 1


# --- smoke suite -------------------------------------------------------------
def known_answer_rows(n_per_class: int = KNOWN_CASES) -> list[tuple[np.ndarray, int]]:
    """Students of the newest cohort whose outcome is all but certain (true
    probability under 2% or over 98%): any sane model gets them right, a
    broken one does not. Drawn from their own seed, apart from all training."""
    x, _, p = draw_cohort(NEW, 4000, seed=105)
    picked = []
    for label, mask in ((1, p > 0.98), (0, p < 0.02)):
        rows = np.flatnonzero(mask)[:n_per_class]
        if len(rows) < n_per_class:
            raise SystemExit(f"only {len(rows)} certain {LABELS[label]} rows to smoke-test with")
        picked += [(x[i], label) for i in rows]
    return picked


def case_lines(name: str, versions: list[int], row, label: int, proba=None) -> list[str]:
    data = ", ".join(repr(v) for v in floats(row))
    expect = f"label = {{ data = [{label}] }}"
    if proba is not None:
        p = ", ".join(repr(v) for v in floats(proba))
        expect += f", probabilities = {{ data = [{p}], tolerance = 1e-4 }}"
    return [
        "",
        "[[smoke.cases]]",
        f"name = {q(name)}",
        f"versions = [{', '.join(str(v) for v in versions)}]",
        f'inputs = {{ {INPUT} = {{ datatype = "FP32", shape = [1, {len(FEATURES)}], data = [{data}] }} }}',
        f"expect = {{ {expect} }}",
    ]


def write_suite(models_dir: Path, smoke_dir: Path) -> Path:
    """smoke-tests/dropout.toml: known-answer cases every version must pass
    (labels only), then each version's first golden rows (label and
    probabilities within 1e-4), and the rollout and analysis settings."""
    known = known_answer_rows()
    path = smoke_dir / f"{MODEL}.toml"
    rollout, analysis = ROLLOUT, ANALYSIS
    if path.is_file():
        # The cases are the exporter's; the rollout and analysis settings are
        # the team's: a pipeline that adds a version keeps them as tuned.
        kept = tomllib.loads(path.read_text(encoding="utf-8"))
        rollout = [f"{k} = {toml_value(v)}" for k, v in kept.get("rollout", {}).items()] or ROLLOUT
        analysis = [f"{k} = {toml_value(v)}" for k, v in kept.get("analysis", {}).items()] or ANALYSIS
    lines = [
        "# written by models/student_dropout.py \u2014 re-run it, don't edit",
        f"# smoke suite and rollout settings of {MODEL!r} for `controller promote {MODEL}`",
        "",
        "[rollout]", *rollout,
        "",
        "[analysis]", *analysis,
        "",
        "[smoke]", "latency_budget_ms = 500.0", f"min_cases = {len(known)}",
    ]
    for i, (row, label) in enumerate(known):
        lines += case_lines(f"known-{LABELS[label]}-{i % KNOWN_CASES}", [], row, label)
    folder = models_dir / MODEL
    for v in sorted(int(p.name) for p in folder.iterdir() if (p / "golden.json").is_file()):
        g = json.loads((folder / str(v) / "golden.json").read_text())
        x = np.array(g["inputs"][INPUT]["data"], dtype=np.float32).reshape(g["inputs"][INPUT]["shape"])
        labels = g["outputs"]["label"]["data"]
        proba = np.array(g["outputs"]["probabilities"]["data"], dtype=np.float32).reshape(-1, len(LABELS))
        for row in range(GOLDEN_CASES):
            lines += case_lines(f"v{v}-golden-{row}", [v], x[row], labels[row], proba[row])
    smoke_dir.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def suite_failures(onnx_bytes: bytes) -> list[str]:
    """The known-answer cases a graph gets wrong (what the controller's smoke
    test will find), checked offline with onnxruntime."""
    known = known_answer_rows()
    x = np.stack([row for row, _ in known])
    label, _ = predict(onnx_bytes, x)
    return [f"known-{LABELS[want]}-{i % KNOWN_CASES}: answered {LABELS[got]}"
            for i, ((_, want), got) in enumerate(zip(known, label)) if got != want]


# --- the example's versions --------------------------------------------------
VERSIONS = {
    1: (OLD, "v1", False, "gradient-boosted trees (120, depth 3) on the 2019-2021 cohorts"),
    2: (NEW, "v2", False, "gradient-boosted trees (120, depth 3) on the 2022-2024 cohorts"),
    3: (NEW, "v2", True, "BROKEN on purpose: the 2022-2024 rows with shuffled labels "
                         "(right schema, wrong answers; its smoke suite fails)"),
}


def holdout() -> tuple[np.ndarray, np.ndarray]:
    x, y, _ = draw_cohort(NEW, HOLDOUT_ROWS, SEEDS["holdout"])
    return x, y


def build(models_dir: Path = MODELS_DIR, smoke_dir: Path = SMOKE_DIR) -> dict[int, dict]:
    hold = holdout()
    results = {}
    for version, (cohort, seed, shuffled, description) in VERSIONS.items():
        x, y, _ = draw_cohort(cohort, TRAIN_ROWS, SEEDS[seed])
        data = f"draw_cohort({cohort!r}, {TRAIN_ROWS}, seed={SEEDS[seed]})"
        if shuffled:
            y = np.random.default_rng(SEEDS["shuffle"]).permutation(y)
            data += f", labels shuffled (seed={SEEDS['shuffle']})"
        onnx_bytes = export_onnx(train(x, y), version)
        metrics = write_version(
            models_dir, version, onnx_bytes, x, hold, description=description,
            data=f"{data}; scored on draw_cohort({NEW!r}, {HOLDOUT_ROWS}, seed={SEEDS['holdout']})",
            training_run=f"student_dropout.py:{MODEL}:v{version}",
        )
        failures = suite_failures(onnx_bytes)
        if bool(failures) != shuffled:
            raise SystemExit(f"{MODEL}/{version}: known-answer cases {failures or 'all pass'}; "
                             f"want {'some failing' if shuffled else 'all passing'}")
        results[version] = {**metrics, "smoke_failures": len(failures)}
    if not (results[2]["accuracy"] > results[1]["accuracy"] and results[2]["auc"] > results[1]["auc"]):
        raise SystemExit(f"v2 is not better than v1 on the newest holdout: {results}")
    write_suite(models_dir, smoke_dir)
    return results


def main() -> int:
    for version, r in build().items():
        print(f"{MODEL}/{version}: holdout accuracy {r['accuracy']:.4f}  AUC {r['auc']:.4f}  "
              f"known-answer smoke failures {r['smoke_failures']}")
    print(f"smoke-tests/{MODEL}.toml written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
