"""A de-duplicating, delayed work queue (the controller pattern) on asyncio.

Watch events for one object arriving in a burst collapse into one pass; an object is never
reconciled by two workers at once (an event during a pass marks it dirty and it runs again right
after); a pass may ask to run again later (pause timers, deadlines). Only *when* to look again
lives in memory: what to do is always recomputed from the object's status.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable, Hashable

logger = logging.getLogger(__name__)

Worker = Callable[[Hashable], Awaitable[float | None]]


class WorkQueue:
    def __init__(self, worker: Worker, *, concurrency: int = 4, retry_delay: float = 5.0) -> None:
        self._worker = worker
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
            except Exception:
                logger.exception(
                    "Reconcile of %s failed; retrying in %.0fs", key, self._retry_delay
                )
                again = self._retry_delay
            finally:
                self._running.discard(key)
                self.passes += 1
            if key in self._dirty:
                self._dirty.discard(key)
                self.add(key)
            elif again is not None:
                self.add(key, again)
