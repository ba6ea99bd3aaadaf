"""Helpers for ModelDeployment integration tests: the user's side of the API."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client

from seaway.planning import children

GROUP, VERSION, PLURAL = "seaway.dev", "v1alpha1", "modeldeployments"


def digest(n: int) -> str:
    return "sha256:" + f"{n:x}" * 64 if n < 16 else "sha256:" + f"{n:02x}" * 32


def md_body(name: str, version: int, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {
                "uri": f"s3://models/{name}/v{version}/model.joblib",
                "digest": digest(version),
            },
            "server": {"image": "seaway/server:test", "replicas": 2},
            "rollout": {
                "strategy": "Canary",
                "steps": [
                    {"setWeight": 20},
                    {"pause": {"duration": "2s"}},
                    {"setWeight": 60},
                    {"pause": {"duration": "2s"}},
                ],
                "progressDeadlineSeconds": 15,
            },
        },
    }
    body["spec"].update(spec)
    return body


class User:
    """Does what a user does with kubectl: create, patch spec, read."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body
        )
        return result

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec}
        )

    def get(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return result

    def status(self, name: str) -> dict[str, Any]:
        status: dict[str, Any] = self.get(name).get("status", {})
        return status

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        for c in self.status(name).get("conditions", []):
            if c["type"] == type_:
                return dict(c)
        return {}

    def weights(self, name: str) -> dict[int, int]:
        """The weights the built-in router's ConfigMap holds now."""
        try:
            cm = self.core.read_namespaced_config_map(children.router_name(name), self.namespace)
        except client.ApiException:
            return {}
        document = json.loads((cm.data or {}).get(children.ROUTES_KEY, "{}"))
        return {b["revision"]: b["weight"] for b in document.get("backends", [])}

    def deployments(self, name: str) -> dict[int, Any]:
        found = self.apps.list_namespaced_deployment(
            self.namespace, label_selector=f"{children.MD_LABEL}={name},{children.REVISION_LABEL}"
        )
        return {int(d.metadata.labels[children.REVISION_LABEL]): d for d in found.items}

    def event_reasons_of(self, name: str) -> list[str]:
        """Reasons of the Events about any object called ``name`` (e.g. a RetrainJob)."""
        events = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        ).items
        return [e.reason for e in events]

    def event_reasons(self, name: str) -> list[str]:
        return [e.reason for e in self.events(name)]

    def events(self, name: str) -> list[Any]:
        events = self.core.list_namespaced_event(
            self.namespace,
            field_selector=f"involvedObject.name={name},involvedObject.kind=ModelDeployment",
        ).items
        events.sort(key=lambda e: (e.event_time or e.last_timestamp, e.metadata.creation_timestamp))
        return list(events)
