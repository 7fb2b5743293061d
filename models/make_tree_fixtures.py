#!/usr/bin/env python3
"""Build the tree-ensemble fixtures the forest backend is tested against.

Writes gateway/tests/fixtures/trees/<name>.onnx and <name>.json: small
scikit-learn tree ensembles exported by skl2onnx (binary and multiclass
classifiers, regressors with one and two targets), variants with their
attributes edited to every split mode, missing-value rule and post transform
the forest backend accepts, and for each 300 rows (random, NaN in random
places, values exactly on split thresholds) with onnxruntime's outputs.
gateway/tests/forest_matches_onnxruntime.rs holds the forest backend to them.

Run from the repository root:

    .venv/bin/python models/make_tree_fixtures.py
"""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as rt
from onnx import helper
from skl2onnx import to_onnx
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)

OUT = Path(__file__).resolve().parent.parent / "gateway/tests/fixtures/trees"
FEATURES = 8
ROWS = 300


def attr(node, name):
    for a in node.attribute:
        if a.name == name:
            return a
    return None


def set_attr(node, name, value):
    old = attr(node, name)
    if old is not None:
        node.attribute.remove(old)
    node.attribute.append(helper.make_attribute(name, value))


def with_modes(model, seed):
    """Rewrites each split as an equivalent or deliberately different test:
    `x <= t` as `not (x > t)` (children swapped), `x < t'`, `x >= t` and so
    on, and marks a third of the splits to send missing values the true way."""
    rng = np.random.default_rng(seed)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    node = m.graph.node[0]
    modes = list(attr(node, "nodes_modes").strings)
    trues = list(attr(node, "nodes_truenodeids").ints)
    falses = list(attr(node, "nodes_falsenodeids").ints)
    values = list(attr(node, "nodes_values").floats)
    missing = [0] * len(modes)
    for i, mode in enumerate(modes):
        if mode == b"LEAF":
            continue
        pick = rng.integers(6)
        if pick == 1:
            modes[i] = b"BRANCH_GT"
            trues[i], falses[i] = falses[i], trues[i]
        elif pick == 2:
            modes[i] = b"BRANCH_LT"
        elif pick == 3:
            modes[i] = b"BRANCH_GTE"
            trues[i], falses[i] = falses[i], trues[i]
        elif pick == 4:
            modes[i] = b"BRANCH_EQ" if rng.integers(2) else b"BRANCH_NEQ"
        missing[i] = int(rng.integers(3) == 0)
    set_attr(node, "nodes_modes", modes)
    set_attr(node, "nodes_truenodeids", trues)
    set_attr(node, "nodes_falsenodeids", falses)
    set_attr(node, "nodes_values", values)
    set_attr(node, "nodes_missing_value_tracks_true", missing)
    return m


def with_transform(model, transform):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    set_attr(m.graph.node[0], "post_transform", transform)
    return m


def rows_for(model, seed):
    """Random rows, NaN in a tenth of the cells of some rows, and rows whose
    values sit exactly on the thresholds the trees split on."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(ROWS, FEATURES)).astype(np.float32) * 2
    x[100:150][rng.random((50, FEATURES)) < 0.3] = np.nan
    node = model.graph.node[0]
    feats = np.array(attr(node, "nodes_featureids").ints)
    vals = np.array(attr(node, "nodes_values").floats, dtype=np.float32)
    modes = list(attr(node, "nodes_modes").strings)
    splits = [i for i, m in enumerate(modes) if m != b"LEAF"]
    for r in range(150, ROWS):
        for i in rng.choice(splits, size=min(6, len(splits)), replace=False):
            x[r, feats[i]] = vals[i]
    return x


def write(name, model, seed):
    x = rows_for(model, seed)
    session = rt.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: x})
    record = {
        "input": [None if np.isnan(v) else float(v) for v in x.ravel()],
        "rows": ROWS,
        "columns": FEATURES,
        "outputs": {},
    }
    for meta, value in zip(session.get_outputs(), outputs):
        record["outputs"][meta.name] = {
            "shape": list(value.shape),
            "data": [int(v) for v in value.ravel()]
            if value.dtype == np.int64
            else [float(v) for v in value.ravel()],
        }
    for field in ("producer_name", "producer_version", "domain", "doc_string"):
        setattr(model, field, "")
    model.model_version = 0
    (OUT / f"{name}.onnx").write_bytes(model.SerializeToString())
    (OUT / f"{name}.json").write_text(json.dumps(record, separators=(",", ":")) + "\n")
    print(f"{name}: {len(model.graph.node[0].attribute)} attributes, outputs {list(record['outputs'])}")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    x2, y2 = make_classification(2000, FEATURES, n_informative=5, random_state=0)
    x3, y3 = make_classification(2000, FEATURES, n_informative=5, n_classes=3, random_state=1)
    xr, yr = make_regression(2000, FEATURES, n_informative=5, n_targets=2, random_state=2)
    x2, x3, xr = (a.astype(np.float32) for a in (x2, x3, xr))
    convert = lambda est, x: to_onnx(est, x[:1], options={"zipmap": False} if hasattr(est, "classes_") else None,
                                     target_opset={"": 17, "ai.onnx.ml": 3})

    gbc2 = convert(GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=0).fit(x2, y2), x2)
    rf2 = convert(RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0).fit(x2, y2), x2)
    gbc3 = convert(GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=0).fit(x3, y3), x3)
    rf3 = convert(RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0).fit(x3, y3), x3)
    gbr = convert(GradientBoostingRegressor(n_estimators=20, max_depth=3, random_state=0).fit(xr, yr[:, 0]), xr)
    rfr2 = convert(RandomForestRegressor(n_estimators=8, max_depth=5, random_state=0).fit(xr, yr), xr)

    write("gbc_binary", gbc2, 1)
    write("gbc_binary_modes", with_modes(gbc2, 11), 2)
    write("gbc_binary_none", with_transform(gbc2, "NONE"), 3)
    write("rf_binary", rf2, 4)
    write("rf_binary_logistic", with_transform(rf2, "LOGISTIC"), 5)
    write("gbc_multiclass", gbc3, 6)
    write("gbc_multiclass_logistic", with_transform(gbc3, "LOGISTIC"), 7)
    write("rf_multiclass", rf3, 8)
    write("rf_multiclass_modes", with_modes(rf3, 12), 9)
    write("gb_regressor", gbr, 10)
    write("rf_regressor_two_targets", rfr2, 11)
    write("rf_regressor_modes", with_modes(rfr2, 13), 12)


if __name__ == "__main__":
    main()
