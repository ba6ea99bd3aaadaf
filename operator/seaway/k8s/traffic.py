"""Traffic backends: one narrow interface, one implementation per way of splitting traffic.

``set_weights`` writes the split; ``verify_weights`` reads back what the data plane's
configuration holds now. The ModelDeployment handler never knows which backend it talks to.
"""

from __future__ import annotations

import json
from typing import Protocol

from seaway.api.modeldeployment import ModelDeploymentSpec
from seaway.k8s.kube import Kube, Manifest, siblings_current, with_siblings
from seaway.planning import children


class TrafficBackend(Protocol):
    def set_weights(self, weights: dict[int, int], mirror: int | None = None) -> None: ...

    def verify_weights(self, weights: dict[int, int], mirror: int | None = None) -> bool: ...


class BuiltinRouter:
    """Seaway's router: a Deployment + Service ``<name>`` reading a ConfigMap of routes."""

    def __init__(
        self,
        kube: Kube,
        *,
        md_name: str,
        namespace: str,
        owner: Manifest,
        spec: ModelDeploymentSpec,
        router_image: str,
        service_account: str | None = None,
    ) -> None:
        self.kube = kube
        self.md_name = md_name
        self.namespace = namespace
        self.owner = owner
        self.spec = spec
        self.router_image = router_image
        self.service_account = service_account

    def set_weights(self, weights: dict[int, int], mirror: int | None = None) -> None:
        document = children.routes(self.md_name, self.namespace, weights, self.spec, mirror)
        name, ns, owner = self.md_name, self.namespace, self.owner
        # The ConfigMap goes last: verify_weights reads it, so once it holds the weights the
        # router's Deployment and Service exist too, even if a pass was interrupted. The
        # Deployment is cached (watched): it tells whether the account and Service before it
        # are written already (see with_siblings), so a weight change reads nothing.
        siblings: list[Manifest] = []
        if self.service_account is None:
            siblings += children.router_access(md_name=name, namespace=ns, owner=owner)
        siblings.append(children.router_service(md_name=name, namespace=ns, owner=owner))
        deployment = with_siblings(
            children.router_deployment(
                md_name=name,
                namespace=ns,
                owner=owner,
                image=self.router_image,
                service_account=self.service_account,
                feedback_secret=_feedback_secret(self.spec),
            ),
            siblings,
        )
        live = self.kube.get("Deployment", ns, children.router_name(name))
        if not siblings_current(live, deployment):
            write = self.kube.create_or_apply if live is None else self.kube.apply_if_changed
            for manifest in siblings:
                write(manifest)
        self.kube.apply_if_changed(deployment, live)
        self.kube.apply(
            children.router_configmap(md_name=name, namespace=ns, owner=owner, document=document)
        )

    def verify_weights(self, weights: dict[int, int], mirror: int | None = None) -> bool:
        found = self.kube.get("ConfigMap", self.namespace, children.router_name(self.md_name))
        if found is None:
            return False
        document = json.loads(found.get("data", {}).get(children.ROUTES_KEY, "{}"))
        live = {b["revision"]: b["weight"] for b in document.get("backends", [])}
        return live == weights and (document.get("mirror") or {}).get("revision") == mirror


class GatewayRoute:
    """A Gateway API HTTPRoute with weighted backendRefs to the revision Services."""

    def __init__(
        self,
        kube: Kube,
        *,
        md_name: str,
        namespace: str,
        owner: Manifest,
        spec: ModelDeploymentSpec,
    ) -> None:
        self.kube = kube
        self.md_name = md_name
        self.namespace = namespace
        self.owner = owner
        self.spec = spec

    def set_weights(self, weights: dict[int, int], mirror: int | None = None) -> None:
        # The standard channel's HTTPRoute has no percentage mirror: only the built-in router
        # mirrors.
        self.kube.apply(
            children.http_route(
                md_name=self.md_name,
                namespace=self.namespace,
                owner=self.owner,
                spec=self.spec,
                weights=weights,
            )
        )

    def verify_weights(self, weights: dict[int, int], mirror: int | None = None) -> bool:
        found = self.kube.get("HTTPRoute", self.namespace, self.md_name)
        if found is None:
            return False
        refs = [
            ref for rule in found["spec"].get("rules", []) for ref in rule.get("backendRefs", [])
        ]
        prefix = f"{self.md_name}-r"
        live = {int(ref["name"].removeprefix(prefix)): ref.get("weight", 1) for ref in refs}
        return live == weights


def _feedback_secret(spec: ModelDeploymentSpec) -> str | None:
    experiment = spec.traffic.experiment if spec.traffic is not None else None
    ref = experiment.feedback_token_secret_ref if experiment is not None else None
    return ref.name if ref is not None else None
