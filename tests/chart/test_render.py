"""The chart as rendered by ``helm lint`` and ``helm template``: no cluster needed.

What a user cannot see until it bites is checked here: typo'd or wrongly typed values are refused
by the schema, the CRDs are the generated ones, the operator's permissions are exactly the verbs
it uses (no wildcard, no Secret list or watch, Secrets only per namespace), and the operator Pod
meets Pod Security "restricted".
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel

import seaway
from seaway.k8s import kube
from seaway.planning import children
from tests.chart.conftest import CHART, CI_VALUES, ROOT, kinds, render, run

DEFAULTS: list[str] = []
CI = ["-f", str(CI_VALUES)]
NAMESPACED = ["--set", "watchNamespaces={ml,ml-staging}", "--set", "rbac.secretReadNamespaces={ml}"]
MODES = {"default": DEFAULTS, "ci": CI, "namespaced": NAMESPACED}
GENERATED_KINDS = ("CustomResourceDefinition", "ValidatingAdmissionPolicy")
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)

#: What the operator does in a namespace, resource by resource (docs/install.md#permissions).
#: A new API call in operator/seaway/k8s/ must show up here and in the chart, or this test fails.
OPERATOR_RULES = {
    ("seaway.dev", "modeldeployments"): {"get", "list", "watch"},
    ("seaway.dev", "retrainjobs"): {"get", "list", "watch"},
    ("seaway.dev", "scoringjobs"): {"get", "list", "watch"},
    ("seaway.dev", "modeldeployments/status"): {"update"},
    ("seaway.dev", "retrainjobs/status"): {"update"},
    ("seaway.dev", "scoringjobs/status"): {"update"},
    ("seaway.dev", "modeldeployments/finalizers"): {"update"},
    ("seaway.dev", "retrainjobs/finalizers"): {"update"},
    ("seaway.dev", "scoringjobs/finalizers"): {"update"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch", "delete"},
    ("apps", "controllerrevisions"): {"get", "create", "delete"},
    ("", "services"): {"get", "create", "patch", "delete"},
    ("", "configmaps"): {"get", "list", "watch", "create", "patch"},
    ("autoscaling", "horizontalpodautoscalers"): {"get", "create", "patch", "delete"},
    ("gateway.networking.k8s.io", "httproutes"): {"get", "create", "patch"},
    ("", "serviceaccounts"): {"get", "create", "patch"},
    ("rbac.authorization.k8s.io", "roles"): {"get", "create", "patch"},
    ("rbac.authorization.k8s.io", "rolebindings"): {"get", "create", "patch"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "pods"): {"list"},
    ("", "events"): {"create"},
}


def flatten(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    table: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                table.setdefault((group, resource), set()).update(rule["verbs"])
    return table


@pytest.fixture(scope="module", params=sorted(MODES))
def rendered(request: pytest.FixtureRequest, helm: Path) -> list[dict[str, Any]]:
    return render(helm, *MODES[request.param])


def operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = by_name(objects, "Deployment", "")["spec"]["template"]["spec"][
        "containers"
    ][0]
    return container


def by_name(objects: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any]:
    for obj in kinds(objects, kind):
        if obj["metadata"]["name"] == f"seaway{suffix}":
            return obj
    raise AssertionError(f"no {kind} seaway{suffix}")


# -- generated files, lint, schema ------------------------------------------------------------


def test_values_and_schema_are_generated_from_hack_chart_values() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "chart_values.py"), "--check"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("values", [DEFAULTS, CI, NAMESPACED], ids=["default", "ci", "namespaced"])
def test_helm_lint_strict(helm: Path, values: list[str]) -> None:
    result = run([helm, "lint", "--strict", CHART, *values])
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("crds.enbled=true", "additional properties 'enbled' not allowed"),
        ("replicaCount=2", "additional properties 'replicaCount' not allowed"),
        ("replicas=9", "replicas"),
        ("workers=many", "got string, want integer"),
        ("workers=0", "minimum"),
        ("image.pullPolicy=Sometimes", "value must be one of 'Always'"),
        ("watchNamespaces={Not_A_Namespace}", "does not match pattern"),
        ("serviceMonitor.interval=30 seconds", "does not match pattern"),
    ],
)
def test_schema_refuses_typos_and_wrong_types(helm: Path, setting: str, message: str) -> None:
    result = run([helm, "template", "seaway", CHART, "--set", setting], check=False)
    assert result.returncode != 0, f"{setting} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr


def test_values_files_validate_and_the_schema_is_closed() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    for path in (CHART / "values.yaml", CI_VALUES):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)

    open_objects = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and node.get("additionalProperties", True) is True:
                open_objects.append(where)
            for key, value in node.items():
                walk(value, f"{where}.{key}" if where else key)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(schema, "")
    # affinity is a core/v1 Affinity passed through as it is (documented in values.yaml).
    assert open_objects == ["properties.affinity"]


def test_every_value_is_documented() -> None:
    """values.yaml is generated with each field's description as its comment: all must have one."""
    spec = importlib.util.spec_from_file_location("chart_values", ROOT / "hack" / "chart_values.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["chart_values"] = module  # pydantic resolves the models' annotations through it
    spec.loader.exec_module(module)
    undocumented = []

    def walk(model: type[BaseModel], where: str) -> None:
        for name, field in model.model_fields.items():
            if not (field.description or "").strip():
                undocumented.append(f"{where}{name}")
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{where}{name}.")

    walk(module.Values, "")
    assert not undocumented
    text = (CHART / "values.yaml").read_text()
    for name in module.Values.model_fields:
        assert re.search(rf"^# .*\n{name}:", text, re.MULTILINE), name


def test_app_version_is_seaways_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == seaway.__version__


# -- what is rendered -------------------------------------------------------------------------


def test_every_object_has_the_standard_labels(rendered: list[dict[str, Any]]) -> None:
    for obj in rendered:
        labels = obj["metadata"].get("labels", {})
        missing = [label for label in STANDARD_LABELS if label not in labels]
        assert not missing, f"{obj['kind']} {obj['metadata']['name']} lacks {missing}"


def test_crds_are_the_generated_files_with_the_keep_policy(helm: Path) -> None:
    generated = {
        p.name: [d for d in yaml.safe_load_all(p.read_text()) if d]
        for p in sorted((CHART / "files" / "crds").glob("*.yaml"))
    }
    expected = [doc for docs in generated.values() for doc in docs]
    objects = render(helm)
    cluster_api = [o for o in objects if o["kind"].startswith(GENERATED_KINDS)]
    assert len(cluster_api) == len(expected) == 5
    for obj in cluster_api:
        meta = dict(obj["metadata"])
        assert meta.pop("annotations") == {"helm.sh/resource-policy": "keep"}
        meta.pop("labels")
        match = [
            d
            for d in expected
            if d["kind"] == obj["kind"] and d["metadata"]["name"] == meta["name"]
        ]
        assert len(match) == 1
        source = dict(match[0])
        source_meta = {k: v for k, v in source.pop("metadata").items() if k != "labels"}
        assert {**obj, "metadata": meta} == {**source, "metadata": source_meta}

    unkept = render(helm, "--set", "crds.keep=false")
    for obj in kinds(unkept, "CustomResourceDefinition"):
        assert "helm.sh/resource-policy" not in obj["metadata"].get("annotations", {})
    none = render(helm, "--set", "crds.enabled=false")
    assert not [o for o in none if o["kind"].startswith(GENERATED_KINDS)]


def test_operator_rules_are_exactly_the_verbs_it_uses(rendered: list[dict[str, Any]]) -> None:
    operator = by_name(rendered, "ClusterRole", "-operator")
    assert flatten(operator["rules"]) == OPERATOR_RULES


def test_every_kind_the_operator_talks_to_is_in_its_role(helm: Path) -> None:
    """A kind added to seaway.k8s.kube.RESOURCES needs a rule here (and in OPERATOR_RULES)."""
    table = flatten(by_name(render(helm), "ClusterRole", "-operator")["rules"])
    for kind, resource in kube.RESOURCES.items():
        group = "" if resource.prefix == "/api/v1" else resource.prefix.split("/")[2]
        if kind == "Secret":
            continue  # get only, and per namespace: checked below
        if kind == "Lease":
            continue  # only with replicas > 1, in the release namespace: checked below
        assert (group, resource.plural) in table, f"{kind}: no rule for {group}/{resource.plural}"


def test_no_wildcards_escalation_or_cluster_wide_secrets(rendered: list[dict[str, Any]]) -> None:
    roles = kinds(rendered, "ClusterRole") + kinds(rendered, "Role")
    for role in roles:
        for rule in role.get("rules", []):
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert "*" not in rule.get(field, []), f"{role['metadata']['name']}: {rule}"
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule
    secret_roles = {
        role["metadata"]["name"]
        for role in roles
        if any("secrets" in rule.get("resources", []) for rule in role["rules"])
    }
    for name in secret_roles:
        role = next(r for r in roles if r["metadata"]["name"] == name)
        assert flatten(role["rules"]) == {("", "secrets"): {"get"}}, "Secrets: get, nothing else"
    for binding in kinds(rendered, "ClusterRoleBinding"):
        assert binding["roleRef"]["name"] not in secret_roles, "Secrets only through RoleBindings"
    for role in kinds(rendered, "ClusterRole"):
        if not role["metadata"]["name"].endswith(("-view", "-edit")):
            continue  # the aggregated user roles: seaway.dev only
        assert {g for r in role["rules"] for g in r["apiGroups"]} == {"seaway.dev"}


def test_cluster_wide_by_default_namespaced_on_request(helm: Path) -> None:
    default = render(helm)
    binding = by_name(default, "ClusterRoleBinding", "-operator")
    assert binding["roleRef"]["name"] == "seaway-operator"
    assert not kinds(default, "RoleBinding"), "no Secret access anywhere unless granted"
    assert flatten(by_name(default, "ClusterRole", "-operator-discovery")["rules"]) == {
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"}
    }
    health = "--health=http://0.0.0.0:8080/healthz"
    assert operator_container(default)["args"] == ["operator", "run", "--workers=8", health]

    namespaced = render(helm, *NAMESPACED)
    cluster_bindings = [b["metadata"]["name"] for b in kinds(namespaced, "ClusterRoleBinding")]
    assert cluster_bindings == ["seaway-operator-discovery"]
    bindings = {
        (b["metadata"]["namespace"], b["roleRef"]["name"]) for b in kinds(namespaced, "RoleBinding")
    }
    assert bindings == {
        ("ml", "seaway-operator"),
        ("ml-staging", "seaway-operator"),
        ("ml", "seaway-operator-secrets"),
        ("ml-staging", "seaway-operator-secrets"),
    }
    discovery = flatten(by_name(namespaced, "ClusterRole", "-operator-discovery")["rules"])
    assert discovery[("", "namespaces")] == {"list", "watch"}
    assert operator_container(namespaced)["args"] == [
        "operator",
        "run",
        "--workers=8",
        health,
        "--namespace=ml",
        "--namespace=ml-staging",
    ]


def test_operator_pod_meets_pod_security_restricted(rendered: list[dict[str, Any]]) -> None:
    deployment = by_name(rendered, "Deployment", "")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    for volume in pod.get("volumes", []):
        assert set(volume) - {"name"} <= {"emptyDir", "configMap", "secret", "projected"}
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not context.get("privileged")


def test_operator_settings_reach_the_environment_the_operator_reads(helm: Path) -> None:
    objects = render(helm, *CI, "--set", "router.serviceAccountName=router")
    container = operator_container(objects)
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {
        "SEAWAY_ROUTER_IMAGE": "seaway.test/seaway-server:ci",
        "SEAWAY_TRAINER_IMAGE": "seaway.test/seaway-trainer:ci",
        "SEAWAY_ROUTER_SERVICE_ACCOUNT": "router",
        "SEAWAY_PROMETHEUS_URL": "http://prometheus.monitoring:9090",
        "SEAWAY_CI": "1",
    }
    read = (ROOT / "operator" / "seaway" / "handlers" / "operator.py").read_text()
    for name in env:
        if name != "SEAWAY_CI":
            assert f'"{name}"' in read, f"the operator does not read {name}"
    assert container["args"] == [
        "operator",
        "run",
        "--workers=4",
        "--health=http://0.0.0.0:8080/healthz",
        "--verbose",
    ]
    assert container["image"] == "seaway.test/seaway-operator:ci"
    digest = "sha256:" + "ab" * 32
    objects = render(helm, "--set", f"image.digest={digest}")
    container = operator_container(objects)
    assert container["image"] == f"ghcr.io/seaway-dev/seaway-operator@{digest}"


def test_egress_allowlists_reach_the_operator(helm: Path) -> None:
    """The allowlists of spec-given Prometheus and webhook hosts (docs/security.md): unset, the
    operator gets neither variable and calls no spec-given host but the default Prometheus."""
    container = operator_container(render(helm))
    names = {e["name"] for e in container["env"]}
    assert not names & {"SEAWAY_ALLOWED_PROMETHEUS_HOSTS", "SEAWAY_ALLOWED_WEBHOOK_HOSTS"}
    objects = render(
        helm,
        "--set", "egress.prometheusHosts={prometheus.monitoring,*.thanos.svc:9090}",
        "--set", "egress.webhookHosts={hooks.example.com}",
    )  # fmt: skip
    env = {e["name"]: e["value"] for e in operator_container(objects)["env"]}
    assert env["SEAWAY_ALLOWED_PROMETHEUS_HOSTS"] == "prometheus.monitoring,*.thanos.svc:9090"
    assert env["SEAWAY_ALLOWED_WEBHOOK_HOSTS"] == "hooks.example.com"
    read = (ROOT / "operator" / "seaway" / "egress.py").read_text()
    assert '"SEAWAY_ALLOWED_PROMETHEUS_HOSTS"' in read and '"SEAWAY_ALLOWED_WEBHOOK_HOSTS"' in read
    bad = run(
        [helm, "template", "seaway", CHART, "--set", "egress.webhookHosts={http://x/y}"],
        check=False,
    )
    assert bad.returncode != 0 and "does not match pattern" in bad.stderr


def test_service_monitor_selects_the_services_the_operator_creates(helm: Path) -> None:
    monitor = kinds(render(helm, *CI), "ServiceMonitor")
    assert len(monitor) == 1
    spec = monitor[0]["spec"]
    owner = children.owner_reference("churn", "uid")
    services = [
        children.server_service(md_name="churn", namespace="ml", owner=owner, number=3),
        children.router_service(md_name="churn", namespace="ml", owner=owner),
    ]
    for service in services:
        labels = service["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items()
        for expression in spec["selector"]["matchExpressions"]:
            assert labels[expression["key"]] in expression["values"]
        assert spec["endpoints"][0]["port"] in [p["name"] for p in service["spec"]["ports"]]
    assert spec["namespaceSelector"] == {"any": True}
    assert spec["endpoints"][0]["interval"] == "15s"
    assert not kinds(render(helm), "ServiceMonitor")


def test_grafana_dashboard_queries_metrics_the_server_exports(helm: Path) -> None:
    configmaps = [
        c
        for c in kinds(render(helm, *CI), "ConfigMap")
        if c["metadata"]["name"].endswith("-dashboard")
    ]
    assert len(configmaps) == 1
    assert configmaps[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(configmaps[0]["data"]["seaway.json"])
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    used = {
        re.sub(r"_(total|bucket|sum|count)$", "", name)
        for expr in exprs
        for name in re.findall(r"\b(seaway_[a-z_]+)", expr)
    }
    source = (ROOT / "serving" / "seaway_serving" / "metrics.py").read_text()
    exported = set(re.findall(r'"(seaway_[a-z_]+)"', source))
    assert used and used <= exported, f"not exported by the server: {sorted(used - exported)}"
    assert not kinds(render(helm), "ConfigMap")


def test_replicas_above_one_elect_a_leader(helm: Path) -> None:
    single = render(helm)
    assert by_name(single, "Deployment", "")["spec"]["strategy"] == {"type": "Recreate"}
    assert not [
        r for r in kinds(single, "Role") if r["metadata"]["name"].endswith("leader-election")
    ]
    objects = render(helm, "--set", "replicas=2")
    deployment = by_name(objects, "Deployment", "")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["SEAWAY_LEADER_ELECT"] == "true"
    role = by_name(objects, "Role", "-leader-election")
    assert flatten(role["rules"]) == {
        ("coordination.k8s.io", "leases"): {"get", "create", "update"}
    }


def test_the_operator_has_liveness_and_readiness_probes(rendered: list[dict[str, Any]]) -> None:
    container = by_name(rendered, "Deployment", "")["spec"]["template"]["spec"]["containers"][0]
    assert "--health=http://0.0.0.0:8080/healthz" in container["args"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    # Ready means the operator answers, so `rollout status` waits for a working operator
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
