"""A small typed facade over the Kubernetes REST API: read, server-side apply, status, Events.

It speaks plain dicts (manifests) so the pure builders' output goes to the server unchanged, and
it keeps the field manager in one place: every child is written by ``seaway`` with server-side
apply, and the ModelDeployment's ``spec`` is never written at all (only ``/status``).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from seaway.k8s.outage import Outage

FIELD_MANAGER = "seaway"
#: Annotation holding a hash of what Seaway last applied to a child, to skip identical writes.
APPLIED_HASH = "seaway.dev/applied-hash"
#: Annotation on a Deployment holding a hash of the children applied just before it (its
#: Service, the router's account): when it matches, they need neither a write nor a read.
SIBLINGS_HASH = "seaway.dev/siblings-hash"
#: Test hook for the restart-safety test: SIGKILL this process right after its N-th API write.
FAULT_ENV = "SEAWAY_FAULT_KILL_AFTER_WRITES"
#: (connect, read) seconds. Short, and never retried by the HTTP client: a request that hangs
#: on a frozen API server fails the pass, which then plans again from what it reads anew,
#: instead of applying, minutes later, a plan made before the freeze.
REQUEST_TIMEOUT = (5.0, 10.0)

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    prefix: str  # "/api/v1" or "/apis/<group>/<version>"
    plural: str

    def path(self, namespace: str, name: str | None = None) -> str:
        base = f"{self.prefix}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{name}" if name else base


RESOURCES: dict[str, Resource] = {
    "Deployment": Resource("/apis/apps/v1", "deployments"),
    "ControllerRevision": Resource("/apis/apps/v1", "controllerrevisions"),
    "Service": Resource("/api/v1", "services"),
    "ConfigMap": Resource("/api/v1", "configmaps"),
    "Secret": Resource("/api/v1", "secrets"),
    "Event": Resource("/api/v1", "events"),
    "Pod": Resource("/api/v1", "pods"),
    "Job": Resource("/apis/batch/v1", "jobs"),
    "HorizontalPodAutoscaler": Resource("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    "HTTPRoute": Resource("/apis/gateway.networking.k8s.io/v1", "httproutes"),
    "ServiceAccount": Resource("/api/v1", "serviceaccounts"),
    "Lease": Resource("/apis/coordination.k8s.io/v1", "leases"),
    "Role": Resource("/apis/rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": Resource("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    "ModelDeployment": Resource("/apis/seaway.dev/v1alpha1", "modeldeployments"),
    "RetrainJob": Resource("/apis/seaway.dev/v1alpha1", "retrainjobs"),
    "ScoringJob": Resource("/apis/seaway.dev/v1alpha1", "scoringjobs"),
}


class Conflict(Exception):
    """The object changed since it was read (HTTP 409): re-read and try again."""


class KubeError(Exception):
    """Any other refusal by the API server, with its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Unavailable(KubeError):
    """No usable answer: unreachable, timed out, 5xx or 429 (status 0 without an answer).

    An outage, not a refusal: nothing about the object is known, so no condition is set; the
    pass is retried with back-off, and :class:`~seaway.k8s.outage.Outage` says it once.
    """


class _Fence:
    until: float | None = None


class StalePass(Exception):
    """The pass ran past its time budget before a write: what it planned may be out of date."""


def load_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """An ApiClient from ``kubeconfig``, $KUBECONFIG, ~/.kube/config or the in-cluster account."""
    if (
        kubeconfig is None
        and "KUBECONFIG" not in os.environ
        and os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token")
    ):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        configuration.retries = False  # see REQUEST_TIMEOUT
        return client.ApiClient(configuration)
    configuration = client.Configuration()
    # $KUBECONFIG is read now: the client library reads it once, at import time.
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=kubeconfig or os.environ.get("KUBECONFIG"),
        client_configuration=configuration,
    )
    configuration.retries = False  # see REQUEST_TIMEOUT
    return client.ApiClient(configuration)


