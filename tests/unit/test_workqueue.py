"""The work queue collapses bursts, never runs one key twice at once, and honours delays."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

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
