"""Reconcile one ModelDeployment: read -> plan (pure) -> act on children -> one status write."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from seaway import egress, metrics
from seaway.api.modeldeployment import ModelDeployment, RevisionStatus
from seaway.api.retrainjob import RetrainJob
from seaway.handlers import notify
from seaway.k8s import traffic
from seaway.k8s.kube import (
    APPLIED_HASH,
    Conflict,
    Kube,
    KubeError,
    Manifest,
    siblings_current,
    with_siblings,
)
from seaway.metrics.prometheus import Prometheus
from seaway.planning import analysis, children, refusals, revisions, stalls
from seaway.planning import experiment as experiments
from seaway.planning.analysis import Measurement
from seaway.planning.durations import format_time
from seaway.planning.experiment import VariantFigures
from seaway.planning.rollout import Observed, Plan, confirmed, plan

logger = logging.getLogger(__name__)

MAX_CONFLICT_RETRIES = 8
#: Seconds a pass may take before its writes are refused (see Kube.budget): a pass that
#: stalled on an unreachable API server must not write what it planned before the stall.
PASS_BUDGET = 30.0


class Stalled(Exception):
    """A write the API server refuses for a reason retrying does not fix (see planning.stalls)."""

    def __init__(self, stall: stalls.Stall) -> None:
        super().__init__(stall.message)
        self.stall = stall


@contextlib.contextmanager
def stalls_on(kind: str, verb: str, namespace: str) -> Iterator[None]:
    """Turn a 403 or 404 from writing ``kind`` into :class:`Stalled`; anything else passes."""
    try:
        yield
    except KubeError as exc:
        stall = stalls.from_api_error(kind, verb, exc.status, namespace, exc.message)
        if stall is None:
            raise
        raise Stalled(stall) from None


@dataclass
class Settings:
    """Operator-wide settings (flags of ``seaway operator run`` / chart values)."""

    router_image: str = "ghcr.io/seaway-dev/seaway-server:0.1.0"
    #: Image of the built-in trainer (the server image carries ``seaway-train``).
    trainer_image: str = "ghcr.io/seaway-dev/seaway-server:0.1.0"
    router_service_account: str | None = None
    #: Default Prometheus for analysis when a ModelDeployment names none.
    prometheus_url: str | None = None
    webhook_timeout: float = 5.0
    #: Hosts the operator may send requests to (spec-given Prometheus and webhook URLs).
    egress: egress.Policy = field(default_factory=egress.Policy)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


def secret_may_exist(kube: Kube, namespace: str, name: str) -> bool:
    """False only when the API server says the Secret does not exist.

    Least-privilege installs grant Secret ``get`` only in some namespaces: elsewhere the check
    is skipped (a missing Secret then shows as pods that fail to start) instead of failing the
    pass forever.
    """
    try:
        return kube.get("Secret", namespace, name) is not None
    except KubeError as exc:
        if exc.status == 403:
            logger.info("Not allowed to read Secrets in %s; assuming %s exists", namespace, name)
            return True
        raise


def resolve(
    kube: Kube, md: ModelDeployment
) -> tuple[revisions.ResolvedModel | None, tuple[str, str] | None]:
    """The concrete model to serve, or why the spec cannot be realised right now."""
    ns = md.metadata.namespace
    source = md.spec.model
    secret = source.secret_ref.name if source.secret_ref else None
    if secret is not None and not secret_may_exist(kube, ns, secret):
        return None, ("SecretNotFound", f"Secret {secret} (model.secretRef) not found in {ns}")
    if source.uri is not None:
        return revisions.resolve_model(md.spec), None
    job_name = source.from_retrain_job or ""
    body = kube.get("RetrainJob", ns, job_name)
    if body is None:
        return None, (
            "RetrainJobNotFound",
            f"RetrainJob {job_name} (model.fromRetrainJob) not found",
        )
    job = RetrainJob.parse(body)
    promoted = job.status.promoted
    if promoted is None:
        return None, None  # the planner says WaitingForModel
    return (
        revisions.ResolvedModel(
            uri=promoted.uri,
            format=promoted.format,
            digest=promoted.digest,
            allow_unverified=False,
            secret_name=secret,
            created_by=f"retrainjob/{job_name}#{promoted.run}",
        ),
        None,
    )


def observe(kube: Kube, md: ModelDeployment) -> tuple[dict[int, Observed], dict[int, Manifest]]:
    """Ready pods per revision, from the revision Deployments' status."""
    found = kube.list(
        "Deployment", md.metadata.namespace, f"{children.MD_LABEL}={md.metadata.name}"
    )
    observed: dict[int, Observed] = {}
    live: dict[int, Manifest] = {}
    for deployment in found:
        label = deployment["metadata"].get("labels", {}).get(children.REVISION_LABEL)
        if label is None or not label.isdigit():
            continue
        number = int(label)
        live[number] = deployment
        status = deployment.get("status", {})
        observed[number] = Observed(
            ready=int(status.get("readyReplicas") or 0),
            current=int(status.get("observedGeneration") or 0)
            >= int(deployment["metadata"].get("generation") or 0),
        )
    return observed, live


