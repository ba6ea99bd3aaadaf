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
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

logger = logging.getLogger(__name__)

#: How long an ended outage is remembered (longer than any pause or deadline worth extending).
KEEP = timedelta(hours=6)
#: Seconds without a failure after the first answer before an outage counts as over. A restarted
#: API server answers ``/version`` before its watch caches are filled (429 "storage is
#: (re)initializing" for a while): one outage, not two.
SETTLE = 10.0


class Outage:
    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        settle: float = SETTLE,
    ) -> None:
        self._clock = clock
        self._monotonic = monotonic
        self._settle = settle
        self._lock = threading.Lock()
        #: When the current outage began (wall clock and monotonic), None while the server answers.
        self._since: tuple[datetime, float] | None = None
        #: The first answer since the last failure of the current outage.
        self._answered: tuple[datetime, float] | None = None
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
            self._answered = None
            if self._since is not None:
                return
            self._since = (sent_at, sent_mono)
        logger.warning("Lost the Kubernetes API server: %s; retrying with back-off", reason)

    def answered(self, *, sent_at: datetime) -> None:
        """A request sent at ``sent_at`` was answered (any answer but 5xx/429); the outage ends
        once answers came for ``settle`` seconds, dated back to the first of them."""
        if self._since is None:  # the common case, without the lock
            return
        with self._lock:
            if self._since is None or sent_at < self._since[0]:
                return  # an answer to a request from before the outage says nothing of it
            if self._answered is None:
                self._answered = (self._clock(), self._monotonic())
            if self._monotonic() - self._answered[1] < self._settle:
                return
            (began, began_mono), (back, back_mono) = self._since, self._answered
            self._since = self._answered = None
            self._ended.append((began, back))
            seconds = back_mono - began_mono
        logger.warning("The Kubernetes API server answers again, after %.1fs", seconds)

    def windows(self) -> list[tuple[datetime, datetime]]:
        """The remembered outages as (start, end), the ongoing one ending now."""
        now = self._clock()
        with self._lock:
            found = [w for w in self._ended if now - w[1] < KEEP]
            if self._since is not None:
                found.append((self._since[0], self._answered[0] if self._answered else now))
        return found


class WatchRetries(logging.Filter):
    """Turns kopf's line per failed watch request into a report to :class:`Outage`.

    kopf retries a failed request of its watch streams on its own and logs each attempt as an
    error (eight streams, every few seconds, during an outage). The outage is the news, said
    once by the tracker; these records are dropped. Attach to the handlers, not a logger: kopf
    logs them through several loggers.
    """

    _RETRY = re.compile(r"^Request attempt #?\d+(/\d+)? failed; will retry: .* -> (\w+)")

    #: kopf retries these too, but they are answers, not an outage: its lines stay as they are.
    NOT_OUTAGES = frozenset({"APIForbiddenError", "APIUnauthorizedError", "APINotFoundError"})

    def __init__(self, outage: Outage) -> None:
        super().__init__()
        self.outage = outage

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("kopf"):
            return True
        found = self._RETRY.match(record.getMessage())
        if found is None or found.group(2) in self.NOT_OUTAGES:
            return True
        sent_at, sent_mono = self.outage.now()
        self.outage.failed(
            f"watch requests fail ({found.group(2)})", sent_at=sent_at, sent_mono=sent_mono
        )
        return False


class Backoffs:
    """Endless delays for kopf's watch requests: 1 s doubling to ``cap``, each with jitter.

    kopf's default list ends after eight tries (about a minute), and then its watch stream
    gives up and with it the operator. An outage may last longer; the watch must outlive it.
    """

    def __init__(self, cap: float = 5.0, rng: random.Random | None = None) -> None:
        self.cap = cap
        self.rng = rng or random.Random()

    def __iter__(self) -> Iterator[float]:
        delay = 1.0
        while True:
            yield delay * (0.5 + self.rng.random() / 2)
            delay = min(delay * 2, self.cap)
