"""Fixtures that run the real gateway binary for the client-level tests.

`SWITCHYARD_GATEWAY_BIN` names the binary (`make py-test` sets it); without
it every test that needs a gateway is skipped, with that reason. Each gateway
gets free loopback ports, its own copy of the model repository (tests load,
unload and re-route versions) and its own state folder.

Fixtures:

- `gateway` (module scope): one running gateway per test module, ready. At
  teardown it gets SIGTERM and must exit 0 within 30 s.
- `launch` (function scope): a factory that starts gateways with any extra
  flags or environment, for tests about the process itself.
- `gateway_bin`: the binary.

When a test fails, the stderr of every gateway it was using is attached to
the report.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0

_ANSI = re.compile(r"\x1b\[[0-9;]*m")

# Every gateway started in this session, to attach stderr to failures.
_STARTED: list["GatewayProcess"] = []


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def free_ports(n: int) -> list[int]:
    """`n` distinct ports the kernel had free a moment ago on 127.0.0.1.

    All sockets stay bound until every port is picked, so the ports differ.
    """
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _ort_library() -> str | None:
    """ONNX Runtime's library from the venv, when ORT_DYLIB_PATH is unset."""
    pattern = os.path.join(
        sys.prefix, "lib", "python3*", "site-packages", "onnxruntime", "capi",
        "libonnxruntime.so.*",
    )
    found = sorted(glob.glob(pattern))
    return os.path.abspath(found[0]) if found else None


def base_env() -> dict[str, str]:
    """The environment gateways run in: ours, without any SWITCHYARD_*
    setting that would change their behaviour behind the tests' back."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    if not env.get("ORT_DYLIB_PATH"):
        lib = _ort_library()
        if lib:
            env["ORT_DYLIB_PATH"] = lib
    env["NO_COLOR"] = "1"
    env["SWITCHYARD_LOG"] = "info,ort=warn"
    return env


@dataclass
class GatewayProcess:
    """A gateway process and where it listens."""

    proc: subprocess.Popen
    args: list[str]
    http_port: int
    grpc_port: int
    metrics_port: int
    admin_port: int
    models: Path
    state_dir: Path
    stderr_path: Path
    admin_host: str = "127.0.0.1"
    started_for: str = ""
    returncode: int | None = field(default=None)

    # Addresses in the forms the clients want.
    @property
    def http_addr(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_addr(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.http_addr}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    @property
    def admin_url(self) -> str:
        # An admin listener on 0.0.0.0 is reached through loopback.
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        try:
            return strip_ansi(self.stderr_path.read_text(errors="replace"))
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Polls GET /v2/health/ready until it answers 200; fails the test
        with the gateway's stderr if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                pytest.fail(
                    f"gateway exited with {code} before it was ready\n"
                    f"command: {' '.join(self.args)}\n--- gateway stderr ---\n{self.stderr()}",
                    pytrace=False,
                )
            try:
                r = requests.get(f"{self.http_url}/v2/health/ready", timeout=2)
                if r.status_code == 200:
                    return
                last = f"{r.status_code} {r.text}"
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.05)
        self.kill()
        pytest.fail(
            f"gateway not ready within {timeout} s (last answer: {last})\n"
            f"--- gateway stderr ---\n{self.stderr()}",
            pytrace=False,
        )

    def terminate(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, then waits; returns the exit code, or None if it did not
        exit in time (it is then killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        return self.returncode

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM and asserts a clean exit (code 0) within `timeout`."""
        code = self.terminate(timeout)
        assert code is not None, (
            f"gateway did not exit within {timeout} s of SIGTERM\n"
            f"--- gateway stderr ---\n{self.stderr()}"
        )
        assert code == 0, (
            f"gateway exited with {code} after SIGTERM, expected 0\n"
            f"--- gateway stderr ---\n{self.stderr()}"
        )

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class Launcher:
    """Starts gateways on free ports with a fresh copy of the models."""

    def __init__(self, binary: str, tmp_root: Path, owner: str):
        self.binary = binary
        self.tmp_root = tmp_root
        self.owner = owner
        self.started: list[GatewayProcess] = []
        self._n = 0

    def _fresh_dir(self, stem: str) -> Path:
        self._n += 1
        path = self.tmp_root / f"{stem}-{self._n}"
        path.mkdir(parents=True)
        return path

    def copy_models(self) -> Path:
        dest = self._fresh_dir("repo") / "models"
        shutil.copytree(MODELS, dest, ignore=shutil.ignore_patterns("__pycache__"))
        return dest

    def state_dir(self) -> Path:
        return self._fresh_dir("state")

    def start(
        self,
        *extra: str,
        models: Path | None = None,
        state_dir: Path | None = None,
        env: dict[str, str] | None = None,
        admin_host: str = "127.0.0.1",
        ports: dict[str, int] | None = None,
        wait: bool = True,
    ) -> GatewayProcess:
        """Starts a gateway. `extra` flags come after the standard ones;
        `ports` overrides any of http/grpc/metrics/admin; `wait` waits for
        readiness (a gateway expected to fail is started with wait=False)."""
        models = models or self.copy_models()
        state_dir = state_dir or self.state_dir()
        picked = dict(zip(("http", "grpc", "metrics", "admin"), free_ports(4)))
        picked.update(ports or {})
        args = [
            self.binary,
            "--models", str(models),
            "--state-dir", str(state_dir),
            "--http-addr", f"127.0.0.1:{picked['http']}",
            "--grpc-addr", f"127.0.0.1:{picked['grpc']}",
            "--metrics-addr", f"127.0.0.1:{picked['metrics']}",
            "--admin-addr", f"{admin_host}:{picked['admin']}",
            *extra,
        ]
        full_env = base_env()
        full_env.update(env or {})
        stderr_path = self._fresh_dir("log") / "gateway.stderr"
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=full_env,
            )
        gw = GatewayProcess(
            proc=proc, args=args,
            http_port=picked["http"], grpc_port=picked["grpc"],
            metrics_port=picked["metrics"], admin_port=picked["admin"],
            models=models, state_dir=state_dir, stderr_path=stderr_path,
            admin_host=admin_host, started_for=self.owner,
        )
        self.started.append(gw)
        _STARTED.append(gw)
        if wait:
            gw.wait_ready()
        return gw

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 30):
        """Runs the binary to completion (for --help and refused configs)."""
        full_env = base_env()
        full_env.update(env or {})
        result = subprocess.run(
            [self.binary, *args], env=full_env, capture_output=True, text=True,
            timeout=timeout, stdin=subprocess.DEVNULL,
        )
        result.stdout = strip_ansi(result.stdout)
        result.stderr = strip_ansi(result.stderr)
        return result

    def cleanup(self) -> None:
        for gw in self.started:
            gw.kill()


