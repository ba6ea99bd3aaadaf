"""Table-driven tests of the RetrainJob run machine."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from seaway import conditions
from seaway.api.retrainjob import RetrainJobSpec, RetrainJobStatus
from seaway.planning.retrain import JobObservation, RetrainPlan, gate, parse_result, plan

T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
DIGEST = "sha256:" + "c" * 64


def rj(**extra: Any) -> RetrainJobSpec:
    body: dict[str, Any] = {
        "modelDeployment": "churn",
        "dataset": {"uri": "s3://data/churn.csv", "target": "churned"},
        "estimator": {"importPath": "sklearn.linear_model.LogisticRegression"},
        "validation": {"metric": "roc_auc", "minScore": "0.80", "minImprovement": "0.01"},
        "promotion": "Auto",
        "output": {"uri": "s3://models/churn/"},
    }
    body.update(extra)
    return RetrainJobSpec.model_validate(body)


def result(candidate: float, incumbent: float | None = 0.82, metric: str = "roc_auc") -> str:
    return json.dumps(
        {
            "schema": "seaway.dev/train-result/v1",
            "status": "Succeeded",
            "bundle": {
                "uri": "s3://models/churn/run-1/",
                "digest": DIGEST,
                "format": "sklearn-joblib",
            },
            "metric": metric,
            "candidate": {"score": str(candidate)},
            "incumbent": {
                "uri": "s3://models/churn/run-0/",
                "score": None if incumbent is None else str(incumbent),
            },
        }
    )


class Sim:
    def __init__(self) -> None:
        self.status = RetrainJobStatus()
        self.jobs: dict[int, JobObservation] = {}
        self.now = T0
        self.events: list[str] = []
        self.last: RetrainPlan | None = None

    def step(self, spec: RetrainJobSpec, after: float = 0, target: bool = True) -> RetrainPlan:
        self.now += timedelta(seconds=after)
        p = plan(
            name="weekly", spec=spec, status=self.status, generation=1, created_at=T0,
            jobs=self.jobs, now=self.now, target_exists=target,
        )  # fmt: skip
        self.status = p.status
        self.events += [e.reason for e in p.events]
        self.last = p
        return p

    def cond(self, type_: str) -> tuple[str, str]:
        c = conditions.find(self.status.conditions, type_)
        assert c is not None
        return c.status, c.reason


def test_run_now_starts_one_run_per_token_and_auto_promotes() -> None:
    sim = Sim()
    spec = rj(runNow="t1")
    p = sim.step(spec)
    assert [(r.number, r.job_name, r.trigger) for r in p.start] == [(1, "weekly-1", "runNow:t1")]
    assert sim.step(spec, after=5).start == [], "the same token never starts a second run"
    assert sim.cond("Progressing") == ("True", "RunInProgress")
    sim.jobs[1] = JobObservation("Succeeded", message="training...\n" + result(0.86))
    p = sim.step(spec, after=60)
    run = sim.status.runs[0]
    assert (run.result, run.decision) == ("Succeeded", "Promoted")
    assert run.candidate_score == "0.86" and run.incumbent_score == "0.82"
    assert sim.status.promoted is not None and sim.status.promoted.digest == DIGEST
    assert sim.cond("Succeeded") == ("True", "Promoted")
    assert [n["event"] for n in p.notifications] == ["Promoted"]
    assert sim.events == ["RunStarted", "Promoted"]
    sim.step(spec, after=60)
    assert sim.events == ["RunStarted", "Promoted"], "promoted exactly once"


def test_manual_promotion_waits_for_an_approval() -> None:
    sim = Sim()
    spec = rj(runNow="t1", promotion="Manual")
    sim.step(spec)
    sim.jobs[1] = JobObservation("Succeeded", message=result(0.9))
    p = sim.step(spec, after=60)
    assert sim.status.runs[0].decision == "AwaitingApproval" and sim.status.promoted is None
    assert [n["event"] for n in p.notifications] == ["AwaitingApproval"]
    approved = rj(
        runNow="t1", promotion="Manual",
        approvals=[{"run": 1, "decision": "Approve", "approver": "alice@example.com"}],
    )  # fmt: skip
    sim.step(approved, after=30)
    run = sim.status.runs[0]
    assert (run.decision, run.decided_by) == ("Promoted", "alice@example.com")
    assert (
        sim.status.promoted is not None and sim.status.promoted.approved_by == "alice@example.com"
    )


def test_manual_rejection() -> None:
    sim = Sim()
    sim.step(rj(runNow="t1", promotion="Manual"))
    sim.jobs[1] = JobObservation("Succeeded", message=result(0.9))
    sim.step(rj(runNow="t1", promotion="Manual"), after=60)
    rejected = rj(
        runNow="t1", promotion="Manual",
        approvals=[{"run": 1, "decision": "Reject", "approver": "bob", "reason": "drift"}],
    )  # fmt: skip
    sim.step(rejected, after=1)
    assert sim.status.runs[0].decision == "Rejected" and sim.status.promoted is None
    assert sim.status.runs[0].decision_reason == "drift (bob)"


def test_worse_candidate_is_rejected_and_nothing_promoted() -> None:
    sim = Sim()
    sim.step(rj(runNow="t1"))
    sim.jobs[1] = JobObservation("Succeeded", message=result(0.825, incumbent=0.82))
    p = sim.step(rj(runNow="t1"), after=60)
    run = sim.status.runs[0]
    assert run.decision == "Rejected" and sim.status.promoted is None
    assert "improvement 0.005 < minImprovement 0.01" in (run.decision_reason or "")
    assert [n["event"] for n in p.notifications] == ["CandidateRejected"]


def test_gate_for_lower_is_better_metrics() -> None:
    spec = rj(validation={"metric": "rmse", "minScore": "2.0", "minImprovement": "0.1"})
    good = parse_result(result(1.5, incumbent=1.7, metric="rmse"))
    worse = parse_result(result(1.65, incumbent=1.7, metric="rmse"))
    too_high = parse_result(result(2.5, incumbent=None, metric="rmse"))
    assert not isinstance(good, str) and gate(spec, good)[0]
    assert not isinstance(worse, str) and not gate(spec, worse)[0]
    assert not isinstance(too_high, str)
    passed, why = gate(spec, too_high)
    assert not passed and "above the maximum 2.0" in why


def test_failed_job_and_bad_result_fail_the_run_with_a_reason() -> None:
    sim = Sim()
    sim.step(rj(runNow="t1"))
    sim.jobs[1] = JobObservation(
        "Failed", message="missing target column 'churned'", reason="BackoffLimitExceeded"
    )
    p = sim.step(rj(runNow="t1"), after=60)
    run = sim.status.runs[0]
    assert (run.result, run.reason, run.message) == (
        "Failed",
        "BackoffLimitExceeded",
        "missing target column 'churned'",
    )
    assert sim.status.promoted is None and sim.cond("Succeeded") == (
        "False",
        "BackoffLimitExceeded",
    )
    assert [n["event"] for n in p.notifications] == ["RunFailed"]
    sim.step(rj(runNow="t2"), after=1)
    sim.jobs[2] = JobObservation("Succeeded", message="no json here")
    sim.step(rj(runNow="t2"), after=60)
    assert (sim.status.runs[1].result, sim.status.runs[1].reason) == ("Failed", "BadResult")


def test_schedule_collapses_missed_times_and_says_when_next() -> None:
    sim = Sim()
    spec = rj(schedule="*/10 * * * *")
    p = sim.step(spec, after=60)
    assert p.start == [] and sim.status.next_schedule_time == "2026-11-25T10:10:00Z"
    assert p.requeue_after is not None and 500 < p.requeue_after <= 540
    p = sim.step(spec, after=3600)  # an hour later: six times missed, one run
    assert [r.trigger for r in p.start] == ["schedule"]
    assert sim.status.last_schedule_time == "2026-11-25T11:00:00Z"
    assert sim.status.next_schedule_time == "2026-11-25T11:10:00Z"
    assert sim.step(rj(schedule="*/10 * * * *", suspend=True), after=1200).start == []


def test_concurrency_policies() -> None:
    sim = Sim()
    sim.step(rj(runNow="a"))
    p = sim.step(rj(runNow="b"), after=5)
    assert p.start == [] and "RunSkipped" in sim.events, "Forbid is the default"
    p = sim.step(rj(runNow="c", concurrencyPolicy="Replace"), after=5)
    assert [r.number for r in p.start] == [2] and p.delete_jobs == ["weekly-1"]
    assert (sim.status.runs[0].result, sim.status.runs[0].reason) == ("Failed", "Replaced")
    p = sim.step(rj(runNow="d", concurrencyPolicy="Allow"), after=5)
    assert [r.number for r in p.start] == [3]


def test_history_is_bounded_and_keeps_the_promoted_run() -> None:
    sim = Sim()
    for n in range(1, 6):
        spec = rj(runNow=f"t{n}", historyLimit=2)
        sim.step(spec, after=1)
        sim.jobs[n] = JobObservation("Succeeded", message=result(0.9 if n == 1 else 0.5))
        sim.step(spec, after=60)
    assert [r.number for r in sim.status.runs] == [1, 5]
    assert sim.status.promoted is not None and sim.status.promoted.run == 1


def test_a_missing_model_deployment_is_reported_and_no_run_starts() -> None:
    sim = Sim()
    p = sim.step(rj(runNow="t1"), target=False)
    assert p.start == [] and sim.cond("Ready") == ("False", "ModelDeploymentNotFound")


def test_a_failure_result_document_gives_its_reason_and_message() -> None:
    sim = Sim()
    sim.step(rj(runNow="t1"))
    document = {
        "schema": "seaway.dev/train-result/v1",
        "status": "Failed",
        "reason": "MissingTarget",
        "message": "target column 'churned' is not in the dataset",
    }
    sim.jobs[1] = JobObservation(
        "Failed", message=json.dumps(document), reason="BackoffLimitExceeded"
    )
    sim.step(rj(runNow="t1"), after=60)
    run = sim.status.runs[0]
    assert (run.reason, run.message) == (
        "MissingTarget",
        "target column 'churned' is not in the dataset",
    )


def test_the_compact_termination_message_form_is_read_too() -> None:
    compact = {
        "schema": "seaway.dev/train-result/v1",
        "status": "Succeeded",
        "bundle": {"uri": "file:///m/run-1/", "digest": DIGEST, "format": "sklearn-joblib"},
        "metric": "accuracy",
        "candidate_score": "0.947368",
        "incumbent_score": "0.93",
    }
    parsed = parse_result("progress line\n" + json.dumps(compact))
    assert not isinstance(parsed, str)
    assert (str(parsed.candidate_score), str(parsed.incumbent_score)) == ("0.947368", "0.93")


def test_run_now_waits_for_its_model_deployment_without_being_spent() -> None:
    sim = Sim()
    assert sim.step(rj(runNow="t1"), target=False).start == []
    assert sim.status.handled_run_now is None
    p = sim.step(rj(runNow="t1"), after=5, target=True)
    assert [r.trigger for r in p.start] == ["runNow:t1"]
