"""Leader election on a coordination.k8s.io/v1 Lease (see seaway.planning.lease)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from seaway.k8s.kube import Conflict, Kube, KubeError, Unavailable
from seaway.planning.lease import LeaseView, decide

logger = logging.getLogger(__name__)

MICRO = "%Y-%m-%dT%H:%M:%S.%fZ"


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    for fmt in (MICRO, "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


class LeaderElector:
    def __init__(
        self, kube: Kube, *, namespace: str, name: str, identity: str, duration_seconds: int = 15
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration_seconds = duration_seconds

    def try_once(self, now: datetime | None = None) -> bool:
        """Acquire or renew the Lease; True when this replica holds it afterwards."""
        moment = now or datetime.now(UTC)
        stamp = moment.strftime(MICRO)
        try:
            body = self.kube.get("Lease", self.namespace, self.name)
        except Unavailable:
            return False  # an outage: already said once, by the client
        except KubeError as exc:
            logger.warning("Could not read Lease %s/%s: %s", self.namespace, self.name, exc)
            return False
        view = None
        if body is not None:
            current = body.get("spec", {})
            view = LeaseView(
                holder=current.get("holderIdentity"),
                renewed=_parse(current.get("renewTime")),
                duration_seconds=int(current.get("leaseDurationSeconds") or self.duration_seconds),
            )
        decision = decide(view, self.identity, moment)
        if decision == "follow":
            return False
        spec: dict[str, Any] = dict((body or {}).get("spec", {}))
        spec.update(
            holderIdentity=self.identity,
            leaseDurationSeconds=self.duration_seconds,
            renewTime=stamp,
        )
        if decision == "acquire":
            spec["acquireTime"] = stamp
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if body else 0)
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        manifest = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec,
        }
        try:
            if body is None:
                self.kube.create(manifest)
            else:
                metadata["resourceVersion"] = body["metadata"]["resourceVersion"]
                self.kube.replace(manifest)
        except Conflict:
            return False  # someone else wrote it first: read again next time
        except Unavailable:
            return False
        except KubeError as exc:
            logger.warning("Could not write Lease %s/%s: %s", self.namespace, self.name, exc)
            return False
        if decision == "acquire":
            logger.info("Acquired Lease %s/%s as %s", self.namespace, self.name, self.identity)
        return True
