"""No silent stall: a refused write or missing metrics become a condition and ONE Event."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from seaway import conditions
from seaway.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from seaway.planning import analysis, revisions, rollout, stalls
from seaway.planning.durations import format_time
from seaway.planning.rollout import Observed, plan

T0 = datetime(2026, 11, 30, 6, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kind", "status", "reason", "says"),
    [
        ("HTTPRoute", 404, "GatewayAPIMissing", "the Gateway API CRDs are not installed"),
        ("ServiceMonitor", 404, "ResourceTypeMissing", "the cluster has no ServiceMonitor"),
        ("Deployment", 403, "Forbidden", "the operator is not allowed to apply Deployment in ml"),
        ("HTTPRoute", 409, None, None),
        ("HTTPRoute", 500, None, None),  # an outage: retried, not a stall
        ("HTTPRoute", 0, None, None),
    ],
)
def test_from_api_error(kind: str, status: int, reason: str | None, says: str | None) -> None:
    stall = stalls.from_api_error(kind, "apply", status, "ml")
    if reason is None:
        assert stall is None
    else:
        assert stall is not None and stall.reason == reason
        assert says is not None and says in stall.message


def test_hold_keeps_progress_and_says_it_once() -> None:
    previous = ModelDeploymentStatus.model_validate(
        {"stableRevision": 1, "weights": [{"revision": 1, "weight": 100}], "revisions": [
            {"number": 1, "templateHash": "h", "createdAt": "2026-11-30T00:00:00Z",
             "fate": "Stable"}]}
    )  # fmt: skip
    stall = stalls.from_api_error("HTTPRoute", "apply", 404, "ml")
    assert stall is not None
    status, events, changed = stalls.hold(previous, stall, now="2026-11-30T06:00:00Z",
                                          generation=4)  # fmt: skip
    assert changed and [e.reason for e in events] == ["GatewayAPIMissing"]
    ready = conditions.find(status.conditions, conditions.READY)
    assert ready is not None and (ready.status, ready.reason) == ("False", "GatewayAPIMissing")
    assert status.stable_revision == 1 and status.weights == previous.weights
    assert status.observed_generation == 4
    again, events, changed = stalls.hold(status, stall, now="2026-11-30T06:00:30Z", generation=4)
    assert not changed and events == []
    assert again == status  # an identical status: no write either


def spec() -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({
        "model": {"uri": "s3://m/model.joblib", "digest": "sha256:" + "1" * 64},
        "server": {"image": "seaway/server:1", "replicas": 1},
        "rollout": {"strategy": "Canary", "steps": [{"setWeight": 10}, {"pause": {}}],
                    "analysis": {"interval": "30s", "maxErrorRatio": "0.01",
                                 "noDataLimit": 100}},
    })  # fmt: skip


def test_unreachable_metrics_show_in_progressing_once() -> None:
    s1 = spec()
    s2 = spec().model_copy(deep=True)
    s2.model.digest = "sha256:" + "2" * 64
    status = ModelDeploymentStatus()
    now = T0
    events: list[str] = []
    problem = analysis.Measurement(problem="Prometheus: prometheus.monitoring:9090 could not be"
                                           " reached")  # fmt: skip
    for n in range(12):
        s = s1 if n < 2 else s2
        now += timedelta(seconds=31)
        result = plan(s, status, generation=1, model=revisions.resolve_model(s),
                      observed={1: Observed(ready=1), 2: Observed(ready=1)}, now=now,
                      measurement=problem if n >= 4 else None)  # fmt: skip
        confirmed = getattr(rollout, "confirmed", None)  # where the handler stamps starts
        if confirmed is not None:
            confirmed(result, now)
        stalls.explain_analysis(result, status, now=format_time(now), generation=1)
        status = result.status
        events += [e.reason for e in result.events]
    assert status.canary_revision == 2
    progressing = conditions.find(status.conditions, conditions.PROGRESSING)
    assert progressing is not None
    assert (progressing.status, progressing.reason) == ("True", "MetricsUnavailable")
    assert "prometheus.monitoring:9090 could not be reached" in progressing.message
    assert "holds the rollout at step 1" in progressing.message
    assert events.count("MetricsUnavailable") == 1


def test_too_few_requests_is_no_stall() -> None:
    status = ModelDeploymentStatus.model_validate({
        "stableRevision": 1, "canaryRevision": 2, "currentStepIndex": 1,
        "analysis": {"revision": 2, "startedAt": "2026-11-30T06:00:00Z", "lastResult": "NoData",
                     "message": "3 requests < minRequests 100"}})  # fmt: skip

    class Result:
        def __init__(self, st: Any) -> None:
            self.status = st
            self.events: list[Any] = []

    result = Result(status.model_copy(deep=True))
    stalls.explain_analysis(result, status, now="2026-11-30T06:01:00Z", generation=1)  # type: ignore[arg-type]
    assert result.events == [] and result.status == status


class ForbiddenKube:
    """Enough of ``Kube`` for one pass whose Deployment list is forbidden (a trimmed RBAC)."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.written: list[dict[str, Any]] = []
        self.events: list[tuple[str, str, str]] = []

    def budget(self, seconds: float) -> Any:
        import contextlib

        return contextlib.nullcontext()

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return json.loads(json.dumps(self.body)) if kind == "ModelDeployment" else None

    def list(self, kind: str, namespace: str, selector: str | None = None) -> list[Any]:
        from seaway.k8s.kube import KubeError

        raise KubeError(403, f'{kind.lower()}s.apps is forbidden: User "seaway" cannot list'
                             f' resource "{kind.lower()}s" in the namespace "{namespace}"')

    def replace_status(self, kind: str, body: dict[str, Any]) -> None:
        self.written.append(body["status"])
        self.body = body

    def event(self, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))


