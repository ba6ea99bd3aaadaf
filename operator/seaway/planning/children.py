"""Desired children of a ModelDeployment, as plain manifests (applied with server-side apply).

Names are deterministic (``<name>-r<N>`` per revision, ``<name>`` for the router's Service, so
clients keep one address), so a pass repeated after a crash writes the same objects again instead
of new ones. Every child carries an owner reference: deleting the ModelDeployment removes them.
"""

from __future__ import annotations

import json
from typing import Any

from seaway.api.common import API_VERSION
from seaway.api.modeldeployment import ModelDeploymentSpec, RevisionStatus

MD_LABEL = "seaway.dev/model-deployment"
REVISION_LABEL = "seaway.dev/revision"
COMPONENT_LABEL = "app.kubernetes.io/component"
SERVER_PORT = 8080
ROUTER_PORT = 8080
SERVICE_PORT = 80
#: Format version of the router ConfigMap (``routes.json``); documented in docs/traffic.md.
ROUTES_VERSION = 1
ROUTES_KEY = "routes.json"

Manifest = dict[str, Any]


def revision_name(md_name: str, number: int) -> str:
    return f"{md_name}-r{number}"


def router_name(md_name: str) -> str:
    return f"{md_name}-router"


def owner_reference(md_name: str, md_uid: str) -> Manifest:
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelDeployment",
        "name": md_name,
        "uid": md_uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _meta(name: str, namespace: str, owner: Manifest, labels: dict[str, str]) -> Manifest:
    return {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": [owner]}


def _labels(md_name: str, component: str, revision: int | None = None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": "seaway",
        "app.kubernetes.io/instance": md_name,
        "app.kubernetes.io/managed-by": "seaway",
        COMPONENT_LABEL: component,
        MD_LABEL: md_name,
    }
    if revision is not None:
        labels[REVISION_LABEL] = str(revision)
    return labels


RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def server_deployment(
    *,
    md_name: str,
    namespace: str,
    owner: Manifest,
    spec: ModelDeploymentSpec,
    revision: RevisionStatus,
    replicas: int,
    secret_name: str | None,
) -> Manifest:
    """The Deployment of one revision's model servers."""
    labels = _labels(md_name, "model-server", revision.number)
    selector = {MD_LABEL: md_name, REVISION_LABEL: str(revision.number)}
    server = spec.server
    env = [
        {"name": "SEAWAY_BUNDLE", "value": revision.model_uri or ""},
        {"name": "SEAWAY_MODEL_FORMAT", "value": revision.format or "sklearn-joblib"},
        {"name": "SEAWAY_MODEL_NAME", "value": md_name},
        {"name": "SEAWAY_REVISION", "value": str(revision.number)},
        {"name": "SEAWAY_PORT", "value": str(SERVER_PORT)},
        {"name": "SEAWAY_HOST", "value": "0.0.0.0"},
    ]
    if revision.digest:
        env.append({"name": "SEAWAY_DIGEST", "value": revision.digest})
    else:
        env.append({"name": "SEAWAY_ALLOW_UNVERIFIED", "value": "true"})
    env += [{"name": e.name, "value": e.value} for e in server.env or []]
    container: Manifest = {
        "name": "server",
        "image": server.image,
        "command": ["seaway-serve"],
        "env": env,
        "ports": [{"name": "http", "containerPort": SERVER_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": "http"},
            "periodSeconds": 5,
        },
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "securityContext": RESTRICTED_CONTAINER,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if secret_name:
        container["envFrom"] = [{"secretRef": {"name": secret_name}}]
    if server.resources is not None:
        container["resources"] = server.resources.to_wire()
    pod_labels = {**(server.pod_labels or {}), **labels}
    template_meta: Manifest = {"labels": pod_labels}
    if server.pod_annotations:
        template_meta["annotations"] = dict(server.pod_annotations)
    deployment: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(revision_name(md_name, revision.number), namespace, owner, labels),
        "spec": {
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": template_meta,
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }
    if server.autoscaling is None or replicas == 0:
        deployment["spec"]["replicas"] = replicas
    return deployment


def server_service(*, md_name: str, namespace: str, owner: Manifest, number: int) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(
            revision_name(md_name, number),
            namespace,
            owner,
            _labels(md_name, "model-server", number),
        ),
        "spec": {
            "selector": {MD_LABEL: md_name, REVISION_LABEL: str(number)},
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http"}],
        },
    }


def autoscaler(
    *, md_name: str, namespace: str, owner: Manifest, spec: ModelDeploymentSpec, number: int
) -> Manifest | None:
    scaling = spec.server.autoscaling
    if scaling is None:
        return None
    name = revision_name(md_name, number)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(name, namespace, owner, _labels(md_name, "model-server", number)),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": scaling.target_cpu_utilization_percentage,
                        },
                    },
                }
            ],
        },
    }


