"""The notification webhook: a JSON POST, best effort, never blocking a rollout decision.

The URL comes from a spec: it goes through :class:`seaway.egress.Client` (hosts on the
administrator's webhook allowlist only, no redirects). A host that is not allowed is reported
once per pass as a Warning Event in our own words; the peer's answer never reaches an Event.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from seaway import egress
from seaway.planning.rollout import Event

logger = logging.getLogger(__name__)


def post(client: egress.Client, url: str, payload: dict[str, Any]) -> str | None:
    """POST ``payload``; None when delivered, else why not, in our words (never the peer's)."""
    try:
        client.request(
            url,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
    except egress.EgressError as exc:
        return str(exc)
    return None


def send(client: egress.Client, url: str, payload: dict[str, Any]) -> bool:
    """POST ``payload``; log and return False on any failure (the Event already records it)."""
    error = post(client, url, payload)
    if error is not None:
        logger.warning("Notification failed: %s", error)
        return False
    return True


def announce(
    kube: Any,
    body: dict[str, Any],
    events: Iterable[Event],
    notifications: Sequence[dict[str, Any]],
    *,
    webhook: str | None,
    client: egress.Client,
) -> None:
    """After a pass's status write: its Events, then its webhook calls (at most once each)."""
    meta = body["metadata"]
    for event in events:
        kube.event(body, event.type, event.reason, event.message)
        logger.info("%s %s/%s: %s", event.reason, meta["namespace"], meta["name"], event.message)
    if not notifications or not webhook:
        return
    if not client.allow.permits(webhook):
        message = (
            f"notifications.webhookURL: host {egress.describe(webhook)} is not allowed by"
            f" {client.allow.setting}; {len(notifications)} notification(s) not sent"
        )
        kube.event(body, "Warning", "WebhookNotAllowed", message)
        logger.warning("%s/%s: %s", meta["namespace"], meta["name"], message)
        return
    for payload in notifications:
        document = {"kind": body["kind"], "namespace": meta["namespace"], "name": meta["name"]}
        send(client, webhook, {**document, **payload})
