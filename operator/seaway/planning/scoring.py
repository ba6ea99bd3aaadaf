"""The ScoringJob machine: resolve the model once, render the Indexed Job, read its progress.

A ScoringJob runs as ONE Indexed Job named after it. Everything that makes its pods score with a
given model (bundle URI, digest, format, image, the store's Secret) is rendered into the Job's
Pod template when the Job is created, so the Job itself is the frozen record of the model: a pass
that finds the Job reads the model back from it (:func:`model_of_job`) instead of resolving the
name again, and a later edit of the ModelDeployment cannot reach a running job.

Progress comes from two places the API server already has: the Job's ``completedIndexes`` and
``failedIndexes`` (shards), and each finished pod's termination message, a JSON document written
by ``seaway-score`` (``seaway_serving.contract``: units done, rows, reason). Everything here is
pure: the handler reads, this module decides, the handler writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from seaway import conditions
from seaway.api.common import API_VERSION
from seaway.api.scoringjob import FrozenModel, ScoringJobSpec, ScoringJobStatus
from seaway.planning.children import RESTRICTED_CONTAINER, restricted_pod_spec
from seaway.planning.durations import format_time, parse_time
from seaway.planning.revisions import redact_uri
from seaway.planning.rollout import Event
from seaway_serving import contract
from seaway_serving.scoring import settings as score_settings

SCORING_LABEL = "seaway.dev/scoring-job"
CONTAINER = "scorer"
#: Kubernetes' annotation on an Indexed Job's pods.
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
COMPLETE = "Complete"
FAILED = "Failed"
#: The model variables of ``contract.server_env`` a scoring pod does not take (it serves nothing).
NOT_FOR_SCORING = frozenset({contract.HOST, contract.PORT})
#: ``SEAWAY_*`` variables of a revision's template copied to a scoring pod beside the model's
#: own: those the scorer reads as the server does (the store's endpoint, the bundle size limit,
#: skops' trusted types, ...). Plain variables (e.g. thread counts) are copied too; the server's
#: other settings are not (the scorer refuses a ``SEAWAY_*`` variable it does not know).
COPIED_SEAWAY_VARIABLES = score_settings.known_variables()

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Model:
    """A model resolved for scoring: what the pods load, and what status shows of it."""

    uri: str
    format: str
    digest: str | None
    allow_unverified: bool
    image: str
    name: str  # SEAWAY_MODEL_NAME: the ModelDeployment's name
    revision: int
    secrets: tuple[str, ...] = ()
    extra_env: tuple[tuple[str, str], ...] = ()
    model_deployment: str | None = None
    retrain_job: str | None = None

    def frozen(self) -> FrozenModel:
        return FrozenModel(
            model_deployment=self.model_deployment,
            retrain_job=self.retrain_job,
            revision=self.revision,
            uri=redact_uri(self.uri),
            digest=self.digest,
            format=self.format,
            image=self.image,
        )


@dataclass(frozen=True)
class Unresolved:
    """Why no model can be resolved now; ``final`` when waiting cannot help."""

    reason: str
    message: str
    final: bool = False


# -- resolving the model -------------------------------------------------------------------------
def _server_container(template: Manifest) -> Manifest | None:
    containers = (template.get("spec") or {}).get("containers") or []
    return next((c for c in containers if c.get("name") == "server"), None)


def model_from_template(template: Manifest, *, md_name: str, revision: int) -> Model | Unresolved:
    """The model a revision's frozen Pod template serves: its bundle, digest, format, image and
    Secret, exactly as its model servers got them."""
    container = _server_container(template)
    if container is None or not container.get("image"):
        return Unresolved(
            "RevisionNotFound",
            f"revision {revision} of {md_name} has no model-server container in its record",
            final=True,
        )
    env = {e.get("name"): e.get("value", "") for e in container.get("env") or []}
    uri = env.get(contract.BUNDLE)
    model_format = env.get(contract.MODEL_FORMAT)
    if not uri or not model_format:
        return Unresolved(
            "RevisionNotFound",
            f"revision {revision} of {md_name} records no bundle in its Pod template",
            final=True,
        )
    secrets = tuple(
        str(source["secretRef"]["name"])
        for source in container.get("envFrom") or []
        if (source.get("secretRef") or {}).get("name") and not source.get("prefix")
    )
    reserved = set(contract.RESERVED_SERVER_VARIABLES)
    extra = tuple(
        (str(name), str(value))
        for name, value in env.items()
        if name
        and name not in reserved
        and (not name.startswith(contract.PREFIX) or name in COPIED_SEAWAY_VARIABLES)
    )
    return Model(
        uri=uri,
        format=model_format,
        digest=env.get(contract.MODEL_DIGEST) or None,
        allow_unverified=env.get(contract.ALLOW_UNVERIFIED) == "true",
        image=str(container["image"]),
        name=md_name,
        revision=revision,
        secrets=secrets,
        extra_env=extra,
        model_deployment=md_name,
    )


def pick_revision(md_status: Manifest, *, md_name: str, wanted: int | None) -> int | Unresolved:
    """The revision to score with: ``wanted`` if it is in history, else the stable one."""
    numbers = {r.get("number") for r in md_status.get("revisions") or []}
    if wanted is not None:
        if wanted not in numbers:
            known = ", ".join(str(n) for n in sorted(n for n in numbers if isinstance(n, int)))
            return Unresolved(
                "RevisionNotFound",
                f"{md_name} has no revision {wanted} in its history (revisions: {known or 'none'})",
                final=True,
            )
        return wanted
    stable = md_status.get("stableRevision")
    if not isinstance(stable, int):
        return Unresolved("NoStableRevision", f"waiting for {md_name} to have a stable revision")
    return stable


def model_from_retrainjob(
    rj: Manifest, *, default_image: str, image: str | None = None
) -> Model | Unresolved:
    """The bundle a RetrainJob promoted last, read with the Secret its runs write bundles with."""
    name = rj["metadata"]["name"]
    promoted = (rj.get("status") or {}).get("promoted") or {}
    if not promoted.get("uri"):
        return Unresolved("NothingPromoted", f"waiting for RetrainJob {name} to promote a bundle")
    spec = rj.get("spec") or {}
    secret = ((spec.get("output") or {}).get("secretRef") or {}).get("name")
    target = str(spec.get("modelDeployment") or name)
    return Model(
        uri=str(promoted["uri"]),
        format=str(promoted.get("format") or "sklearn-joblib"),
        digest=promoted.get("digest") or None,
        allow_unverified=False,
        image=image or default_image,
        name=target,
        revision=int(promoted.get("run") or 0),
        secrets=(str(secret),) if secret else (),
        model_deployment=target,
        retrain_job=name,
    )


def model_of_job(job: Manifest) -> Model | None:
    """The model a created Job was rendered with (None when it is not one of ours)."""
    spec = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    container = next((c for c in spec.get("containers") or [] if c.get("name") == CONTAINER), None)
    if container is None:
        return None
    env = {e.get("name"): e.get("value", "") for e in container.get("env") or []}
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    try:
        revision = int(env.get(contract.REVISION) or 0)
    except ValueError:
        revision = 0
    return Model(
        uri=env.get(contract.BUNDLE, ""),
        format=env.get(contract.MODEL_FORMAT, ""),
        digest=env.get(contract.MODEL_DIGEST) or None,
        allow_unverified=env.get(contract.ALLOW_UNVERIFIED) == "true",
        image=str(container.get("image") or ""),
        name=env.get(contract.MODEL_NAME, ""),
        revision=revision,
        model_deployment=annotations.get(MD_ANNOTATION) or None,
        retrain_job=annotations.get(RJ_ANNOTATION) or None,
    )


# -- the Job ------------------------------------------------------------------------------------
MD_ANNOTATION = "seaway.dev/model-deployment"
RJ_ANNOTATION = "seaway.dev/retrain-job"


def shards_of(spec: ScoringJobSpec) -> int:
    return spec.shards or spec.parallelism


def scoring_env(spec: ScoringJobSpec, model: Model, run_id: str) -> list[tuple[str, str]]:
    """The scorer's environment: the model part of ``contract.server_env`` without HOST and
    PORT, then ``contract.score_env``, then the variables copied from the revision."""
    env = [
        (name, value)
        for name, value in contract.server_env(
            bundle=model.uri,
            model_format=model.format,
            digest=model.digest,
            allow_unverified=model.allow_unverified,
            model_name=model.name,
            revision=model.revision,
            port=0,
        )
        if name not in NOT_FOR_SCORING
    ]
    methods = ("predict", "predict_proba") if spec.output.probabilities else ("predict",)
    env += contract.score_env(
        input_uri=spec.input.uri,
        output_uri=spec.output.uri,
        shards=shards_of(spec),
        run_id=run_id,
        input_format=spec.input.format,
        output_format=spec.output.format,
        key_columns=tuple(spec.input.key_columns or ()),
        methods=methods,
        batch_rows=spec.batch_rows,
    )
    taken = {name for name, _ in env}
    env += [(name, value) for name, value in model.extra_env if name not in taken]
    return env


def scoring_job(
    *, name: str, namespace: str, uid: str, spec: ScoringJobSpec, model: Model
) -> Manifest:
    """The Indexed Job: ``shards`` completions, ``parallelism`` pods at a time.

    A pod that fails is retried for its index only (``backoffLimitPerIndex``); the scorer's
    permanent failures (a refused model, bad input, a refused output) fail the whole job at once
    through ``podFailurePolicy``; a pod lost to a disruption (eviction, preemption, a drained
    node) is retried without counting against the limit.
    """
    labels = {
        "app.kubernetes.io/name": "seaway",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": "seaway",
        "app.kubernetes.io/component": "scorer",
        SCORING_LABEL: name,
    }
    annotations = {}
    if model.model_deployment:
        annotations[MD_ANNOTATION] = model.model_deployment
    if model.retrain_job:
        annotations[RJ_ANNOTATION] = model.retrain_job
    container: Manifest = {
        "name": CONTAINER,
        "image": model.image,
        "command": ["seaway-score"],
        "env": [{"name": k, "value": v} for k, v in scoring_env(spec, model, uid)],
        "terminationMessagePath": contract.KUBE_TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": RESTRICTED_CONTAINER,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    secrets: list[str] = []
    for ref in (*model.secrets, spec.input.secret_ref, spec.output.secret_ref):
        secret = ref if isinstance(ref, str) or ref is None else ref.name
        if secret and secret not in secrets:
            secrets.append(secret)
    if secrets:
        container["envFrom"] = [{"secretRef": {"name": s}} for s in secrets]
    if spec.resources is not None:
        container["resources"] = spec.resources.to_wire()
    shards = shards_of(spec)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "ScoringJob",
                    "name": name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "completionMode": "Indexed",
            "completions": shards,
            "parallelism": min(spec.parallelism, shards),
            "backoffLimitPerIndex": spec.backoff_limit_per_index,
            "activeDeadlineSeconds": spec.active_deadline_seconds,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": CONTAINER,
                            "operator": "In",
                            "values": list(contract.SCORE_PERMANENT_EXIT_CODES),
                        },
                    },
                    {
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    },
                ]
            },
            "template": {
                "metadata": {"labels": labels},
                "spec": restricted_pod_spec(container, restartPolicy="Never"),
            },
        },
    }


# -- progress -----------------------------------------------------------------------------------
def count_indexes(text: str | None) -> int:
    """How many indexes ``"0-2,5,7-8"`` (a Job's completedIndexes) names."""
    total = 0
    for raw in (text or "").split(","):
        part = raw.strip()
        if not part:
            continue
        first, _, last = part.partition("-")
        total += (int(last) - int(first) + 1) if last else 1
    return total


@dataclass(frozen=True)
class Attempt:
    """One finished scoring container: its index, exit code and termination message."""

    index: int | None
    exit_code: int | None
    message: str | None
    finished_at: str = ""

    def report(self) -> dict[str, Any] | None:
        """The scorer's JSON document, or None when the message is not one (e.g. a log tail)."""
        text = (self.message or "").strip()
        if not text:
            return None
        for line in (text, text.splitlines()[-1]):
            try:
                body = json.loads(line)
            except ValueError:
                continue
            if isinstance(body, dict):
                return body
        return None


def attempts_of(pods: list[Manifest]) -> list[Attempt]:
    """Every terminated scorer container of these pods (current and previous state)."""
    found = []
    for pod in pods:
        raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(INDEX_ANNOTATION)
        index = int(raw) if isinstance(raw, str) and raw.isdigit() else None
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if status.get("name") != CONTAINER:
                continue
            for state in (status.get("state"), status.get("lastState")):
                terminated = (state or {}).get("terminated")
                if terminated:
                    found.append(
                        Attempt(
                            index=index,
                            exit_code=terminated.get("exitCode"),
                            message=terminated.get("message"),
                            finished_at=terminated.get("finishedAt") or "",
                        )
                    )
    return found


@dataclass(frozen=True)
class Progress:
    units_total: int | None
    units_done: int
    rows: int
    #: The scorer's failure (reason, message) to show, most telling first.
    failure: tuple[str, str] | None
    #: Indexes with a succeeded attempt's message.
    succeeded: frozenset[int] = frozenset()


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


#: How long a succeeded Job waits for its pods' termination messages before it is reported.
MESSAGE_GRACE_SECONDS = 30.0


def aggregate(attempts: list[Attempt], shards: int | None = None) -> Progress:
    """Units, rows and the failure to report, from every attempt's termination message.

    Each attempt counts only the rows it scored itself (a unit found recorded is skipped, not
    scored again), so the rows of an index are the sum over its attempts. A pod deleted before
    it finished leaves no message; a later attempt that reports ``rowsSkipped`` (the rows of the
    units it found recorded) then stands for the whole index. A message without its unit lists
    (too many to fit) that succeeded did every unit of its index: ``u % shards == index``.
    """
    units: set[int] = set()
    total: int | None = None
    by_index: dict[int | None, list[dict[str, Any]]] = {}
    failures: list[tuple[int, str, tuple[str, str]]] = []
    for attempt in sorted(attempts, key=lambda a: a.finished_at):
        report = attempt.report()
        if report is None:
            if attempt.exit_code not in (None, 0):
                tail = (attempt.message or "").strip().splitlines()
                why = tail[-1] if tail else f"the scorer exited with code {attempt.exit_code}"
                failures.append((0, attempt.finished_at, ("Failed", why[:1024])))
            continue
        by_index.setdefault(attempt.index, []).append(report)
        if isinstance(report.get("unitsTotal"), int):
            total = max(total or 0, report["unitsTotal"])
        done = report.get("unitsDone")
        if isinstance(done, list):
            units.update(u for u in done if isinstance(u, int))
        elif (report.get("reason") == "Succeeded" and shards and attempt.index is not None
              and isinstance(report.get("unitsTotal"), int)):
            units.update(range(attempt.index, report["unitsTotal"], shards))
        reason = str(report.get("reason") or "")
        if reason and reason != "Succeeded":
            # a permanent reason (the model, the input, the output) says more than a retry's
            rank = 2 if reason in ("ModelRefused", "BadInput", "OutputRefused") else 1
            message = str(report.get("message") or reason)[:1024]
            failures.append((rank, attempt.finished_at, (reason, message)))
    rows = 0
    for reports in by_index.values():
        whole = [r for r in reports if r.get("reason") == "Succeeded" and "rowsSkipped" in r]
        if whole:
            last = whole[-1]
            rows += _int(last.get("rows")) + _int(last.get("rowsSkipped"))
        else:
            rows += sum(_int(r.get("rows")) for r in reports)
    failure = max(failures, key=lambda f: (f[0], f[1]))[2] if failures else None
    succeeded = frozenset(
        i for i, reports in by_index.items()
        if i is not None and any(r.get("reason") == "Succeeded" for r in reports)
    )  # fmt: skip
    return Progress(units_total=total, units_done=len(units), rows=rows, failure=failure,
                    succeeded=succeeded)  # fmt: skip


def job_outcome(job: Manifest) -> tuple[Literal["Running", "Succeeded", "Failed"], str, str]:
    """(state, reason, message) from the Job's terminal conditions."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return "Succeeded", "Completed", condition.get("message") or ""
        if condition.get("type") == "Failed":
            return "Failed", condition.get("reason") or "JobFailed", condition.get("message") or ""
    return "Running", "", ""


# -- the pass ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Observation:
    """What a pass read: the Job (if created) and its pods' attempts, or the resolved model."""

    job: Manifest | None
    attempts: list[Attempt] = field(default_factory=list)
    model: Model | Unresolved | None = None


@dataclass
class ScoringPlan:
    status: ScoringJobStatus
    create_job: Manifest | None = None
    events: list[Event] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    requeue_after: float | None = None


State = Literal["Pending", "Running", "Succeeded", "Failed"]


def state_of(status: ScoringJobStatus) -> State:
    """Where a ScoringJob is, from its conditions (status has no phase field of its own):
    Pending until its Job is created, Running until Complete or Failed turns True."""
    if conditions.is_true(status.conditions, COMPLETE):
        return "Succeeded"
    if conditions.is_true(status.conditions, FAILED):
        return "Failed"
    return "Running" if status.job_name else "Pending"


def rate(rows: int, started: str | None, until: datetime) -> int | None:
    if not started:
        return None
    seconds = (until - parse_time(started)).total_seconds()
    return int(rows / seconds) if seconds > 0 else None


def plan(
    *,
    name: str,
    namespace: str,
    uid: str,
    spec: ScoringJobSpec,
    status: ScoringJobStatus,
    generation: int,
    observed: Observation,
    now: datetime,
) -> ScoringPlan:
    """One pass of a ScoringJob, without I/O."""
    st = status.model_copy(deep=True)
    st.observed_generation = generation
    now_s = format_time(now)
    result = ScoringPlan(status=st)
    before = state_of(status)

    def condition(type_: str, state: Literal["True", "False", "Unknown"], reason: str,
                  message: str) -> None:  # fmt: skip
        st.conditions = conditions.set_condition(
            st.conditions, type_, state, reason, message, now=now_s, generation=generation
        )

    if before in ("Succeeded", "Failed"):
        return result  # finished: nothing changes any more

    job = observed.job
    shards = shards_of(spec)
    st.shards_total = shards
    if job is None:
        model = observed.model
        if isinstance(model, Unresolved) or model is None:
            why = model or Unresolved("ModelNotResolved", "the model is not known yet")
            if why.final:
                st.completed_at = now_s
                st.message = why.message
                condition(FAILED, "True", why.reason, why.message)
                condition(COMPLETE, "False", why.reason, why.message)
                result.events.append(Event("Warning", why.reason, why.message))
                result.notifications.append(
                    {"event": "ScoringFailed", "reason": why.reason, "message": why.message}
                )
                return result
            if st.message != why.message:
                result.events.append(Event("Normal", why.reason, why.message))
            st.message = why.message
            condition(COMPLETE, "False", why.reason, why.message)
            result.requeue_after = 10.0
            return result
        result.create_job = scoring_job(
            name=name, namespace=namespace, uid=uid, spec=spec, model=model
        )
        st.job_name, st.model = name, model.frozen()
        st.started_at = st.started_at or now_s
        st.shards_done, st.units_done, st.rows_scored = 0, 0, 0
        st.shards = f"0/{shards}"
        st.message = None
        where = (
            f"revision {model.revision} of {model.model_deployment}"
            if model.retrain_job is None
            else f"the bundle RetrainJob {model.retrain_job} promoted in run {model.revision}"
        )
        started = f"Started Job {name}: {shards} shard(s), {spec.parallelism} at a time, {where}"
        condition(COMPLETE, "False", "Running", started)
        result.events.append(Event("Normal", "Started", started))
        result.requeue_after = 5.0
        return result

    frozen = model_of_job(job)
    if frozen is not None and st.model is None:
        st.model = frozen.frozen()
    st.job_name = job["metadata"]["name"]
    job_status = job.get("status") or {}
    st.started_at = st.started_at or job_status.get("startTime") or now_s
    done = count_indexes(job_status.get("completedIndexes"))
    st.shards_done = done
    st.shards = f"{done}/{shards}"
    progress = aggregate(observed.attempts, shards)
    st.units_total = progress.units_total
    st.units_done = progress.units_done
    st.rows_scored = progress.rows
    state, reason, message = job_outcome(job)
    if state == "Running":
        st.rows_per_second = rate(progress.rows, st.started_at, now)
        text = f"{done} of {shards} shard(s) done, {progress.rows} row(s) scored so far"
        condition(COMPLETE, "False", "Running", text)
        result.requeue_after = 10.0
        return result
    finished = job_status.get("completionTime") or now_s
    unseen = shards - len(progress.succeeded)
    if state == "Succeeded" and unseen > 0 and (now - parse_time(finished)).total_seconds() < (
        MESSAGE_GRACE_SECONDS
    ):
        # the Job counted an index whose pod's message this read did not hold yet: the rows
        # are final only with every index's message (given up after the grace, e.g. a pod
        # deleted since)
        text = f"{done} of {shards} shard(s) done; waiting for {unseen} scorer message(s)"
        condition(COMPLETE, "False", "Running", text)
        result.requeue_after = 1.0
        return result
    st.completed_at = finished
    st.rows_per_second = rate(progress.rows, st.started_at, parse_time(finished))
    if state == "Succeeded":
        st.message = None
        text = (
            f"Scored {progress.rows} row(s) in {shards} shard(s)"
            f" ({st.rows_per_second or 0} rows/s) into {spec.output.uri}"
        )
        if unseen > 0:
            text += (
                f"; the rows of {unseen} shard(s) whose pods were deleted before their messages"
                " were read are not counted here (the output's _manifest.json counts every row)"
            )
        condition(COMPLETE, "True", "Succeeded", text)
        condition(FAILED, "False", "Succeeded", "")
        if before != "Succeeded":
            result.events.append(Event("Normal", "Succeeded", text))
            result.notifications.append(
                {"event": "ScoringSucceeded", "rows": progress.rows, "message": text,
                 "output": spec.output.uri}
            )  # fmt: skip
        return result
    # Failed: the scorer's own reason (e.g. ModelRefused and its message) when it gave one
    if progress.failure is not None:
        reason, message = progress.failure
    else:
        message = message or f"the Job failed ({reason})"
    st.message = message[:1024]
    condition(FAILED, "True", reason, st.message)
    condition(COMPLETE, "False", reason, st.message)
    if before != "Failed":
        result.events.append(Event("Warning", reason, st.message))
        result.notifications.append(
            {"event": "ScoringFailed", "reason": reason, "message": st.message}
        )
    return result
