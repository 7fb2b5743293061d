"""The weekly retrain of the student-dropout model, ending in a switchyard rollout.

    ingest -> validate -> train -> evaluate -> export -> promote

- ingest: this week's students (the example simulates them with the model
  script's draw_cohort(); put your database query there);
- validate: schema, ranges and row count (the script's check_rows()); any
  problem fails the run before anything is trained;
- train: the script's train() and export_onnx(), as the repository's next
  version number;
- evaluate: the live model's answers on the holdout, asked of the gateway
  (POST /v2/models/<model>/infer), against the candidate's. A candidate that is
  not better skips export and promote: nothing changes;
- export: write_version() puts model.onnx, golden.json, profile.json and
  model.toml into the repository as the next version, and write_suite()
  rewrites the model's smoke suite with its cases;
- promote: `controller --json promote <model> --version <v>`: the controller
  loads it into the standby slot, smoke-tests it there, shifts traffic in the
  suite's steps and rolls back on failure. A non-zero exit fails the task with
  the controller's message.

Configuration: Airflow Variables, else the environment variable of the same
name (upper case), else the default:

| Variable / env               | meaning                                          | default |
| ---------------------------- | ------------------------------------------------ | ------- |
| SWITCHYARD_MODELS            | the model repository the gateways read           | models |
| SWITCHYARD_SMOKE_TESTS       | the smoke suites folder                          | smoke-tests |
| SWITCHYARD_GATEWAYS          | the fleet's admin URLs, comma-separated          | http://127.0.0.1:8003 |
| SWITCHYARD_GATEWAY_URL       | a gateway's inference URL, for evaluate          | http://127.0.0.1:8000 |
| SWITCHYARD_CONTROLLER        | the controller binary                            | controller (on PATH) |
| SWITCHYARD_STATE_DIR         | the controller's rollout logs and locks          | .state/controller |
| SWITCHYARD_TRAINER           | the model's training script                      | models/student_dropout.py next to this repo's examples/ |
| SWITCHYARD_WORK_DIR          | where tasks hand files to each other             | <tmp>/switchyard-retrain |
| SWITCHYARD_MIN_AUC_GAIN      | how much higher the candidate's AUC must be       | 0.0 |

SWITCHYARD_ADMIN_TOKEN, when set in the environment, reaches the controller
unchanged (keep it in a secret backend or the worker's environment, not in a
Variable).

The training code is not here: every task calls functions of the model's
script (SWITCHYARD_TRAINER), the same code `make models` runs.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from airflow.sdk import Variable, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
DEFAULTS = {
    "SWITCHYARD_MODELS": "models",
    "SWITCHYARD_SMOKE_TESTS": "smoke-tests",
    "SWITCHYARD_GATEWAYS": "http://127.0.0.1:8003",
    "SWITCHYARD_GATEWAY_URL": "http://127.0.0.1:8000",
    "SWITCHYARD_CONTROLLER": "controller",
    "SWITCHYARD_STATE_DIR": ".state/controller",
    "SWITCHYARD_TRAINER": str(REPO / "models" / "student_dropout.py"),
    "SWITCHYARD_WORK_DIR": str(Path(tempfile.gettempdir()) / "switchyard-retrain"),
    "SWITCHYARD_MIN_AUC_GAIN": "0.0",
}
INFER_BATCH = 64  # rows per request: the example model's max_batch_size


def setting(name: str) -> str:
    """An Airflow Variable, else the environment, else the default."""
    return Variable.get(name, default=os.environ.get(name, DEFAULTS[name]))


def trainer():
    """The model's training script, imported from its path (no __pycache__
    is written beside it: the gateway reads every folder of models/)."""
    path = Path(setting("SWITCHYARD_TRAINER"))
    sys.dont_write_bytecode = True
    name = f"switchyard_trainer_{path.stem}"
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def work_dir() -> Path:
    run_id = get_current_context()["run_id"]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    folder = Path(setting("SWITCHYARD_WORK_DIR")) / safe
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def load(path: str):
    import numpy as np

    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def live_answers(url: str, model: str, x):
    """The live version's labels and probabilities for `x`, and its version;
    None when the gateway serves no version of the model."""
    import numpy as np
    import requests

    labels, probas, versions = [], [], set()
    with requests.Session() as s:
        for start in range(0, len(x), INFER_BATCH):
            rows = x[start : start + INFER_BATCH]
            body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(rows.shape),
                                "data": [float(v) for v in rows.ravel()]}]}
            r = s.post(f"{url.rstrip('/')}/v2/models/{model}/infer", json=body, timeout=30)
            if r.status_code == 404 and start == 0:
                return None
            r.raise_for_status()
            doc = r.json()
            out = {o["name"]: o["data"] for o in doc["outputs"]}
            labels += out["label"]
            probas += out["probabilities"]
            versions.add(doc.get("model_version"))
    # Evaluating a fleet mid-rollout would mix two models' answers.
    if len(versions) != 1:
        raise AirflowFailException(f"the live answers came from versions {sorted(versions)}; "
                                   "is a rollout running?")
    return np.array(labels), np.array(probas, dtype=np.float32).reshape(len(x), -1), versions.pop()


@task
def ingest() -> str:
    """This week's students with their outcomes. The example simulates the
    newest cohort with a seed from the run's date; replace with your query."""
    import numpy as np

    t = trainer()
    ctx = get_current_context()
    seed = int(ctx["logical_date"].strftime("%Y%m%d")) if ctx.get("logical_date") else 0
    x, y, _ = t.draw_cohort(t.NEW, t.TRAIN_ROWS + t.HOLDOUT_ROWS, seed)
    path = work_dir() / "ingested.npz"
    np.savez(path, x=x, y=y)
    log.info("ingested %d rows (seed %d) into %s", len(x), seed, path)
    return str(path)


