"""The drift alerts and the drift statistics, against real servers.

- The `switchyard-drift` group of k8s/base/prometheusrule.yaml passes
  `promtool check rules`, and `promtool test rules` runs
  k8s/tests/drift-alerts.test.yaml (every drift alert has a case there that
  fires).
- A real gateway serves the dropout example (version 2 and its profile) and
  a real Prometheus (Debian's package) scrapes it every second and evaluates
  the rules every second. A few rows, fewer than `min_rows`: the window is
  not ready, the not-ready alert fires and no drift alert does. Rows drawn
  like the training data: nothing drifts, no alert. Then rows with three
  features shifted by models/dropout_traffic.py: the feature-drift alert
  fires for exactly those three, its description quoting the statistics.
- The admin drift report is recomputed offline: its counts are the sent
  rows binned in numpy, and every statistic (the formulas documented in
  api/src/drift.rs, implemented here again) matches both the report and
  `/metrics` within 1e-6; the flagged features are the shifted ones.

Tools: `promtool` and `prometheus` from PATH (`make py-test` puts
.tools/prometheus/usr/bin there) or from .tools/; without them the tests
skip, saying so (under CI, set CI, they fail).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml

from conftest import REPO, free_ports

sys.path.insert(0, str(REPO / "models"))
import dropout_traffic  # noqa: E402  (the example's traffic generator)
import student_dropout  # noqa: E402

RULES = REPO / "k8s" / "base" / "prometheusrule.yaml"
UNIT_TESTS = REPO / "k8s" / "tests" / "drift-alerts.test.yaml"
RULES_FILE = "gateway-alerts.rules.yaml"  # the name the unit tests load
DRIFT_GROUP = "switchyard-drift"
TOOLS = REPO / ".tools" / "prometheus" / "usr" / "bin"

MODEL, VERSION = "dropout", 2
MIN_ROWS = 500
SHIFTED = ["admission_grade", "grade_1st_sem", "scholarship_holder"]
PSI_FLOOR = 1e-4
TOLERANCE = 1e-6
WAIT_S = 30.0  # the most any one condition below may take to come true


# --- tools -------------------------------------------------------------------


def tool(name: str) -> str:
    path = shutil.which(name) or (str(TOOLS / name) if (TOOLS / name).is_file() else None)
    if not path:
        message = f"{name} is neither on PATH nor in .tools/ (scripts/fetch-prometheus.sh fetches it)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def rule_spec() -> dict:
    """The PrometheusRule's spec: the rule groups, in Prometheus' format."""
    doc = yaml.safe_load(RULES.read_text())
    assert doc["kind"] == "PrometheusRule"
    return doc["spec"]


def drift_alert_names() -> list[str]:
    groups = {g["name"]: g for g in rule_spec()["groups"]}
    assert DRIFT_GROUP in groups, f"no group {DRIFT_GROUP} in {RULES}"
    return [r["alert"] for r in groups[DRIFT_GROUP]["rules"]]


# --- promtool ------------------------------------------------------------------


def test_drift_rules_pass_promtool_check(tmp_path):
    path = tmp_path / RULES_FILE
    path.write_text(yaml.safe_dump(rule_spec(), sort_keys=False))
    result = subprocess.run([tool("promtool"), "check", "rules", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert set(drift_alert_names()) == {
        "SwitchyardFeatureDrift", "SwitchyardDatasetDrift", "SwitchyardPredictionDrift",
        "SwitchyardDriftWindowNotReady",
    }


def test_drift_alerts_unit_tests(tmp_path):
    tests = yaml.safe_load(UNIT_TESTS.read_text())
    assert tests["rule_files"] == [RULES_FILE]
    fired = {t["alertname"] for group in tests["tests"] for t in group.get("alert_rule_test", [])
             if t.get("exp_alerts")}
    silent = {t["alertname"] for group in tests["tests"] for t in group.get("alert_rule_test", [])
              if not t.get("exp_alerts")}
    for name in drift_alert_names():
        assert name in fired, f"{name}: no unit test sees it fire"
        assert name in silent, f"{name}: no unit test sees it stay silent"
    (tmp_path / RULES_FILE).write_text(yaml.safe_dump(rule_spec(), sort_keys=False))
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    result = subprocess.run([tool("promtool"), "test", "rules", UNIT_TESTS.name],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


# --- a gateway, Prometheus, and traffic ----------------------------------------------


def dropout_repository(root: Path) -> Path:
    """A repository holding dropout/2 alone, with `min_rows` lowered so a
    few hundred rows make the window ready. The window stays 5 minutes,
    longer than the test, so it holds every row sent (the offline check
    counts them)."""
    models = root / "models"
    dest = models / MODEL / str(VERSION)
    shutil.copytree(REPO / "models" / MODEL / str(VERSION), dest)
    manifest = dest / "model.toml"
    text = manifest.read_text()
    text, n = re.subn(r"(?m)^min_rows = \d+$", f"min_rows = {MIN_ROWS}", text)
    assert n == 1, "dropout's model.toml has no [drift] min_rows line to change"
    manifest.write_text(text)
    return models


class Prometheus:
    """Debian's Prometheus scraping one gateway every second, with the
    PrometheusRule's rules evaluated every second."""

    def __init__(self, root: Path, metrics_port: int):
        spec = rule_spec()
        for group in spec["groups"]:
            if group["name"] == DRIFT_GROUP:
                for rule in group["rules"]:
                    # Shortened for the test only: the real `for:` (15m,
                    # 30m) would outlast it; 2 s is still two evaluations
                    # in a row.
                    rule["for"] = "2s"
        (root / "rules.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        (root / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(root / "rules.yaml")],
            "scrape_configs": [{
                "job_name": "switchyard-gateway-metrics",
                "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}],
            }],
        }))
        (port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{port}"
        self.log = root / "prometheus.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [tool("prometheus"), f"--config.file={root / 'prometheus.yml'}",
                 f"--storage.tsdb.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )

    def query(self, expr: str) -> list[dict]:
        r = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5)
        assert r.status_code == 200, r.text
        return r.json()["data"]["result"]

    def alerts(self) -> list[dict]:
        r = requests.get(f"{self.url}/api/v1/alerts", timeout=5)
        assert r.status_code == 200, r.text
        return r.json()["data"]["alerts"]

    def active(self, name: str, state: str | None = None) -> list[dict]:
        return [a for a in self.alerts() if a["labels"]["alertname"] == name
                and (state is None or a["state"] == state)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def wait_for(what: str, check, explain, timeout: float = WAIT_S):
    """Polls `check()` until it returns something truthy; fails with
    `explain()` (the state that was seen) when time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = check()
        except requests.RequestException:
            got = None
        if got:
            return got
        time.sleep(0.25)
    pytest.fail(f"{what}: not within {timeout} s\n{explain()}", pytrace=False)


def send(gw, x: np.ndarray, batch: int = 64) -> None:
    """Sends every row of `x` exactly once through the example's generator
    (as fast as it goes, two threads), and asserts every request succeeded."""
    assert len(x) % batch == 0, "whole requests only: the generator wraps around"
    traffic = dropout_traffic.Traffic(gw.http_url, MODEL, x, batch, rate=0, concurrency=2,
                                      timeout=10)
    summary = traffic.run(duration=60, limit=len(x) // batch)
    assert summary["succeeded"] == len(x) // batch, summary
    assert summary["versions"] == {str(VERSION): len(x) // batch}, summary


@pytest.fixture
def served(launch, tmp_path):
    """A gateway serving dropout 2 and a Prometheus scraping it, up."""
    gw = launch.start(models=dropout_repository(tmp_path))
    prom = Prometheus(tmp_path, gw.metrics_port)
    try:
        wait_for("Prometheus scraping the gateway",
                 lambda: prom.query('up{job="switchyard-gateway-metrics"} == 1'),
                 lambda: prom.log.read_text(errors="replace")[-3000:])
        yield gw, prom
    finally:
        prom.stop()


# --- the offline computation (api/src/drift.rs's formulas, again) -----------------------


def bin_counts(feature: dict, column: np.ndarray) -> dict:
    """A column binned as the profile says: bin i holds e_i <= v < e_(i+1),
    the last bin also v == e_k; below, above, unseen and missing apart."""
    v = column.astype(np.float64)
    missing = np.isnan(v)
    v = v[~missing]
    if feature["kind"] == "numeric":
        edges = np.array(feature["edges"])
        below, above = v < edges[0], v > edges[-1]
        inside = v[~below & ~above]
        index = np.minimum(np.searchsorted(edges, inside, side="right") - 1, len(edges) - 2)
        return {"bins": np.bincount(index, minlength=len(edges) - 1).tolist(),
                "below": int(below.sum()), "above": int(above.sum()), "unseen": 0,
                "missing": int(missing.sum()), "below_sum": float(v[below].sum()),
                "above_sum": float(v[above].sum())}
    values = np.array(feature["values"], dtype=np.float64)
    return {"bins": [int((v == value).sum()) for value in values], "below": 0, "above": 0,
            "unseen": int((~np.isin(v, values)).sum()), "missing": int(missing.sum()),
            "below_sum": 0.0, "above_sum": 0.0}


def offline_statistics(reference: dict, counts: dict) -> dict[str, float]:
    """PSI, Jensen-Shannon distance and, for numeric features, KS and the
    normalized Wasserstein distance, from a window's counts."""
    n = sum(counts["bins"]) + counts["below"] + counts["above"] + counts["unseen"] \
        + counts["missing"]
    numeric = reference["kind"] == "numeric"
    if numeric:
        r = np.array([0.0, *reference["shares"], 0.0, reference["missing_share"]])
        p = np.array([counts["below"], *counts["bins"], counts["above"], counts["missing"]]) / n
    else:
        r = np.array([*reference["shares"], 0.0, reference["missing_share"]])
        p = np.array([*counts["bins"], counts["unseen"], counts["missing"]]) / n
    rf, pf = np.maximum(r, PSI_FLOOR), np.maximum(p, PSI_FLOOR)
    out = {"psi": float(np.sum((pf - rf) * np.log(pf / rf)))}
    mid = (r + p) / 2

    def kl_to_mid(a):  # natural log; 0 · log 0 = 0
        return float(np.sum(a[a > 0] * np.log(a[a > 0] / mid[a > 0])))

    out["jensenshannon"] = math.sqrt(max(0.0, (kl_to_mid(r) + kl_to_mid(p)) / 2))
    if not numeric:
        return out
    # Both cumulative distributions at each edge, missing values left out.
    edges = np.array(reference["edges"])
    present = n - counts["missing"] - counts["unseen"]
    f_ref = np.concatenate([[0.0], np.cumsum(reference["shares"])]) / (
        1 - reference["missing_share"])
    f_cur = (counts["below"] + np.concatenate([[0.0], np.cumsum(counts["bins"])])) / present
    gap = f_ref - f_cur
    out["ks"] = float(max(np.abs(gap).max(), counts["above"] / present))
    # Mass spread evenly inside each bin: the gap is linear there, and the
    # area under |gap| is a trapezoid, or two triangles where it crosses 0.
    a, b = gap[:-1], gap[1:]
    crossing = a * b < 0
    total = np.abs(a) + np.abs(b)
    safe = np.where(total > 0, total, 1.0)
    area = np.where(crossing, (a * a + b * b) / (2 * safe), total / 2)
    w = float(np.sum(np.diff(edges) * area))
    # Values outside the range sit at the mean of those values.
    if counts["below"]:
        w += counts["below"] / present * (edges[0] - counts["below_sum"] / counts["below"])
    if counts["above"]:
        w += counts["above"] / present * (counts["above_sum"] / counts["above"] - edges[-1])
    std = reference.get("std") or 0.0
    out["wasserstein"] = w / (std if std > 0 else 1.0)
    return out


def exposition(text: str) -> dict[tuple[str, frozenset], float]:
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$", line)
        assert m, f"unparsable sample line: {line!r}"
        labels = frozenset(re.findall(r'([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def version_report(gw) -> dict:
    r = requests.get(f"{gw.admin_url}/admin/models/{MODEL}/drift", timeout=10)
    assert r.status_code == 200, r.text
    (report,) = [v for v in r.json()["versions"] if v["version"] == VERSION]
    return report


# --- the test -------------------------------------------------------------------------------


def test_drift_alert_fires_for_exactly_the_shifted_features(served):
    gw, prom = served
    feature_names = student_dropout.NAMES
    sent = []

    def state() -> str:
        report = version_report(gw)
        summary = {f["name"]: (f.get("drifted"), f.get("stats")) for f in report["features"]}
        return (f"alerts: {json.dumps(prom.alerts(), indent=1)}\n"
                f"window: rows {report['rows']}, ready {report['ready']}, "
                f"reason {report.get('reason')}\nfeatures: {json.dumps(summary, indent=1)}")

    def drift_alerts(state_: str | None = None) -> dict[str, set]:
        return {name: {a["labels"].get("feature", "") for a in prom.active(name, state_)}
                for name in ("SwitchyardFeatureDrift", "SwitchyardDatasetDrift",
                             "SwitchyardPredictionDrift")}

    no_drift_alert = {"SwitchyardFeatureDrift": set(), "SwitchyardDatasetDrift": set(),
                      "SwitchyardPredictionDrift": set()}

    # 1. A trickle of requests, fewer rows than min_rows: statistics are
    # withheld, the not-ready alert fires, no drift alert can.
    trickle, _ = dropout_traffic.draw_rows(MIN_ROWS // 2, seed=11)  # 4 rows a poll, at most
    k = 0

    def trickle_until_not_ready_fires():
        nonlocal k
        if k + 4 <= len(trickle):
            send(gw, trickle[k:k + 4], batch=4)
            sent.append(trickle[k:k + 4])
            k += 4
        return prom.active("SwitchyardDriftWindowNotReady", "firing")

    (not_ready,) = wait_for("the not-ready alert firing while requests flow",
                            trickle_until_not_ready_fires, state)
    assert not_ready["labels"]["model"] == MODEL and not_ready["labels"]["version"] == str(VERSION)
    assert sum(len(x) for x in sent) < MIN_ROWS
    assert not version_report(gw)["ready"]
    assert drift_alerts() == no_drift_alert

    # 2. Rows like the training data: ready, every verdict 0, no alert.
    reference_like, _ = dropout_traffic.draw_rows(64 * 47, seed=12)
    send(gw, reference_like)
    sent.append(reference_like)
    wait_for("Prometheus seeing a ready window with 12 verdicts, none drifted",
             lambda: prom.query(f'count(switchyard_drift_feature_drifted{{model="{MODEL}"}} == 0) == 12'
                                f' and on() switchyard_drift_ready{{model="{MODEL}"}} == 1'),
             state)
    wait_for("the not-ready alert resolving", lambda: not prom.active("SwitchyardDriftWindowNotReady"),
             state)
    time.sleep(4)  # four evaluations: twice the shortened `for:`
    assert drift_alerts() == no_drift_alert, state()

    # 3. Three features shifted (one std up, or flipped): those three fire.
    drifted, _ = dropout_traffic.draw_rows(64 * 188, seed=13, drift=SHIFTED)
    send(gw, drifted)
    sent.append(drifted)
    wait_for(f"the feature-drift alert firing for {SHIFTED}",
             lambda: drift_alerts("firing")["SwitchyardFeatureDrift"] == set(SHIFTED), state)
    time.sleep(3)  # nothing else turns up later
    alerts = drift_alerts()
    assert alerts["SwitchyardFeatureDrift"] == set(SHIFTED), state()
    assert alerts["SwitchyardDatasetDrift"] == set(), "3 of 12 features is under drift_share 0.5"

    # The description quotes the statistics Prometheus scraped.
    metrics = exposition(requests.get(f"{gw.metrics_url}/metrics", timeout=10).text)
    for alert in prom.active("SwitchyardFeatureDrift", "firing"):
        feature = alert["labels"]["feature"]
        quoted = re.findall(r"(jensenshannon|ks|psi|wasserstein) ([0-9.]+);",
                            alert["annotations"]["description"])
        kind = student_dropout.FEATURES[student_dropout.COL[feature]].kind
        want = ["jensenshannon", "ks", "psi", "wasserstein"] if kind == "numeric" \
            else ["jensenshannon", "psi"]
        assert [s for s, _ in quoted] == want, alert["annotations"]["description"]
        for stat, value in quoted:
            scraped = metrics[("switchyard_drift_feature_statistic", frozenset({
                ("model", MODEL), ("version", str(VERSION)), ("feature", feature), ("stat", stat)}))]
            assert float(value) == pytest.approx(scraped, abs=5e-4), (feature, stat)

    # 4. Offline: the window holds exactly the rows sent, binned as the
    # profile says, and every statistic is the numpy computation from those
    # counts, in the report and in /metrics.
    rows = np.concatenate(sent)
    report = version_report(gw)
    assert report["rows"] == len(rows) and report["ready"]
    assert [f["name"] for f in report["features"]] == feature_names
    metrics = exposition(requests.get(f"{gw.metrics_url}/metrics", timeout=10).text)
    flagged = []
    for i, f in enumerate(report["features"]):
        want_counts = bin_counts(f["reference"], rows[:, i])
        got_counts = {key: f["counts"].get(key, 0) for key in want_counts}
        assert {k: v for k, v in got_counts.items() if not k.endswith("_sum")} == \
            {k: v for k, v in want_counts.items() if not k.endswith("_sum")}, f["name"]
        for key in ("below_sum", "above_sum"):
            assert got_counts[key] == pytest.approx(want_counts[key], rel=1e-12), (f["name"], key)
        offline = offline_statistics(f["reference"], f["counts"])
        assert set(offline) == set(f["stats"]), f["name"]
        for stat, value in offline.items():
            assert abs(f["stats"][stat] - value) <= TOLERANCE, (f["name"], stat, f["stats"][stat], value)
            scraped = metrics[("switchyard_drift_feature_statistic", frozenset({
                ("model", MODEL), ("version", str(VERSION)), ("feature", f["name"]), ("stat", stat)}))]
            assert abs(scraped - value) <= TOLERANCE, (f["name"], stat, scraped, value)
        decided = offline[f["stat"]] >= f["threshold"]
        assert f["drifted"] == decided, f["name"]
        assert metrics[("switchyard_drift_feature_drifted", frozenset({
            ("model", MODEL), ("version", str(VERSION)), ("feature", f["name"])}))] == float(decided)
        if decided:
            flagged.append(f["name"])
    assert sorted(flagged) == sorted(SHIFTED)
    assert report["drifted_share"] == pytest.approx(len(SHIFTED) / len(feature_names), abs=1e-12)
    assert report["dataset_drifted"] is False

    # The predictions: the labels ONNX Runtime gives those rows, counted.
    import onnxruntime as ort

    session = ort.InferenceSession(str(gw.models / MODEL / str(VERSION) / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    (labels,) = session.run(["label"], {"input": rows})
    prediction = report["prediction"]
    assert prediction["counts"]["bins"] == np.bincount(labels, minlength=2).tolist()
    offline = offline_statistics(prediction["reference"], prediction["counts"])
    for stat, value in offline.items():
        assert abs(prediction["stats"][stat] - value) <= TOLERANCE, (stat, value)
        scraped = metrics[("switchyard_drift_prediction_statistic", frozenset({
            ("model", MODEL), ("version", str(VERSION)), ("stat", stat)}))]
        assert abs(scraped - value) <= TOLERANCE, (stat, scraped, value)