def explain_refusals(
    kube: Kube, md: ModelDeployment, result: Plan, observed: dict[int, Observed], now: datetime
) -> None:
    """Say in the plan why a rollout cannot progress: a model the server refused, no metrics.

    The Pods are read only when they can explain something (see refusals.pods_needed); without
    them a refusal said earlier is cleared once its revision is ready. Reading them is best effort:
    a missing ``pods`` permission (a trimmed RBAC) only loses the explanation, never the pass.
    """
    stalls.explain_analysis(
        result, md.status, now=format_time(now), generation=md.metadata.generation
    )
    ready = {n: o.ready for n, o in observed.items()}
    pods: list[Manifest] = []
    if refusals.pods_needed(result, md.status, ready):
        selector = f"{children.MD_LABEL}={md.metadata.name},{children.COMPONENT_LABEL}=model-server"
        try:
            pods = kube.list("Pod", md.metadata.namespace, selector)
        except KubeError as exc:
            if exc.status != 403:
                raise
            logger.debug("Not allowed to list Pods in %s: %s", md.metadata.namespace, exc)
            return
    refusals.explain(
        result,
        md.status,
        refusals.from_pods(pods, children.REVISION_LABEL),
        ready,
        now=format_time(now),
        generation=md.metadata.generation,
    )


def prometheus_for(md: ModelDeployment, settings: Settings) -> Prometheus | None:
    rollout = md.spec.rollout
    analysis_spec = rollout.analysis if rollout is not None else None
    configured = (
        analysis_spec.provider.prometheus
        if analysis_spec is not None and analysis_spec.provider is not None
        else None
    )
    address = configured.address if configured is not None else settings.prometheus_url
    if not address:
        return None
    return Prometheus(address, egress.Client(settings.egress.prometheus, timeout=5.0))


def experiment_figures_if_due(
    md: ModelDeployment, settings: Settings, now: datetime
) -> list[VariantFigures] | None:
    """The router's experiment figures, when an experiment runs and they are due."""
    spec = md.spec.traffic.experiment if md.spec.traffic is not None else None
    if spec is None or not experiments.due(md.status.experiment, now):
        return None
    provider = prometheus_for(md, settings)
    if provider is None:
        return None
    return provider.experiment(name=md.metadata.name, revisions=[v.revision for v in spec.variants])


def measure_if_due(md: ModelDeployment, settings: Settings, now: datetime) -> Measurement | None:
    """The canary's metrics over the last interval, when the analysis needs them now."""
    rollout = md.spec.rollout
    canary = md.status.canary_revision
    if (
        rollout is None
        or rollout.strategy != "Canary"
        or rollout.analysis is None
        or canary is None
    ):
        return None
    spec = rollout.analysis
    if not analysis.due(spec, md.status.analysis, canary, now):
        return None
    found = prometheus_for(md, settings)
    if found is None:
        return Measurement(
            problem="no Prometheus address: set rollout.analysis.provider.prometheus.address"
            " or the operator's --prometheus-url"
        )
    provider: metrics.Provider = found
    return provider.measure(
        namespace=md.metadata.namespace,
        name=md.metadata.name,
        canary=canary,
        stable=md.status.stable_revision,
        window=spec.interval,
    )


def backend_for(kube: Kube, md: ModelDeployment, settings: Settings) -> traffic.TrafficBackend:
    owner = children.owner_reference(md.metadata.name, md.metadata.uid)
    common: dict[str, Any] = {
        "md_name": md.metadata.name,
        "namespace": md.metadata.namespace,
        "owner": owner,
        "spec": md.spec,
    }
    router = md.spec.traffic.router if md.spec.traffic is not None else "builtin"
    if router == "gateway-api":
        return traffic.GatewayRoute(kube, **common)
    return traffic.BuiltinRouter(
        kube,
        router_image=settings.router_image,
        service_account=settings.router_service_account,
        **common,
    )