def routes(
    md_name: str,
    namespace: str,
    weights: dict[int, int],
    spec: ModelDeploymentSpec,
    mirror: int | None = None,
) -> Manifest:
    """The router's configuration: backends, weights, experiment and mirror (format v1)."""
    traffic = spec.traffic
    document: Manifest = {
        "version": ROUTES_VERSION,
        "modelDeployment": md_name,
        "backends": [
            {
                "name": revision_name(md_name, number),
                "revision": number,
                "url": f"http://{revision_name(md_name, number)}.{namespace}.svc:{SERVICE_PORT}",
                "weight": weight,
            }
            for number, weight in sorted(weights.items())
        ],
    }
    if traffic is not None and traffic.experiment is not None:
        document["experiment"] = traffic.experiment.to_wire()
    if traffic is not None and traffic.mirror is not None and mirror == traffic.mirror.revision:
        document["mirror"] = traffic.mirror.to_wire()
    return document


def router_configmap(
    *, md_name: str, namespace: str, owner: Manifest, document: Manifest
) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(router_name(md_name), namespace, owner, _labels(md_name, "router")),
        "data": {ROUTES_KEY: json.dumps(document, sort_keys=True, indent=2)},
    }


def router_access(*, md_name: str, namespace: str, owner: Manifest) -> list[Manifest]:
    """The router's own ServiceAccount, allowed to read exactly its routes ConfigMap."""
    name = router_name(md_name)
    labels = _labels(md_name, "router")
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(name, namespace, owner, labels),
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(name, namespace, owner, labels),
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "resourceNames": [name],
                    "verbs": ["get", "list", "watch"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(name, namespace, owner, labels),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    ]


def router_deployment(
    *, md_name: str, namespace: str, owner: Manifest, image: str, service_account: str | None
) -> Manifest:
    labels = _labels(md_name, "router")
    selector = {MD_LABEL: md_name, COMPONENT_LABEL: "router"}
    pod_spec: Manifest = {
        # The only pod that talks to the API server: it watches its routes ConfigMap.
        "automountServiceAccountToken": True,
        "serviceAccountName": service_account or router_name(md_name),
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "router",
                "image": image,
                "command": ["seaway-router"],
                "args": [
                    "--configmap",
                    f"{namespace}/{router_name(md_name)}",
                    "--port",
                    str(ROUTER_PORT),
                ],
                "ports": [{"name": "http", "containerPort": ROUTER_PORT, "protocol": "TCP"}],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                "securityContext": RESTRICTED_CONTAINER,
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(router_name(md_name), namespace, owner, labels),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def router_service(*, md_name: str, namespace: str, owner: Manifest) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(md_name, namespace, owner, _labels(md_name, "router")),
        "spec": {
            "selector": {MD_LABEL: md_name, COMPONENT_LABEL: "router"},
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http"}],
        },
    }


def http_route(
    *,
    md_name: str,
    namespace: str,
    owner: Manifest,
    spec: ModelDeploymentSpec,
    weights: dict[int, int],
) -> Manifest:
    """A Gateway API HTTPRoute splitting traffic between revision Services by weight."""
    traffic = spec.traffic
    assert traffic is not None and traffic.gateway is not None
    route_spec: Manifest = {
        "parentRefs": [p.to_wire() for p in traffic.gateway.parent_refs],
        "rules": [
            {
                "backendRefs": [
                    {"name": revision_name(md_name, n), "port": SERVICE_PORT, "weight": w}
                    for n, w in sorted(weights.items())
                ]
            }
        ],
    }
    if traffic.gateway.hostnames:
        route_spec["hostnames"] = list(traffic.gateway.hostnames)
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": _meta(md_name, namespace, owner, _labels(md_name, "route")),
        "spec": route_spec,
    }
