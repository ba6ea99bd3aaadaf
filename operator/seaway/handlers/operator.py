"""The kopf operator: watch ModelDeployments and their Deployments, feed the work queue.

``seaway operator run`` and the chart's image run :func:`run`; tests load this module into
kopf's in-process runner. Settings come from the environment (set by the CLI flags).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf

from seaway import egress
from seaway.handlers import modeldeployment, retrainjob, scoringjob, summary
from seaway.handlers.workqueue import WorkQueue
from seaway.k8s.cache import CachedKube, Store
from seaway.k8s.kube import (
    Kube,
    KubeError,
    StalePass,
    Unavailable,
    format_counts,
    load_api_client,
)
from seaway.k8s.lease import LeaderElector
from seaway.k8s.outage import Backoffs, Outage, WatchRetries
from seaway.planning import children
from seaway.planning.retrain import RETRAIN_LABEL
from seaway.planning.scoring import SCORING_LABEL

logger = logging.getLogger(__name__)

GROUP, VERSION = "seaway.dev", "v1alpha1"
CLOCK_OFFSET_ENV = "SEAWAY_CLOCK_OFFSET_SECONDS"


def settings_from_env() -> modeldeployment.Settings:
    settings = modeldeployment.Settings()
    settings.router_image = os.environ.get("SEAWAY_ROUTER_IMAGE", settings.router_image)
    settings.router_service_account = os.environ.get("SEAWAY_ROUTER_SERVICE_ACCOUNT") or None
    settings.prometheus_url = os.environ.get("SEAWAY_PROMETHEUS_URL") or None
    settings.trainer_image = os.environ.get("SEAWAY_TRAINER_IMAGE", settings.trainer_image)
    settings.egress = egress.Policy.from_env(os.environ, default_prometheus=settings.prometheus_url)
    if CLOCK_OFFSET_ENV in os.environ:
        # For tests and demos of schedules: the operator's clock runs this many seconds ahead,
        # read at every use so a test can move time while the operator runs.
        def shifted() -> datetime:
            offset = float(os.environ.get(CLOCK_OFFSET_ENV) or 0)
            return datetime.now(UTC) + timedelta(seconds=offset)

        settings.clock = shifted
    return settings


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """Credentials from $KUBECONFIG as it is now (or the in-cluster ServiceAccount)."""
    if os.environ.get("KUBECONFIG"):
        return kopf.login_with_kubeconfig(**kwargs)
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
async def start(memo: kopf.Memo, settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.networking.error_backoffs = Backoffs()
    settings.execution.max_workers = int(os.environ.get("SEAWAY_WORKERS", "8"))
    store = Store(children.MD_LABEL)
    memo["store"] = store
    md_settings = settings_from_env()
    client = Kube(load_api_client(os.environ.get("KUBECONFIG")))
    client.outage = Outage(clock=md_settings.clock)  # outages in the planner's time
    kube = CachedKube(client, store, children.MD_LABEL)
    retries = memo["watch_retries"] = WatchRetries(kube.outage)
    for handler in logging.getLogger().handlers:
        handler.addFilter(retries)
    memo["outage_probe"] = asyncio.create_task(probe_during_outages(kube))

    reconcilers = {
        "ModelDeployment": modeldeployment.reconcile,
        "RetrainJob": retrainjob.reconcile,
        "ScoringJob": scoringjob.reconcile,
        summary.KIND: summary.reconcile,
    }

    workers = settings.execution.max_workers or 8
    # Passes get threads of their own: asyncio's default pool has cpu_count + 4 threads (6 on
    # two cores), fewer than the workers, and the Lease renewal needs one even when every
    # pass waits on the API server.
    pool = memo["pool"] = ThreadPoolExecutor(workers, thread_name_prefix="seaway-pass")

    async def work(key: Hashable) -> float | None:
        assert isinstance(key, tuple)
        kind: str = key[0]
        namespace: str = key[1]
        name: str = key[2]
        run = functools.partial(reconcilers[kind], kube, namespace, name, md_settings)
        return await asyncio.get_running_loop().run_in_executor(pool, run)

    queue = WorkQueue(work, concurrency=workers, transient=(Unavailable, StalePass))
    memo["queue"] = queue
    memo["kube"] = kube
    if os.environ.get(LEADER_ELECT_ENV, "").lower() in ("1", "true", "yes"):
        # Watch events still fill the queue; only the Lease holder works it off.
        memo["leader"] = asyncio.create_task(lead(kube, queue))
    else:
        queue.start()
    logger.info("Started the Seaway operator")


async def probe_during_outages(kube: Kube, every: float = 1.0) -> None:
    """While an outage lasts, ask the API server once a second whether it is back.

    Passes back off for up to ten seconds and the watches retry on their own; this ends the
    outage (and its log line) within a second of the API server's return, even when no pass
    is due.
    """
    while True:
        await asyncio.sleep(every)
        if kube.outage.ongoing:
            with contextlib.suppress(KubeError):
                await asyncio.to_thread(kube.probe)


LEADER_ELECT_ENV = "SEAWAY_LEADER_ELECT"
RENEW_EVERY = 3.0


async def lead(kube: Kube, queue: WorkQueue) -> None:
    """Hold the Lease while working; exit the process when it cannot be held any more."""
    identity = f"{os.environ.get('HOSTNAME', 'seaway')}-{os.getpid()}"
    elector = LeaderElector(
        kube,
        namespace=os.environ.get("SEAWAY_LEASE_NAMESPACE", "default"),
        name=os.environ.get("SEAWAY_LEASE_NAME", "seaway-operator"),
        identity=identity,
    )
    loop = asyncio.get_running_loop()
    leading, renewed = False, 0.0
    logger.info("Waiting for the Lease %s/%s as %s", elector.namespace, elector.name, identity)
    while True:
        sent = loop.time()  # the Lease's renewTime is taken before the request
        held = await asyncio.to_thread(elector.try_once)
        if held:
            renewed = sent
            kube.lead_until(sent + elector.duration_seconds - 2 * RENEW_EVERY)
            if not leading:
                leading = True
                queue.start()
                logger.info("Became the leader: reconciling")
        elif leading and loop.time() - renewed > elector.duration_seconds - 2 * RENEW_EVERY:
            # Stop before anyone may take over: never two writers.
            logger.error("Lost the Lease %s/%s; exiting", elector.namespace, elector.name)
            os._exit(1)
        await asyncio.sleep(RENEW_EVERY)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    for task in ("leader", "outage_probe"):
        if memo.get(task) is not None:
            memo[task].cancel()
    if memo.get("watch_retries") is not None:
        for handler in logging.getLogger().handlers:
            handler.removeFilter(memo["watch_retries"])
    queue = memo.get("queue")
    if queue is not None:
        await queue.stop()
        memo["pool"].shutdown(wait=False)
        kube = memo["kube"]
        logger.info(
            "Stopped after %d passes; API requests: %s; by kind: %s",
            queue.passes,
            format_counts(kube.requests),
            format_counts(kube.requests_by_kind, kube.seconds_by_kind),
        )


@kopf.on.event(GROUP, VERSION, "modeldeployments")
async def on_model_deployment(
    *, type: str, event: Any, name: str, namespace: str | None, memo: Any, **_: Any
) -> None:
    if "store" not in memo:
        return
    if type == "DELETED":
        memo["store"].delete("ModelDeployment", namespace or "", name)
        return
    memo["store"].put("ModelDeployment", event["object"])
    memo["queue"].add(("ModelDeployment", namespace, name))


@kopf.on.event("apps", "v1", "deployments", labels={children.MD_LABEL: kopf.PRESENT})
async def on_revision_deployment(
    *, type: str, event: Any, labels: Mapping[str, str], namespace: str | None, memo: Any, **_: Any
) -> None:
    before = _ready_replicas(memo, namespace, event)
    news = _remember(memo, "Deployment", type, event)
    # The controller manager updates a Deployment's status several times while it rolls out;
    # only a change of ready pods (or the Deployment appearing, unless we just wrote it, or
    # going) matters to a pass.
    if "queue" in memo and (
        type == "DELETED" or (type in ("ADDED", None) and news) or before != _ready(event["object"])
    ):
        memo["queue"].add(("ModelDeployment", namespace, labels[children.MD_LABEL]))


def _ready(body: Any) -> int:
    return int((body.get("status") or {}).get("readyReplicas") or 0)


def _ready_replicas(memo: Any, namespace: str | None, event: Any) -> int | None:
    store = memo.get("store")
    name = event["object"].get("metadata", {}).get("name", "")
    known = store.get("Deployment", namespace or "", name) if store is not None else None
    return _ready(known) if known is not None else None


@kopf.on.event("", "v1", "configmaps", labels={children.MD_LABEL: kopf.PRESENT})
async def on_router_configmap(*, type: str, event: Any, memo: Any, **_: Any) -> None:
    """Only cached: the router's ConfigMap is read back to verify the weights."""
    _remember(memo, "ConfigMap", type, event)


