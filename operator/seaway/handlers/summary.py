"""The scheduled model report: ``seaway report``'s JSON summary, posted to the webhook.

A ModelDeployment with ``spec.notifications.summary`` gets a work-queue key of its own
(:data:`KIND`), not a step in its reconcile: building a report asks Prometheus a dozen queries
and calls a webhook, seconds a rollout pass must never wait for, and a failed send must never
touch a rollout decision. The pass reads the ModelDeployment from the operator's cache, asks
:mod:`seaway.planning.summary` whether a summary is due, and makes no request at all when none
is: watch events of a ModelDeployment with a summary enqueue this pass, so it must be cheap.

When one is due, the claim goes into ``status.summary`` first (one status write; a conflict
with the rollout pass's write re-reads and decides again), then the report is built by the pure
:mod:`seaway.report` modules from the ModelDeployment as claimed, its RetrainJobs and (when one
is known) Prometheus, sent through :func:`seaway.handlers.notify.post` (webhook allowlist, no
redirects), and the outcome is written back with an Event.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from seaway import egress
from seaway.api.modeldeployment import ModelDeployment, Summary, SummaryStatus
from seaway.handlers import notify
from seaway.handlers.modeldeployment import MAX_CONFLICT_RETRIES, Settings
from seaway.k8s.kube import Conflict, Kube, KubeError, Manifest
from seaway.metrics import report as prom
from seaway.planning import summary as schedule
from seaway.planning.durations import parse_time
from seaway.report import assemble
from seaway.report import summary as document

logger = logging.getLogger(__name__)

#: The work-queue key's kind: ``(KIND, namespace, name)`` of the ModelDeployment.
KIND = "ModelDeploymentSummary"


def wanted(body: Manifest) -> bool:
    """Whether a watch event of this ModelDeployment needs a summary pass (cheap, no parsing)."""
    notifications = (body.get("spec") or {}).get("notifications") or {}
    return bool(notifications.get("summary") or (body.get("status") or {}).get("summary"))


async def on_model_deployment(
    *, type: str, body: Any, name: str, namespace: str | None, memo: Any, **_: Any
) -> None:
    """kopf event handler (registered by :mod:`seaway.handlers.operator` after its own, so the
    cache already holds the object this event carries)."""
    if "queue" in memo and type != "DELETED" and wanted(body):
        memo["queue"].add((KIND, namespace, name))


def prometheus_address(md: ModelDeployment, spec: Summary, settings: Settings) -> str | None:
    """The summary's own Prometheus, else the analysis's, else the operator's default."""
    if spec.prometheus is not None:
        return spec.prometheus.address
    analysis = md.spec.rollout.analysis if md.spec.rollout is not None else None
    if analysis is not None and analysis.provider is not None and analysis.provider.prometheus:
        return analysis.provider.prometheus.address
    return settings.prometheus_url


def build(
    kube: Kube,
    body: Manifest,
    md: ModelDeployment,
    spec: Summary,
    settings: Settings,
    *,
    now: datetime,
    window_seconds: int,
) -> dict[str, Any]:
    """The JSON summary, shape version 1, as ``seaway report --summary-json`` writes it.

    Events are not read: the summary carries none (and the operator may only create them).
    """
    ns, name = md.metadata.namespace, md.metadata.name
    missing: list[str] = []
    notes: list[str] = []
    try:
        jobs = kube.list("RetrainJob", ns)
    except KubeError as exc:
        jobs = []
        missing.append(f"Cannot list RetrainJobs in {ns} ({exc.message}): retraining omitted.")
    address = prometheus_address(md, spec, settings)
    answers = None
    where = None
    if address is None:
        missing.append(
            "No Prometheus known (notifications.summary.prometheus, the analysis's provider or"
            " the operator's --prometheus-url): traffic, errors, latency and drift omitted."
        )
    else:
        where = egress.describe(address)
        reader = prom.Reader(egress.Client(settings.egress.prometheus, timeout=5.0), address)
        try:
            answers = prom.gather(reader, name=name, window_seconds=window_seconds, at=now)
        except egress.EgressError as exc:
            missing.append(f"Prometheus: {exc}: traffic, errors, latency and drift omitted.")
        notes.append(
            "The router's and model servers' series carry no namespace: a ModelDeployment"
            f" named {name} in another namespace would be counted with this one."
        )
    report = assemble.build(
        body,
        now=now,
        window_seconds=window_seconds,
        retrain_job_bodies=jobs,
        answers=answers,
        prometheus=where,
        missing=missing,
        notes=notes,
    )
    return document.document(report)


