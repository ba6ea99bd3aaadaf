"""The summary pass (seaway.handlers.summary) against a recording fake of the API: which requests
it makes, in which order, and what a conflict does. The real API server and a real receiver are
in tests/integration/test_summary.py."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from seaway.handlers import notify
from seaway.handlers import summary as handler
from seaway.handlers.modeldeployment import Settings
from seaway.k8s.kube import Conflict

NOW = datetime(2026, 11, 30, 10, 0, 5, tzinfo=UTC)


class FakeKube:
    """The calls a pass makes, in order; ``replace_status`` checks the resourceVersion."""

    def __init__(self, live: dict[str, Any]) -> None:
        self.live = live
        self.calls: list[tuple[str, str]] = []
        self.written: list[dict[str, Any]] = []

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        self.calls.append(("get", kind))
        return copy.deepcopy(self.live)

    def list(self, kind: str, namespace: str, selector: str | None = None) -> list[Any]:
        self.calls.append(("list", kind))
        return []

    def replace_status(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("replace_status", kind))
        if body["metadata"]["resourceVersion"] != self.live["metadata"]["resourceVersion"]:
            raise Conflict("changed")
        written = copy.deepcopy(body)
        written["metadata"]["resourceVersion"] = str(int(body["metadata"]["resourceVersion"]) + 1)
        self.live = written
        self.written.append(copy.deepcopy(written))
        return copy.deepcopy(written)

    def event(self, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.calls.append(("event", reason))


def md(summary_status: dict[str, Any] | None, version: str = "7") -> dict[str, Any]:
    status: dict[str, Any] = {
        "stableRevision": 1,
        "revisions": [{"number": 1, "templateHash": "h", "createdAt": "2026-11-30T08:00:00Z",
                       "fate": "Stable"}],
        "weights": [{"revision": 1, "weight": 100}],
    }  # fmt: skip
    if summary_status is not None:
        status["summary"] = summary_status
    return {
        "apiVersion": "seaway.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "churn", "namespace": "ml", "resourceVersion": version},
        "spec": {
            "model": {"uri": "s3://m/model.joblib", "digest": "sha256:" + "a" * 64},
            "server": {"image": "seaway/server:test"},
            "notifications": {
                "webhookURL": "https://hooks.example.com/seaway",
                "summary": {"schedule": "@hourly"},
            },
        },
        "status": status,
    }


def settings() -> Settings:
    return Settings(clock=lambda: NOW)


@pytest.fixture
def posts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """What would be posted (the webhook delivers)."""
    sent: list[tuple[str, dict[str, Any]]] = []

    def post(client: Any, url: str, payload: dict[str, Any]) -> str | None:
        sent.append((url, payload))
        return None

    monkeypatch.setattr(notify, "post", post)
    return sent


def test_nothing_due_reads_the_cache_once_and_writes_nothing(posts: list[Any]) -> None:
    kube = FakeKube(md({"schedule": "@hourly", "nextAt": "2026-11-30T11:00:00Z"}))
    wait = handler.reconcile(kube, "ml", "churn", settings())  # type: ignore[arg-type]
    assert kube.calls == [("get", "ModelDeployment")]
    assert posts == [] and wait == 3600 - 5


def test_first_sight_writes_the_due_time_only(posts: list[Any]) -> None:
    kube = FakeKube(md(None))
    handler.reconcile(kube, "ml", "churn", settings())  # type: ignore[arg-type]
    assert kube.calls == [("get", "ModelDeployment"), ("replace_status", "ModelDeployment")]
    assert kube.live["status"]["summary"] == {
        "schedule": "@hourly",
        "nextAt": "2026-11-30T11:00:00Z",
    }
    assert kube.live["status"]["stableRevision"] == 1, "only status.summary changes"
    assert posts == []


def test_due_claims_in_status_before_posting_then_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = FakeKube(md({"schedule": "@hourly", "nextAt": "2026-11-30T10:00:00Z"}))
    claims: list[dict[str, Any]] = []
    posts: list[tuple[str, dict[str, Any], list[Any]]] = []

    def post(client: Any, url: str, payload: dict[str, Any]) -> str | None:
        claims.append(copy.deepcopy(kube.live["status"]["summary"]))
        posts.append((url, payload, list(kube.calls)))
        return None

    monkeypatch.setattr(notify, "post", post)
    handler.reconcile(kube, "ml", "churn", settings())  # type: ignore[arg-type]
    assert claims == [
        {
            "schedule": "@hourly",
            "nextAt": "2026-11-30T11:00:00Z",
            "lastDueAt": "2026-11-30T10:00:00Z",
            "lastResult": "Sending",
        }
    ]
    (url, payload, before) = posts[0]
    assert url == "https://hooks.example.com/seaway"
    assert before == [
        ("get", "ModelDeployment"),
        ("replace_status", "ModelDeployment"),
        ("list", "RetrainJob"),
    ]
    assert (payload["kind"], payload["window"], payload["stableRevision"]) == (
        "SeawayModelReport",
        "1h",
        1,
    )
    assert payload["generatedAt"] == "2026-11-30T10:00:05Z"
    assert kube.calls[len(before) :] == [
        ("event", "SummarySent"),
        ("replace_status", "ModelDeployment"),
    ]
    assert kube.live["status"]["summary"]["lastResult"] == "Sent"
    assert kube.live["status"]["summary"]["lastSentAt"] == "2026-11-30T10:00:05Z"


def test_a_conflicting_claim_decides_again_from_a_fresh_read(posts: list[Any]) -> None:
    due = {"schedule": "@hourly", "nextAt": "2026-11-30T10:00:00Z"}
    kube = FakeKube(md(due, version="8"))
    stale = md(due, version="7")
    reads = iter([stale])
    real_get = kube.get

    def get(kind: str, namespace: str, name: str) -> dict[str, Any]:
        return next(reads, None) or real_get(kind, namespace, name)

    kube.get = get  # type: ignore[method-assign]
    handler.reconcile(kube, "ml", "churn", settings())  # type: ignore[arg-type]
    assert len(posts) == 1
    assert [w["status"]["summary"]["lastResult"] for w in kube.written] == ["Sending", "Sent"]


def test_a_host_off_the_allowlist_is_recorded_as_failed() -> None:
    kube = FakeKube(md({"schedule": "@hourly", "nextAt": "2026-11-30T10:00:00Z"}))
    handler.reconcile(kube, "ml", "churn", settings())  # type: ignore[arg-type]
    summary = kube.live["status"]["summary"]
    assert summary["lastResult"] == "Failed" and "lastSentAt" not in summary
    assert "hooks.example.com:443 is not allowed by" in summary["message"]
    assert ("event", "SummaryFailed") in kube.calls


@pytest.mark.parametrize(
    ("summary", "analysis", "default", "expected"),
    [
        ({"address": "http://own:9090"}, "http://analysis:9090", "http://op:9090", "own"),
        (None, "http://analysis:9090", "http://op:9090", "analysis"),
        (None, None, "http://op:9090", "op"),
        (None, None, None, None),
    ],
)
def test_prometheus_comes_from_the_summary_then_the_analysis_then_the_operator(
    summary: dict[str, str] | None, analysis: str | None, default: str | None, expected: str | None
) -> None:
    from seaway.api.modeldeployment import ModelDeployment

    body = md(None)
    if summary is not None:
        body["spec"]["notifications"]["summary"]["prometheus"] = summary
    if analysis is not None:
        body["spec"]["rollout"] = {
            "strategy": "Canary",
            "steps": [{"setWeight": 10}],
            "analysis": {
                "maxErrorRatio": "0.01",
                "provider": {"prometheus": {"address": analysis}},
            },
        }
    parsed = ModelDeployment.parse(body)
    spec = parsed.spec.notifications.summary  # type: ignore[union-attr]
    assert spec is not None
    found = handler.prometheus_address(parsed, spec, Settings(prometheus_url=default))
    assert found == (f"http://{expected}:9090" if expected else None)


def test_only_objects_with_a_summary_are_queued() -> None:
    assert handler.wanted(md(None))
    bare = md(None)
    del bare["spec"]["notifications"]
    assert not handler.wanted(bare)
    bare["status"]["summary"] = {"schedule": "@hourly"}
    assert handler.wanted(bare), "a removed summary still has its status to clear"