def frozen_template(
    kube: Kube,
    md: ModelDeployment,
    revision: RevisionStatus,
    model: revisions.ResolvedModel | None,
    live: Manifest | None,
) -> Manifest | None:
    """The Pod template revision ``revision`` was created with, recording it the first time.

    The record (a ControllerRevision) is written while the spec still describes this revision
    (same template hash), so it holds exactly what the user asked for then. A revision from
    before records existed is recorded from its running Deployment instead. None when neither is
    possible (an unrecorded revision whose Deployment is gone).
    """
    name, ns = md.metadata.name, md.metadata.namespace
    child = children.revision_name(name, revision.number)
    describes = model is not None and revisions.template_hash(model, md.spec.server) == (
        revision.template_hash
    )
    # A revision this pass created has no record yet (or one from a pass that failed after
    # writing it, which the Conflict finds): it is written without asking first.
    new = revisions.find_by_number(md.status.revisions, revision.number) is None
    record = None if new and describes else kube.get("ControllerRevision", ns, child)
    if record is not None:
        return children.recorded_template(record)
    if model is not None and describes:
        template = children.pod_template(
            md_name=name, number=revision.number, model=model, server=md.spec.server
        )
    elif live is not None:
        template = live["spec"]["template"]
        logger.info("Recording revision %s/%s from its running Deployment", ns, child)
    else:
        return None
    manifest = children.revision_record(
        md_name=name,
        namespace=ns,
        owner=children.owner_reference(name, md.metadata.uid),
        number=revision.number,
        template_hash=revision.template_hash,
        template=template,
    )
    try:
        kube.create(manifest)
    except Conflict:  # recorded meanwhile (another pass): the first record wins
        record = kube.get("ControllerRevision", ns, child)
        return children.recorded_template(record) if record is not None else None
    return template


def act(
    kube: Kube,
    md: ModelDeployment,
    result: Plan,
    live: dict[int, Manifest],
    settings: Settings,
    model: revisions.ResolvedModel | None = None,
) -> None:
    """Apply the plan: scale up, shift traffic, scale down, prune; in that order."""
    name, ns = md.metadata.name, md.metadata.namespace
    owner = children.owner_reference(name, md.metadata.uid)

    def ensure(number: int, replicas: int) -> None:
        revision = revisions.find_by_number(result.status.revisions, number)
        if revision is None:
            return
        template = frozen_template(kube, md, revision, model, live.get(number))
        if template is None:
            logger.warning(
                "Revision %s/%s has no recorded template and no Deployment; not recreating it",
                ns,
                children.revision_name(name, number),
            )
            return
        service = children.server_service(md_name=name, namespace=ns, owner=owner, number=number)
        scaler = children.autoscaler(
            md_name=name, namespace=ns, owner=owner, spec=md.spec, number=number
        )
        unscaled = md.spec.server.autoscaling is not None and replicas == 0
        siblings: list[Manifest | str] = [service]
        if scaler is not None and replicas > 0:
            siblings.append(scaler)
        elif unscaled:
            siblings.append("no HorizontalPodAutoscaler")
        deployment = with_siblings(
            children.server_deployment(
                md_name=name,
                namespace=ns,
                owner=owner,
                number=number,
                template=template,
                replicas=replicas,
                autoscaled=md.spec.server.autoscaling is not None,
            ),
            siblings,
        )
        current = live.get(number)
        found = (current or {}).get("metadata", {}).get("annotations", {}).get(APPLIED_HASH)
        if found == deployment["metadata"]["annotations"][APPLIED_HASH]:
            return
        # The Deployment goes last: when it carries the current hashes, everything before it
        # was applied too, so a pass interrupted anywhere is completed by the next one.
        if not siblings_current(current, deployment):
            write = kube.create_or_apply if current is None else kube.apply_if_changed
            write(service)
            if scaler is not None and replicas > 0:
                write(scaler)
            elif unscaled:
                kube.delete("HorizontalPodAutoscaler", ns, children.revision_name(name, number))
        kube.apply(deployment)
        logger.info(
            "Applied Deployment %s/%s (%d replicas)",
            ns,
            children.revision_name(name, number),
            replicas,
        )

    for number, replicas in sorted(result.replicas.items()):
        if replicas > 0:
            with stalls_on("Deployment", "apply", ns):
                ensure(number, replicas)
    if result.weights:
        backend = backend_for(kube, md, settings)
        kind = "HTTPRoute" if isinstance(backend, traffic.GatewayRoute) else "router ConfigMap"
        with stalls_on(kind, "apply", ns):
            if not backend.verify_weights(result.weights, result.mirror):
                backend.set_weights(result.weights, result.mirror)
                logger.info("Set weights of %s/%s to %s", ns, name, result.weights)
    for number, replicas in sorted(result.replicas.items()):
        if replicas == 0 and number in live:
            ensure(number, 0)
    for number in result.pruned:
        child = children.revision_name(name, number)
        for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "ControllerRevision"):
            kube.delete(kind, ns, child)
        logger.info("Deleted the children of pruned revision %s/%s", ns, child)


