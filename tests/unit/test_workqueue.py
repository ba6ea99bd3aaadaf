"""The work queue collapses bursts, never runs one key twice at once, and honours delays."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable
from typing import Any

from seaway.handlers.workqueue import WorkQueue


def test_burst_collapses_and_keys_never_overlap() -> None:
    async def scenario() -> tuple[dict[Hashable, int], int]:
        runs: dict[Hashable, int] = {}
        active: set[Hashable] = set()
        overlaps = 0

        async def worker(key: Hashable) -> float | None:
            nonlocal overlaps
            if key in active:
                overlaps += 1
            active.add(key)
            runs[key] = runs.get(key, 0) + 1
            await asyncio.sleep(0.05)
            active.discard(key)
            return None

        queue = WorkQueue(worker, concurrency=4)
        queue.start()
        for _ in range(50):
            queue.add("a")
            queue.add("b")
        await asyncio.sleep(0.02)
        queue.add("a")  # arrives while "a" runs: exactly one more pass
        await asyncio.sleep(0.3)
        await queue.stop()
        return runs, overlaps

    runs, overlaps = asyncio.run(scenario())
    assert runs == {"a": 2, "b": 1}
    assert overlaps == 0


def test_requeue_after_and_retry_on_error() -> None:
    async def scenario() -> list[str]:
        seen: list[str] = []

        async def worker(key: Hashable) -> float | None:
            seen.append(str(key))
            if key == "boom" and seen.count("boom") == 1:
                raise RuntimeError("transient")
            if key == "timer" and seen.count("timer") < 3:
                return 0.05
            return None

        queue = WorkQueue(worker, concurrency=2, retry_delay=0.05)
        queue.start()
        queue.add("timer")
        queue.add("boom")
        queue.add("later", delay=0.2)
        await asyncio.sleep(0.1)
        assert "later" not in seen
        await asyncio.sleep(0.3)
        await queue.stop()
        return seen

    seen = asyncio.run(scenario())
    assert seen.count("timer") == 3
    assert seen.count("boom") == 2
    assert seen.count("later") == 1


class Outage(Exception):
    pass


def test_transient_failures_back_off_with_jitter_and_no_stack_trace(caplog: Any) -> None:
    queue = WorkQueue(lambda key: asyncio.sleep(0, None), transient=(Outage,), max_backoff=10.0)
    delays = [queue.backoff("a") for _ in range(8)]
    ceilings = [0.5, 1, 2, 4, 8, 10, 10, 10]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True)), delays
    spread = {round(WorkQueue(lambda key: asyncio.sleep(0, None)).backoff("a"), 6)
              for _ in range(20)}  # fmt: skip
    assert len(spread) > 1, "jittered"

    async def scenario() -> list[str]:
        seen: list[str] = []

        async def worker(key: Hashable) -> float | None:
            seen.append(str(key))
            if key == "down" and seen.count("down") <= 2:
                raise Outage("the API server did not answer")
            if key == "bug" and seen.count("bug") == 1:
                raise KeyError("a real bug")
            return None

        q = WorkQueue(worker, concurrency=2, retry_delay=0.05, transient=(Outage,))
        q.start()
        q.add("down")
        q.add("bug")
        await asyncio.sleep(2.0)
        await q.stop()
        return seen

    with caplog.at_level(logging.DEBUG, logger="seaway.handlers.workqueue"):
        seen = asyncio.run(scenario())
    assert seen.count("down") == 3 and seen.count("bug") == 2
    traces = [r for r in caplog.records if r.exc_info]
    assert [str(r.exc_info[1]) for r in traces if r.exc_info] == ["'a real bug'"]
    assert all(r.levelno == logging.DEBUG for r in caplog.records if "down" in r.getMessage())
