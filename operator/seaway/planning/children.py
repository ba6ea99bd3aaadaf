"""Desired children of a ModelDeployment, as plain manifests (applied with server-side apply).

Names are deterministic (``<name>-r<N>`` per revision, ``<name>`` for the router's Service, so
clients keep one address), so a pass repeated after a crash writes the same objects again instead
of new ones. Every child carries an owner reference: deleting the ModelDeployment removes them.
"""

from __future__ import annotations

import json
from typing import Any

from seaway.api.common import API_VERSION
from seaway.api.modeldeployment import ModelDeploymentSpec, Server
from seaway.planning.revisions import ResolvedModel
from seaway_serving import contract

MD_LABEL = "seaway.dev/model-deployment"
REVISION_LABEL = "seaway.dev/revision"
COMPONENT_LABEL = "app.kubernetes.io/component"
TEMPLATE_HASH_LABEL = "seaway.dev/template-hash"
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


def restricted_pod_spec(container: Manifest, **extra: Any) -> Manifest:
    """A Pod spec of one container that Pod Security "restricted" admits, with a writable
    ``/tmp`` volume (the root filesystem is read-only) and no API token or service links."""
    return {
        **extra,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }


def pod_template(
    *, md_name: str, number: int, model: ResolvedModel, server: Server
) -> Manifest:
    """The complete Pod template of a revision, as it is frozen when the revision is created.

    Everything that makes the revision's Pods what they are is in here (model, digest, format,
    image, env, resources, labels, annotations, probes, Secret); the Deployment is always
    rendered from the frozen copy, never from a later spec.
    """
    labels = _labels(md_name, "model-server", number)
    env = [
        {"name": key, "value": value}
        for key, value in contract.server_env(
            bundle=model.uri,
            model_format=model.format,
            digest=model.digest,
            allow_unverified=model.allow_unverified,
            model_name=md_name,
            revision=number,
            port=SERVER_PORT,
        )
    ]
    env += [{"name": e.name, "value": e.value} for e in server.env or []]
    container: Manifest = {
        "name": "server",
        "image": server.image,
        "command": ["seaway-serve"],
        "env": env,
        "ports": [{"name": "http", "containerPort": SERVER_PORT, "protocol": "TCP"}],
        # docs/serving.md#probes: loading may take minutes (startup), ready means verified,
        # loaded and self-checked (readiness), live only means the event loop answers.
        "startupProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 300,
        },
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": "http"},
            "periodSeconds": 2,
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
    if model.secret_name:
        container["envFrom"] = [{"secretRef": {"name": model.secret_name}}]
    if server.resources is not None:
        container["resources"] = server.resources.to_wire()
    template_meta: Manifest = {"labels": {**(server.pod_labels or {}), **labels}}
    if server.pod_annotations:
        template_meta["annotations"] = dict(server.pod_annotations)
    return {
        "metadata": template_meta,
        "spec": restricted_pod_spec(container),
    }


def revision_record(
    *,
    md_name: str,
    namespace: str,
    owner: Manifest,
    number: int,
    template_hash: str,
    template: Manifest,
) -> Manifest:
    """The immutable record of a revision: an ``apps/v1`` ControllerRevision holding its template.

    Created once, never updated (the API server keeps ``data`` and ``revision`` as written);
    deleted with the revision's other children when the revision is pruned.
    """
    labels = {**_labels(md_name, "revision", number), TEMPLATE_HASH_LABEL: template_hash}
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": _meta(revision_name(md_name, number), namespace, owner, labels),
        "revision": number,
        "data": {"template": template},
    }


def recorded_template(record: Manifest) -> Manifest | None:
    """The Pod template inside a revision record (None when it holds none)."""
    template = (record.get("data") or {}).get("template")
    return template if isinstance(template, dict) else None


def server_deployment(
    *,
    md_name: str,
    namespace: str,
    owner: Manifest,
    number: int,
    template: Manifest,
    replicas: int,
    autoscaled: bool,
) -> Manifest:
    """The Deployment of one revision's model servers, from the revision's frozen template.

    Only the replica count comes from the current spec (scaling is not a new revision); with an
    autoscaler the count is left to it unless the revision is scaled to zero.
    """
    labels = _labels(md_name, "model-server", number)
    selector = {MD_LABEL: md_name, REVISION_LABEL: str(number)}
    deployment: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(revision_name(md_name, number), namespace, owner, labels),
        "spec": {"selector": {"matchLabels": selector}, "template": template},
    }
    if not autoscaled or replicas == 0:
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


#: Where the router finds the bearer token of /feedback and /experiment (a Secret's key).
FEEDBACK_TOKEN_DIR = "/var/run/seaway/feedback"


def router_deployment(
    *,
    md_name: str,
    namespace: str,
    owner: Manifest,
    image: str,
    service_account: str | None,
    feedback_secret: str | None = None,
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
                "args": contract.router_args(
                    configmap=f"{namespace}/{router_name(md_name)}", port=ROUTER_PORT
                ),
                "ports": [{"name": "http", "containerPort": ROUTER_PORT, "protocol": "TCP"}],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                "securityContext": RESTRICTED_CONTAINER,
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    if feedback_secret is not None:
        # /feedback steers the bandit: only holders of the Secret's token may call it
        container = pod_spec["containers"][0]
        container["env"] = [
            {"name": contract.FEEDBACK_TOKEN_FILE, "value": f"{FEEDBACK_TOKEN_DIR}/token"}
        ]
        container["volumeMounts"].append(
            {"name": "feedback-token", "mountPath": FEEDBACK_TOKEN_DIR, "readOnly": True}
        )
        pod_spec["volumes"].append(
            {
                "name": "feedback-token",
                "secret": {
                    "secretName": feedback_secret,
                    "items": [{"key": "token", "path": "token"}],
                },
            }
        )
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