class Kube:
    """Reads and writes through one ApiClient; counts writes (see :data:`FAULT_ENV`)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self._writes = 0
        self._lock = threading.Lock()
        #: Requests made, by HTTP method (reported when the operator stops, used by bench/).
        self.requests: collections.Counter[str] = collections.Counter()
        #: The same requests by method and resource ("PATCH deployments", "PUT .../status"):
        #: where the load on the API server comes from.
        self.requests_by_kind: collections.Counter[str] = collections.Counter()
        #: Seconds the same requests waited for their answers, summed per method and resource.
        self.seconds_by_kind: collections.defaultdict[str, float] = collections.defaultdict(float)
        limit = os.environ.get(FAULT_ENV)
        self._kill_after = int(limit) if limit else None
        self.outage = Outage()
        #: The running pass's deadline (monotonic), per thread: see :meth:`budget`.
        self._pass = threading.local()
        #: Until when (monotonic) this replica surely holds the Lease: see :meth:`lead_until`.
        self._fence = _Fence()

    def lead_until(self, deadline: float | None) -> None:
        """Writes other than the Lease's own are refused (:class:`StalePass`) after ``deadline``.

        The fence for a leader that was frozen (SIGSTOP, a stalled VM) for longer than its
        Lease: when it wakes, its overdue passes would otherwise write at once, before its
        leader loop notices that another replica took over. Checked before each request is
        sent; a freeze between the check and the send still lets that one request through.
        """
        self._fence.until = deadline

    @contextlib.contextmanager
    def budget(self, seconds: float) -> Iterator[None]:
        """Writes made in this block after ``seconds`` raise :class:`StalePass` instead."""
        self._pass.deadline = time.monotonic() + seconds
        try:
            yield
        finally:
            self._pass.deadline = None

    # -- plumbing ---------------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        self.requests[method] += 1
        kind = f"{method} {resource_of(path)}"
        self.requests_by_kind[kind] += 1
        deadline = getattr(self._pass, "deadline", None)
        if method != "GET" and deadline is not None and time.monotonic() > deadline:
            raise StalePass(f"{method} {path} not sent: the pass ran past its time budget")
        fence = self._fence.until
        lease = path.startswith(RESOURCES["Lease"].prefix)  # renewing it is how to lead again
        if method != "GET" and fence is not None and time.monotonic() > fence and not lease:
            raise StalePass(f"{method} {path} not sent: the leader Lease may have expired")
        method, url, headers, payload, post = self.api.param_serialize(
            method,
            path,
            query_params=query or [],
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        sent_at, sent_mono = self.outage.now()
        began = time.monotonic()
        try:
            response = self.api.call_api(
                method, url, headers, payload, post, _request_timeout=REQUEST_TIMEOUT
            )
            data = response.read()  # type: ignore[no-untyped-call]
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:  # no answer
            self.seconds_by_kind[kind] += time.monotonic() - began
            reason = _transport_reason(exc)
            self.outage.failed(reason, sent_at=sent_at, sent_mono=sent_mono)
            raise Unavailable(0, reason) from None
        self.seconds_by_kind[kind] += time.monotonic() - began
        if response.status >= 500 or response.status == 429:
            reason = f"{response.status} {_message(data, response.reason)}"
            self.outage.failed(reason, sent_at=sent_at, sent_mono=sent_mono)
            raise Unavailable(response.status, _message(data, response.reason))
        self.outage.answered(sent_at=sent_at)
        if response.status == 409:
            raise Conflict(_message(data, response.reason))
        if response.status >= 400:
            raise KubeError(response.status, _message(data, response.reason))
        return json.loads(data) if data else None

    def _wrote(self) -> None:
        if self._kill_after is None:
            return
        with self._lock:
            self._writes += 1
            if self._writes >= self._kill_after:
                os.kill(os.getpid(), signal.SIGKILL)

    def probe(self) -> None:
        """One cheap request (``/version``): during an outage, tells when it is over."""
        self._call("GET", "/version")

    # -- reads ------------------------------------------------------------------------------
    def get(self, kind: str, namespace: str, name: str) -> Manifest | None:
        try:
            result: Manifest = self._call("GET", RESOURCES[kind].path(namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    def list(self, kind: str, namespace: str, selector: str | None = None) -> list[Manifest]:
        query = [("labelSelector", selector)] if selector else None
        result = self._call("GET", RESOURCES[kind].path(namespace), query=query)
        items: list[Manifest] = result.get("items", [])
        return items

    # -- writes -----------------------------------------------------------------------------
    def apply(self, manifest: Manifest) -> Manifest:
        """Server-side apply under the ``seaway`` field manager (forcing conflicts)."""
        meta = manifest["metadata"]
        path = RESOURCES[manifest["kind"]].path(meta["namespace"], meta["name"])
        result: Manifest = self._call(
            "PATCH",
            path,
            body=manifest,
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            content_type="application/apply-patch+yaml",
        )
        self._wrote()
        return result

    def create(self, manifest: Manifest) -> Manifest:
        """POST a new object (409 Conflict when it exists already)."""
        meta = manifest["metadata"]
        path = RESOURCES[manifest["kind"]].path(meta["namespace"])
        query = [("fieldManager", FIELD_MANAGER)]
        result: Manifest = self._call("POST", path, body=manifest, query=query)
        self._wrote()
        return result

    def replace(self, manifest: Manifest) -> Manifest:
        """PUT a whole object with the resourceVersion it was read at (409 when stale)."""
        meta = manifest["metadata"]
        path = RESOURCES[manifest["kind"]].path(meta["namespace"], meta["name"])
        result: Manifest = self._call("PUT", path, body=manifest)
        self._wrote()
        return result

    def apply_if_changed(self, manifest: Manifest, live: Manifest | None = None) -> bool:
        """Apply unless the live object already carries this manifest's hash.

        ``live`` is the object as already read (saves a GET); without it the object is read.
        Every write of a pass can thus be repeated by the next pass at no cost, which is what
        lets a pass interrupted after any write be finished by the next one.
        """
        stamped = stamp(manifest)
        meta = stamped["metadata"]
        if live is None:
            live = self.get(stamped["kind"], meta["namespace"], meta["name"])
        current = (live or {}).get("metadata", {}).get("annotations", {}).get(APPLIED_HASH)
        if current == meta["annotations"][APPLIED_HASH]:
            return False
        self.apply(stamped)
        return True

    def create_or_apply(self, manifest: Manifest) -> bool:
        """Create the object, stamped; when it exists already, :meth:`apply_if_changed`.

        For a child expected not to exist yet (its Deployment does not): one request instead of
        a read and a write. One that exists (a pass was interrupted after writing it) costs the
        read, then nothing when it holds this content, so a pass repeated after every single
        write still progresses. Returns whether anything was written.
        """
        stamped = stamp(manifest)
        try:
            self.create(stamped)
        except Conflict:
            return self.apply_if_changed(stamped)
        return True

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        try:
            self._call(
                "DELETE",
                RESOURCES[kind].path(namespace, name),
                body={"propagationPolicy": "Background"},
            )
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        self._wrote()
        return True

    def replace_status(self, kind: str, body: Manifest) -> Manifest:
        """PUT ``/status`` with the resourceVersion that was read: a stale write is a Conflict."""
        meta = body["metadata"]
        path = RESOURCES[kind].path(meta["namespace"], meta["name"]) + "/status"
        result: Manifest = self._call(
            "PUT", path, body=body, query=[("fieldManager", FIELD_MANAGER)]
        )
        self._wrote()
        return result

    def merge_patch(self, kind: str, namespace: str, name: str, patch: Manifest) -> Manifest:
        """A JSON merge patch (the CLI's way to set spec fields the user asked for)."""
        result: Manifest = self._call(
            "PATCH",
            RESOURCES[kind].path(namespace, name),
            body=patch,
            query=[("fieldManager", "seaway-cli")],
            content_type="application/merge-patch+json",
        )
        self._wrote()
        return result

    def whoami(self) -> str:
        """The user name the API server sees for these credentials (``kubectl auth whoami``)."""
        review = self._call(
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
        return str(review["status"]["userInfo"]["username"])

    def event(
        self,
        involved: Manifest,
        type_: str,
        reason: str,
        message: str,
        *,
        now: datetime | None = None,
    ) -> None:
        """Post a core/v1 Event about ``involved`` (a ModelDeployment or RetrainJob)."""
        meta = involved["metadata"]
        moment = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": involved["apiVersion"],
                "kind": involved["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid", ""),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "seaway-operator"},
            "firstTimestamp": moment[:19] + "Z",
            "lastTimestamp": moment[:19] + "Z",
            "eventTime": moment,
            "action": reason,
            "reportingComponent": "seaway-operator",
            "reportingInstance": os.environ.get("HOSTNAME", "seaway-operator"),
            "count": 1,
        }
        self._call("POST", RESOURCES["Event"].path(meta["namespace"]), body=body)
        self._wrote()


