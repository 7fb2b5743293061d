"""`controller promote --from mlflow` against a real MLflow tracking server.

The server and its client run from their own venv, `.venv-mlflow`, made from
`python/mlflow-requirements.txt` on first use (about 100 s) and reused while
that file's sha256 matches the stamp inside it. The module starts `mlflow
server` on a free 127.0.0.1 port (sqlite backend, artifacts proxied from a
temp folder), logs runs holding the switchyard files of `models/boosted/2`
as the pipeline convention says (docs/controller.md, "Promoting from
MLflow"), registers them and sets aliases:

| alias     | MLflow source of the version                    | files                   |
|-----------|-------------------------------------------------|-------------------------|
| champion  | mlflow-artifacts:/…/artifacts/switchyard         | boosted/2 as made       |
| (none)    | runs:/<run>/switchyard                           | the same                |
| (none)    | models:/m-<id> (an MLflow 3 logged model)        | the same                |
| tampered  | mlflow-artifacts:/…                              | golden.json changed     |
| invalid   | mlflow-artifacts:/…                              | model.toml says tensorflow |

Each test starts a real gateway on a repository holding only `boosted/1`
and runs the real controller binary (beside `SWITCHYARD_GATEWAY_BIN`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import requests

from conftest import MODELS, REPO, Launcher, base_env, free_ports, load_golden

VENV = REPO / ".venv-mlflow"
REQUIREMENTS = REPO / "python" / "mlflow-requirements.txt"
SERVER_READY_TIMEOUT_S = 180.0
CONTROLLER_TIMEOUT_S = 120.0

# Runs inside .venv-mlflow: the pipeline's side, as docs/controller.md shows it.
REGISTER = r"""
import json, shutil, sys, tempfile
from pathlib import Path
import mlflow
from mlflow import MlflowClient

version_dir = Path(sys.argv[1])
client = MlflowClient()
mlflow.set_experiment("switchyard-tests")
client.create_registered_model("boosted")

def log(folder):
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(folder), artifact_path="switchyard")
    return run.info

def register(source, run_id, alias=None):
    mv = client.create_model_version("boosted", source=source, run_id=run_id)
    if alias:
        client.set_registered_model_alias("boosted", alias, mv.version)
    return {"version": int(mv.version), "run_id": run_id, "source": source}

out = {}
run = log(version_dir)
out["champion"] = register(f"{run.artifact_uri}/switchyard", run.run_id, "champion")
out["runs_uri"] = register(f"runs:/{run.run_id}/switchyard", run.run_id)

with mlflow.start_run() as lm_run:
    logged = mlflow.initialize_logged_model(name="switchyard")
    client.log_model_artifacts(logged.model_id, str(version_dir))
    mlflow.finalize_logged_model(logged.model_id, "READY")
mv = mlflow.register_model(f"models:/{logged.model_id}", "boosted")
out["logged_model"] = {"version": int(mv.version), "run_id": mv.run_id, "source": mv.source}

with tempfile.TemporaryDirectory() as tmp:
    spoiled = Path(tmp) / "tampered"
    shutil.copytree(version_dir, spoiled)
    golden = spoiled / "golden.json"
    golden.write_text(golden.read_text().replace("0.", "0.1", 1))
    run = log(spoiled)
    out["tampered"] = register(f"{run.artifact_uri}/switchyard", run.run_id, "tampered")

    invalid = Path(tmp) / "invalid"
    shutil.copytree(version_dir, invalid)
    manifest = invalid / "model.toml"
    manifest.write_text(manifest.read_text().replace('platform = "onnx"', 'platform = "tensorflow"'))
    run = log(invalid)
    out["invalid"] = register(f"{run.artifact_uri}/switchyard", run.run_id, "invalid")
