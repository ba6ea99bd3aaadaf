"""The pure parts of a lighter pass: when Pods are worth listing, when a Deployment's siblings
need writing, and how requests are named when they are counted."""

from __future__ import annotations

from typing import Any

import pytest

from seaway.api.modeldeployment import ModelDeploymentStatus, RevisionStatus
from seaway.k8s.cache import Store
from seaway.k8s.kube import SIBLINGS_HASH, resource_of, siblings_current, with_siblings
from seaway.planning import children, refusals
from seaway.planning.rollout import Plan

CREATED = "2026-11-30T06:00:00Z"


def status(canary: int | None, **fates: str) -> ModelDeploymentStatus:
    revisions = [
        RevisionStatus(number=int(n.removeprefix("r")), template_hash=n, created_at=CREATED,
                       fate=fate)  # type: ignore[arg-type]
        for n, fate in fates.items()
    ]  # fmt: skip
    return ModelDeploymentStatus(canary_revision=canary, revisions=revisions)


@pytest.mark.parametrize(
    ("now", "before", "ready", "needed"),
    [
        # a canary whose Deployment has no ready pod: its pods may say why
        (status(2, r1="Stable", r2="Canary"), status(2, r1="Stable", r2="Canary"), {1: 1, 2: 0},
         True),
        # a canary created this pass: no Deployment, so no pod to read
        (status(2, r1="Stable", r2="Canary"), status(None, r1="Stable"), {1: 1}, False),
        # the first revision, its Deployment just written: no pod yet either
        (status(1, r1="Canary"), status(None), {}, False),
        # a canary with a ready pod: nothing to explain (a refusal said before is cleared)
        (status(2, r1="Stable", r2="Canary"), status(2, r1="Stable", r2="Canary"), {1: 1, 2: 1},
         False),
        # converged, even with a stable revision briefly unready: no rollout to explain
        (status(None, r1="Stable"), status(None, r1="Stable"), {1: 0}, False),
        # reverted in this pass: the failed revision still deserves its reason
        (status(None, r1="Stable", r2="Failed"), status(2, r1="Stable", r2="Canary"),
         {1: 1, 2: 0}, True),
        # failed in an earlier pass: said already
        (status(None, r1="Stable", r2="Failed"), status(None, r1="Stable", r2="Failed"),
         {1: 1, 2: 0}, False),
    ],
)  # fmt: skip
def test_pods_are_listed_only_when_they_can_explain_something(
    now: ModelDeploymentStatus, before: ModelDeploymentStatus, ready: dict[int, int], needed: bool
) -> None:
    assert refusals.pods_needed(Plan(status=now), before, ready) is needed


def deployment(replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "churn-r1", "namespace": "ml", "annotations": {"team": "a"}},
        "spec": {"replicas": replicas},
    }


SERVICE = {"kind": "Service", "metadata": {"name": "churn-r1"}, "spec": {"ports": [80]}}


def test_a_deployment_carries_the_hash_of_the_siblings_written_before_it() -> None:
    one = with_siblings(deployment(), [SERVICE])
    assert one["metadata"]["annotations"]["team"] == "a"
    assert deployment()["metadata"]["annotations"] == {"team": "a"}, "the input is not changed"
    # a scale step changes the Deployment, not its siblings: they need no write, no read
    scaled = with_siblings(deployment(replicas=3), [SERVICE])
    assert siblings_current(one, scaled)
    # a changed Service, an autoscaler to delete: written again before the Deployment
    other = {**SERVICE, "spec": {"ports": [81]}}
    assert not siblings_current(one, with_siblings(deployment(), [other]))
    assert not siblings_current(one, with_siblings(deployment(), [SERVICE, "no autoscaler"]))
    # no Deployment yet, or one written before the hash existed: the siblings are written
    assert not siblings_current(None, one)
    older = {"metadata": {"annotations": {"team": "a"}}}
    assert not siblings_current(older, one)
    assert SIBLINGS_HASH in one["metadata"]["annotations"]


@pytest.mark.parametrize(
    ("path", "resource"),
    [
        ("/api/v1/namespaces/ml/configmaps/churn-router", "configmaps"),
        ("/api/v1/namespaces/ml/events", "events"),
        ("/apis/seaway.dev/v1alpha1/namespaces/ml/modeldeployments/churn/status",
         "modeldeployments/status"),
        ("/apis/apps/v1/namespaces/ml/deployments?labelSelector=a%3Db", "deployments"),
        ("/api/v1/namespaces/ml", "namespaces"),
        ("/version", "version"),
    ],
)  # fmt: skip
def test_requests_are_counted_by_resource(path: str, resource: str) -> None:
    assert resource_of(path) == resource


def test_the_echo_of_our_own_write_is_no_news() -> None:
    store = Store(children.MD_LABEL)
    body = {"metadata": {"name": "churn", "namespace": "ml", "resourceVersion": "7"}}
    assert store.put("ModelDeployment", body), "first seen"
    # the watch event of a write whose result went into the store: no pass needed for it
    assert not store.put("ModelDeployment", dict(body))
    assert not store.put(
        "ModelDeployment", {**body, "metadata": {**body["metadata"], "resourceVersion": "6"}}
    )
    newer = {**body, "metadata": {**body["metadata"], "resourceVersion": "8"}}
    assert store.put("ModelDeployment", newer), "someone else's change"


def test_the_store_keeps_no_managed_fields() -> None:
    store = Store(children.MD_LABEL)
    meta = {"name": "r1", "namespace": "ml", "resourceVersion": "3"}
    body = {"metadata": {**meta, "managedFields": [{"manager": "seaway"}]}, "spec": {"replicas": 1}}
    store.put("Deployment", body)
    assert store.get("Deployment", "ml", "r1") == {"metadata": meta, "spec": {"replicas": 1}}
    assert "managedFields" in body["metadata"], "what the caller holds is left alone"
