"""A model the server refuses shows in the ModelDeployment's status and ONE Event, read from the
pod's termination message, on the real API server.

The simulated node runs no container, so the test writes what the kubelet would after the
model server exited with its one-line refusal: the container's ``lastState.terminated``
(exit code 2, the message). The pod carries the simulator's not-ready label, as a crash-looping
server never becomes ready.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.integration.mdtools import User, md_body

from seaway.planning import children

OPERATOR = ["seaway.handlers.operator"]
NOT_READY = {"sim.seaway.dev/not-ready": "true"}
REFUSAL = ("digest mismatch: pinned (SEAWAY_MODEL_DIGEST) sha256:1111111111111111111111111111111"
           "111111111111111111111111111111111 file sha256:9f2c")  # fmt: skip


@pytest.fixture
def user(kube_api: Any, namespace: str, seaway_crds: list[str]) -> User:
    return User(kube_api, namespace)


def test_refused_model_is_explained(
    run_operator: Any, user: User, namespace: str, eventually: Any, consistently: Any,
    control_plane: Any,
) -> None:  # fmt: skip
    body = md_body("churn", 1)
    body["spec"]["server"]["podLabels"] = NOT_READY

    def server_pod() -> str:
        found = control_plane.kubectl(
            "get", "pods", "-n", namespace, "-l", f"{children.MD_LABEL}=churn", "-o", "name"
        ).stdout.split()
        assert found, "no pod yet"
        return str(found[0])

    with run_operator(OPERATOR, namespace=namespace):
        user.create(body)
        pod = eventually(server_pod, timeout=30)
        status = {"status": {"containerStatuses": [{
            "name": "server", "ready": False, "restartCount": 3, "image": "seaway/server:1",
            "imageID": "", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 2, "reason": "Error", "message": REFUSAL}},
        }]}}  # fmt: skip
        control_plane.kubectl("patch", "-n", namespace, pod, "--subresource=status",
                              "--type=merge", "-p", json.dumps(status))  # fmt: skip
        eventually(lambda: user.condition("churn", "Ready").get("reason") == "ModelRefused",
                   timeout=40)  # fmt: skip
        message = user.condition("churn", "Ready")["message"]
        assert message == f"revision 1: the model server refused the model: {REFUSAL}"
        revision = user.status("churn")["revisions"][0]
        assert revision["message"] == f"the model server refused the model: {REFUSAL}"
        consistently(lambda: user.event_reasons("churn").count("ModelRefused") == 1, duration=5)