def _remember(memo: Any, kind: str, type: str, event: Any) -> bool:
    """Put the event's object into the store; False when it held that version already."""
    store = memo.get("store")
    if store is None:
        return True
    body = event["object"]
    meta = body.get("metadata", {})
    if type == "DELETED":
        store.delete(kind, meta.get("namespace", ""), meta.get("name", ""))
        return True
    return bool(store.put(kind, body))


@kopf.on.event(GROUP, VERSION, "retrainjobs")
async def on_retrain_job(
    *, type: str, spec: kopf.Spec, name: str, namespace: str | None, memo: Any, **_: Any
) -> None:
    """Reconcile the RetrainJob; its promotion also changes the model of the ModelDeployment
    that follows it."""
    if "queue" not in memo:
        return
    if type != "DELETED":
        memo["queue"].add(("RetrainJob", namespace, name))
    target = spec.get("modelDeployment")
    if target:
        memo["queue"].add(("ModelDeployment", namespace, target))


@kopf.on.event("batch", "v1", "jobs", labels={RETRAIN_LABEL: kopf.PRESENT})
async def on_training_job(
    *, labels: Mapping[str, str], namespace: str | None, memo: Any, **_: Any
) -> None:
    if "queue" in memo:
        memo["queue"].add(("RetrainJob", namespace, labels[RETRAIN_LABEL]))


