"""Leader election over a coordination.k8s.io Lease: the pure decision.

Several operator replicas may run (the chart's HA option); only the holder of the Lease starts
its work queue, so there is never more than one writer. A holder renews every few seconds; a
Lease not renewed for ``leaseDurationSeconds`` may be taken over. A leader that cannot renew
in time stops (the process exits) before anyone else may take over.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Decision = Literal["renew", "acquire", "follow"]


@dataclass(frozen=True)
class LeaseView:
    holder: str | None
    renewed: datetime | None
    duration_seconds: int


def decide(lease: LeaseView | None, me: str, now: datetime) -> Decision:
    """What ``me`` should do about the Lease as read at ``now``."""
    if lease is None:
        return "acquire"
    if lease.holder == me:
        return "renew"
    if lease.holder is None or lease.renewed is None:
        return "acquire"
    if now > lease.renewed + timedelta(seconds=lease.duration_seconds):
        return "acquire"
    return "follow"