def resource_of(path: str) -> str:
    """The resource a request path names: ``deployments``, ``modeldeployments/status``.

    ``/api/v1/namespaces/ml/configmaps/x`` is ``configmaps``; a path without a namespace
    (``/version``, a review) is named by its last segment.
    """
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if "namespaces" in parts:
        rest = parts[parts.index("namespaces") + 2 :]
        return "/".join([rest[0], *rest[2:3]]) if rest else "namespaces"
    return parts[-1] if parts else ""


def format_counts(
    counts: collections.Counter[str], seconds: Mapping[str, float] | None = None
) -> str:
    """``3 GET, 2 PATCH``: counts in name order, for logs and the scale benchmark; with
    ``seconds``, each with its mean wait for an answer (``3 GET pods (12 ms)``)."""
    parts = []
    for name, n in sorted(counts.items()):
        mean = f" ({1000 * seconds.get(name, 0.0) / n:.0f} ms)" if seconds is not None else ""
        parts.append(f"{n} {name}{mean}")
    return ", ".join(parts) or "none"


def with_siblings(deployment: Manifest, siblings: Sequence[Manifest | str]) -> Manifest:
    """``deployment`` stamped, carrying :data:`SIBLINGS_HASH` of ``siblings``.

    The siblings are the objects written before the Deployment, in one pass, each time that
    hash changes: the Deployment goes last, so one carrying the hash proves they were written.
    Comparing it saves a GET per sibling on every pass that changes the Deployment (a scale
    step, a first rollout) and a write when they are unchanged. A string stands for an object
    that must be absent (a deleted autoscaler).
    """
    text = json.dumps(list(siblings), sort_keys=True).encode()
    body = {**deployment, "metadata": dict(deployment["metadata"])}
    annotations = dict(body["metadata"].get("annotations", {}))
    annotations[SIBLINGS_HASH] = hashlib.sha256(text).hexdigest()[:16]
    body["metadata"]["annotations"] = annotations
    return stamp(body)


