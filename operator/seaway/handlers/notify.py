"""The notification webhook: a JSON POST, best effort, never blocking a rollout decision."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any

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
