"""The Kubernetes manifests under k8s/, checked offline.

No cluster exists here, so each kustomization is rendered with
`kubectl kustomize` (no API server needed) and the objects it produces are
checked for what running switchyard on a cluster depends on: the probes, the
listeners and the admin token, resources and security settings, the
Services' selectors against the Deployments' pods, the controller's RBAC,
and each overlay's own additions. The PrometheusRule's rules go through
`promtool check rules` and the unit tests of k8s/tests/.

Tools: `kubectl` from PATH; `promtool` from PATH (`make py-test` puts
.tools/prometheus/usr/bin there) or from .tools/. A missing tool skips its
tests with the reason, except under CI (CI set), where it fails them.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
OVERLAYS = ("local", "production", "example")
NAMESPACE = "switchyard"

GATEWAY = "switchyard-gateway"
COLOURS = ("blue", "green")
COLOUR_LABEL = "switchyard.io/colour"
ADMIN_SECRET = "switchyard-admin-token"
CONTROLLER = "switchyard-controller"
MONITORING_GROUP = "monitoring.coreos.com"

# The listeners' variables and the container port each must match.
LISTENERS = {
    "SWITCHYARD_HTTP_ADDR": "http",
    "SWITCHYARD_GRPC_ADDR": "grpc",
    "SWITCHYARD_METRICS_ADDR": "metrics",
    "SWITCHYARD_ADMIN_ADDR": "admin",
}
# The gateway's defaults when a variable is unset (docs/gateway.md).
LISTENER_DEFAULTS = {
    "SWITCHYARD_HTTP_ADDR": "127.0.0.1:8000",
    "SWITCHYARD_GRPC_ADDR": "127.0.0.1:8001",
    "SWITCHYARD_METRICS_ADDR": "127.0.0.1:8002",
    "SWITCHYARD_ADMIN_ADDR": "127.0.0.1:8003",
}

# Every object each overlay renders, as (kind, name).
COMMON_OBJECTS = {
    ("Deployment", "switchyard-gateway-blue"),
    ("Deployment", "switchyard-gateway-green"),
    ("Service", "switchyard-gateway"),
    ("Service", "switchyard-gateway-blue"),
    ("Service", "switchyard-gateway-green"),
    ("Service", "switchyard-gateway-metrics"),
    ("NetworkPolicy", "switchyard-gateway"),
    ("PersistentVolumeClaim", "switchyard-models"),
    ("ServiceAccount", CONTROLLER),
    ("Role", CONTROLLER),
    ("RoleBinding", CONTROLLER),
}
EXPECTED_OBJECTS = {
    "local": COMMON_OBJECTS,
    "example": COMMON_OBJECTS,
    "production": COMMON_OBJECTS | {
        ("PodDisruptionBudget", "switchyard-gateway-blue"),
        ("PodDisruptionBudget", "switchyard-gateway-green"),
        ("ServiceMonitor", GATEWAY),
        ("PrometheusRule", GATEWAY),
    },
}
EXPECTED_BLUE_REPLICAS = {"local": 1, "production": 3, "example": 1}
CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume",
    "StorageClass", "CustomResourceDefinition", "PriorityClass",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
}


# --- tools and rendering -------------------------------------------------


def _missing(what: str) -> None:
    message = f"{what} (needed to check the Kubernetes manifests offline)"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def kubectl() -> str:
    path = shutil.which("kubectl")
    if not path:
        _missing("kubectl is not on PATH")
    return path


def promtool() -> str:
    path = shutil.which("promtool")
    if not path:
        local = REPO / ".tools" / "prometheus" / "usr" / "bin" / "promtool"
        if local.is_file():
            path = str(local)
    if not path:
        _missing("promtool is neither on PATH nor in .tools/ (`make tools` fetches it)")
    return path


@functools.cache
def _render(target: str) -> tuple[int, str, str]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(K8S / target)],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    return result.returncode, result.stdout, result.stderr


def render(target: str) -> list[dict]:
    """The objects `kubectl kustomize k8s/<target>` renders; the rendering
    must succeed without a word on stderr (errors or deprecation warnings)."""
    code, out, err = _render(target)
    assert code == 0, f"kubectl kustomize k8s/{target} exited {code}:\n{err}"
    assert err == "", f"kubectl kustomize k8s/{target} printed on stderr:\n{err}"
    docs = [d for d in yaml.safe_load_all(out) if d is not None]
    assert docs, f"kubectl kustomize k8s/{target} rendered nothing"
    return docs


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def gateway_deployments(docs: list[dict]) -> dict[str, dict]:
    return {c: one(docs, "Deployment", f"{GATEWAY}-{c}") for c in COLOURS}


def containers(deployment: dict) -> list[dict]:
    spec = deployment["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def gateway_container(deployment: dict) -> dict:
    found = [c for c in deployment["spec"]["template"]["spec"]["containers"]
             if c["name"] == "gateway"]
    assert len(found) == 1, f"{deployment['metadata']['name']}: no container `gateway`"
    return found[0]


def env_of(container: dict) -> dict[str, dict]:
    names = [e["name"] for e in container.get("env", [])]
    assert len(names) == len(set(names)), f"{container['name']}: duplicate env {names}"
    return {e["name"]: e for e in container.get("env", [])}


def container_port(container: dict, port) -> int:
    """A probe's or Service's port (number or name) as a container port."""
    if isinstance(port, int):
        return port
    found = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert found, f"container {container['name']} has no port named {port!r}"
    return found[0]


def selects(selector: dict, labels: dict) -> bool:
    """Whether an equality selector (a Service's, or a matchLabels) picks
    an object with `labels`."""
    assert selector, "an empty selector would pick everything"
    return all(labels.get(k) == v for k, v in selector.items())


def label_selector_matches(selector: dict, labels: dict) -> bool:
    """A LabelSelector (matchLabels and matchExpressions)."""
    match_labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    assert match_labels or expressions, "an empty selector would pick everything"
    ok = all(labels.get(k) == v for k, v in match_labels.items())
    for expr in expressions:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In":
            ok = ok and labels.get(key) in values
        elif op == "NotIn":
            ok = ok and labels.get(key) not in values
        elif op == "Exists":
            ok = ok and key in labels
        elif op == "DoesNotExist":
            ok = ok and key not in labels
        else:
            raise AssertionError(f"unknown operator {op}")
    return ok


def pod_labels(deployment: dict) -> dict:
    return deployment["spec"]["template"]["metadata"]["labels"]


def duration_seconds(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", text)
    assert m, f"unparsable duration {text!r}"
    value, unit = float(m.group(1)), m.group(2)
    return value * {"ms": 0.001, "s": 1, "m": 60}[unit]


def documented_gateway_env() -> set[str]:
    text = (REPO / "docs" / "gateway.md").read_text()
    return set(re.findall(r"`(SWITCHYARD_[A-Z_]+|ORT_DYLIB_PATH)`", text))


def documented_metrics() -> set[str]:
    text = (REPO / "docs" / "gateway.md").read_text()
    return set(re.findall(r"^\| `(switchyard_[a-z_]+)` \|", text, re.MULTILINE))


@pytest.fixture(params=OVERLAYS)
def overlay(request) -> str:
    return request.param


@pytest.fixture
def docs(overlay) -> list[dict]:
    return render(f"overlays/{overlay}")


# --- rendering -------------------------------------------------------------


@pytest.mark.parametrize("target", ["base", *(f"overlays/{o}" for o in OVERLAYS)])
def test_renders_cleanly(target):
    objects = render(target)
    for d in objects:
        assert d.get("apiVersion") and d.get("kind") and d["metadata"].get("name"), d


def test_overlay_renders_exactly_its_objects(overlay, docs):
    got = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(got) == len(set(got)), f"duplicate objects: {sorted(got)}"
    assert set(got) == EXPECTED_OBJECTS[overlay]


def test_everything_is_namespaced_in_the_overlays_namespace(docs):
    for d in docs:
        where = f"{d['kind']}/{d['metadata']['name']}"
        assert d["kind"] not in CLUSTER_SCOPED, f"{where} is cluster-scoped"
        assert d["metadata"].get("namespace") == NAMESPACE, where


def test_base_names_no_namespace():
    for d in render("base"):
        assert "namespace" not in d["metadata"], \
            f"{d['kind']}/{d['metadata']['name']}: the base must stay namespace-agnostic"


def test_every_object_is_part_of_switchyard(docs):
    for d in docs:
        labels = d["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "switchyard", \
            f"{d['kind']}/{d['metadata']['name']}"


# --- the gateway Deployments -------------------------------------------------


def test_probes_use_the_v2_health_endpoints_on_8000(docs):
    for name, dep in gateway_deployments(docs).items():
        c = gateway_container(dep)
        want = {
            "readinessProbe": "/v2/health/ready",
            "livenessProbe": "/v2/health/live",
            "startupProbe": "/v2/health/live",
        }
        for probe, path in want.items():
            assert probe in c, f"{name}: no {probe}"
            get = c[probe].get("httpGet")
            assert get, f"{name}: {probe} is not an HTTP GET"
            assert get["path"] == path, f"{name}: {probe} asks {get['path']}"
            assert container_port(c, get["port"]) == 8000, f"{name}: {probe} port"
            assert get.get("scheme", "HTTP") == "HTTP"


def test_every_container_requests_resources(docs):
    for dep in of_kind(docs, "Deployment"):
        for c in containers(dep):
            where = f"{dep['metadata']['name']}/{c['name']}"
            requests = c.get("resources", {}).get("requests", {})
            assert requests.get("cpu") and requests.get("memory"), f"{where}: {requests}"
            assert c["resources"].get("limits", {}).get("memory"), f"{where}: no memory limit"


def test_gateway_resources_are_the_documented_ones(docs):
    for dep in gateway_deployments(docs).values():
        res = gateway_container(dep)["resources"]
        assert res["requests"] == {"cpu": "500m", "memory": "256Mi"}
        assert res["limits"] == {"memory": "1Gi"}


def test_listeners_match_the_container_ports(docs):
    for name, dep in gateway_deployments(docs).items():
        c = gateway_container(dep)
        env = env_of(c)
        for var, port_name in LISTENERS.items():
            assert var in env and "value" in env[var], f"{name}: {var} unset"
            host, _, port = env[var]["value"].rpartition(":")
            assert host == "0.0.0.0", \
                f"{name}: {var}={env[var]['value']} is not reachable from the pod network"
            assert int(port) == container_port(c, port_name), f"{name}: {var} vs port {port_name}"
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002, "admin": 8003}


def _is_loopback(addr: str) -> bool:
    host = addr.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def test_no_admin_listener_off_loopback_without_the_token_secret(docs):
    for dep in of_kind(docs, "Deployment"):
        for c in containers(dep):
            env = env_of(c)
            where = f"{dep['metadata']['name']}/{c['name']}"
            admin = env.get("SWITCHYARD_ADMIN_ADDR", {}).get(
                "value", LISTENER_DEFAULTS["SWITCHYARD_ADMIN_ADDR"])
            token = env.get("SWITCHYARD_ADMIN_TOKEN")
            if token is not None:
                # A token never sits in a manifest.
                assert "value" not in token, f"{where}: the admin token is written in the manifest"
            if _is_loopback(admin):
                continue
            assert token is not None, f"{where}: admin on {admin} without SWITCHYARD_ADMIN_TOKEN"
            ref = token.get("valueFrom", {}).get("secretKeyRef")
            assert ref == {"name": ADMIN_SECRET, "key": "token"}, f"{where}: {token}"


def test_env_names_are_ones_the_gateway_knows(docs):
    known = documented_gateway_env()
    assert "SWITCHYARD_MODELS" in known, "docs/gateway.md's configuration table moved"
    for dep in gateway_deployments(docs).values():
        names = set(env_of(gateway_container(dep)))
        assert names <= known, f"not in docs/gateway.md: {sorted(names - known)}"


def test_models_and_state_are_mounted_where_the_env_says(docs):
    claims = {d["metadata"]["name"] for d in of_kind(docs, "PersistentVolumeClaim")}
    for name, dep in gateway_deployments(docs).items():
        c = gateway_container(dep)
        env = env_of(c)
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}

        models = mounts.get(env["SWITCHYARD_MODELS"]["value"])
        assert models, f"{name}: nothing mounted at SWITCHYARD_MODELS"
        # docs/kubernetes.md patches .../containers/0/volumeMounts/0/subPath.
        assert dep["spec"]["template"]["spec"]["containers"][0] is c, name
        assert c["volumeMounts"][0] is models, f"{name}: the models mount is not the first"
        assert models.get("readOnly") is True, f"{name}: the models mount is writable"
        pvc = volumes[models["name"]].get("persistentVolumeClaim")
        assert pvc and pvc["claimName"] == "switchyard-models" and pvc.get("readOnly") is True
        assert pvc["claimName"] in claims, f"{name}: claim {pvc['claimName']} not rendered"

        state = mounts.get(env["SWITCHYARD_STATE_DIR"]["value"])
        assert state and not state.get("readOnly"), f"{name}: the state folder is not writable"
        assert "emptyDir" in volumes[state["name"]]


def test_gateway_runs_locked_down(docs):
    for name, dep in gateway_deployments(docs).items():
        pod = dep["spec"]["template"]["spec"]
        assert pod.get("automountServiceAccountToken") is False, name
        psc = pod.get("securityContext", {})
        assert psc.get("runAsNonRoot") is True, name
        assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        for c in containers(dep):
            sc = c.get("securityContext", {})
            where = f"{name}/{c['name']}"
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where
            assert not sc.get("privileged"), where


def test_grace_period_covers_the_drain(docs):
    for name, dep in gateway_deployments(docs).items():
        pod = dep["spec"]["template"]["spec"]
        c = gateway_container(dep)
        drain = duration_seconds(env_of(c).get("SWITCHYARD_DRAIN_TIMEOUT", {}).get("value", "30s"))
        pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        grace = pod["terminationGracePeriodSeconds"]
        assert grace == 45, name
        assert grace > pre_stop + drain, f"{name}: {grace} s <= {pre_stop} s + {drain} s"


def test_colours_differ_only_in_colour_and_replicas(overlay, docs):
    deps = gateway_deployments(docs)
    assert deps["green"]["spec"]["replicas"] == 0, "green (the standby) starts at 0"
    assert deps["blue"]["spec"]["replicas"] == EXPECTED_BLUE_REPLICAS[overlay]

    def swapped(dep: dict) -> str:
        text = yaml.safe_dump(dict(dep, spec=dict(dep["spec"], replicas=None)), sort_keys=True)
        return text.replace("blue", "COLOUR").replace("green", "COLOUR")

    assert swapped(deps["blue"]) == swapped(deps["green"])
    for colour, dep in deps.items():
        assert dep["metadata"]["labels"][COLOUR_LABEL] == colour
        assert pod_labels(dep)[COLOUR_LABEL] == colour


def test_deployment_selectors_pick_their_own_pods_only(docs):
    deps = gateway_deployments(docs)
    for colour, dep in deps.items():
        sel = dep["spec"]["selector"]
        assert label_selector_matches(sel, pod_labels(dep)), colour
        for other, other_dep in deps.items():
            if other != colour:
                assert not label_selector_matches(sel, pod_labels(other_dep)), \
                    f"{colour}'s selector also picks {other}'s pods"


# --- Services ----------------------------------------------------------------


def _picked(service: dict, deps: dict[str, dict]) -> set[str]:
    return {c for c, d in deps.items() if selects(service["spec"]["selector"], pod_labels(d))}


def test_live_service_selects_exactly_one_colour(docs):
    deps = gateway_deployments(docs)
    live = one(docs, "Service", GATEWAY)
    assert live["spec"]["selector"].get(COLOUR_LABEL) in COLOURS
    assert _picked(live, deps) == {"blue"}, "the live Service starts on blue, and blue only"
    # Switching the one label moves it to green, and to green only.
    switched = dict(live, spec=dict(live["spec"], selector=dict(
        live["spec"]["selector"], **{COLOUR_LABEL: "green"})))
    assert _picked(switched, deps) == {"green"}


def test_colour_services_select_their_colour(docs):
    deps = gateway_deployments(docs)
    for colour in COLOURS:
        svc = one(docs, "Service", f"{GATEWAY}-{colour}")
        assert _picked(svc, deps) == {colour}
    metrics = one(docs, "Service", f"{GATEWAY}-metrics")
    assert _picked(metrics, deps) == set(COLOURS)
    assert metrics["spec"].get("publishNotReadyAddresses") is True, \
        "not-ready pods must still be scraped (SwitchyardGatewayNotReady)"


def test_service_ports_reach_container_ports(docs):
    deps = gateway_deployments(docs)
    for svc in of_kind(docs, "Service"):
        name = svc["metadata"]["name"]
        picked = _picked(svc, deps)
        assert picked, f"Service {name} selects no gateway pods"
        for colour in picked:
            c = gateway_container(deps[colour])
            for port in svc["spec"]["ports"]:
                target = container_port(c, port.get("targetPort", port["port"]))
                assert target == port["port"], f"{name}: {port}"
        exposed = {p["name"] for p in svc["spec"]["ports"]}
        assert "admin" not in exposed, f"Service {name} exposes the admin API"
        if name == f"{GATEWAY}-metrics":
            assert exposed == {"metrics"}
        else:
            assert exposed == {"http", "grpc"}, name


def test_admin_port_only_from_the_controller(docs):
    policy = one(docs, "NetworkPolicy", GATEWAY)
    deps = gateway_deployments(docs)
    assert all(label_selector_matches(policy["spec"]["podSelector"], pod_labels(d))
               for d in deps.values())
    for rule in policy["spec"]["ingress"]:
        ports = {p["port"] for p in rule["ports"]}
        if "admin" in ports or 8003 in ports:
            sources = rule.get("from")
            assert sources, "the admin port is open to every pod"
            assert sources == [{"podSelector": {"matchLabels": {
                "app.kubernetes.io/name": CONTROLLER}}}]


# --- controller RBAC --------------------------------------------------------


def _rules(role: dict) -> list[dict]:
    return role["rules"]


def _grants(role: dict, group: str, resource: str, verb: str) -> bool:
    return any(group in r.get("apiGroups", []) and resource in r.get("resources", [])
               and verb in r.get("verbs", []) for r in _rules(role))


def test_controller_role_grants_what_a_rollout_needs(docs):
    role = one(docs, "Role", CONTROLLER)
    for group, resource, verb in [
        ("", "services", "patch"),
        ("apps", "deployments", "patch"),
        ("apps", "deployments", "watch"),
        ("apps", "deployments/scale", "patch"),
        ("", "pods", "list"),
        ("discovery.k8s.io", "endpointslices", "watch"),
        ("", "secrets", "get"),
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "update"),
    ]:
        assert _grants(role, group, resource, verb), f"no {verb} on {group or 'core'}/{resource}"


def test_controller_role_grants_nothing_more(docs):
    role = one(docs, "Role", CONTROLLER)
    for r in _rules(role):
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in r.get(field, []), f"wildcard in {field}: {r}"
        assert not r.get("nonResourceURLs"), r
        assert not {"escalate", "bind", "impersonate", "delete", "deletecollection"} \
            & set(r["verbs"]), r
        if "secrets" in r["resources"]:
            assert r.get("resourceNames") == [ADMIN_SECRET], f"secrets beyond the token: {r}"
            assert r["verbs"] == ["get"], r
    assert not of_kind(docs, "ClusterRole") and not of_kind(docs, "ClusterRoleBinding")


def test_controller_binding(docs):
    binding = one(docs, "RoleBinding", CONTROLLER)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": CONTROLLER}
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": CONTROLLER, "namespace": NAMESPACE}]
    one(docs, "ServiceAccount", CONTROLLER)


# --- overlays ---------------------------------------------------------------


def test_local_has_no_prometheus_operator_objects():
    for d in render("overlays/local"):
        assert not d["apiVersion"].startswith(MONITORING_GROUP + "/"), d["kind"]


def test_local_image_and_volume():
    docs = render("overlays/local")
    for dep in gateway_deployments(docs).values():
        c = gateway_container(dep)
        assert c["image"] == "switchyard/gateway:dev"
        assert c["imagePullPolicy"] == "IfNotPresent", "kind/minikube use a loaded image"
    pvc = one(docs, "PersistentVolumeClaim", "switchyard-models")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_example_pins_dropout_v1_on_both_colours():
    deployments = gateway_deployments(render("overlays/example"))
    assert len(deployments) == 2
    for name, dep in deployments.items():
        env = env_of(gateway_container(dep))
        assert env["SWITCHYARD_PINNED_VERSIONS"].get("value") == "dropout=1", name
    # Otherwise the local overlay, unchanged.
    local = {n: env_of(gateway_container(d)) for n, d in gateway_deployments(render("overlays/local")).items()}
    for name, dep in deployments.items():
        env = dict(env_of(gateway_container(dep)))
        del env["SWITCHYARD_PINNED_VERSIONS"]
        assert env == local[name], name


def test_production_pins_the_image():
    for dep in gateway_deployments(render("overlays/production")).values():
        image = gateway_container(dep)["image"]
        name, _, tag = image.rpartition(":")
        assert "@sha256:" in image or (name and "/" not in tag and tag not in ("", "latest")), \
            f"unpinned image {image}"


def test_production_disruption_budgets():
    docs = render("overlays/production")
    deps = gateway_deployments(docs)
    for colour in COLOURS:
        pdb = one(docs, "PodDisruptionBudget", f"{GATEWAY}-{colour}")
        assert pdb["apiVersion"] == "policy/v1"
        # maxUnavailable, so a colour at 0 replicas blocks nothing.
        assert pdb["spec"].get("maxUnavailable") == 1 and "minAvailable" not in pdb["spec"]
        picked = {c for c, d in deps.items()
                  if label_selector_matches(pdb["spec"]["selector"], pod_labels(d))}
        assert picked == {colour}


def test_production_spreads_the_pods():
    for name, dep in gateway_deployments(render("overlays/production")).items():
        pod = dep["spec"]["template"]["spec"]
        keys = {t["topologyKey"] for t in pod.get("topologySpreadConstraints", [])}
        assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}, name
        for t in pod["topologySpreadConstraints"]:
            assert label_selector_matches(t["labelSelector"], pod_labels(dep)), name
        anti = pod["affinity"]["podAntiAffinity"]
        terms = anti["preferredDuringSchedulingIgnoredDuringExecution"]
        assert any(label_selector_matches(t["podAffinityTerm"]["labelSelector"], pod_labels(dep))
                   for t in terms), name


def test_production_service_monitor_scrapes_the_metrics_service():
    docs = render("overlays/production")
    sm = one(docs, "ServiceMonitor", GATEWAY)
    assert sm["apiVersion"] == f"{MONITORING_GROUP}/v1"
    services = [s for s in of_kind(docs, "Service")
                if label_selector_matches(sm["spec"]["selector"], s["metadata"].get("labels", {}))]
    assert [s["metadata"]["name"] for s in services] == [f"{GATEWAY}-metrics"], \
        "the ServiceMonitor must pick exactly one Service, or pods are scraped twice"
    port_names = {p["name"] for p in services[0]["spec"]["ports"]}
    for endpoint in sm["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"
    assert COLOUR_LABEL in sm["spec"].get("podTargetLabels", [])


# --- alert rules ---------------------------------------------------------------


def _write_rules(dest: Path) -> Path:
    rule = one(render("overlays/production"), "PrometheusRule", GATEWAY)
    assert rule["apiVersion"] == f"{MONITORING_GROUP}/v1"
    path = dest / "gateway-alerts.rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    return path


def _alerts() -> list[dict]:
    rule = one(render("overlays/production"), "PrometheusRule", GATEWAY)
    return [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]


def test_prometheus_rules_pass_promtool_check(tmp_path):
    path = _write_rules(tmp_path)
    result = subprocess.run([promtool(), "check", "rules", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_prometheus_rules_use_real_metric_names():
    known = documented_metrics()
    assert "switchyard_requests_total" in known, "docs/gateway.md's metrics table moved"
    for alert in _alerts():
        for name in re.findall(r"\b(switchyard_[a-z_]+)", alert["expr"]):
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            assert name in known or base in known, f"{alert['alert']}: unknown metric {name}"


def test_every_alert_has_severity_and_text():
    names = [a["alert"] for a in _alerts()]
    assert len(names) == len(set(names)), names
    for alert in _alerts():
        assert alert["labels"]["severity"] in ("warning", "critical"), alert["alert"]
        assert alert["annotations"].get("summary") and alert["annotations"].get("description")


def test_prometheus_rules_unit_tests(tmp_path):
    _write_rules(tmp_path)
    sources = sorted((K8S / "tests").glob("*.test.yaml"))
    tested = set()
    for source in sources:
        tests = yaml.safe_load(source.read_text())
        assert tests["rule_files"] == ["gateway-alerts.rules.yaml"], source.name
        tested |= {t["alertname"] for group in tests["tests"]
                   for t in group.get("alert_rule_test", []) if t.get("exp_alerts")}
        shutil.copy(source, tmp_path / source.name)
    untested = {a["alert"] for a in _alerts()} - tested
    assert not untested, f"alerts no unit test sees firing: {sorted(untested)}"
    result = subprocess.run([promtool(), "test", "rules", *(s.name for s in sources)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
