"""Commands that cannot take effect say so; what `seaway status` and `history` show."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from seaway.api.modeldeployment import ModelDeployment, RevisionStatus
from seaway.api.retrainjob import RetrainJob
from seaway.cli import rollout as cli
from seaway.cli.main import main
from seaway.planning import commands

D1 = "sha256:" + "1" * 64
STEPS = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "1m"}}]


def rev(number: int, fate: str, reason: str | None = None, ready: bool = True) -> dict[str, Any]:
    return {
        "number": number, "templateHash": f"h{number}", "createdAt": "2026-11-30T00:00:00Z",
        "fate": fate, "reason": reason,
        "readyAt": "2026-11-30T00:01:00Z" if ready else None,
    }  # fmt: skip


def md(status: dict[str, Any], *, analysis: bool = False, paused: bool = False) -> dict[str, Any]:
    rollout: dict[str, Any] = {"strategy": "Canary", "steps": STEPS}
    if analysis:
        rollout["analysis"] = {"interval": "30s", "maxErrorRatio": "0.01"}
    return {
        "apiVersion": "seaway.dev/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "churn", "namespace": "ml", "generation": 3},
        "spec": {"model": {"uri": "s3://m/churn/model.joblib", "digest": D1},
                 "server": {"image": "seaway/server:1"}, "rollout": rollout, "paused": paused},
        "status": status,
    }  # fmt: skip


CANARY = {"stableRevision": 1, "canaryRevision": 2, "currentStepIndex": 1,
          "revisions": [rev(1, "Stable"), rev(2, "Canary")]}  # fmt: skip
NO_DATA = {"revision": 2, "startedAt": "2026-11-30T00:01:00Z", "lastResult": "NoData",
           "message": "Prometheus: prometheus.monitoring:9090 could not be reached"}  # fmt: skip


@pytest.mark.parametrize(
    ("body", "full", "blocker"),
    [
        (md(CANARY), False, None),
        (md(CANARY), True, None),
        (md({"stableRevision": 1, "revisions": [rev(1, "Stable")]}), False,
         "churn has no canary to promote (revision 1 is stable and nothing is rolling out)"),
        (md({}), True, "churn has no canary to promote (no revision is stable yet"),
        (md(CANARY, paused=True), False, "churn is paused (spec.paused: true)"),
        (md({**CANARY, "revisions": [rev(1, "Stable"), rev(2, "Canary", ready=False)]}), True,
         "canary revision 2 has no ready pod yet"),
        (md({**CANARY, "analysis": NO_DATA}, analysis=True), False,
         "the analysis holds revision 2 at step 1 (no usable metrics: Prometheus: "
         "prometheus.monitoring:9090 could not be reached); fix the metrics source"),
        (md({**CANARY, "analysis": NO_DATA}, analysis=True), True, None),
        (md({**CANARY, "analysis": {**NO_DATA, "lastResult": "Pass"}}, analysis=True), False,
         None),
        (md({**CANARY, "currentStepIndex": 4, "analysis": NO_DATA}, analysis=True), False,
         "the analysis holds revision 2 at step 4"),
        (md({**CANARY, "currentStepIndex": 4, "analysis": {**NO_DATA, "lastResult": "Fail"}},
            analysis=True), False,
         "revision 2 has passed every step and waits for a passing analysis"),
    ],
)  # fmt: skip
def test_promote_blocker(body: dict[str, Any], full: bool, blocker: str | None) -> None:
    found = commands.promote_blocker(ModelDeployment.parse(body), full=full)
    if blocker is None:
        assert found is None
    else:
        assert found is not None and found.startswith(blocker), found


@pytest.mark.parametrize(
    ("fate", "reason", "shown"),
    [
        ("Canary", "NewerTemplate", None),  # was superseded once, is a canary again
        ("Stable", "Replaced", None),
        ("Pending", "ProgressDeadlineExceeded", None),
        ("Superseded", "NewerTemplate", "NewerTemplate"),
        ("Failed", "PodsNotReady", "PodsNotReady"),
        ("Retired", "Replaced", "Replaced"),
    ],
)
def test_revision_reason_is_never_stale(fate: str, reason: str, shown: str | None) -> None:
    assert commands.revision_reason(RevisionStatus.model_validate(rev(1, fate, reason))) == shown


RJ = {
    "apiVersion": "seaway.dev/v1alpha1", "kind": "RetrainJob",
    "metadata": {"name": "churn-weekly", "namespace": "ml", "generation": 2},
    "spec": {"modelDeployment": "churn", "schedule": "0 3 * * 1",
             "dataset": {"uri": "s3://data/churn.csv", "target": "churned"},
             "estimator": {"importPath": "sklearn.linear_model.LogisticRegression"},
             "output": {"uri": "s3://models/churn/retrained/"}},
    "status": {
        "observedGeneration": 2, "nextScheduleTime": "2026-12-07T03:00:00Z",
        "conditions": [{"type": "Ready", "status": "True", "reason": "Scheduled",
                        "message": "next run at 2026-12-07T03:00:00Z",
                        "lastTransitionTime": "2026-11-30T00:00:00Z"}],
        "runs": [
            {"number": 1, "jobName": "churn-weekly-1", "trigger": "schedule",
             "startedAt": "2026-11-23T03:00:00Z", "result": "Failed", "reason": "BadData",
             "message": "column churned not found"},
            {"number": 2, "jobName": "churn-weekly-2", "trigger": "cli",
             "startedAt": "2026-11-30T03:00:00Z", "result": "Succeeded",
             "candidateScore": "0.91", "incumbentScore": "0.88", "decision": "AwaitingApproval",
             "decisionReason": "promotion is Manual"},
        ],
    },
}  # fmt: skip


def test_retrainjob_lines() -> None:
    text = "\n".join(commands.retrainjob_lines(RetrainJob.parse(RJ)))
    assert text.startswith("RetrainJob ml/churn-weekly (generation 2, observed 2)")
    assert "model deployment: churn" in text
    assert "schedule: 0 3 * * 1, next run 2026-12-07T03:00:00Z" in text
    assert "promoted: -" in text
    assert "Ready        True     Scheduled" in text
    assert "#1    Failed     Pending   (column churned not found)" in text
    assert "#2    Succeeded  AwaitingApproval candidate 0.91 vs incumbent 0.88" in text


class FakeKube:
    """Enough of ``seaway.k8s.kube.Kube`` for the CLI: objects by (kind, name), patches kept."""

    def __init__(self, objects: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.objects = objects
        self.patches: list[dict[str, Any]] = []

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, name))

    def merge_patch(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.patches.append(patch)

    def list(self, kind: str, namespace: str, selector: str | None = None) -> list[Any]:
        return []


def run(monkeypatch: pytest.MonkeyPatch, kube: FakeKube, *argv: str) -> Any:
    monkeypatch.setattr(cli, "_connect", lambda kubeconfig, namespace: (kube, "ml"))
    return CliRunner().invoke(main, list(argv))


def test_promote_without_canary_writes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    body = md({"stableRevision": 1, "revisions": [rev(1, "Stable")]})
    kube = FakeKube({("ModelDeployment", "churn"): body})
    result = run(monkeypatch, kube, "promote", "churn")
    assert result.exit_code == 1
    assert result.output == (
        "Error: cannot promote: churn has no canary to promote (revision 1 is stable and"
        " nothing is rolling out)\n"
    )
    assert kube.patches == []
    ok = run(monkeypatch, FakeKube({("ModelDeployment", "churn"): md(CANARY)}), "promote", "churn")
    assert ok.exit_code == 0 and "advance one step" in ok.output


def test_status_of_a_retrainjob(monkeypatch: pytest.MonkeyPatch) -> None:
    kube = FakeKube({("RetrainJob", "churn-weekly"): RJ})
    for arg in ("churn-weekly", "rj/churn-weekly", "retrainjob/churn-weekly"):
        result = run(monkeypatch, kube, "status", arg)
        assert result.exit_code == 0, result.output
        assert result.output.startswith("RetrainJob ml/churn-weekly"), result.output
    missing = run(monkeypatch, kube, "status", "nope")
    assert missing.exit_code == 1
    assert "no ModelDeployment or RetrainJob nope in namespace ml" in missing.output


def test_history_hides_a_stale_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    body = md({"stableRevision": 1, "canaryRevision": 2,
               "revisions": [rev(1, "Stable", "Replaced"), rev(2, "Canary", "NewerTemplate")]})
    result = run(monkeypatch, FakeKube({("ModelDeployment", "churn"): body}), "history", "churn")
    assert result.exit_code == 0, result.output
    assert "Replaced" not in result.output and "NewerTemplate" not in result.output


def test_abort_and_retry_blockers(monkeypatch: pytest.MonkeyPatch) -> None:
    stable = md({"stableRevision": 1, "revisions": [rev(1, "Stable")]})
    assert commands.abort_blocker(ModelDeployment.parse(stable)) == (
        "churn has no canary to abort (nothing is rolling out)"
    )
    assert commands.abort_blocker(ModelDeployment.parse(md(CANARY))) is None
    blocker = commands.retry_blocker(ModelDeployment.parse(md(CANARY)))
    assert blocker is not None and blocker.startswith("churn has no rejected revision to retry")
    degraded = md({**CANARY, "canaryRevision": None, "conditions": [
        {"type": "Degraded", "status": "True", "reason": "ProgressDeadlineExceeded",
         "message": "desired revision 2 rejected", "lastTransitionTime": "2026-11-30T00:00:00Z"}],
        "revisions": [rev(1, "Stable"), rev(2, "Failed", "ProgressDeadlineExceeded")]})  # fmt: skip
    assert commands.retry_blocker(ModelDeployment.parse(degraded)) is None
    kube = FakeKube({("ModelDeployment", "churn"): stable})
    for command in ("abort", "retry"):
        result = run(monkeypatch, kube, command, "churn")
        assert result.exit_code == 1 and result.output.startswith(f"Error: cannot {command}: ")
    assert kube.patches == []