print(json.dumps(out))
"""


def mlflow_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    # Offline machines: no usage reporting.
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["DO_NOT_TRACK"] = "true"
    return env


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def mlflow_venv() -> Path:
    """.venv-mlflow (scripts/venv.sh: cached, remade when
    mlflow-requirements.txt changes)."""
    started = time.monotonic()
    made = subprocess.run([str(REPO / "scripts" / "venv.sh"), str(VENV), str(REQUIREMENTS)],
                          capture_output=True, text=True, timeout=1200)
    if made.returncode != 0:
        pytest.fail(f"cannot install {REQUIREMENTS.name}:\n{made.stderr[-4000:]}", pytrace=False)
    print(f"{VENV} ready in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return VENV


@pytest.fixture(scope="module")
def mlflow_server(mlflow_venv, tmp_path_factory):
    """A real `mlflow server` on a free loopback port; its URL."""
    root = tmp_path_factory.mktemp("mlflow")
    (port,) = free_ports(1)
    log = root / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(mlflow_venv / "bin" / "mlflow"), "server",
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
             "--artifacts-destination", str(root / "artifacts")],
            cwd=root, env=mlflow_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            # Its own process group: the server forks workers, all stopped together.
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not up in {SERVER_READY_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")
            time.sleep(0.25)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture(scope="module")
def registry(mlflow_venv, mlflow_server) -> dict:
    """The registered versions, by the names in the module's table."""
    env = mlflow_env()
    env["MLFLOW_TRACKING_URI"] = mlflow_server
    done = subprocess.run(
        [str(mlflow_venv / "bin" / "python"), "-c", REGISTER, str(MODELS / "boosted" / "2")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def controller_bin(gateway_bin) -> Path:
    path = Path(gateway_bin).parent / "controller"
    assert path.is_file(), f"{path} is missing: `cargo build -p controller --bin controller`"
    return path


class World:
    """A gateway over a repository with only boosted/1, and the controller."""

    def __init__(self, launch: Launcher, controller: Path, root: Path):
        self.models = root / "models"
        (self.models / "boosted").mkdir(parents=True)
        shutil.copytree(MODELS / "boosted" / "1", self.models / "boosted" / "1")
        self.suites = root / "smoke-tests"
        shutil.copytree(REPO / "smoke-tests", self.suites)
        self.state = root / "controller-state"
        self.controller = controller
        self.gateway = launch.start(models=self.models)

    def promote(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        full_env = {k: v for k, v in base_env().items() if not k.startswith("MLFLOW_")}
        full_env.update(env or {})
        return subprocess.run(
            [str(self.controller), "--gateways", self.gateway.admin_url,
             "--models", str(self.models), "--smoke-tests", str(self.suites),
             "--state-dir", str(self.state),
             "promote", "boosted", "--from", "mlflow", "--full", "--bake", "0ms", "--json", *args],
            env=full_env, capture_output=True, text=True, timeout=CONTROLLER_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )

    def listing(self) -> list[str]:
        return sorted(p.name for p in (self.models / "boosted").iterdir())

    def route(self) -> dict:
        r = requests.get(f"{self.gateway.admin_url}/admin/models/boosted", timeout=5)
        r.raise_for_status()
        return r.json()

    def answering_version(self) -> str:
        golden = load_golden("boosted", 2)
        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 20],
                            "data": golden.input[0].tolist()}]}
        r = requests.post(f"{self.gateway.http_url}/v2/models/boosted/infer", json=body, timeout=5)
        r.raise_for_status()
        return r.json()["model_version"]


@pytest.fixture
def world(launch, controller_bin, tmp_path) -> World:
    return World(launch, controller_bin, tmp_path)


