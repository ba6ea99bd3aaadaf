"""A read cache fed by watch events, so a pass reads the cluster without asking the API server.

The operator already watches its ModelDeployments, their Deployments and the router ConfigMaps;
each event's object goes into :class:`Store`. :class:`CachedKube` answers ``get``/``list`` for
those kinds from the store and puts every object its own writes return back into it, so the next
pass sees them at once. A stale read cannot do harm: status writes carry the ``resourceVersion``
that was read, and a conflict makes the pass start again from a fresh read of the API server.
"""

from __future__ import annotations

import copy
import sys
import threading
from typing import Any

from seaway.k8s.kube import Conflict, Kube, Manifest

CACHED_KINDS = frozenset({"ModelDeployment", "Deployment", "ConfigMap"})
#: Kinds whose objects never change once written (a revision's record): kept after the first
#: read or create, dropped on delete. Not watched: only a missing one is asked for again.
IMMUTABLE_KINDS = frozenset({"ControllerRevision"})


def _version(body: Manifest) -> int | None:
    text = body.get("metadata", {}).get("resourceVersion", "")
    return int(text) if str(text).isdigit() else None


#: Strings up to this length are shared between cached objects (keys, names, enum-like values).
_SHARED_MAX = 64


def compact(body: Manifest) -> Manifest:
    """``body`` as the store keeps it: without ``metadata.managedFields`` (never read here; a
    third of a Deployment's size), every key and short string value interned.

    Each watch event is a fresh JSON document, so the same keys and values ("apiVersion",
    "RuntimeDefault", a label) are new strings in every object; shared, a cached Deployment takes
    about half the memory (thousands of them at scale).
    """
    meta = body.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        body = {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    return _shared(body)  # type: ignore[no-any-return]


def _shared(value: Any) -> Any:
    if isinstance(value, dict):
        return {sys.intern(k) if isinstance(k, str) else k: _shared(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shared(v) for v in value]
    if isinstance(value, str) and len(value) <= _SHARED_MAX:
        return sys.intern(value)
    return value


class Store:
    """Objects by (kind, namespace, name); never goes back to an older resourceVersion.

    Objects are indexed by the value of one label (``index_label``: the owning ModelDeployment)
    so that listing one ModelDeployment's children does not scan the whole namespace. Reads
    return copies: a pass may change what it read without touching the store.
    """

    def __init__(self, index_label: str) -> None:
        self._objects: dict[tuple[str, str, str], Manifest] = {}
        self._index: dict[tuple[str, str, str], set[str]] = {}
        self._index_label = index_label
        self._lock = threading.Lock()

    def _index_key(self, kind: str, namespace: str, body: Manifest) -> tuple[str, str, str] | None:
        value = body.get("metadata", {}).get("labels", {}).get(self._index_label)
        return (kind, namespace, value) if value is not None else None

    def put(self, kind: str, body: Manifest) -> bool:
        """Keep ``body``; False when the store held this version (or a newer one) already.

        A watch event that returns False is the echo of the operator's own write, whose result
        went into the store when it was made: the pass that wrote it saw it.
        """
        meta = body.get("metadata", {})
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        key = (kind, namespace, name)
        with self._lock:
            current = self._objects.get(key)
            if current is not None:
                old, new = _version(current), _version(body)
                if old is not None and new is not None and new <= old:
                    return False
                self._unindex(kind, namespace, name, current)
            body = compact(body)  # only what is kept: an echo is dropped above, unwalked
            self._objects[key] = body
            index_key = self._index_key(kind, namespace, body)
            if index_key is not None:
                self._index.setdefault(index_key, set()).add(name)
            return True

    def _unindex(self, kind: str, namespace: str, name: str, body: Manifest) -> None:
        index_key = self._index_key(kind, namespace, body)
        if index_key is not None:
            self._index.get(index_key, set()).discard(name)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            current = self._objects.pop((kind, namespace, name), None)
            if current is not None:
                self._unindex(kind, namespace, name, current)

    def get(self, kind: str, namespace: str, name: str) -> Manifest | None:
        with self._lock:
            body = self._objects.get((kind, namespace, name))
            return copy.deepcopy(body) if body is not None else None

    def select(self, kind: str, namespace: str, labels: dict[str, str]) -> list[Manifest]:
        with self._lock:
            if self._index_label in labels:
                names = self._index.get((kind, namespace, labels[self._index_label]), set())
                candidates = [self._objects[(kind, namespace, n)] for n in sorted(names)]
            else:
                candidates = [
                    body
                    for (k, ns, _), body in self._objects.items()
                    if k == kind and ns == namespace
                ]
            return [
                copy.deepcopy(body)
                for body in candidates
                if all(
                    body.get("metadata", {}).get("labels", {}).get(key) == value
                    for key, value in labels.items()
                )
            ]


class CachedKube(Kube):
    """A :class:`Kube` whose reads of the watched kinds come from a :class:`Store`."""

    def __init__(self, kube: Kube, store: Store, warm_selector: str) -> None:
        super().__init__(kube.api)
        self.requests = kube.requests
        self.requests_by_kind = kube.requests_by_kind
        self.seconds_by_kind = kube.seconds_by_kind
        self.outage = kube.outage  # the requests go through ``kube``: so do their reports
        self._pass = kube._pass
        self._fence = kube._fence
        self._kube = kube
        self.store = store
        self._warm_selector = warm_selector
        self._warm: set[str] = set()
        self._warm_lock = threading.Lock()

    def _warm_up(self, namespace: str) -> None:
        """The first read in a namespace lists the watched children once from the server.

        Watch events may not have delivered every existing object yet; without this a pass
        could mistake "not seen yet" for "does not exist".
        """
        with self._warm_lock:
            if namespace in self._warm:
                return
            for kind in ("Deployment", "ConfigMap"):
                for body in self._kube.list(kind, namespace, self._warm_selector):
                    self.store.put(kind, body)
            self._warm.add(namespace)

    def get(self, kind: str, namespace: str, name: str) -> Manifest | None:
        if kind in IMMUTABLE_KINDS:
            found = self.store.get(kind, namespace, name)
            return found if found is not None else self.fresh(kind, namespace, name)
        if kind in CACHED_KINDS:
            if kind != "ModelDeployment":
                self._warm_up(namespace)
                return self.store.get(kind, namespace, name)
            # ModelDeployments arrive by watch events; one not seen yet may still exist.
            found = self.store.get(kind, namespace, name)
            return found if found is not None else self.fresh(kind, namespace, name)
        return self._kube.get(kind, namespace, name)

    def list(self, kind: str, namespace: str, selector: str | None = None) -> list[Manifest]:
        labels = _equality_selector(selector)
        if kind in CACHED_KINDS and labels is not None:
            self._warm_up(namespace)
            return self.store.select(kind, namespace, labels)
        return self._kube.list(kind, namespace, selector)

    def fresh(self, kind: str, namespace: str, name: str) -> Manifest | None:
        """Read from the API server (after a conflict) and refresh the store."""
        body = self._kube.get(kind, namespace, name)
        if body is None:
            self.store.delete(kind, namespace, name)
        else:
            self.store.put(kind, body)
        return body

    def apply(self, manifest: Manifest) -> Manifest:
        result = self._kube.apply(manifest)
        if manifest["kind"] in CACHED_KINDS:
            self.store.put(manifest["kind"], result)
        return result

    def create(self, manifest: Manifest) -> Manifest:
        result = self._kube.create(manifest)
        if manifest["kind"] in CACHED_KINDS | IMMUTABLE_KINDS:
            self.store.put(manifest["kind"], result)
        return result

    def replace_status(self, kind: str, body: Manifest) -> Manifest:
        try:
            result = self._kube.replace_status(kind, body)
        except Conflict:
            meta = body["metadata"]
            self.fresh(kind, meta["namespace"], meta["name"])
            raise
        if kind in CACHED_KINDS:
            self.store.put(kind, result)
        return result

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        deleted = self._kube.delete(kind, namespace, name)
        if kind in CACHED_KINDS | IMMUTABLE_KINDS:
            self.store.delete(kind, namespace, name)
        return deleted

    def merge_patch(self, kind: str, namespace: str, name: str, patch: Manifest) -> Manifest:
        return self._kube.merge_patch(kind, namespace, name, patch)

    def event(self, involved: Manifest, type_: str, reason: str, message: str, **kw: Any) -> None:
        self._kube.event(involved, type_, reason, message, **kw)


def _equality_selector(selector: str | None) -> dict[str, str] | None:
    """``a=b,c=d`` as a dict; None for anything else (set-based selectors go to the server)."""
    if not selector:
        return {}
    labels = {}
    for part in selector.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key or "!" in key or value.startswith("="):
            return None
        labels[key.strip()] = value.strip()
    return labels
