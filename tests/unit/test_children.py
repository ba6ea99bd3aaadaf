"""A revision's Pod template, its record and its Deployment (pure builders)."""

from __future__ import annotations

from typing import Any

from seaway.api.modeldeployment import Server
from seaway.planning import children
from seaway.planning.revisions import ResolvedModel, template_hash

DIGEST = "sha256:" + "ab" * 32
MODEL = ResolvedModel(uri="s3://models/churn/v1/bundle.tar.gz", format="sklearn-joblib",
                      digest=DIGEST, allow_unverified=False, secret_name="store")
SERVER = Server.model_validate({"image": "seaway/server:1", "replicas": 3,
                                "env": [{"name": "TIER", "value": "gold"}],
                                "podLabels": {"team": "risk"},
                                "podAnnotations": {"note": "x"},
                                "resources": {"limits": {"memory": "512Mi"}}})
OWNER = children.owner_reference("churn", "uid-1")


def env(template: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["name"], e["value"]) for e in template["spec"]["containers"][0]["env"]]


def test_the_template_carries_the_pinned_digest_format_and_the_users_settings() -> None:
    template = children.pod_template(md_name="churn", number=4, model=MODEL, server=SERVER)
    (container,) = template["spec"]["containers"]
    variables = dict(env(template))
    assert variables["SEAWAY_MODEL_DIGEST"] == DIGEST
    assert variables["SEAWAY_MODEL_FORMAT"] == "sklearn-joblib"
    assert variables["SEAWAY_BUNDLE"] == MODEL.uri
    assert variables["SEAWAY_REVISION"] == "4"
    assert "SEAWAY_ALLOW_UNVERIFIED" not in variables
    assert "SEAWAY_DIGEST" not in variables
    assert env(template)[-1] == ("TIER", "gold")  # the user's variables come after
    assert container["image"] == "seaway/server:1"
    assert container["envFrom"] == [{"secretRef": {"name": "store"}}]
    assert container["resources"] == {"limits": {"memory": "512Mi"}}
    assert template["metadata"]["labels"]["team"] == "risk"
    assert template["metadata"]["labels"][children.REVISION_LABEL] == "4"
    assert template["metadata"]["annotations"] == {"note": "x"}


def test_the_deployment_is_the_recorded_template_plus_replicas() -> None:
    template = children.pod_template(md_name="churn", number=4, model=MODEL, server=SERVER)
    record = children.revision_record(md_name="churn", namespace="ml", owner=OWNER, number=4,
                                      template_hash=template_hash(MODEL, SERVER),
                                      template=template)
    assert record["kind"] == "ControllerRevision" and record["apiVersion"] == "apps/v1"
    assert record["revision"] == 4
    assert record["metadata"]["name"] == "churn-r4"
    assert record["metadata"]["ownerReferences"] == [OWNER]
    recorded = children.recorded_template(record)
    assert recorded == template

    deployment = children.server_deployment(md_name="churn", namespace="ml", owner=OWNER,
                                            number=4, template=recorded, replicas=3,
                                            autoscaled=False)
    assert deployment["spec"]["template"] == template
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["selector"]["matchLabels"] == {
        children.MD_LABEL: "churn", children.REVISION_LABEL: "4"}
    autoscaled = children.server_deployment(md_name="churn", namespace="ml", owner=OWNER,
                                            number=4, template=recorded, replicas=3,
                                            autoscaled=True)
    assert "replicas" not in autoscaled["spec"]
    scaled_down = children.server_deployment(md_name="churn", namespace="ml", owner=OWNER,
                                             number=4, template=recorded, replicas=0,
                                             autoscaled=True)
    assert scaled_down["spec"]["replicas"] == 0


def test_allow_unverified_is_passed_only_when_the_user_wrote_it() -> None:
    skops = ResolvedModel(uri="s3://m/b", format="skops", digest=None, allow_unverified=False,
                          secret_name=None)
    template = children.pod_template(md_name="churn", number=1, model=skops, server=SERVER)
    assert "SEAWAY_ALLOW_UNVERIFIED" not in dict(env(template))
    unverified = ResolvedModel(uri="s3://m/b", format="sklearn-joblib", digest=None,
                               allow_unverified=True, secret_name=None)
    template = children.pod_template(md_name="churn", number=1, model=unverified, server=SERVER)
    assert dict(env(template))["SEAWAY_ALLOW_UNVERIFIED"] == "true"


def test_a_record_without_a_template_gives_none() -> None:
    assert children.recorded_template({"data": {}}) is None
    assert children.recorded_template({}) is None


def test_a_loading_server_is_never_killed_and_ready_means_loaded() -> None:
    template = children.pod_template(md_name="churn", number=1, model=MODEL, server=SERVER)
    (container,) = template["spec"]["containers"]
    startup, ready = container["startupProbe"], container["readinessProbe"]
    assert startup["httpGet"]["path"] == ready["httpGet"]["path"] == "/v2/health/ready"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
