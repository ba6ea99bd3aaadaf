"""Reconcile one ScoringJob: read -> plan (pure) -> create its Job -> one status write.

The model is resolved only while the ScoringJob has no Job yet; once the Job exists it is the
frozen record of the model (see :mod:`seaway.planning.scoring`).
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from seaway import egress
from seaway.api.scoringjob import ScoringJob
from seaway.handlers import notify
from seaway.handlers.modeldeployment import MAX_CONFLICT_RETRIES, Settings
from seaway.k8s.kube import Conflict, Kube, KubeError, Manifest
from seaway.planning import children, scoring

logger = logging.getLogger(__name__)


def resolve(kube: Kube, sj: ScoringJob, settings: Settings) -> scoring.Model | scoring.Unresolved:
    """The model the spec names, as it is now (called only before the Job exists)."""
    ns, ref = sj.metadata.namespace, sj.spec.model
    if ref.retrain_job is not None:
        rj = kube.get("RetrainJob", ns, ref.retrain_job)
        if rj is None:
            return scoring.Unresolved(
                "RetrainJobNotFound", f"waiting for RetrainJob {ref.retrain_job} to exist"
            )
        target = (rj.get("spec") or {}).get("modelDeployment")
        image = _stable_image(kube, ns, target) if target else None
        return scoring.model_from_retrainjob(rj, default_image=settings.trainer_image, image=image)
    md_name = ref.model_deployment or ""
    md = kube.get("ModelDeployment", ns, md_name)
    if md is None:
        return scoring.Unresolved(
            "ModelDeploymentNotFound", f"waiting for ModelDeployment {md_name} to exist"
        )
    number = scoring.pick_revision(md.get("status") or {}, md_name=md_name, wanted=ref.revision)
    if isinstance(number, scoring.Unresolved):
        return number
    template = _frozen_template(kube, ns, md_name, number)
    if template is None:
        return scoring.Unresolved(
            "RevisionNotFound",
            f"revision {number} of {md_name} has no record (pruned from history?)",
            final=True,
        )
    return scoring.model_from_template(template, md_name=md_name, revision=number)


def _frozen_template(kube: Kube, namespace: str, md_name: str, number: int) -> Manifest | None:
    """The Pod template recorded for a revision (its ControllerRevision), or None."""
    record = kube.get("ControllerRevision", namespace, children.revision_name(md_name, number))
    return children.recorded_template(record) if record is not None else None


def _stable_image(kube: Kube, namespace: str, md_name: str) -> str | None:
    """The image of a ModelDeployment's stable revision: a promoted bundle is scored in the
    image that serves it."""
    md = kube.get("ModelDeployment", namespace, md_name)
    stable = ((md or {}).get("status") or {}).get("stableRevision")
    if not isinstance(stable, int):
        return None
    template = _frozen_template(kube, namespace, md_name, stable)
    if template is None:
        return None
    model = scoring.model_from_template(template, md_name=md_name, revision=stable)
    return model.image if isinstance(model, scoring.Model) else None


def webhook_of(kube: Kube, sj: ScoringJob) -> str | None:
    """The ScoringJob's own webhook, else that of the ModelDeployment its model comes from."""
    if sj.spec.notifications is not None:
        return sj.spec.notifications.webhook_url
    md_name = sj.status.model.model_deployment if sj.status.model else None
    md_name = md_name or sj.spec.model.model_deployment
    if not md_name:
        return None
    body = kube.get("ModelDeployment", sj.metadata.namespace, md_name)
    url = ((body or {}).get("spec", {}).get("notifications") or {}).get("webhookURL")
    return str(url) if url else None


def observe(kube: Kube, sj: ScoringJob, settings: Settings) -> scoring.Observation:
    ns, name = sj.metadata.namespace, sj.metadata.name
    job = kube.get("Job", ns, name)
    if job is not None and not _owned_by(job, sj.metadata.uid):
        return scoring.Observation(
            job=None,
            model=scoring.Unresolved(
                "JobNameTaken",
                f"a Job named {name} exists and does not belong to this ScoringJob",
                final=True,
            ),
        )
    if job is None:
        if scoring.state_of(sj.status) != "Pending":
            return scoring.Observation(job=None, model=_lost(sj))
        return scoring.Observation(job=None, model=resolve(kube, sj, settings))
    pods = kube.list("Pod", ns, f"{scoring.SCORING_LABEL}={name}")
    return scoring.Observation(job=job, attempts=scoring.attempts_of(pods))


def _lost(sj: ScoringJob) -> scoring.Unresolved:
    return scoring.Unresolved(
        "JobDeleted",
        f"the Job {sj.status.job_name or sj.metadata.name} was deleted before it finished",
        final=True,
    )


def _owned_by(job: Manifest, uid: str) -> bool:
    owners = (job.get("metadata") or {}).get("ownerReferences") or []
    return any(o.get("uid") == uid for o in owners)


def reconcile(kube: Kube, namespace: str, name: str, settings: Settings) -> float | None:
    for _ in range(MAX_CONFLICT_RETRIES):
        body = kube.get("ScoringJob", namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        try:
            sj = ScoringJob.parse(body)
        except ValidationError as exc:
            logger.warning("ScoringJob %s/%s cannot be parsed: %s", namespace, name, exc)
            return None
        result = scoring.plan(
            name=name,
            namespace=namespace,
            uid=sj.metadata.uid,
            spec=sj.spec,
            status=sj.status,
            generation=sj.metadata.generation,
            observed=observe(kube, sj, settings)
            if scoring.state_of(sj.status) in ("Pending", "Running")
            else scoring.Observation(job=None),
            now=settings.clock(),
        )
        if result.create_job is not None:
            try:
                kube.apply(result.create_job)
            except KubeError as exc:
                if exc.status not in (400, 422):
                    raise
                # the API server refused the Job itself (e.g. a name too long for an Indexed
                # Job's pods): say so in status instead of retrying forever
                why = scoring.Unresolved("InvalidSpec", f"the Job was refused: {exc.message}",
                                         final=True)  # fmt: skip
                result = scoring.plan(
                    name=name, namespace=namespace, uid=sj.metadata.uid, spec=sj.spec,
                    status=sj.status, generation=sj.metadata.generation,
                    observed=scoring.Observation(job=None, model=why), now=settings.clock(),
                )  # fmt: skip
            else:
                logger.info("Created Job %s/%s", namespace, name)
        status = result.status.to_wire()
        if status != body.get("status"):
            body["status"] = status
            try:
                kube.replace_status("ScoringJob", body)
            except Conflict:
                continue
        notify.announce(
            kube,
            body,
            result.events,
            result.notifications,
            webhook=webhook_of(kube, sj) if result.notifications else None,
            client=egress.Client(settings.egress.webhooks, timeout=settings.webhook_timeout),
        )
        return result.requeue_after
    return 1.0
