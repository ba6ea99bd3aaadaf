"""A revision is a frozen template: later spec changes never reach an existing revision's Pods.

On the real API server with the operator in-process (pods simulated). Each change of one field
of ``spec.server`` (the image, an env value, a pod label) makes a new canary revision, while the
stable revision's Deployment stays byte-for-byte what it was; a rollback runs the old revision's
own template, not today's spec.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes import client
from tests.integration.mdtools import User, md_body

from seaway.planning import children

OPERATOR = ["seaway.handlers.operator"]
HOLD = {"strategy": "Canary", "steps": [{"setWeight": 20}, {"pause": {}}],
        "progressDeadlineSeconds": 60}


@pytest.fixture
def user(kube_api: Any, namespace: str, seaway_crds: list[str]) -> User:
    return User(kube_api, namespace)


def snapshot(user: User, name: str, number: int) -> tuple[int, dict[str, Any]]:
    """The Deployment's generation and Pod template, as the API server holds them."""
    deployment = user.deployments(name)[number]
    template = client.ApiClient().sanitize_for_serialization(deployment.spec.template)
    return deployment.metadata.generation, template


def container(template: dict[str, Any]) -> dict[str, Any]:
    (only,) = template["spec"]["containers"]
    return dict(only)


def env_of(template: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container(template).get("env", [])}


def test_changing_one_field_never_touches_the_stable_revision_and_rollback_restores_it(
    run_operator: Any, user: User, namespace: str, eventually: Any, kube_api: Any
) -> None:
    original = md_body("churn", 1, rollout=HOLD)["spec"]
    original["server"] = {"image": "seaway/server:1", "replicas": 1,
                          "env": [{"name": "TIER", "value": "gold"}],
                          "podLabels": {"team": "risk"}}

    def changed(**server: Any) -> dict[str, Any]:
        spec = copy.deepcopy(original)
        spec["server"].update(server)
        return spec

    def canary_at(number: int) -> bool:
        status = user.status("churn")
        return status.get("canaryRevision") == number and user.weights("churn").get(number) == 20

    with run_operator(OPERATOR, namespace=namespace):
        user.create({**md_body("churn", 1), "spec": original})
        eventually(lambda: user.status("churn").get("stableRevision") == 1, timeout=30,
                   what="r1 stable")
        stable = snapshot(user, "churn", 1)
        assert container(stable[1])["image"] == "seaway/server:1"

        edits = {
            2: changed(image="seaway/server:broken"),
            3: changed(env=[{"name": "TIER", "value": "bronze"}]),
            4: changed(podLabels={"team": "fraud"}),
        }
        templates = {1: stable[1]}
        for number, spec in edits.items():
            user.patch_spec("churn", spec)
            eventually(lambda n=number: canary_at(n), timeout=30, what=f"r{number} canary")
            assert snapshot(user, "churn", 1) == stable, f"r{number} changed the stable revision"
            templates[number] = snapshot(user, "churn", number)[1]

        assert container(templates[2])["image"] == "seaway/server:broken"
        assert env_of(templates[2])["TIER"] == "gold"
        assert env_of(templates[3])["TIER"] == "bronze"
        assert container(templates[3])["image"] == "seaway/server:1"
        assert templates[4]["metadata"]["labels"]["team"] == "fraud"
        assert env_of(templates[4])["TIER"] == "gold"

        # every revision has its record, holding the template it was created with
        apps = client.AppsV1Api(kube_api)
        records = apps.list_namespaced_controller_revision(
            namespace, label_selector=f"{children.MD_LABEL}=churn")
        assert sorted(r.revision for r in records.items) == [1, 2, 3, 4]
        for record in records.items:
            assert record.metadata.owner_references[0].kind == "ModelDeployment"
            assert record.data["template"]["spec"]["containers"][0]["image"] == (
                container(templates[record.revision])["image"])

        # rollback to revision 2 runs revision 2's image, although the spec names another one
        user.patch_spec("churn", {"rollbackTo": {"revision": 2, "skipSteps": True}})
        eventually(lambda: user.status("churn").get("stableRevision") == 2
                   and user.weights("churn") == {2: 100}, timeout=30, what="rolled back to r2")
        assert snapshot(user, "churn", 2)[1] == templates[2]
        assert snapshot(user, "churn", 1)[1] == stable[1]  # scaled to zero, template kept

        # the original spec again (a git revert): revision 1 comes back as the canary, exactly
        # as first created (not as a new revision)
        user.patch_spec("churn", {**original, "rollbackTo": None})
        eventually(lambda: canary_at(1), timeout=30, what="r1 canary again")
        assert snapshot(user, "churn", 1)[1] == stable[1]
        assert [r["number"] for r in user.status("churn")["revisions"]] == [1, 2, 3, 4]
