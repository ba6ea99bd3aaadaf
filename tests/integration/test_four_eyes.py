"""Four-eyes approvals on a RetrainJob (issue 15, item 5), enforced by the real API server.

The attacker is the author of a RetrainJob who approves their own run. Two users, alice and
bob, write through impersonation (the admin kubeconfig may impersonate); the approval admission
policy shipped in crds/ decides. No operator is needed: admission is where the writer is known.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from tests.support.rbac import wait_allowed

EDITOR = "seaway.dev/spec-editor"
GROUP, VERSION, PLURAL = "seaway.dev", "v1alpha1", "retrainjobs"


def rj(name: str, editor: str | None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RetrainJob",
        "metadata": {"name": name},
        "spec": {
            "modelDeployment": "churn",
            "dataset": {"uri": "s3://data/churn.csv", "target": "churned"},
            "estimator": {"importPath": "sklearn.linear_model.LogisticRegression"},
            "output": {"uri": "s3://models/churn/"},
            "promotion": "Manual",
            **spec,
        },
    }
    if editor is not None:
        body["metadata"]["annotations"] = {EDITOR: editor}
    return body


@pytest.fixture
def as_user(kube_api: Any, namespace: str, seaway_crds: list[str]) -> Callable[[str], Any]:
    """A CustomObjectsApi writing as the named user, who may edit RetrainJobs in ``namespace``."""
    from kubernetes import client

    rbac = client.RbacAuthorizationV1Api(kube_api)
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "rj-editor"},
        "rules": [{"apiGroups": [GROUP], "resources": [PLURAL],
                   "verbs": ["get", "create", "update", "patch"]}],
    })  # fmt: skip
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "rj-editors"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "rj-editor"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": n}
                     for n in ("alice", "bob")],
    })  # fmt: skip
    for user in ("alice", "bob"):  # the binding is one object: seen for one verb, seen
        wait_allowed(kube_api, user, "create", GROUP, PLURAL, namespace)

    def make(user: str) -> Any:
        api = client.ApiClient(copy.deepcopy(kube_api.configuration))
        api.set_default_header("Impersonate-User", user)
        return client.CustomObjectsApi(api)

    return make


def refused(call: Callable[[], Any], words: str) -> None:
    from kubernetes.client import ApiException

    with pytest.raises(ApiException) as error:
        call()
    assert error.value.status in (403, 422), error.value.body
    assert words in error.value.body, error.value.body


def approve(api: Any, namespace: str, name: str, approver: str, run: int = 1) -> Any:
    current = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    approvals = [*current["spec"].get("approvals", []),
                 {"run": run, "decision": "Approve", "approver": approver}]
    return api.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"spec": {"approvals": approvals}})


def test_the_author_of_a_retrain_job_cannot_approve_its_run(
    as_user: Callable[[str], Any], namespace: str
) -> None:
    alice, bob = as_user("alice"), as_user("bob")
    create = alice.create_namespaced_custom_object
    refused(lambda: create(GROUP, VERSION, namespace, PLURAL, rj("w", None, fourEyes=True)),
            f"metadata.annotations[{EDITOR}]")
    refused(lambda: create(GROUP, VERSION, namespace, PLURAL, rj("w", "bob", fourEyes=True)),
            "set it to alice")
    create(GROUP, VERSION, namespace, PLURAL, rj("w", "alice", fourEyes=True))

    # the attack: alice approves her own run
    refused(lambda: approve(alice, namespace, "w", "alice"), "must not be the last editor")
    # nor may she pass the editor's name on to bob, or turn four-eyes off
    refused(lambda: alice.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "w", {"metadata": {"annotations": {EDITOR: "bob"}}}),
        "set it to alice")
    refused(lambda: alice.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "w", {"spec": {"fourEyes": False}}),
        "fourEyes cannot be turned off")
    approve(bob, namespace, "w", "bob")

    # bob edits the spec (naming himself): now only someone else may approve the next run
    refused(lambda: bob.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "w", {"spec": {"runNow": "again"}}), "set it to bob")
    bob.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w", {
        "metadata": {"annotations": {EDITOR: "bob"}}, "spec": {"runNow": "again"}})  # fmt: skip
    refused(lambda: approve(bob, namespace, "w", "bob", run=2), "must not be the last editor")
    approve(alice, namespace, "w", "alice", run=2)


def test_a_namespace_label_turns_four_eyes_on_for_every_retrain_job(
    as_user: Callable[[str], Any], namespace: str, kube_api: Any, eventually: Any
) -> None:
    from kubernetes import client
    from kubernetes.client import ApiException

    alice, bob = as_user("alice"), as_user("bob")
    alice.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, rj("free", None))
    approve(alice, namespace, "free", "alice")  # without four-eyes: allowed, as before
    client.CoreV1Api(kube_api).patch_namespace(
        namespace, {"metadata": {"labels": {"seaway.dev/four-eyes": "true"}}})

    def label_in_force() -> None:
        """Admission reads the namespace from the API server's cache, which follows the label
        a moment later (seen under load): ask with a dry run, which stores nothing."""
        try:
            alice.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                  rj("probe", None), dry_run="All")
        except ApiException as exc:
            assert "set it to alice" in exc.body, exc.body
            return
        raise AssertionError("the namespace label is not in force yet")

    eventually(label_in_force, timeout=10, what="the four-eyes label in force")
    refused(lambda: alice.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, rj("labelled", None)), "set it to alice")
    alice.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                          rj("labelled", "alice"))
    refused(lambda: approve(alice, namespace, "labelled", "alice"), "must not be the last editor")
    approve(bob, namespace, "labelled", "bob")