def hold_stalled(
    kube: Kube, body: Manifest, md: ModelDeployment, stall: stalls.Stall, now: datetime
) -> float:
    """Write why the pass could not be carried out (its plan is dropped), once; retry later."""
    status, events, changed = stalls.hold(
        md.status, stall, now=format_time(now), generation=md.metadata.generation
    )
    wire = status.to_wire()
    if wire != body.get("status"):
        body["status"] = wire
        try:
            kube.replace_status("ModelDeployment", body)
        except Conflict:
            return 1.0  # changed meanwhile: the next pass says it again
    for event in events:
        kube.event(body, event.type, event.reason, event.message)
    if changed:
        logger.warning(
            "ModelDeployment %s/%s cannot progress: %s",
            md.metadata.namespace,
            md.metadata.name,
            stall.message,
        )
    return stalls.RETRY_SECONDS


def write_status(kube: Kube, body: Manifest, status: dict[str, Any]) -> bool:
    """Write ``status`` over the ``body`` it was planned from; False when the plan is stale.

    A conflict because someone changed only labels or annotations (spec, generation and status
    as read) leaves the plan as good as it was: the write is repeated with the new
    resourceVersion instead of planning again. Otherwise a burst of metadata writes (a GitOps
    tool's, a label sync's) keeps every pass conflicting and the rollout never moves.
    """
    meta = body["metadata"]
    planned_from = (body.get("spec"), meta.get("generation"), body.get("status"))
    body["status"] = status
    for _ in range(MAX_CONFLICT_RETRIES):
        try:
            kube.replace_status("ModelDeployment", body)
            return True
        except Conflict:
            fresh = kube.get("ModelDeployment", meta["namespace"], meta["name"])
            if fresh is None or planned_from != (
                fresh.get("spec"),
                fresh["metadata"].get("generation"),
                fresh.get("status"),
            ):
                return False
            meta["resourceVersion"] = fresh["metadata"]["resourceVersion"]
    return False


def reconcile(kube: Kube, namespace: str, name: str, settings: Settings) -> float | None:
    """One pass; returns seconds until the next pass is needed without any event (or None)."""
    for _ in range(MAX_CONFLICT_RETRIES):
        body = kube.get("ModelDeployment", namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        try:
            md = ModelDeployment.parse(body)
        except ValidationError as exc:
            logger.warning("ModelDeployment %s/%s cannot be parsed: %s", namespace, name, exc)
            return None
        with kube.budget(PASS_BUDGET):
            now = settings.clock()
            try:
                with stalls_on("its objects", "read", namespace):
                    model, blocked = resolve(kube, md)
                    observed, live = observe(kube, md)
            except Stalled as stalled:
                if stalled.stall.reason != "Forbidden":
                    raise
                return hold_stalled(kube, body, md, stalled.stall, now)
            result = plan(
                md.spec,
                md.status,
                generation=md.metadata.generation,
                model=model,
                observed=observed,
                now=now,
                blocked=blocked,
                measurement=measure_if_due(md, settings, now),
                figures=experiment_figures_if_due(md, settings, now),
                outages=kube.outage.windows(),
            )
            explain_refusals(kube, md, result, observed, now)
            try:
                act(kube, md, result, live, settings, model)
            except Stalled as stalled:
                return hold_stalled(kube, body, md, stalled.stall, now)
            # Read after the weights and Deployments were written: see rollout.confirmed.
            confirmed(result, settings.clock())
            status = result.status.to_wire()
            if status != body.get("status") and not write_status(kube, body, status):
                logger.info("ModelDeployment %s/%s changed meanwhile; re-reading", namespace, name)
                continue
        webhook = md.spec.notifications.webhook_url if md.spec.notifications else None
        notify.announce(
            kube,
            body,
            result.events,
            result.notifications,
            webhook=webhook,
            client=egress.Client(settings.egress.webhooks, timeout=settings.webhook_timeout),
        )
        return result.requeue_after
    return 1.0