@kopf.on.event(GROUP, VERSION, "scoringjobs")
async def on_scoring_job(
    *, type: str, name: str, namespace: str | None, memo: Any, **_: Any
) -> None:
    if "queue" in memo and type != "DELETED":
        memo["queue"].add(("ScoringJob", namespace, name))


@kopf.on.event("batch", "v1", "jobs", labels={SCORING_LABEL: kopf.PRESENT})
async def on_scoring_indexed_job(
    *, labels: Mapping[str, str], namespace: str | None, memo: Any, **_: Any
) -> None:
    """A shard finished or failed (completedIndexes, conditions): read the progress now."""
    if "queue" in memo:
        memo["queue"].add(("ScoringJob", namespace, labels[SCORING_LABEL]))


# The scheduled summary's own pass (handlers/summary.py); registered after on_model_deployment,
# which puts the event's object into the cache that pass reads.
kopf.on.event(GROUP, VERSION, "modeldeployments", id="summary")(summary.on_model_deployment)


def run(*, namespaces: list[str], verbose: bool = False, health: str | None = None) -> None:
    """Run the operator until interrupted (cluster-wide when ``namespaces`` is empty).

    ``health`` (e.g. ``http://0.0.0.0:8080/healthz``) serves kopf's liveness endpoint.
    """
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.PLAIN)
    if not verbose:  # one line per handled watch event is noise; Seaway logs what it did
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    asyncio.run(
        kopf.operator(
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=health,
            standalone=True,
        )
    )
