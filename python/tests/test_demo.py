"""`make demo` (scripts/demo.py) end to end with the binaries under test.

The demo runs its whole story against two real gateways and the real
controller: v2 promoted under traffic with no failed request, drift shown
and its alert condition met, v3 rolled back by its smoke tests. It takes
about 40 s with debug binaries (three 5 s bakes, a 10 s drift window).
The controller is taken from SWITCHYARD_CONTROLLER_BIN, else next to the
gateway binary.
"""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import base_env

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "scripts" / "demo.py"
OFFSETS = (0, 1, 2, 3, 10, 11, 12, 13)  # the demo's two gateways' listeners


def bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base() -> int:
    """A port base whose eight demo ports are free, below the ephemeral range."""
    for _ in range(200):
        base = random.randrange(20000, 32000, 20)
        if all(bindable(base + k) for k in OFFSETS):
            return base
    pytest.fail("no free block of ports for the demo between 20000 and 32000")


@pytest.fixture
def demo_env(gateway_bin) -> dict[str, str]:
    controller = os.environ.get("SWITCHYARD_CONTROLLER_BIN") or str(Path(gateway_bin).with_name("controller"))
    if not os.access(controller, os.X_OK):
        pytest.skip(f"no controller binary at {controller}: build it (`cargo build -p controller`)")
    env = base_env()
    env.update(SWITCHYARD_GATEWAY_BIN=gateway_bin, SWITCHYARD_CONTROLLER_BIN=controller,
               SWITCHYARD_DEMO_PORT_BASE=str(free_base()))
    return env


def run_demo(env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DEMO)], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def test_the_demo_tells_the_whole_story(demo_env):
    t0 = time.monotonic()
    done = run_demo(demo_env, timeout=150)
    seconds = time.monotonic() - t0
    out = done.stdout
    assert done.returncode == 0, f"demo failed after {seconds:.0f} s:\n{out[-4000:]}\n{done.stderr[-4000:]}"

    # The same two students over each protocol: the same labels from v1.
    for protocol in (r"OIP v2, HTTP/JSON", r"OIP v2, gRPC", r"KServe V1"):
        assert re.search(rf"(?m)^  {protocol} +.+ +v1: graduate, dropout; P\(dropout\) 0\.\d{{4}}, 0\.\d{{4}}$", out), out
    assert len(set(re.findall(r"(?m)P\(dropout\) (.*)$", out))) == 1, out

    # Not one failed request in any phase, the promotes included.
    phases = dict(re.findall(r"(?m)^(serving v1|promoting v2|drifted traffic|promoting v3 \(rolled back\))"
                             r"\s+\d+\s+(\d+)\s", out))
    assert phases == {"serving v1": "0", "promoting v2": "0", "drifted traffic": "0",
                      "promoting v3 (rolled back)": "0"}, out
    assert re.search(r"(?m)^all\s+[1-9]\d*\s+0$", out), out

    # v2 live, v3 rolled back by its smoke tests, as the rollout log says.
    assert re.search(r"(?m)^  v2: promoted after [\d.]+ s: plan .*bake\+analysis 100% ", out), out
    assert re.search(r"(?m)^  v3: rolled_back after [\d.]+ m?s: .*smoke .*rollback", out), out
    assert "reason: smoke tests failed" in out

    # The drifted features named, by the summary and by the alert condition.
    for feature in ("admission_grade", "grade_1st_sem"):
        assert re.search(rf"(?m)^  {feature}\s+wasserstein\s+[\d.]+\s+\(threshold 0\.1\)\s+DRIFTED$", out), out
    alert = re.search(r"(?m)^alert SwitchyardFeatureDrift: condition met for (.*) \(", out)
    assert alert and {"admission_grade", "grade_1st_sem"} <= set(alert.group(1).split(", ")), out
    assert "gateways exited with [0, 0]" in out

    # Everything it started is gone: its ports are free again.
    base = int(demo_env["SWITCHYARD_DEMO_PORT_BASE"])
    assert all(bindable(base + k) for k in OFFSETS)


def test_a_taken_port_stops_the_demo_before_it_starts_anything(demo_env):
    base = int(demo_env["SWITCHYARD_DEMO_PORT_BASE"])
    taken = base + 13  # the second gateway's admin listener
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        t0 = time.monotonic()
        done = run_demo(demo_env, timeout=30)
        seconds = time.monotonic() - t0
    assert done.returncode == 2, done.stdout + done.stderr
    assert seconds < 15, f"took {seconds:.1f} s to refuse"
    assert f"port {taken} on 127.0.0.1 (gateway-2's admin listener) is in use by pid {os.getpid()}" in done.stderr
    assert "SWITCHYARD_DEMO_PORT_BASE" in done.stderr
    assert "ready" not in done.stdout  # no gateway was started
    assert all(bindable(base + k) for k in OFFSETS if base + k != taken)
