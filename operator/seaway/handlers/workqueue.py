"""A de-duplicating, delayed work queue (the controller pattern) on asyncio.

Watch events for one object arriving in a burst collapse into one pass; an object is never
reconciled by two workers at once (an event during a pass marks it dirty and it runs again right
after); a pass may ask to run again later (pause timers, deadlines). Only *when* to look again
lives in memory: what to do is always recomputed from the object's status.

A pass that fails with one of the ``transient`` exceptions (an API server outage) is retried
with exponential back-off and jitter, silently: the outage itself is logged once, by whoever
noticed it. Any other exception is a bug and logs its stack trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random
from collections.abc import Awaitable, Callable, Hashable

logger = logging.getLogger(__name__)

Worker = Callable[[Hashable], Awaitable[float | None]]


class WorkQueue:
    def __init__(
        self,
        worker: Worker,
        *,
        concurrency: int = 4,
        retry_delay: float = 5.0,
        transient: tuple[type[BaseException], ...] = (),
        max_backoff: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        self._worker = worker
        self._transient = transient
        self._max_backoff = max_backoff
        self._rng = rng or random.Random()
        #: Transient failures in a row, per key.
        self._failures: dict[Hashable, int] = {}
        self._concurrency = concurrency
        self._retry_delay = retry_delay
        self._heap: list[tuple[float, int, Hashable]] = []
        self._due: dict[Hashable, float] = {}
        self._running: set[Hashable] = set()
        self._dirty: set[Hashable] = set()
        self._counter = itertools.count()
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.passes = 0

    def add(self, key: Hashable, delay: float = 0.0) -> None:
        """Run ``key`` after ``delay`` seconds (sooner if already due sooner)."""
        loop = asyncio.get_running_loop()
        if key in self._running and delay == 0.0:
            self._dirty.add(key)
            return
        due = loop.time() + max(delay, 0.0)
        if key in self._due and self._due[key] <= due:
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, next(self._counter), key))
        self._wakeup.set()

    def backoff(self, key: Hashable) -> float:
        """Seconds before the next try after another transient failure of ``key``: doubling
        from 0.5 s up to ``max_backoff``, each drawn between half and all of it (jitter), so
        the passes of many objects do not hit a recovering API server all at once."""
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        ceiling = min(self._max_backoff, 0.5 * 2.0 ** min(failures - 1, 16))
        return ceiling * (0.5 + self._rng.random() / 2)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._concurrency)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _next(self) -> Hashable:
        loop = asyncio.get_running_loop()
        while True:
            while self._heap:
                due, _, key = self._heap[0]
                if self._due.get(key) != due or key in self._running:
                    heapq.heappop(self._heap)  # stale entry or already in progress
                    if key in self._running and self._due.get(key) == due:
                        del self._due[key]
                        self._dirty.add(key)
                    continue
                wait = due - loop.time()
                if wait > 0:
                    break
                heapq.heappop(self._heap)
                del self._due[key]
                return key
            self._wakeup.clear()
            timeout = self._heap[0][0] - loop.time() if self._heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def _work(self) -> None:
        while True:
            key = await self._next()
            self._running.add(key)
            again: float | None
            try:
                again = await self._worker(key)
            except asyncio.CancelledError:
                raise
            except self._transient as exc:
                again = self.backoff(key)
                logger.debug("Pass of %s failed (%s); retrying in %.1fs", key, exc, again)
            except Exception:
                logger.exception(
                    "Reconcile of %s failed; retrying in %.0fs", key, self._retry_delay
                )
                again = self._retry_delay
            else:
                self._failures.pop(key, None)
            finally:
                self._running.discard(key)
                self.passes += 1
            if key in self._dirty:
                self._dirty.discard(key)
                self.add(key)
            elif again is not None:
                self.add(key, again)
