"""How many API requests a ModelDeployment costs, counted on the real API server.

Passes are driven by hand here (``reconcile`` called directly) with the operator's own
:class:`~seaway.k8s.cache.CachedKube`, and the store is filled from the API server before each
pass the way the watches fill it, so each pass's requests are counted exactly, by method and
resource. The budgets are what one ModelDeployment costs the API server; at 1,000 objects every
request here is a thousand (bench/operator_scale.py measures that). Counts only, no timings.
"""

from __future__ import annotations

import collections
from typing import Any

import pytest
from tests.integration.mdtools import User, md_body

from seaway.handlers import modeldeployment
from seaway.k8s.cache import CachedKube, Store
from seaway.k8s.kube import Kube, load_api_client
from seaway.planning import children

WRITES = ("POST", "PUT", "PATCH", "DELETE")


@pytest.fixture
def user(kube_api: Any, namespace: str, seaway_crds: list[str]) -> User:
    return User(kube_api, namespace)


class Operator:
    """The operator's client and store; :meth:`watch` stands in for the watch events."""

    def __init__(self, kubeconfig: str, namespace: str) -> None:
        self.namespace = namespace
        self.admin = Kube(load_api_client(kubeconfig))  # the watches' reads: not counted
        self.store = Store(children.MD_LABEL)
        self.kube = CachedKube(Kube(load_api_client(kubeconfig)), self.store, children.MD_LABEL)
        self.settings = modeldeployment.Settings(router_image="seaway/router:test")

    def watch(self) -> None:
        for body in self.admin.list("ModelDeployment", self.namespace):
            self.store.put("ModelDeployment", body)
        for kind in ("Deployment", "ConfigMap"):
            for body in self.admin.list(kind, self.namespace, children.MD_LABEL):
                self.store.put(kind, body)

    def warm(self) -> None:
        """The once-per-namespace listing of a first pass (shared by every object there)."""
        self.kube.list("Deployment", self.namespace, f"{children.MD_LABEL}=x")
        self.kube.requests_by_kind.clear()

    def reconcile(self, name: str) -> collections.Counter[str]:
        """One pass after the watches caught up; the requests it made, by method and resource."""
        self.watch()
        before = collections.Counter(self.kube.requests_by_kind)
        modeldeployment.reconcile(self.kube, self.namespace, name, self.settings)
        made = collections.Counter(self.kube.requests_by_kind)
        made.subtract(before)
        return +made


def writes(made: collections.Counter[str]) -> dict[str, int]:
    return {k: n for k, n in made.items() if k.split()[0] in WRITES}


def ready(user: User, name: str, number: int) -> bool:
    deployment = user.deployments(name).get(number)
    return deployment is not None and (deployment.status.ready_replicas or 0) >= 1


def test_first_rollout_canary_step_and_resync_requests(
    user: User, namespace: str, control_plane: Any, eventually: Any
) -> None:
    op = Operator(str(control_plane.kubeconfig), namespace)
    body = md_body("lean", 1)
    body["spec"]["server"]["replicas"] = 1
    body["spec"]["rollout"] = {"strategy": "Canary", "steps": [{"setWeight": 20}, {"pause": {}}]}
    user.create(body)
    op.warm()

    # 1. The revision: its record, Service and Deployment, the status, two Events.
    created = op.reconcile("lean")
    assert created == {
        "POST controllerrevisions": 1,
        "POST services": 1,
        "PATCH deployments": 1,
        "PUT modeldeployments/status": 1,
        "POST events": 2,  # RevisionCreated, RolloutStarted
    }, created
    eventually(lambda: ready(user, "lean", 1), what="revision 1 ready")

    # 2. Promotion: the router's account, Service, Deployment and routes; status; one Event.
    promoted = op.reconcile("lean")
    assert user.status("lean").get("stableRevision") == 1
    assert promoted == {
        "POST serviceaccounts": 1,
        "POST roles": 1,
        "POST rolebindings": 1,
        "POST services": 1,
        "PATCH deployments": 1,
        "PATCH configmaps": 1,
        "PUT modeldeployments/status": 1,
        "POST events": 1,  # Promoted
    }, promoted

    # 3. Converged: a pass from the cache asks nothing at all.
    assert op.reconcile("lean") == {}

    # 4. A canary: the new revision (in the routes at weight 0), then its first step moves only
    # the routes.
    user.patch_spec("lean", {"model": md_body("lean", 2)["spec"]["model"]})
    canary = op.reconcile("lean")
    assert writes(canary) == {
        "POST controllerrevisions": 1,
        "POST services": 1,
        "PATCH deployments": 1,
        "PATCH configmaps": 1,
        "PUT modeldeployments/status": 1,
        "POST events": 2,  # RevisionCreated, RolloutStarted
    }, canary
    eventually(lambda: ready(user, "lean", 2), what="revision 2 ready")
    step = op.reconcile("lean")
    assert user.weights("lean") == {1: 80, 2: 20}
    assert step == {
        "PATCH configmaps": 1,
        "PUT modeldeployments/status": 1,
        "POST events": 1,  # StepReached
    }, step
    assert op.reconcile("lean") == {}, "holding at a pause costs nothing"

    # 5. A restarted operator (empty store, filled by its watches) writes nothing.
    restarted = Operator(str(control_plane.kubeconfig), namespace)
    resync = restarted.reconcile("lean")
    assert writes(resync) == {}, resync
    assert restarted.reconcile("lean") == {}, "its second pass is served from the cache"