def assert_refused(world: World, done: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 2, every needle in the message, repository and gateway as before."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    error = json.loads(done.stdout)["error"]
    for needle in needles:
        assert needle in error, f"{needle!r} not in {error!r}"
    assert world.listing() == ["1"]
    route = world.route()
    assert route["blue"]["version"] == 1 and route["green"] is None, route
    assert world.answering_version() == "1"


def test_the_champion_is_fetched_verified_added_and_rolled_out(world, mlflow_server, registry):
    before = world.route()
    assert before["blue"]["version"] == 1 and world.answering_version() == "1"

    done = world.promote("--alias", "champion", env={"MLFLOW_TRACKING_URI": mlflow_server})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["phase"] == "promoted"
    assert (result["from_version"], result["to_version"]) == (1, 2)
    champion = registry["champion"]
    assert result["source"] == {
        "from": "mlflow",
        "server": mlflow_server,
        "name": "boosted",
        "version": champion["version"],
        "alias": "champion",
        "run_id": champion["run_id"],
        "artifacts": champion["source"],
        "repository_version": 2,
        "reused": False,
    }

    # In the repository: the logged files byte for byte, hashes verified,
    # the manifest renumbered and its provenance naming the MLflow version.
    assert world.listing() == ["1", "2"]
    added = world.models / "boosted" / "2"
    manifest = tomllib.loads((added / "model.toml").read_text())
    original = tomllib.loads((MODELS / "boosted" / "2" / "model.toml").read_text())
    assert manifest["version"] == 2
    assert manifest["files"] == original["files"]
    assert sorted(p.name for p in added.iterdir()) == sorted([*original["files"], "model.toml"])
    for name, digest in manifest["files"].items():
        assert sha256(added / name) == digest
        assert (added / name).read_bytes() == (MODELS / "boosted" / "2" / name).read_bytes()
    assert manifest["provenance"]["training_run"] == (
        f"mlflow:boosted/{champion['version']} run {champion['run_id']} "
        f"({original['provenance']['training_run']})"
    )
    # Live on the gateway.
    assert world.answering_version() == "2"
    route = world.route()
    live = route[route["live"]]
    assert live["version"] == 2, route


def test_the_same_files_under_other_versions_and_sources_are_reused(world, mlflow_server, registry):
    """A runs:/ source and a logged model (models:/m-…) with the same files
    resolve to the version the champion became: no duplicate is added."""
    first = world.promote("--alias", "champion", "--mlflow-uri", mlflow_server)
    assert first.returncode == 0, first.stderr
    for name in ("runs_uri", "logged_model"):
        entry = registry[name]
        done = world.promote("--version", str(entry["version"]), "--mlflow-uri", mlflow_server)
        assert done.returncode == 0, (name, done.stderr)
        source = json.loads(done.stdout)["source"]
        assert source["version"] == entry["version"]
        assert source["repository_version"] == 2
        assert source["reused"] is True
        assert "is already version 2 of the repository" in done.stderr
    assert world.listing() == ["1", "2"]
    assert world.answering_version() == "2"


def test_an_alias_that_does_not_exist_is_refused(world, mlflow_server, registry):
    done = world.promote("--alias", "nope", "--mlflow-uri", mlflow_server)
    assert_refused(
        world, done,
        f"MLflow at {mlflow_server} refused registered-models/alias for model \"boosted\" alias \"nope\"",
        "Registered model alias nope not found",
    )


def test_a_server_that_is_down_is_refused(world):
    (port,) = free_ports(1)  # free a moment ago: nothing listens there
    done = world.promote("--alias", "champion", "--mlflow-uri", f"http://127.0.0.1:{port}")
    assert_refused(
        world, done,
        f"cannot reach MLflow at http://127.0.0.1:{port} for model \"boosted\" alias \"champion\"",
        "Connection refused",
    )


def test_a_file_that_fails_its_sha256_is_refused(world, mlflow_server, registry):
    done = world.promote("--alias", "tampered", "--mlflow-uri", mlflow_server)
    assert_refused(
        world, done,
        f"model \"boosted\" alias \"tampered\" from MLflow at {mlflow_server} is refused",
        "sha256 mismatch for golden.json",
    )


def test_an_invalid_manifest_is_refused(world, mlflow_server, registry):
    done = world.promote("--version", str(registry["invalid"]["version"]), "--mlflow-uri", mlflow_server)
    assert_refused(
        world, done,
        f"model \"boosted\" version {registry['invalid']['version']} from MLflow at {mlflow_server} is refused",
        'platform "tensorflow" is not supported',
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((), "--from mlflow needs --alias NAME or --version N"),
        (("--alias", "champion"), "--from mlflow needs the tracking server"),
        (("--alias", "champion", "--mlflow-uri", "databricks"), '--mlflow-uri "databricks" is not a URL'),
    ],
)
def test_flags_that_do_not_fit_are_refused(world, args, needle):
    assert_refused(world, world.promote(*args), needle)
