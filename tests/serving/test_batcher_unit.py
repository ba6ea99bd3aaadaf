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
    # inline_max_s=0: every batch goes to the worker, which the gate holds
    batcher = Batcher(make_predict(calls, gate), loop=loop, max_batch_size=4, max_wait_s=0,
                      max_queue=4, inline_max_s=0)
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


async def _lone_requests() -> None:
    loop = asyncio.get_running_loop()
    threads: list[str] = []
    delay = [0.0]

    def predict(x: np.ndarray, wanted: frozenset[str]) -> Outputs:
        threads.append(threading.current_thread().name)
        if delay[0]:
            threading.Event().wait(delay[0])
        if (x[:, 0] < 0).any():
            raise ValueError("negative input")
        return {"predict": x[:, 0] * 10}

    observed: list[float] = []

    def observe(x: np.ndarray, out: Outputs) -> None:
        observed.extend(x[:, 0].tolist())

    batcher = Batcher(predict, loop=loop, max_batch_size=8, max_wait_s=0, inline_max_s=0.01,
                      observe=observe)
    try:
        # one client: predicted on the loop's own thread inside submit, no hand-off: the
        # future is done before the loop runs again, so no batch window can have been waited
        for v in (1, 2, -1):
            fut = batcher.submit(rows(v), ["predict"])
            assert fut.done()
            try:
                assert fut.result()["predict"].tolist() == [v * 10]
            except ValueError as exc:
                assert v == -1 and "negative input" in str(exc)
            if v == 1:  # counted only in the next turn, after the answer went out
                assert observed == []
            await asyncio.sleep(0)  # the client's next request comes in a later turn
        assert threads == ["MainThread"] * 3
        assert batcher.inline_predicts == 3
        assert observed == [1, 2]  # a failed call is not counted
        # requests read in one turn of the loop: the first is answered at once, the others
        # wait for the turn's end and go together, as one batch, to a worker
        futs = [batcher.submit(rows(v), ["predict"]) for v in (3, 4, 5)]
        assert [f.done() for f in futs] == [True, False, False]
        assert [(await f)["predict"].tolist() for f in futs] == [[30.0], [40.0], [50.0]]
        assert threads[3] == "MainThread" and threads[4].startswith("seaway-predict-")
        assert observed == [1, 2, 3, 4, 5]  # the worker counted its batch before answering
        assert batcher.inline_predicts == 4
        # after a batch of several, the next request is not taken for a lone one: it queues
        fut = batcher.submit(rows(6), ["predict"])
        assert not fut.done() and (await fut)["predict"].tolist() == [60.0]
        await asyncio.sleep(0)
        # a model slower than inline_max_s never holds the loop: after its calls average over
        # the limit, a lone request goes to a worker too
        delay[0] = 0.03
        for v in (5, 6, 7, 8, 9):
            assert (await batcher.submit(rows(v), ["predict"]))["predict"].tolist() == [v * 10]
            await asyncio.sleep(0)
        assert threads[-1].startswith("seaway-predict-")
        assert batcher.depth == 0 and not batcher.busy
    finally:
        batcher.stop()


def test_a_lone_request_is_predicted_without_a_thread_hop() -> None:
    asyncio.run(asyncio.wait_for(_lone_requests(), timeout=30))


async def _one_stall() -> None:
    loop = asyncio.get_running_loop()
    stall = [0.05]

    def predict(x: np.ndarray, wanted: frozenset[str]) -> Outputs:
        if stall[0]:
            threading.Event().wait(stall[0])  # the machine stole the core for once
            stall[0] = 0.0
        return {"predict": x[:, 0] * 10}

    batcher = Batcher(predict, loop=loop, max_batch_size=8, max_wait_s=0, inline_max_s=0.01)
    try:
        for v in (1, 2, 3):
            fut = batcher.submit(rows(v), ["predict"])
            assert fut.done() and fut.result()["predict"].tolist() == [v * 10]
            await asyncio.sleep(0)
        # the stalled first call counted as at most twice the limit: still answered at once
        assert batcher.inline_predicts == 3
    finally:
        batcher.stop()


def test_one_stalled_call_does_not_turn_the_inline_path_off() -> None:
    asyncio.run(asyncio.wait_for(_one_stall(), timeout=30))
