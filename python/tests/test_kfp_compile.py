"""examples/kubeflow/pipeline.py compiled by the real KFP compiler.

The KFP SDK lives in its own virtualenv (.venv-kfp, created once by
examples/bootstrap-venv.sh from examples/kubeflow/requirements.txt and reused
while that file is unchanged). The compiled pipeline spec must hold the six
steps in the retrain's order (ingest -> validate -> train -> evaluate, then
export -> promote only when evaluate says the candidate is better), the Python
steps in the trainer image calling the example model script, and promote as
the controller image running `controller --json ... promote dropout --version`.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv-kfp"
PIPELINE = REPO / "examples" / "kubeflow" / "pipeline.py"
STEPS = ["ingest", "validate", "train", "evaluate", "export", "promote"]


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> dict:
    t0 = time.monotonic()
    subprocess.run([str(REPO / "examples" / "bootstrap-venv.sh"), str(VENV),
                    str(REPO / "examples" / "kubeflow" / "requirements.txt")],
                   check=True, timeout=900, cwd=REPO)
    print(f".venv-kfp ready in {time.monotonic() - t0:.1f} s")
    out = tmp_path_factory.mktemp("kfp") / "pipeline.yaml"
    r = subprocess.run([str(VENV / "bin" / "python"), str(PIPELINE), str(out)],
                       capture_output=True, text=True, timeout=120, cwd=out.parent,
                       env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    return yaml.safe_load(out.read_text())


def test_pipeline_has_the_six_components(spec):
    assert spec["pipelineInfo"]["name"] == "switchyard-weekly-retrain"
    assert spec["sdkVersion"].startswith("kfp-2.")
    steps = {f"comp-{s}" for s in STEPS}
    assert steps <= set(spec["components"])
    assert set(spec["components"]) - steps == {"comp-condition-1"}


def test_steps_run_in_the_retrain_order_and_promote_only_a_better_model(spec):
    root = spec["root"]["dag"]["tasks"]
    assert set(root) == {"ingest", "validate", "train", "evaluate", "condition-1"}
    assert "dependentTasks" not in root["ingest"]
    assert root["validate"]["dependentTasks"] == ["ingest"]
    assert root["train"]["dependentTasks"] == ["validate"]
    assert sorted(root["evaluate"]["dependentTasks"]) == ["train", "validate"]
    cond = root["condition-1"]
    assert "evaluate" in cond["dependentTasks"]
    assert cond["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--evaluate-Output'] == true")
    inner = spec["components"]["comp-condition-1"]["dag"]["tasks"]
    assert set(inner) == {"export", "promote"}
    assert inner["promote"]["dependentTasks"] == ["export"]
    # promote takes the version export wrote.
    version = inner["promote"]["inputs"]["parameters"]["version"]["taskOutputParameter"]
    assert version == {"outputParameterKey": "Output", "producerTask": "export"}


def test_python_steps_call_the_example_script_in_the_trainer_image(spec):
    executors = spec["deploymentSpec"]["executors"]
    for step in STEPS[:-1]:
        container = executors[f"exec-{step}"]["container"]
        assert container["image"] == "ghcr.io/switchyard/dropout-trainer:1", step
        source = "\n".join(container["command"])
        assert "import student_dropout as t" in source, step
        assert f"def {step}(" in source, step
    assert "t.write_version(" in "\n".join(executors["exec-export"]["container"]["command"])
    assert "t.train(" in "\n".join(executors["exec-train"]["container"]["command"])


def test_promote_runs_the_controller(spec):
    container = spec["deploymentSpec"]["executors"]["exec-promote"]["container"]
    assert container["image"] == "ghcr.io/switchyard/controller:latest"
    assert container["command"] == ["controller"]
    args = container["args"]
    assert args[0] == "--json"
    assert args[args.index("promote"):] == [
        "promote", "{{$.inputs.parameters['model']}}",
        "--version", "{{$.inputs.parameters['version']}}"]
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["models_dir"]["defaultValue"] == "/models"
    assert params["min_auc_gain"]["defaultValue"] == 0.0
