"""The RetrainJob run machine: (spec, status, observed Jobs, now) -> runs to start, decisions.

A run is a Kubernetes Job named ``<retrainjob>-<N>``. Its result reaches the operator as JSON in
the trainer container's termination message (the same contract for the built-in trainer and a
user's own image). The decision for a run (promote, await approval, reject) is derived from that
result every pass until it is recorded in status, so an operator killed between "Job finished"
and "promotion recorded" reaches the same decision after a restart, and records it once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from croniter import croniter

from seaway import conditions
from seaway.api.retrainjob import (
    Candidate,
    Promoted,
    RetrainJobSpec,
    RetrainJobStatus,
    RunStatus,
)
from seaway.planning.children import RESTRICTED_CONTAINER, restricted_pod_spec
from seaway.planning.durations import format_time, parse_time
from seaway.planning.rollout import Event
from seaway_serving import contract

#: Metrics where a smaller value is better: the gate compares them the other way round.
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})
RESULT_SCHEMA = "seaway.dev/train-result/v1"


@dataclass(frozen=True)
class JobObservation:
    """What the cluster shows for one run's Job (and its pod's termination message)."""

    state: Literal["Running", "Succeeded", "Failed"]
    message: str | None = None  # the trainer container's termination message
    reason: str | None = None  # the Job's failure condition reason, e.g. BackoffLimitExceeded


@dataclass(frozen=True)
class TrainResult:
    uri: str
    digest: str
    format: str
    metric: str
    candidate_score: Decimal
    incumbent_score: Decimal | None


@dataclass
class RetrainPlan:
    status: RetrainJobStatus
    start: list[RunStatus] = field(default_factory=list)
    delete_jobs: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    notifications: list[dict[str, object]] = field(default_factory=list)
    requeue_after: float | None = None


def job_name(rj_name: str, number: int) -> str:
    return f"{rj_name}-{number}"


def parse_result(text: str | None) -> TrainResult | str:
    """The trainer's result (``seaway.dev/train-result/v1``, docs/trainer.md) from the last line
    of its termination message, or why it cannot be used."""
    if not text or not text.strip():
        return "the trainer wrote no result"
    line = text.strip().splitlines()[-1]
    try:
        body: dict[str, Any] = json.loads(line)
        if body.get("schema") != RESULT_SCHEMA:
            return f"unsupported result schema {body.get('schema')!r} (expected {RESULT_SCHEMA})"
        if body.get("status") != "Succeeded":
            return str(
                body.get("message") or body.get("reason") or "the trainer reported a failure"
            )
        bundle = body["bundle"]
        # The full document nests scores; the compact one written to a termination message
        # (which Kubernetes caps at 4 KiB) flattens them.
        candidate = (body.get("candidate") or {}).get("score", body.get("candidate_score"))
        incumbent = (body.get("incumbent") or {}).get("score", body.get("incumbent_score"))
        if candidate is None:
            return "the trainer result has no candidate score"
        return TrainResult(
            uri=str(bundle["uri"]),
            digest=str(bundle["digest"]),
            format=str(bundle.get("format") or "sklearn-joblib"),
            metric=str(body["metric"]),
            candidate_score=Decimal(str(candidate)),
            incumbent_score=Decimal(str(incumbent)) if incumbent is not None else None,
        )
    except (ValueError, KeyError, TypeError, InvalidOperation) as exc:
        return f"unreadable trainer result ({type(exc).__name__}: {exc})"


def failure(text: str | None) -> tuple[str | None, str]:
    """(reason, one line) of a failed run, from a result document or a plain last line."""
    lines = (text or "").strip().splitlines()
    if not lines:
        return None, "the training Job failed without a message"
    last = lines[-1].strip()
    try:
        body = json.loads(last)
    except ValueError:
        return None, last
    if isinstance(body, dict) and body.get("schema") == RESULT_SCHEMA:
        return body.get("reason"), str(body.get("message") or body.get("reason") or last)
    return None, last


def gate(spec: RetrainJobSpec, result: TrainResult) -> tuple[bool, str]:
    """Does the candidate reach minScore and beat the incumbent by minImprovement?"""
    validation = spec.validation
    metric = result.metric
    lower = metric in LOWER_IS_BETTER
    score, incumbent = result.candidate_score, result.incumbent_score
    shown = f"{metric} {score}" + (f" vs incumbent {incumbent}" if incumbent is not None else "")
    if validation is not None and validation.min_score is not None:
        limit = Decimal(validation.min_score)
        if (score > limit) if lower else (score < limit):
            word = "above the maximum" if lower else "below minScore"
            return False, f"{shown}: {word} {validation.min_score}"
    if validation is not None and validation.min_improvement is not None and incumbent is not None:
        needed = Decimal(validation.min_improvement)
        gain = (incumbent - score) if lower else (score - incumbent)
        if gain < needed:
            return (
                False,
                f"{shown}: improvement {gain} < minImprovement {validation.min_improvement}",
            )
    return True, shown


def next_schedule(schedule: str, after: datetime) -> datetime:
    result: datetime = croniter(schedule, after).get_next(datetime)
    return result


class _Pass:
    def __init__(
        self,
        *,
        name: str,
        spec: RetrainJobSpec,
        status: RetrainJobStatus,
        generation: int,
        created_at: datetime,
        jobs: dict[int, JobObservation],
        now: datetime,
        target_exists: bool,
    ) -> None:
        self.name = name
        self.spec = spec
        self.st = status.model_copy(deep=True)
        self.generation = generation
        self.created_at = created_at
        self.jobs = jobs
        self.now = now
        self.now_s = format_time(now)
        self.target_exists = target_exists
        self.plan = RetrainPlan(status=self.st)

    def event(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.plan.events.append(Event(type_, reason, message))

    def notify(self, event: str, run: RunStatus, message: str) -> None:
        self.plan.notifications.append({"event": event, "run": run.number, "message": message})

    def requeue(self, seconds: float) -> None:
        seconds = max(seconds, 1.0)
        current = self.plan.requeue_after
        self.plan.requeue_after = seconds if current is None else min(current, seconds)

    def run(self) -> RetrainPlan:
        for run in self.st.runs:
            if run.result == "Running":
                self.observe(run)
            if run.result == "Succeeded" and run.decision == "AwaitingApproval":
                self.approvals(run)
        self.triggers()
        self.prune()
        self.conditions()
        self.st.observed_generation = self.generation
        return self.plan

    # -- finished runs ---------------------------------------------------------------------
    def observe(self, run: RunStatus) -> None:
        job = self.jobs.get(run.number)
        if job is None or job.state == "Running":
            self.requeue(30)
            return
        run.finished_at = self.now_s
        if job.state == "Failed":
            reason, message = failure(job.message)
            self.fail(run, reason or job.reason or "JobFailed", message)
            return
        result = parse_result(job.message)
        if isinstance(result, str):
            self.fail(run, "BadResult", result)
            return
        expected = self.spec.validation.metric if self.spec.validation else "accuracy"
        if result.metric != expected:
            why = f"the trainer scored {result.metric}, but validation.metric is {expected}"
            self.fail(run, "BadResult", why)
            return
        run.result = "Succeeded"
        run.candidate = Candidate(uri=result.uri, digest=result.digest, format=result.format)
        run.candidate_score = str(result.candidate_score)
        run.incumbent_score = (
            str(result.incumbent_score) if result.incumbent_score is not None else None
        )
        passed, why = gate(self.spec, result)
        if not passed:
            run.decision, run.decision_reason = "Rejected", why
            self.event("Normal", "CandidateRejected", f"Run {run.number}: {why}")
            self.notify("CandidateRejected", run, why)
            return
        if self.spec.promotion == "Auto":
            self.promote(run, why, approved_by=None)
        else:
            run.decision, run.decision_reason = "AwaitingApproval", why
            how = f"`seaway approve {self.name} --run {run.number}` or spec.approvals"
            self.event(
                "Normal",
                "AwaitingApproval",
                f"Run {run.number} passed ({why}); approve it with {how}",
            )
            self.notify("AwaitingApproval", run, why)

    def fail(self, run: RunStatus, reason: str, message: str) -> None:
        run.result, run.decision, run.reason = "Failed", "NotPromoted", reason
        run.message = message[:1024]
        self.event("Warning", "RunFailed", f"Run {run.number} failed: {run.message}")
        self.notify("RunFailed", run, run.message)

    def approvals(self, run: RunStatus) -> None:
        for approval in self.spec.approvals or []:
            if approval.run != run.number:
                continue
            run.decided_by, run.decided_at = approval.approver, self.now_s
            if approval.decision == "Approve":
                self.promote(run, run.decision_reason or "", approved_by=approval.approver)
            else:
                why = approval.reason or "rejected by a reviewer"
                run.decision, run.decision_reason = "Rejected", f"{why} ({approval.approver})"
                self.event(
                    "Normal", "CandidateRejected", f"Run {run.number}: {run.decision_reason}"
                )
                self.notify("CandidateRejected", run, run.decision_reason)
            return

    def promote(self, run: RunStatus, why: str, approved_by: str | None) -> None:
        assert run.candidate is not None
        run.decision, run.decision_reason = "Promoted", why
        run.decided_at = run.decided_at or self.now_s
        self.st.promoted = Promoted(
            run=run.number,
            uri=run.candidate.uri,
            digest=run.candidate.digest,
            format=run.candidate.format,
            promoted_at=self.now_s,
            approved_by=approved_by,
        )
        by = f" (approved by {approved_by})" if approved_by else ""
        self.event("Normal", "Promoted", f"Run {run.number} promoted{by}: {why}")
        self.notify("Promoted", run, why)

    # -- new runs ------------------------------------------------------------------------------
    def triggers(self) -> None:
        reasons: list[str] = []
        token = self.spec.run_now
        # A runNow waits for its ModelDeployment (it may just not be seen yet); it is not spent.
        if token is not None and token != self.st.handled_run_now and self.target_exists:
            self.st.handled_run_now = token
            reasons.append(f"runNow:{token}")
        if self.spec.schedule and not self.spec.suspend:
            last = (
                parse_time(self.st.last_schedule_time)
                if self.st.last_schedule_time
                else self.created_at
            )
            due = next_schedule(self.spec.schedule, last)
            if self.now >= due:
                # Missed times collapse into one run: the latest one that is due.
                latest = due
                while (following := next_schedule(self.spec.schedule, latest)) <= self.now:
                    latest = following
                self.st.last_schedule_time = format_time(latest)
                reasons.append("schedule")
                due = next_schedule(self.spec.schedule, latest)
            self.st.next_schedule_time = format_time(due)
            self.requeue((due - self.now).total_seconds())
        for trigger in reasons:
            self.start(trigger)

    def start(self, trigger: str) -> None:
        running = [r for r in self.st.runs if r.result == "Running"]
        policy = self.spec.concurrency_policy
        if running and policy == "Forbid":
            self.event(
                "Normal",
                "RunSkipped",
                f"Skipped a {trigger} run: run {running[-1].number} is still running",
            )
            return
        if running and policy == "Replace":
            for old in running:
                old.result, old.decision, old.reason = "Failed", "NotPromoted", "Replaced"
                old.finished_at = self.now_s
                self.plan.delete_jobs.append(old.job_name)
        if not self.target_exists:
            self.event(
                "Warning",
                "ModelDeploymentNotFound",
                f"ModelDeployment {self.spec.model_deployment} not found; run skipped",
            )
            return
        number = max((r.number for r in self.st.runs), default=0) + 1
        run = RunStatus(
            number=number,
            job_name=job_name(self.name, number),
            trigger=trigger,
            started_at=self.now_s,
        )
        self.st.runs.append(run)
        self.plan.start.append(run)
        self.event(
            "Normal", "RunStarted", f"Started run {number} ({trigger}) as Job {run.job_name}"
        )
        self.requeue(30)

    def prune(self) -> None:
        limit = self.spec.history_limit
        finished = [r for r in self.st.runs if r.result != "Running"]
        promoted = self.st.promoted.run if self.st.promoted else None
        excess = len(self.st.runs) - limit
        drop = {r.number for r in finished if r.number != promoted}
        dropped = sorted(drop)[: max(excess, 0)]
        self.st.runs = [r for r in self.st.runs if r.number not in dropped]
        self.plan.delete_jobs += [job_name(self.name, n) for n in dropped]

    def conditions(self) -> None:
        st = self.st
        last = st.runs[-1] if st.runs else None
        running = any(r.result == "Running" for r in st.runs)
        if not self.target_exists:
            ready = (
                "False",
                "ModelDeploymentNotFound",
                f"ModelDeployment {self.spec.model_deployment} not found",
            )
        else:
            ready = ("True", "Configured", "next run: " + (st.next_schedule_time or "on runNow"))
        if last is None:
            succeeded = ("Unknown", "NoRunYet", "no run has finished yet")
        elif last.result == "Running":
            succeeded = ("Unknown", "Running", f"run {last.number} is running")
        elif last.result == "Failed":
            succeeded = ("False", last.reason or "RunFailed", last.message or "")
        else:
            succeeded = ("True", last.decision, last.decision_reason or "")
        progressing = (
            ("True", "RunInProgress", "a training Job runs") if running else ("False", "Idle", "")
        )
        for type_, (status, reason, message) in (
            (conditions.READY, ready),
            (conditions.SUCCEEDED, succeeded),
            (conditions.PROGRESSING, progressing),
        ):
            st.conditions = conditions.set_condition(
                st.conditions, type_, status, reason, message,  # type: ignore[arg-type]
                now=self.now_s, generation=self.generation,
            )  # fmt: skip


def plan(
    *,
    name: str,
    spec: RetrainJobSpec,
    status: RetrainJobStatus,
    generation: int,
    created_at: datetime,
    jobs: dict[int, JobObservation],
    now: datetime,
    target_exists: bool = True,
) -> RetrainPlan:
    """One reconcile pass for a RetrainJob, without any I/O."""
    return _Pass(
        name=name,
        spec=spec,
        status=status,
        generation=generation,
        created_at=created_at,
        jobs=jobs,
        now=now,
        target_exists=target_exists,
    ).run()


RETRAIN_LABEL = "seaway.dev/retrain-job"
RUN_LABEL = "seaway.dev/run"
TERMINATION_LOG = "/dev/termination-log"


@dataclass(frozen=True)
class Incumbent:
    """The model now in production, scored on the same holdout as the candidate."""

    uri: str
    digest: str | None
    #: The Secret the ModelDeployment reads its model store with (model.secretRef).
    secret: str | None = None
    #: Only when the user wrote ``model.allowUnverified: true`` (never inferred from no digest).
    allow_unverified: bool = False


def training_job(
    *,
    rj_name: str,
    rj_uid: str,
    namespace: str,
    spec: RetrainJobSpec,
    run: RunStatus,
    incumbent: Incumbent | None,
    default_image: str,
) -> dict[str, Any]:
    """The Job of one run. The built-in trainer is configured through ``SEAWAY_TRAIN_*``
    environment variables (docs/trainer.md); a custom trainer gets the same variables it may
    use, and must write the same result JSON to the termination message."""
    env: dict[str, str] = {
        contract.train_variable("output_uri"): spec.output.uri,
        contract.train_variable("run_id"): f"run-{run.number}",
        contract.train_variable("name"): spec.model_deployment,
        contract.train_variable("result_path"): TERMINATION_LOG,
        contract.train_variable("termination_log"): TERMINATION_LOG,
        contract.train_variable("work_dir"): "/tmp/seaway-train",
    }
    if spec.dataset is not None:
        dataset = spec.dataset
        env[contract.train_variable("dataset_uri")] = dataset.uri
        env[contract.train_variable("target")] = dataset.target
        if dataset.format:
            env[contract.train_variable("dataset_format")] = dataset.format
        if dataset.features:
            env[contract.train_variable("features")] = json.dumps(dataset.features)
        if dataset.timestamp_column:
            env[contract.train_variable("timestamp_column")] = dataset.timestamp_column
    if spec.estimator is not None:
        env[contract.train_variable("estimator")] = spec.estimator.import_path
        params = json.dumps(spec.estimator.params or {}, sort_keys=True)
        env[contract.train_variable("params")] = params
    validation = spec.validation
    if validation is not None:
        env[contract.train_variable("split")] = validation.split
        env[contract.train_variable("test_fraction")] = validation.test_fraction
        env[contract.train_variable("windows")] = str(validation.windows)
        env[contract.train_variable("metric")] = validation.metric
        if validation.cutoff:
            env[contract.train_variable("cutoff")] = validation.cutoff
        if validation.min_score:
            env[contract.train_variable("min_score")] = validation.min_score
        if validation.min_improvement:
            env[contract.train_variable("min_improvement")] = validation.min_improvement
    if incumbent is not None:
        env[contract.train_variable("incumbent_uri")] = incumbent.uri
        if incumbent.digest:
            env[contract.train_variable("incumbent_digest")] = incumbent.digest
        elif incumbent.allow_unverified:
            env[contract.train_variable("incumbent_allow_unverified")] = "true"
    container: dict[str, Any] = {
        "name": "trainer",
        "image": spec.trainer_image or default_image,
        "command": ["seaway-train"],
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": RESTRICTED_CONTAINER,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    custom = spec.custom_trainer
    if custom is not None:
        container["image"] = custom.image
        container["command"] = list(custom.command)
        if custom.args:
            container["args"] = list(custom.args)
        env.update({e.name: e.value for e in custom.env or []})
    container["env"] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    # Each store's credentials under its own prefix, so two Secrets never overwrite each other's
    # keys (the trainer reads e.g. SEAWAY_TRAIN_DATASET_AWS_ACCESS_KEY_ID for the dataset).
    stores = [
        ("SEAWAY_TRAIN_DATASET_", spec.dataset.secret_ref if spec.dataset else None),
        ("SEAWAY_TRAIN_OUTPUT_", spec.output.secret_ref),
        ("SEAWAY_TRAIN_INCUMBENT_", incumbent.secret if incumbent is not None else None),
    ]
    env_from = [
        {"prefix": prefix, "secretRef": {"name": ref if isinstance(ref, str) else ref.name}}
        for prefix, ref in stores
        if ref is not None
    ]
    if env_from:
        container["envFrom"] = env_from
    if spec.resources is not None:
        container["resources"] = spec.resources.to_wire()
    labels = {
        "app.kubernetes.io/name": "seaway",
        "app.kubernetes.io/instance": rj_name,
        "app.kubernetes.io/managed-by": "seaway",
        "app.kubernetes.io/component": "trainer",
        RETRAIN_LABEL: rj_name,
        RUN_LABEL: str(run.number),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": run.job_name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": "seaway.dev/v1alpha1",
                    "kind": "RetrainJob",
                    "name": rj_name,
                    "uid": rj_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "backoffLimit": spec.backoff_limit,
            "activeDeadlineSeconds": spec.active_deadline_seconds,
            "template": {
                "metadata": {"labels": labels},
                "spec": restricted_pod_spec(container, restartPolicy="Never"),
            },
        },
    }
