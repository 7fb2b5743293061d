"""The weekly retrain of the student-dropout model as a Kubeflow Pipelines (v2) pipeline.

The same steps as examples/airflow/dags/switchyard_weekly_retrain.py, each a
container on the cluster:

    ingest -> validate -> train -> evaluate --(better)--> export -> promote

- the Python steps run in TRAINER_IMAGE: python with the pinned training stack
  of python/requirements.txt and the model script at
  /opt/switchyard/models/student_dropout.py; every step calls that script's
  functions (draw_cohort, check_rows, train, export_onnx, predict, score,
  write_version, write_suite), none re-implements them;
- export writes the next version into the model repository the gateways read
  (`models_dir`, the switchyard-models volume of k8s/base mounted into the
  step, e.g. with kfp-kubernetes' `mount_pvc`) and rewrites its smoke suite;
- promote runs the controller image (the Dockerfile's `controller` target):
  `controller --json promote dropout --version <v>`. A non-zero exit fails the
  step and the run; the controller has already rolled back by then.

Compile (the KFP SDK only; no cluster needed):

    .venv-kfp/bin/python examples/kubeflow/pipeline.py switchyard_weekly_retrain.yaml

python/tests/test_kfp_compile.py compiles it with the real compiler and checks
the components and their order.
"""

import os
import sys

from kfp import compiler, dsl
from kfp.dsl import Dataset, Input, Model, Output

TRAINER_IMAGE = os.environ.get("SWITCHYARD_TRAINER_IMAGE", "ghcr.io/switchyard/dropout-trainer:1")
CONTROLLER_IMAGE = os.environ.get("SWITCHYARD_CONTROLLER_IMAGE", "ghcr.io/switchyard/controller:latest")
SCRIPT_DIR = "/opt/switchyard/models"  # where TRAINER_IMAGE holds student_dropout.py


@dsl.component(base_image=TRAINER_IMAGE)
def ingest(rows: Output[Dataset], seed: int):
    """This week's students (simulated from the newest cohort; put your query here)."""
    import sys

    import numpy as np

    sys.dont_write_bytecode = True
    sys.path.insert(0, "/opt/switchyard/models")
    import student_dropout as t

    x, y, _ = t.draw_cohort(t.NEW, t.TRAIN_ROWS + t.HOLDOUT_ROWS, seed)
    with open(rows.path, "wb") as f:
        np.savez(f, x=x, y=y)
    rows.metadata["rows"] = int(len(x))


