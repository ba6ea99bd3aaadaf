"""The notification webhook: a JSON POST, best effort, never blocking a rollout decision."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from typing import Any

from seaway.planning.rollout import Event

logger = logging.getLogger(__name__)


def send(url: str, payload: dict[str, Any], *, timeout: float) -> bool:
    """POST ``payload``; log and return False on any failure (the Event already records it)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "seaway-operator"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = int(response.status)
            ok = 200 <= status < 300
    except (urllib.error.URLError, OSError) as exc:
        logger.warning("Notification to %s failed: %s", url, exc)
        return False
    if not ok:
        logger.warning("Notification to %s answered %s", url, status)
    return ok


def announce(
    kube: Any,
    body: dict[str, Any],
    events: Iterable[Event],
    notifications: Sequence[dict[str, Any]],
    *,
    webhook: str | None,
    timeout: float,
) -> None:
    """After a pass's status write: its Events, then its webhook calls (at most once each)."""
    meta = body["metadata"]
    for event in events:
        kube.event(body, event.type, event.reason, event.message)
        logger.info("%s %s/%s: %s", event.reason, meta["namespace"], meta["name"], event.message)
    for payload in notifications if webhook else []:
        assert webhook is not None
        document = {"kind": body["kind"], "namespace": meta["namespace"], "name": meta["name"]}
        send(webhook, {**document, **payload}, timeout=timeout)
