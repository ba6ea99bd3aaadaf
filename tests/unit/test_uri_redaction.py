"""Secrets in model URIs stay out of status and Events (issue 15, item 5).

A presigned URL carries its signature and session token in the query string and
``user:password@`` a password; everyone who may read a ModelDeployment reads its status. The
attacker's input: a spec whose model URI is presigned. The Pod still needs the URI as written.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from seaway.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from seaway.planning import children, revisions
from seaway.planning.rollout import plan

SIGNATURE = "X-Amz-Signature=5e1f0c0ffee"
TOKEN = "X-Amz-Security-Token=IQoJb3JpZ2luX2Vj"
PRESIGNED = f"https://store.example.com/models/churn.tar.gz?X-Amz-Expires=600&{SIGNATURE}&{TOKEN}"


def test_a_presigned_uri_is_stored_and_announced_without_its_query() -> None:
    spec = ModelDeploymentSpec.model_validate(
        {
            "model": {"uri": PRESIGNED, "digest": "sha256:" + "1" * 64},
            "server": {"image": "seaway/server:1"},
        }
    )
    model = revisions.resolve_model(spec)
    assert model is not None
    result = plan(
        spec,
        ModelDeploymentStatus(),
        generation=1,
        model=model,
        observed={},
        now=datetime(2026, 11, 30, tzinfo=UTC),
    )
    status = json.dumps(result.status.to_wire())
    events = " ".join(e.message for e in result.events)
    for text in (status, events):
        assert "X-Amz-Signature" not in text and "Security-Token" not in text
    assert result.status.revisions[0].model_uri == "https://store.example.com/models/churn.tar.gz"
    template = json.dumps(
        children.pod_template(md_name="churn", number=1, model=model, server=spec.server)
    )
    assert SIGNATURE in template, "the Pod gets the URI as written"


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        (PRESIGNED, "https://store.example.com/models/churn.tar.gz"),
        ("https://user:hunter2@store.example.com/m/", "https://store.example.com/m/"),
        ("https://store.example.com/m/#token=abc", "https://store.example.com/m/"),
        ("http://h:8080/a@b/model.joblib?sig=1", "http://h:8080/a@b/model.joblib"),
        ("s3://models/churn/2026-11-20/", "s3://models/churn/2026-11-20/"),
        ("file:///models/churn", "file:///models/churn"),
        ("/models/churn", "/models/churn"),
    ],
)
def test_redact_uri(uri: str, shown: str) -> None:
    assert revisions.redact_uri(uri) == shown