def test_a_forbidden_read_holds_the_pass_once(caplog: pytest.LogCaptureFixture) -> None:
    from seaway.handlers import modeldeployment as handler

    body = {"apiVersion": "seaway.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "churn", "namespace": "ml", "generation": 1, "uid": "u"},
            "spec": spec().model_dump(by_alias=True, exclude_none=True)}  # fmt: skip
    kube = ForbiddenKube(body)
    settings = handler.Settings(clock=lambda: T0)
    for _ in range(3):
        assert handler.reconcile(kube, "ml", "churn", settings) == stalls.RETRY_SECONDS  # type: ignore[arg-type]
    assert len(kube.written) == 1, "an unchanged status is not written again"
    ready = next(c for c in kube.written[0]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Forbidden")
    assert 'cannot list resource "deployments"' in ready["message"]
    assert "grant it in the operator's RBAC" in ready["message"]
    assert [e[1] for e in kube.events] == ["Forbidden"]
    said = [r for r in caplog.records if "cannot progress" in r.getMessage()]
    assert len(said) == 1 and not any(r.exc_info for r in caplog.records)


def test_a_forbidden_request_holds_a_retrainjob_once(caplog: pytest.LogCaptureFixture) -> None:
    from seaway.handlers import modeldeployment, retrainjob

    body = {"apiVersion": "seaway.dev/v1alpha1", "kind": "RetrainJob",
            "metadata": {"name": "churn-weekly", "namespace": "ml", "generation": 2, "uid": "u",
                         "creationTimestamp": "2026-11-30T00:00:00Z"},
            "spec": {"modelDeployment": "churn", "runNow": "now",
                     "dataset": {"uri": "s3://data/churn.csv", "target": "churned"},
                     "estimator": {"importPath": "sklearn.linear_model.LogisticRegression"},
                     "output": {"uri": "s3://models/churn/"}}}  # fmt: skip

    class Kube(ForbiddenKube):
        def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
            return json.loads(json.dumps(self.body)) if kind == "RetrainJob" else None

    kube = Kube(body)
    settings = modeldeployment.Settings(clock=lambda: T0)
    for _ in range(3):
        assert retrainjob.reconcile(kube, "ml", "churn-weekly", settings) == stalls.RETRY_SECONDS  # type: ignore[arg-type]
    assert len(kube.written) == 1
    ready = next(c for c in kube.written[0]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Forbidden")
    assert 'cannot list resource "jobs"' in ready["message"]
    assert [e[1] for e in kube.events] == ["Forbidden"]
    assert len([r for r in caplog.records if "cannot progress" in r.getMessage()]) == 1
