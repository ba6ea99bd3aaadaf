"""Reconcile one RetrainJob: read -> plan (pure) -> create/delete Jobs -> one status write."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pydantic import ValidationError

from seaway import egress
from seaway.api.modeldeployment import ModelDeployment
from seaway.api.retrainjob import RetrainJob
from seaway.handlers import notify
from seaway.handlers.modeldeployment import MAX_CONFLICT_RETRIES, Settings
from seaway.k8s.kube import Conflict, Kube, KubeError, Manifest
from seaway.planning import retrain, revisions, stalls
from seaway.planning.durations import format_time, parse_time

logger = logging.getLogger(__name__)


def job_state(job: Manifest) -> tuple[str, str | None]:
    """("Running"|"Succeeded"|"Failed", failure reason) from a Job's conditions."""
    for condition in job.get("status", {}).get("conditions", []) or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return "Succeeded", None
        if condition.get("type") == "Failed":
            return "Failed", condition.get("reason") or "JobFailed"
    return "Running", None


def termination_message(pods: list[Manifest]) -> str | None:
    """The trainer container's termination message of the newest finished pod."""
    finished = []
    for pod in pods:
        for status in pod.get("status", {}).get("containerStatuses", []) or []:
            terminated = (status.get("state") or {}).get("terminated")
            if status.get("name") == "trainer" and terminated:
                finished.append((terminated.get("finishedAt") or "", terminated.get("message")))
    return max(finished)[1] if finished else None


def observe(kube: Kube, rj: RetrainJob) -> dict[int, retrain.JobObservation]:
    ns, name = rj.metadata.namespace, rj.metadata.name
    observed: dict[int, retrain.JobObservation] = {}
    for job in kube.list("Job", ns, f"{retrain.RETRAIN_LABEL}={name}"):
        label = job["metadata"].get("labels", {}).get(retrain.RUN_LABEL, "")
        if not label.isdigit():
            continue
        state, reason = job_state(job)
        message = None
        if state != "Running":
            pods = kube.list("Pod", ns, f"job-name={job['metadata']['name']}")
            message = termination_message(pods)
        observed[int(label)] = retrain.JobObservation(state, message=message, reason=reason)  # type: ignore[arg-type]
    return observed


def incumbent_of(kube: Kube, namespace: str, md_name: str) -> tuple[bool, retrain.Incumbent | None]:
    """Whether the target ModelDeployment exists, and the model its stable revision serves."""
    body = kube.get("ModelDeployment", namespace, md_name)
    if body is None:
        return False, None
    try:
        md = ModelDeployment.parse(body)
    except ValidationError:
        return True, None
    stable = revisions.find_by_number(md.status.revisions, md.status.stable_revision or 0)
    if stable is None or stable.model_uri is None:
        return True, None
    secret = md.spec.model.secret_ref.name if md.spec.model.secret_ref else None
    allow = stable.digest is None and bool(md.spec.model.allow_unverified)
    # status keeps the URI redacted; the spec's own URI, when it is that one, still works
    uri = stable.model_uri
    written = md.spec.model.uri
    if written is not None and revisions.redact_uri(written) == uri:
        uri = written
    return True, retrain.Incumbent(
        uri=uri, digest=stable.digest, secret=secret, allow_unverified=allow
    )


def webhook_of(kube: Kube, namespace: str, md_name: str) -> str | None:
    """A RetrainJob notifies through the webhook of the ModelDeployment it trains for."""
    body = kube.get("ModelDeployment", namespace, md_name)
    url = ((body or {}).get("spec", {}).get("notifications") or {}).get("webhookURL")
    return str(url) if url else None


def hold_stalled(
    kube: Kube, body: Manifest, rj: RetrainJob, stall: stalls.Stall, now: datetime
) -> float:
    """A forbidden request: Ready=False says which, one Event, one log line; retry later."""
    st = rj.status.model_copy(deep=True)
    st.conditions, changed = stalls.hold_ready(
        st.conditions, stall, now=format_time(now), generation=rj.metadata.generation
    )
    st.observed_generation = rj.metadata.generation
    wire = st.to_wire()
    if wire != body.get("status"):
        body["status"] = wire
        try:
            kube.replace_status("RetrainJob", body)
        except Conflict:
            return 1.0
    if changed:
        kube.event(body, "Warning", stall.reason, stall.message)
        logger.warning(
            "RetrainJob %s/%s cannot progress: %s", rj.metadata.namespace, rj.metadata.name,
            stall.message,
        )  # fmt: skip
    return stalls.RETRY_SECONDS


def reconcile(kube: Kube, namespace: str, name: str, settings: Settings) -> float | None:
    for _ in range(MAX_CONFLICT_RETRIES):
        body = kube.get("RetrainJob", namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        try:
            rj = RetrainJob.parse(body)
        except ValidationError as exc:
            logger.warning("RetrainJob %s/%s cannot be parsed: %s", namespace, name, exc)
            return None
        try:
            exists, incumbent = incumbent_of(kube, namespace, rj.spec.model_deployment)
            created = body["metadata"].get("creationTimestamp")
            result = retrain.plan(
                name=name,
                spec=rj.spec,
                status=rj.status,
                generation=rj.metadata.generation,
                created_at=parse_time(created) if created else datetime.now(UTC),
                jobs=observe(kube, rj),
                now=settings.clock(),
                target_exists=exists,
            )
            for run in result.start:
                kube.apply(
                    retrain.training_job(
                        rj_name=name,
                        rj_uid=rj.metadata.uid,
                        namespace=namespace,
                        spec=rj.spec,
                        run=run,
                        incumbent=incumbent,
                        default_image=settings.trainer_image,
                    )
                )
                logger.info("Created Job %s/%s for run %d", namespace, run.job_name, run.number)
            for job in result.delete_jobs:
                kube.delete("Job", namespace, job)
        except KubeError as exc:
            stall = stalls.from_api_error("its Jobs", "manage", exc.status, namespace, exc.message)
            if stall is None or exc.status != 403:
                raise
            return hold_stalled(kube, body, rj, stall, settings.clock())
        status = result.status.to_wire()
        if status != body.get("status"):
            body["status"] = status
            try:
                kube.replace_status("RetrainJob", body)
            except Conflict:
                continue
        notify.announce(
            kube,
            body,
            result.events,
            result.notifications,
            webhook=webhook_of(kube, namespace, rj.spec.model_deployment),
            client=egress.Client(settings.egress.webhooks, timeout=settings.webhook_timeout),
        )
        return result.requeue_after
    return 1.0