def _write(kube: Kube, body: Manifest, summary: SummaryStatus | None) -> Manifest:
    """Replace ``status.summary`` only, over the ``body`` it was decided from (its
    resourceVersion makes a concurrent write a Conflict); returns the object as written."""
    status = dict(body.get("status") or {})
    if summary is None:
        status.pop("summary", None)
    else:
        status["summary"] = summary.to_wire()
    written: Manifest = kube.replace_status("ModelDeployment", {**body, "status": status})
    return written


def reconcile(kube: Kube, namespace: str, name: str, settings: Settings) -> float | None:
    """One summary pass; returns seconds until the next due time (None: nothing scheduled)."""
    for _ in range(MAX_CONFLICT_RETRIES):
        body = kube.get("ModelDeployment", namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        try:
            md = ModelDeployment.parse(body)
        except ValidationError:
            return None  # the rollout pass says why
        notifications = md.spec.notifications
        spec = notifications.summary if notifications is not None else None
        now = settings.clock()
        decision = schedule.decide(spec, md.status.summary, now)
        if decision.status != md.status.summary:
            try:
                body = _write(kube, body, decision.status)
            except Conflict:
                continue
        for event in decision.events:
            kube.event(body, event.type, event.reason, event.message)
            logger.warning("ModelDeployment %s/%s: %s", namespace, name, event.message)
        if decision.send and spec is not None and decision.status is not None:
            send(kube, body, md, spec, decision.status, settings, now, decision.window_seconds)
        return decision.requeue_after
    return 1.0


def send(
    kube: Kube,
    body: Manifest,
    md: ModelDeployment,
    spec: Summary,
    claim: SummaryStatus,
    settings: Settings,
    now: datetime,
    window_seconds: int,
) -> None:
    """Build and post the summary claimed in ``claim``, then record the outcome (best effort)."""
    namespace, name = md.metadata.namespace, md.metadata.name
    assert md.spec.notifications is not None
    url = md.spec.notifications.webhook_url
    client = egress.Client(settings.egress.webhooks, timeout=settings.webhook_timeout)
    payload = build(kube, body, md, spec, settings, now=now, window_seconds=window_seconds)
    error = notify.post(client, url, payload)
    where = egress.describe(url) if error is None else None
    due = parse_time(claim.last_due_at) if claim.last_due_at else now
    covered = schedule.missed(spec.schedule, due, now)
    also = (
        f"; it also covers {covered} later due time(s) missed while the operator was not running"
        if covered
        else ""
    )
    if error is None:
        message = f"Sent the summary (last {payload['window']}) to {where}{also}"
        kube.event(body, "Normal", "SummarySent", message)
        logger.info("ModelDeployment %s/%s: %s", namespace, name, message)
    else:
        message = f"summary not sent: {error}; the next due time sends again"
        kube.event(body, "Warning", "SummaryFailed", message)
        logger.warning("ModelDeployment %s/%s: %s", namespace, name, message)
    for _ in range(MAX_CONFLICT_RETRIES):
        current = ModelDeployment.parse(body).status.summary
        outcome = schedule.record(current, claim.last_due_at, now, error)
        if outcome is None:
            return
        try:
            _write(kube, body, outcome)
            return
        except Conflict:
            fresh = kube.get("ModelDeployment", namespace, name)
            if fresh is None:
                return
            body = fresh
        except KubeError as exc:
            logger.warning("Could not record the summary of %s/%s: %s", namespace, name, exc)
            return
