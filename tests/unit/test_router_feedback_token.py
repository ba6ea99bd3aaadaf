"""A ModelDeployment can keep its bandit's /feedback for the holders of a Secret's token.

``traffic.experiment.feedbackTokenSecretRef`` reaches the router as a mounted Secret key and
``SEAWAY_FEEDBACK_TOKEN_FILE`` naming it, a setting the router reads (its behaviour with the
token: tests/router/test_feedback_trust.py).
"""

from __future__ import annotations

from typing import Any

from seaway.api.modeldeployment import ModelDeploymentSpec
from seaway.k8s import traffic
from seaway.planning import children
from seaway_serving import contract
from seaway_serving.router.settings import RouterSettings


def spec(**experiment: Any) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({
        "model": {"uri": "s3://m/churn/", "digest": "sha256:" + "1" * 64},
        "server": {"image": "seaway/server:1"},
        "traffic": {"router": "builtin", "experiment": {
            "type": "Bandit", "variants": [{"revision": 1}, {"revision": 2}], **experiment}},
    })  # fmt: skip


def router(secret: str | None) -> dict[str, Any]:
    deployment = children.router_deployment(
        md_name="churn", namespace="ml", owner=children.owner_reference("churn", "0"),
        image="example/router", service_account=None, feedback_secret=secret,
    )  # fmt: skip
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def test_the_secret_reaches_the_router_as_a_token_file() -> None:
    assert traffic._feedback_secret(spec(feedbackTokenSecretRef={"name": "churn-feedback"})) \
        == "churn-feedback"
    pod = router("churn-feedback")
    container = pod["containers"][0]
    assert container["env"] == [{"name": "SEAWAY_FEEDBACK_TOKEN_FILE",
                                 "value": "/var/run/seaway/feedback/token"}]
    assert {"name": "feedback-token", "mountPath": "/var/run/seaway/feedback",
            "readOnly": True} in container["volumeMounts"]
    assert {"name": "feedback-token", "secret": {
        "secretName": "churn-feedback", "items": [{"key": "token", "path": "token"}]}} \
        in pod["volumes"]
    # the name the operator sets is one the router reads
    assert contract.FEEDBACK_TOKEN_FILE.removeprefix("SEAWAY_").lower() in (
        RouterSettings.model_fields
    )


def test_without_the_secret_the_router_is_as_before() -> None:
    assert traffic._feedback_secret(spec()) is None
    pod = router(None)
    assert "env" not in pod["containers"][0]
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]