@dataclass(frozen=True)
class Golden:
    """golden.json of one version: 32 input rows and the reference outputs."""

    model: str
    version: int
    input: np.ndarray  # FP32 [32, 20]
    label: np.ndarray  # INT64 [32]
    probabilities: np.ndarray  # FP32 [32, 2]


def load_golden(model: str, version: int) -> Golden:
    doc = json.loads((MODELS / model / str(version) / "golden.json").read_text())

    def tensor(t: dict, dtype) -> np.ndarray:
        return np.array(t["data"], dtype=dtype).reshape(t["shape"])

    return Golden(
        model=model,
        version=version,
        input=tensor(doc["inputs"]["input"], np.float32),
        label=tensor(doc["outputs"]["label"], np.int64),
        probabilities=tensor(doc["outputs"]["probabilities"], np.float32),
    )


def repository_versions() -> dict[str, list[int]]:
    """Every model of the repository and its versions, oldest first."""
    out = {}
    for manifest in sorted(MODELS.glob("*/*/model.toml")):
        out.setdefault(manifest.parent.parent.name, []).append(int(manifest.parent.name))
    return {m: sorted(v) for m, v in sorted(out.items())}


@pytest.fixture(scope="session")
def gateway_bin() -> str:
    binary = os.environ.get("SWITCHYARD_GATEWAY_BIN")
    if not binary:
        pytest.skip(
            "SWITCHYARD_GATEWAY_BIN is not set: these tests run the real gateway "
            "binary (run them with `make py-test`, which builds it and sets it)"
        )
    path = Path(binary)
    assert path.is_file() and os.access(path, os.X_OK), (
        f"SWITCHYARD_GATEWAY_BIN={binary} is not an executable file; build it with "
        "`cargo build -p gateway`"
    )
    return str(path)


@pytest.fixture
def launch(gateway_bin, tmp_path, request):
    """A factory for gateways owned by one test; leftovers are killed."""
    launcher = Launcher(gateway_bin, tmp_path, request.node.nodeid)
    yield launcher
    launcher.cleanup()


@pytest.fixture(scope="module")
def gateway(gateway_bin, tmp_path_factory, request):
    """One ready gateway for a test module; SIGTERM must end it with 0."""
    launcher = Launcher(
        gateway_bin, tmp_path_factory.mktemp("gateway"), request.module.__name__
    )
    gw = launcher.start()
    try:
        yield gw
        gw.stop()
    finally:
        launcher.cleanup()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed or getattr(report, "wasxfail", None):
        return
    # The test's own gateways, and its module's if the test uses it.
    module = getattr(item.module, "__name__", "")
    uses_module_gateway = "gateway" in getattr(item, "fixturenames", ())
    relevant = [
        gw for gw in _STARTED
        if gw.started_for == item.nodeid
        or (uses_module_gateway and gw.started_for == module and gw.alive())
    ]
    for gw in relevant:
        text = gw.stderr()
        tail = "\n".join(text.splitlines()[-200:])
        report.sections.append(
            (f"gateway pid {gw.pid} stderr ({' '.join(gw.args[1:])})", tail or "(empty)")
        )