def siblings_current(live: Manifest | None, deployment: Manifest) -> bool:
    """Whether ``live`` (the Deployment as cached) already carries ``deployment``'s siblings."""
    found = (live or {}).get("metadata", {}).get("annotations", {}).get(SIBLINGS_HASH)
    return found is not None and found == deployment["metadata"]["annotations"][SIBLINGS_HASH]


def stamp(manifest: Manifest) -> Manifest:
    """The manifest with :data:`APPLIED_HASH` set to a hash of its content."""
    body = {k: v for k, v in manifest.items()}
    meta = dict(body["metadata"])
    annotations = {k: v for k, v in meta.get("annotations", {}).items() if k != APPLIED_HASH}
    meta["annotations"] = annotations
    body["metadata"] = meta
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    meta["annotations"] = {**annotations, APPLIED_HASH: digest}
    return body


def _transport_reason(exc: BaseException) -> str:
    """One line for a request that got no answer (urllib3 nests the cause in its message)."""
    if isinstance(exc, ApiException):
        return str(exc.reason).replace("\n", ": ")
    cause = getattr(exc, "reason", None) or exc
    text = str(cause)
    if "Connection refused" in text:  # urllib3's NewConnectionError is a TimeoutError too
        return "connection refused"
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return "timed out"
    if isinstance(exc, urllib3.exceptions.ProtocolError):  # e.g. the server died mid-request
        return "connection closed without an answer"
    return f"{type(cause).__name__}: {text}"[:200]


def _message(data: bytes | None, reason: str | None) -> str:
    try:
        return str(json.loads(data or b"{}").get("message") or reason)
    except (ValueError, AttributeError):
        return str(reason)
