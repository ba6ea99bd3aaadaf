"""The Helm chart's values: one typed source of truth for values.yaml and values.schema.json.

Both files in ``charts/seaway/`` are generated from the pydantic models below, so every value is
documented (its description becomes the comment above it in ``values.yaml``) and typed (the
schema refuses unknown keys everywhere: a typo'd value fails ``helm install`` instead of being
ignored). Edit this file, then run ``make chart-generate``; ``--check`` (run by the chart tests)
fails when the committed files differ from what this file generates.

    .venv/bin/python hack/chart_values.py           # write both files
    .venv/bin/python hack/chart_values.py --check   # exit 1 when they are stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

CHART = Path(__file__).resolve().parents[1] / "charts" / "seaway"
VALUES = CHART / "values.yaml"
SCHEMA = CHART / "values.schema.json"

#: A Kubernetes namespace name (RFC 1123 label).
NAMESPACE = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
#: A Prometheus duration such as ``30s`` or ``1m``.
DURATION = r"^[0-9]+(ms|s|m|h)$"
StringMap = dict[str, str]
#: A resource quantity: "100m", "256Mi", or a plain number.
Quantities = dict[str, str | int]


class Strict(BaseModel):
    """Unknown keys are refused: the schema says ``additionalProperties: false``."""

    model_config = ConfigDict(extra="forbid")


class Image(Strict):
    repository: str = Field(min_length=1, description="Image repository.")
    tag: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$|^$",
        description="Image tag; empty means the chart's appVersion.",
    )
    digest: str = Field(
        "",
        pattern=r"^sha256:[a-f0-9]{64}$|^$",
        description="Image digest (sha256:<64 hex>); when set it is used instead of the tag.",
    )


class OperatorImage(Image):
    pullPolicy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="Pull policy of the operator container."
    )


class LocalObjectReference(Strict):
    name: str = Field(min_length=1, description="Name of a Secret in the release namespace.")


class EnvVar(Strict):
    name: str = Field(pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", description="Variable name.")
    value: str = Field("", description="Variable value.")


class Router(Strict):
    image: str = Field(
        "",
        description=(
            "Image of the built-in router (seaway-router) each ModelDeployment with "
            "traffic.router builtin runs. Empty means serverImage."
        ),
    )
    serviceAccountName: str = Field(
        "",
        description=(
            "ServiceAccount the router Pods run as, in each ModelDeployment's namespace (it must "
            "exist there and may read the router's ConfigMap). Empty: the operator gives each "
            "router its own ServiceAccount, allowed to read only its routes ConfigMap."
        ),
    )


class Trainer(Strict):
    image: str = Field(
        "",
        description=(
            "Default image of RetrainJob training Jobs (seaway-train); a RetrainJob's "
            "spec.trainerImage wins. Empty means serverImage."
        ),
    )


class ServiceAccount(Strict):
    create: bool = Field(True, description="Create the operator's ServiceAccount.")
    name: str = Field(
        "", description="Its name; empty means the release's full name (seaway by default)."
    )
    annotations: StringMap = Field(
        default_factory=dict,
        description="Annotations of the ServiceAccount (e.g. a cloud IAM role binding).",
    )


class Rbac(Strict):
    create: bool = Field(
        True,
        description=(
            "Create the operator's ClusterRoles and bindings (least privilege: only the verbs "
            "the operator uses, no wildcards, Secrets readable only where granted below)."
        ),
    )
    secretReadNamespaces: list[Annotated[str, Field(pattern=NAMESPACE)]] = Field(
        default_factory=list,
        description=(
            "Namespaces where the operator may get (never list or watch) Secrets, to check that "
            "a ModelDeployment's model.secretRef exists. Each gets a RoleBinding; the namespaces "
            "must exist. With watchNamespaces set, those namespaces are included automatically. "
            "There is never a cluster-wide Secret permission."
        ),
    )
    aggregateToDefaultRoles: bool = Field(
        True,
        description=(
            "Add ModelDeployment and RetrainJob permissions to the built-in view, edit and "
            "admin ClusterRoles, so namespace users can work with them."
        ),
    )


class Crds(Strict):
    enabled: bool = Field(
        True,
        description=(
            "Install and upgrade Seaway's CRDs (ModelDeployment, RetrainJob) and the approval "
            "ValidatingAdmissionPolicy with the release. Set false when they are managed "
            "elsewhere (e.g. `seaway crds | kubectl apply --server-side -f -`)."
        ),
    )
    keep: bool = Field(
        True,
        description=(
            "Keep the CRDs and the approval policy when the release is uninstalled "
            "(helm.sh/resource-policy: keep), so users' ModelDeployments and RetrainJobs "
            "survive an uninstall."
        ),
    )


class Resources(Strict):
    requests: Quantities = Field(
        default_factory=lambda: Quantities(cpu="100m", memory="256Mi"),
        description="Resource requests of the operator container.",
    )
    limits: Quantities = Field(
        default_factory=lambda: Quantities(memory="512Mi"),
        description="Resource limits of the operator container.",
    )


class Toleration(Strict):
    key: str = Field("", description="Taint key.")
    operator: Literal["Exists", "Equal"] = Field("Equal", description="Exists or Equal.")
    value: str = Field("", description="Taint value.")
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = Field(
        "", description="Taint effect; empty matches all."
    )
    tolerationSeconds: int | None = Field(None, ge=0, description="For NoExecute taints.")


class ServiceMonitor(Strict):
    enabled: bool = Field(
        False,
        description=(
            "Create a Prometheus Operator ServiceMonitor that scrapes /metrics of every "
            "model server and router Service Seaway creates (needs the monitoring.coreos.com "
            "CRDs)."
        ),
    )
    namespace: str = Field(
        "",
        pattern=f"{NAMESPACE}|^$",
        description="Namespace of the ServiceMonitor; empty means the release namespace.",
    )
    interval: str = Field("30s", pattern=DURATION, description="Scrape interval.")
    scrapeTimeout: str = Field(
        "", pattern=f"{DURATION}|^$", description="Scrape timeout; empty: Prometheus' default."
    )
    labels: StringMap = Field(
        default_factory=dict,
        description="Extra labels, e.g. the one your Prometheus' serviceMonitorSelector matches.",
    )


class GrafanaDashboard(Strict):
    enabled: bool = Field(
        False,
        description=(
            "Create a ConfigMap holding Seaway's Grafana dashboard (traffic, errors, latency, "
            "drift per model and revision), picked up by Grafana's dashboard sidecar."
        ),
    )
    namespace: str = Field(
        "",
        pattern=f"{NAMESPACE}|^$",
        description="Namespace of the ConfigMap; empty means the release namespace.",
    )
    labels: StringMap = Field(
        default_factory=lambda: {"grafana_dashboard": "1"},
        description="Labels the Grafana sidecar looks for.",
    )
    annotations: StringMap = Field(
        default_factory=dict,
        description="Annotations, e.g. grafana_folder for the sidecar's folder support.",
    )


#: An allowlist entry: host, host:port, [v6]:port, *.domain or * (any host).
HOST = (
    r"^(\*|(\*\.)?[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:[0-9]{1,5})?"
    r"|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?)$"
)


class Egress(Strict):
    prometheusHosts: list[Annotated[str, Field(pattern=HOST)]] = Field(
        default_factory=list,
        description=(
            "Prometheus hosts a ModelDeployment's rollout.analysis.provider.prometheus.address"
            " may name: host, host:port, *.domain (subdomains) or * (any host). prometheusUrl's"
            " host is always allowed. Redirects are never followed."
        ),
    )
    webhookHosts: list[Annotated[str, Field(pattern=HOST)]] = Field(
        default_factory=list,
        description=(
            "Hosts notifications.webhookURL may name (same forms). Empty: no webhook is called,"
            " and a WebhookNotAllowed Event says so. Redirects are never followed."
        ),
    )


class Values(Strict):
    """Values of the Seaway chart."""

    nameOverride: str = Field("", description="Replaces the chart name in resource names.")
    fullnameOverride: str = Field("", description="Replaces the full resource name prefix.")
    image: OperatorImage = Field(
        default_factory=lambda: OperatorImage(repository="ghcr.io/seaway-dev/seaway-operator"),
        description="The operator image (operator/Dockerfile).",
    )
    serverImage: Image = Field(
        default_factory=lambda: Image(repository="ghcr.io/seaway-dev/seaway-server"),
        description=(
            "The server image (serving/Dockerfile): model server, router and trainer. Used as "
            "the default router and trainer image; each ModelDeployment names its own "
            "spec.server.image."
        ),
    )
    imagePullSecrets: list[LocalObjectReference] = Field(
        default_factory=list, description="Secrets to pull the operator image."
    )
    watchNamespaces: list[Annotated[str, Field(pattern=NAMESPACE)]] = Field(
        default_factory=list,
        description=(
            "Namespaces the operator watches. Empty watches all namespaces (cluster-wide "
            "ClusterRoleBinding); otherwise the operator gets RoleBindings in these namespaces "
            "only, which must exist."
        ),
    )
    replicas: int = Field(
        1,
        ge=1,
        le=5,
        description=(
            "Operator replicas. 1: the Recreate strategy, so two never run at once. More: leader"
            " election on a Lease in the release namespace; only the holder reconciles, a"
            " follower takes over about 15 s after the leader is gone."
        ),
    )
    workers: int = Field(8, ge=1, le=64, description="ModelDeployments reconciled in parallel.")
    verbose: bool = Field(False, description="Log every watch event and API call.")
    prometheusUrl: str = Field(
        "",
        pattern=r"^https?://.+|^$",
        description=(
            "Prometheus used by canary analysis when a ModelDeployment names none, e.g. "
            "http://prometheus-operated.monitoring:9090."
        ),
    )
    egress: Egress = Field(
        default_factory=Egress,
        description=(
            "Hosts the operator may send requests to on behalf of a spec. Addresses written in"
            " a ModelDeployment are fetched by the operator from inside the cluster, so they are"
            " limited to these lists (see docs/security.md)."
        ),
    )
    router: Router = Field(default_factory=Router, description="The built-in traffic router.")
    trainer: Trainer = Field(default_factory=Trainer, description="RetrainJob training Jobs.")
    extraEnv: list[EnvVar] = Field(
        default_factory=list, description="Extra environment variables of the operator."
    )
    serviceAccount: ServiceAccount = Field(
        default_factory=ServiceAccount, description="The operator's ServiceAccount."
    )
    rbac: Rbac = Field(default_factory=Rbac, description="The operator's permissions.")
    crds: Crds = Field(default_factory=Crds, description="Seaway's CustomResourceDefinitions.")
    resources: Resources = Field(
        default_factory=Resources, description="Resources of the operator container."
    )
    podAnnotations: StringMap = Field(
        default_factory=dict, description="Annotations of the operator Pod."
    )
    podLabels: StringMap = Field(default_factory=dict, description="Labels of the operator Pod.")
    nodeSelector: StringMap = Field(
        default_factory=dict, description="Node labels the operator Pod must run on."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Tolerations of the operator Pod."
    )
    affinity: dict[str, Any] = Field(
        default_factory=dict,
        description="Affinity of the operator Pod (a core/v1 Affinity, passed through).",
    )
    priorityClassName: str = Field("", description="PriorityClass of the operator Pod.")
    serviceMonitor: ServiceMonitor = Field(
        default_factory=ServiceMonitor, description="Prometheus scraping of model servers."
    )
    grafanaDashboard: GrafanaDashboard = Field(
        default_factory=GrafanaDashboard, description="Grafana dashboard."
    )


HEADER = """\
# Values of the Seaway chart. Generated by `make chart-generate` from hack/chart_values.py:
# edit that file, not this one. values.schema.json (generated too) refuses unknown keys.
#
# By default the operator runs as ONE replica with the Recreate strategy, so there are never
# two writers; with `replicas` above 1 they elect a leader on a Lease and only the leader
# writes. It keeps no state of its own (a rollout's progress is in each ModelDeployment's
# status), so a restarted or rescheduled operator resumes where it stopped.
"""


# -- values.yaml --------------------------------------------------------------------------------


def _comment(text: str, indent: str, width: int = 98) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(indent) + 2 + len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return [f"{indent}# {line}" for line in lines]


def _scalar(value: Any) -> str:
    if value == "":
        return '""'
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return text.removesuffix("\n...").strip()


def _emit(model: BaseModel, indent: str = "") -> list[str]:
    lines: list[str] = []
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if field.description:
            lines += _comment(field.description, indent)
        if isinstance(value, BaseModel) and not isinstance(value, list):
            lines.append(f"{indent}{name}:")
            lines += _emit(value, indent + "  ")
        elif isinstance(value, dict) and value:
            lines.append(f"{indent}{name}:")
            lines += [f"{indent}  {_scalar(k)}: {_scalar(v)}" for k, v in value.items()]
        else:
            lines.append(f"{indent}{name}: {_scalar(value)}")
        if not indent:
            lines.append("")
    return lines


def render_values() -> str:
    return HEADER + "\n" + "\n".join(_emit(Values())).rstrip() + "\n"


# -- values.schema.json -------------------------------------------------------------------------


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """Inline ``$ref``s, collapse ``anyOf [X, null]``, drop titles (helm needs none of them)."""
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = _inline(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        return {**target, **{k: _inline(v, defs) for k, v in node.items() if k != "$ref"}}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "$defs") or (key == "default" and value is None):
            continue
        if key == "anyOf":
            options = [o for o in value if o != {"type": "null"}]
            if len(options) == 1:
                out.update(_inline(options[0], defs))
                continue
        if key == "properties":
            out[key] = {name: _inline(sub, defs) for name, sub in value.items()}
            continue
        out[key] = _inline(value, defs)
    if out.get("type") == "object" and "properties" in out:
        out.setdefault("additionalProperties", False)
    return out


def render_schema() -> str:
    raw = Values.model_json_schema()
    schema = _inline(raw, raw.get("$defs", {}))
    schema.pop("default", None)
    document = {"$schema": "http://json-schema.org/draft-07/schema#", **schema}
    return json.dumps(document, indent=2) + "\n"


def outputs() -> dict[Path, str]:
    return {VALUES: render_values(), SCHEMA: render_schema()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the files are stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path)
        else:
            path.write_text(text)
            print(f"Wrote {path.relative_to(CHART.parents[1])}")
    for path in stale:
        print(
            f"{path.relative_to(CHART.parents[1])} is stale: run `make chart-generate`",
            file=sys.stderr,
        )
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
