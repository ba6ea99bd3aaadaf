"""The batcher in-process, with a predict function the test controls (deterministic order)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from seaway_serving.batching import Batcher, Outputs, Overloaded, PredictFn


def make_predict(calls: list[np.ndarray], gate: threading.Event) -> PredictFn:
    def predict(x: np.ndarray, wanted: frozenset[str]) -> Outputs:
        gate.wait(timeout=10)
        calls.append(x.copy())
        if (x[:, 0] < 0).any():
            raise ValueError("negative input")
        return {"predict": x[:, 0] * 10}

    return predict


def rows(*values: float) -> np.ndarray:
    return np.array([[v, 0.0] for v in values])


async def _scenario() -> None:
    loop = asyncio.get_running_loop()
    calls: list[np.ndarray] = []
    gate = threading.Event()
    batcher = Batcher(make_predict(calls, gate), loop=loop, max_batch_size=4, max_wait_s=0,
                      max_queue=4)
    try:
        first = batcher.submit(rows(1), ["predict"])
        await asyncio.sleep(0.05)  # dispatched alone; the worker now waits on the gate
        gone = batcher.submit(rows(2), ["predict"])
        kept = [batcher.submit(rows(3, 4), ["predict"]), batcher.submit(rows(5), ["predict"])]
        bad = batcher.submit(rows(-1), ["predict"])
        try:
            batcher.submit(rows(9), ["predict"])
            raise AssertionError("the fifth queued request should overflow max_queue=4")
        except Overloaded:
            pass
        gone.cancel()  # its client went away while it waited
        gate.set()
        assert (await first)["predict"].tolist() == [10.0]
        assert [(await f)["predict"].tolist() for f in kept] == [[30.0, 40.0], [50.0]]
        try:
            await bad
            raise AssertionError("the bad request should fail")
        except ValueError as exc:
            assert "negative input" in str(exc)
        # call 1: [1]; call 2: [3, 4, 5, -1] merged (the cancelled [2] never ran) and failed;
        # then each request of it alone: [3, 4], [5], [-1]
        assert [c[:, 0].tolist() for c in calls] == [[1], [3, 4, 5, -1], [3, 4], [5], [-1]]
        assert batcher.depth == 0 and not batcher.busy
    finally:
        gate.set()
        batcher.stop()


def test_batches_skip_cancelled_requests_and_isolate_failures() -> None:
    asyncio.run(asyncio.wait_for(_scenario(), timeout=30))
