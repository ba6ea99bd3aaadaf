"""Whether the API server answers: one warning when an outage starts, one when it ends.

An outage is any time the API server cannot be reached, times out, or answers 5xx or 429. Every
request of every pass runs into it, and the passes retry: logging each failure (with its stack)
made one minute of a frozen API server 36 chained tracebacks. Here the requests report to one
tracker per process instead, which says it once each way, with the duration at the end.

The tracker also keeps the recent outages' start and end: the rollout planner does not count
that time towards a pause or a deadline (the operator could not watch the canary meanwhile).
The record lives in memory only; an operator restarted during an outage counts it, which makes
a pause longer than written but never shorter.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

logger = logging.getLogger(__name__)

#: How long an ended outage is remembered (longer than any pause or deadline worth extending).
KEEP = timedelta(hours=6)


class Outage:
    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        #: When the current outage began (wall clock and monotonic), None while the server answers.
        self._since: tuple[datetime, float] | None = None
        self._ended: deque[tuple[datetime, datetime]] = deque(maxlen=256)

    def now(self) -> tuple[datetime, float]:
        """The time to report a request's sending with: this tracker's clock, and monotonic."""
        return self._clock(), self._monotonic()

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed(self, reason: str, *, sent_at: datetime, sent_mono: float) -> None:
        """A request sent at ``sent_at`` got no usable answer: the outage began then at latest."""
        with self._lock:
            if self._since is not None:
                return
            self._since = (sent_at, sent_mono)
        logger.warning("Lost the Kubernetes API server: %s; retrying with back-off", reason)

    def answered(self, *, sent_at: datetime) -> None:
        """A request sent at ``sent_at`` was answered (any answer but 5xx/429)."""
        if self._since is None:  # the common case, without the lock
            return
        with self._lock:
            if self._since is None or sent_at < self._since[0]:
                return  # an answer to a request from before the outage says nothing of it
            began, began_mono = self._since
            self._since = None
            self._ended.append((began, self._clock()))
            seconds = self._monotonic() - began_mono
        logger.warning("The Kubernetes API server answers again, after %.1fs", seconds)

    def windows(self) -> list[tuple[datetime, datetime]]:
        """The remembered outages as (start, end), the ongoing one ending now."""
        now = self._clock()
        with self._lock:
            found = [w for w in self._ended if now - w[1] < KEEP]
            if self._since is not None:
                found.append((self._since[0], now))
        return found