@dsl.component(base_image=TRAINER_IMAGE)
def validate(rows: Input[Dataset], split: Output[Dataset]):
    """Schema, ranges, row count and labels; splits off the holdout."""
    import sys

    import numpy as np

    sys.path.insert(0, "/opt/switchyard/models")
    import student_dropout as t

    with np.load(rows.path) as d:
        x, y = d["x"], d["y"]
    problems = t.check_rows(x, min_rows=t.TRAIN_ROWS // 2 + t.HOLDOUT_ROWS)
    if set(np.unique(y).tolist()) != {0, 1}:
        problems.append(f"labels must be 0 and 1; got {np.unique(y).tolist()}")
    if problems:
        raise ValueError("the ingested data is unfit to train on: " + "; ".join(problems))
    h = t.HOLDOUT_ROWS
    with open(split.path, "wb") as f:
        np.savez(f, x_train=x[:-h], y_train=y[:-h], x_hold=x[-h:], y_hold=y[-h:])


@dsl.component(base_image=TRAINER_IMAGE)
def train(split: Input[Dataset], candidate: Output[Model], models_dir: str) -> int:
    """Fits and exports the candidate as the repository's next version; returns it."""
    import sys
    from pathlib import Path

    import numpy as np

    sys.path.insert(0, "/opt/switchyard/models")
    import student_dropout as t

    with np.load(split.path) as d:
        x, y = d["x_train"], d["y_train"]
    version = t.next_version(Path(models_dir))
    with open(candidate.path, "wb") as f:
        f.write(t.export_onnx(t.train(x, y), version))
    candidate.metadata["version"] = version
    return version


@dsl.component(base_image=TRAINER_IMAGE)
def evaluate(split: Input[Dataset], candidate: Input[Model], gateway_url: str,
             min_auc_gain: float) -> bool:
    """True when the candidate beats the live model (asked of the gateway) on the holdout."""
    import sys

    import numpy as np
    import requests

    sys.path.insert(0, "/opt/switchyard/models")
    import student_dropout as t

    with np.load(split.path) as d:
        x, y = d["x_hold"], d["y_hold"]
    with open(candidate.path, "rb") as f:
        mine = t.score(*t.predict(f.read(), x), y)
    labels, probas = [], []
    with requests.Session() as s:
        for start in range(0, len(x), 64):
            rows = x[start : start + 64]
            r = s.post(f"{gateway_url.rstrip('/')}/v2/models/{t.MODEL}/infer", timeout=30, json={
                "inputs": [{"name": "input", "datatype": "FP32", "shape": list(rows.shape),
                            "data": [float(v) for v in rows.ravel()]}]})
            if r.status_code == 404:
                print(f"no live {t.MODEL}; candidate {mine} goes out first")
                return True
            r.raise_for_status()
            out = {o["name"]: o["data"] for o in r.json()["outputs"]}
            labels += out["label"]
            probas += out["probabilities"]
    theirs = t.score(np.array(labels), np.array(probas, dtype=np.float32).reshape(len(x), -1), y)
    print(f"holdout: candidate {mine}, live {theirs}")
    return mine["auc"] - theirs["auc"] > min_auc_gain and mine["accuracy"] >= theirs["accuracy"]


@dsl.component(base_image=TRAINER_IMAGE)
def export(split: Input[Dataset], candidate: Input[Model], version: int, models_dir: str,
           smoke_dir: str) -> int:
    """Writes the version folder (graph, golden rows, profile, manifest) and the suite."""
    import sys
    from pathlib import Path

    import numpy as np

    sys.dont_write_bytecode = True
    sys.path.insert(0, "/opt/switchyard/models")
    import student_dropout as t

    with np.load(split.path) as d:
        x_train, hold = d["x_train"], (d["x_hold"], d["y_hold"])
    with open(candidate.path, "rb") as f:
        onnx_bytes = f.read()
    t.write_version(Path(models_dir), version, onnx_bytes, x_train, hold,
                    description="weekly retrain (Kubeflow)",
                    data=f"{len(x_train)} ingested rows; scored on a {len(hold[1])}-row holdout",
                    training_run=f"kubeflow:switchyard-weekly-retrain:v{version}")
    t.write_suite(Path(models_dir), Path(smoke_dir))
    return version


@dsl.container_component
def promote(version: int, model: str, gateways: str, models_dir: str, smoke_dir: str):
    """`controller promote`: smoke tests on green, canary steps, rollback on failure."""
    return dsl.ContainerSpec(
        image=CONTROLLER_IMAGE,
        command=["controller"],
        args=["--json", "--gateways", gateways, "--models", models_dir,
              "--smoke-tests", smoke_dir, "promote", model, "--version", version],
    )


@dsl.pipeline(name="switchyard-weekly-retrain",
              description="Retrain the dropout model weekly and roll it out with switchyard")
def weekly_retrain(
    seed: int = 0,
    models_dir: str = "/models",
    smoke_dir: str = "/models/.smoke-tests",
    gateway_url: str = "http://switchyard-gateway.switchyard.svc:8000",
    gateways: str = "http://switchyard-gateway-blue.switchyard.svc:8003,"
                    "http://switchyard-gateway-green.switchyard.svc:8003",
    min_auc_gain: float = 0.0,
):
    rows = ingest(seed=seed)
    split = validate(rows=rows.outputs["rows"])
    trained = train(split=split.outputs["split"], models_dir=models_dir)
    verdict = evaluate(split=split.outputs["split"], candidate=trained.outputs["candidate"],
                       gateway_url=gateway_url, min_auc_gain=min_auc_gain)
    with dsl.If(verdict.output == True, name="candidate-is-better"):  # noqa: E712
        exported = export(split=split.outputs["split"], candidate=trained.outputs["candidate"],
                          version=trained.outputs["Output"], models_dir=models_dir,
                          smoke_dir=smoke_dir)
        promote(version=exported.output, model="dropout", gateways=gateways,
                models_dir=models_dir, smoke_dir=smoke_dir)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "switchyard_weekly_retrain.yaml"
    compiler.Compiler().compile(weekly_retrain, out)
    print(f"wrote {out}")