@task
def validate(path: str) -> str:
    """Refuses data with the wrong columns, out-of-range values, missing
    values, too few rows or one class only; splits off the holdout."""
    import numpy as np

    t = trainer()
    d = load(path)
    problems = t.check_rows(d["x"], min_rows=t.TRAIN_ROWS // 2 + t.HOLDOUT_ROWS)
    if d["y"].shape != (len(d["x"]),) or not set(np.unique(d["y"]).tolist()) == {0, 1}:
        problems.append(f"labels must be 0 and 1, one per row; got {np.unique(d['y']).tolist()}")
    if problems:
        raise AirflowFailException("the ingested data is unfit to train on: " + "; ".join(problems))
    h = t.HOLDOUT_ROWS
    out = work_dir() / "validated.npz"
    np.savez(out, x_train=d["x"][:-h], y_train=d["y"][:-h], x_hold=d["x"][-h:], y_hold=d["y"][-h:])
    log.info("%d rows valid: %d to train on, %d held out", len(d["x"]), len(d["x"]) - h, h)
    return str(out)


@task
def train(path: str) -> dict:
    t = trainer()
    d = load(path)
    version = t.next_version(Path(setting("SWITCHYARD_MODELS")))
    onnx_bytes = t.export_onnx(t.train(d["x_train"], d["y_train"]), version)
    out = work_dir() / "candidate.onnx"
    out.write_bytes(onnx_bytes)
    log.info("trained %s v%d: %s (%d bytes)", t.MODEL, version, out, len(onnx_bytes))
    return {"data": path, "onnx": str(out), "version": version}


@task
def evaluate(candidate: dict) -> dict:
    """Candidate and live model on the same holdout; skips the rest of the
    run unless the candidate is better."""
    t = trainer()
    d = load(candidate["data"])
    label, proba = t.predict(Path(candidate["onnx"]).read_bytes(), d["x_hold"])
    mine = t.score(label, proba, d["y_hold"])
    live = live_answers(setting("SWITCHYARD_GATEWAY_URL"), t.MODEL, d["x_hold"])
    if live is None:
        log.info("no live %s: the candidate (%s) goes out as the first version", t.MODEL, mine)
        return {**candidate, "candidate": mine, "live": None}
    theirs = t.score(live[0], live[1], d["y_hold"])
    gain = mine["auc"] - theirs["auc"]
    log.info("holdout: candidate %s, live v%s %s", mine, live[2], theirs)
    if gain <= float(setting("SWITCHYARD_MIN_AUC_GAIN")) or mine["accuracy"] < theirs["accuracy"]:
        raise AirflowSkipException(
            f"candidate {mine} is not better than live v{live[2]} {theirs}; nothing to promote")
    return {**candidate, "candidate": mine, "live": {"version": live[2], **theirs}}


@task
def export(evaluated: dict) -> int:
    t = trainer()
    d = load(evaluated["data"])
    models, version = Path(setting("SWITCHYARD_MODELS")), evaluated["version"]
    run_id = get_current_context()["run_id"]
    metrics = t.write_version(
        models, version, Path(evaluated["onnx"]).read_bytes(), d["x_train"],
        (d["x_hold"], d["y_hold"]),
        description=f"weekly retrain ({run_id})",
        data=f"{len(d['x_train'])} rows ingested by run {run_id}; scored on its {len(d['x_hold'])}-row holdout",
        training_run=f"airflow:switchyard_weekly_retrain:{run_id}",
    )
    suite = t.write_suite(models, Path(setting("SWITCHYARD_SMOKE_TESTS")))
    log.info("wrote %s v%d (%s) and %s", t.MODEL, version, metrics, suite)
    return version


@task
def promote(version: int) -> dict:
    """`controller promote`; a non-zero exit fails the task with its message."""
    t = trainer()
    names = ("SWITCHYARD_MODELS", "SWITCHYARD_SMOKE_TESTS", "SWITCHYARD_GATEWAYS",
             "SWITCHYARD_STATE_DIR")
    env = {**os.environ, **{n: setting(n) for n in names}}
    cmd = [setting("SWITCHYARD_CONTROLLER"), "--json", "promote", t.MODEL, "--version", str(version)]
    log.info("running %s", " ".join(cmd))
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600,
                       stdin=subprocess.DEVNULL)
    for line in r.stderr.splitlines():
        log.info("controller: %s", line)
    try:
        result = json.loads(r.stdout) if r.stdout.strip() else {}
    except json.JSONDecodeError:
        result = {"output": r.stdout}
    if r.returncode != 0:
        message = result.get("error") or r.stderr.strip().splitlines()[-1:] or r.stdout
        raise AirflowFailException(
            f"controller promote {t.MODEL} v{version} failed (exit {r.returncode}): {message}")
    log.info("promoted: %s", result)
    return result


@dag(
    dag_id="switchyard_weekly_retrain",
    schedule="@weekly",
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,  # one rollout of the model at a time
    default_args={"retries": 0},
    tags=["switchyard", "dropout"],
    doc_md=__doc__,
)
def switchyard_weekly_retrain():
    promote(export(evaluate(train(validate(ingest())))))


switchyard_weekly_retrain()
