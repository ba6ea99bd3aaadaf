"""Adaptive batching: concurrent requests share one ``predict`` call; results go back row-exact.

Why: a scikit-learn ``predict`` has a large fixed cost per call (a 100-tree random forest spends
~3.4 ms on one row and ~3.5 ms on 64), so merging concurrent requests is what lifts throughput.

How, in the event loop's thread:

* ``submit`` appends a request to a bounded deque (full -> :class:`Overloaded`, answered 503)
  and returns a future;
* while a predict worker is idle, the queue is cut into a batch of at most ``max_batch_size``
  rows, in arrival order (a request is never split unless ``split_large`` is set, so one with
  more rows than the limit runs alone);
* batching is *adaptive*: when only one request was waiting last time (a lone client) a batch
  goes out at once, adding no latency; under concurrent load a batch waits up to ``max_wait_s``
  for as many requests as the previous batch had (the concurrency just observed), and leaves as
  soon as it has them or is full;
* a lone request with nothing else queued or in flight, for a model whose recent predict calls
  took under ``inline_max_s``, is predicted right there on the event loop's thread, inside
  ``submit``: the future it returns is already done, so the caller can answer in the same
  callback that read the request. The hand-off to a worker and back costs two thread wake-ups,
  ~25 µs on an idle core and much more when the cores are busy, and the scheduled dispatch and
  the future's callbacks two more turns of the loop; all of that is more than such a predict
  holds the loop (a bare endpoint, which predicts inline, was that much faster at one client).
  "Lone" means the last batch held one request and no other request was predicted this way in
  the same turn of the loop: requests read together (concurrent clients, or pipelining) go
  through the queue, so the first of a burst is the only one answered alone. What is counted
  about a call (``observe``: metrics, the drift window) then runs in the loop's next turn, after
  the answer was written. Concurrent requests go to workers;
* the worker threads run ``predict`` on the concatenated rows off the event loop, which keeps
  accepting and parsing; results are sliced back by row offsets. If a merged call fails, each
  request is retried alone so one bad request cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

Outputs = dict[str, np.ndarray]
PredictFn = Callable[[np.ndarray, frozenset[str]], Outputs]
ObserveFn = Callable[[np.ndarray, Outputs], None]


class Overloaded(Exception):
    """The queue is full; the caller should answer 503 with Retry-After."""


@dataclass(slots=True)
class _Item:
    x: np.ndarray
    outputs: frozenset[str]
    future: asyncio.Future[Outputs]


@dataclass(slots=True)
class _Batch:
    items: list[_Item]
    results: list[Outputs | BaseException] = field(default_factory=list)


class Batcher:
    def __init__(self, predict: PredictFn, *, loop: asyncio.AbstractEventLoop,
                 max_batch_size: int = 64, max_wait_s: float = 0.001, max_queue: int = 256,
                 workers: int = 1, split_large: bool = False,
                 inline_max_s: float = 0.001, observe: ObserveFn | None = None) -> None:
        self._predict = predict
        self._observe = observe
        self._loop = loop
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.split_large = split_large
        self.inline_max_s = inline_max_s
        #: Moving average of the seconds per predict call (any size), for the inline decision.
        self._call_s = 0.0
        self._pending: deque[_Item] = deque()
        self._pending_rows = 0
        self._idle = workers
        self._in_flight = 0
        self._last_batch_requests = 1
        self._timer: asyncio.TimerHandle | None = None
        self._dispatch_scheduled = False
        #: A request was predicted in ``submit`` during this turn of the loop.
        self._inline_turn = False
        #: Requests predicted in ``submit`` itself (no queue, no loop turn, no thread).
        self.inline_predicts = 0
        self._work: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._worker, name=f"seaway-predict-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ event-loop side
    @property
    def depth(self) -> int:
        """Requests waiting for a worker (not counting the ones being predicted)."""
        return len(self._pending)

    @property
    def busy(self) -> bool:
        return bool(self._pending) or self._in_flight > 0

    def submit(self, x: np.ndarray, outputs: Sequence[str]) -> asyncio.Future[Outputs]:
        """A future of the request's outputs; already done when it was predicted right here."""
        fut: asyncio.Future[Outputs] = self._loop.create_future()
        if self._last_batch_requests == 1 and not self._inline_turn and self._alone():
            self._inline_turn = True
            self._loop.call_soon(self._end_inline_turn)
            self.inline_predicts += 1
            result = self._call(x, frozenset(outputs), on_loop=True)
            if isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)
            return fut
        if len(self._pending) >= self.max_queue:
            raise Overloaded
        self._pending.append(_Item(x, frozenset(outputs), fut))
        self._pending_rows += x.shape[0]
        if self._idle and not self._dispatch_scheduled:
            if self._timer is not None:
                if not self._should_wait():
                    self._timer.cancel()
                    self._timer = None
                    self._schedule_dispatch()
            else:
                self._schedule_dispatch()
        return fut

    def _alone(self) -> bool:
        """Nothing queued or in flight, and the model's recent calls fast enough to predict on
        the loop's thread."""
        return not self._pending and not self._in_flight and self._call_s < self.inline_max_s

    def _end_inline_turn(self) -> None:
        self._inline_turn = False

    def _schedule_dispatch(self) -> None:
        # call_soon, not a direct call: requests already read in this loop iteration join first
        self._dispatch_scheduled = True
        self._loop.call_soon(self._dispatch)

    def _should_wait(self) -> bool:
        return (self.max_wait_s > 0 and self._last_batch_requests > 1
                and self._pending_rows < self.max_batch_size
                and len(self._pending) < self._last_batch_requests)

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch(force=True)

    def _dispatch(self, force: bool = False) -> None:
        self._dispatch_scheduled = False
        while self._idle and self._pending:
            if not force and self._should_wait():
                if self._timer is None:
                    self._timer = self._loop.call_later(self.max_wait_s, self._on_timer)
                return
            force = False
            batch = self._take()
            if batch is None:
                return
            self._last_batch_requests = len(batch.items)
            if len(batch.items) == 1 and self._alone():
                batch.results = self._run(batch.items, on_loop=True)
                self._settle(batch)
                continue
            self._idle -= 1
            self._in_flight += len(batch.items)
            self._work.put(batch)

    def _take(self) -> _Batch | None:
        """The next batch in arrival order; requests whose client went away are dropped."""
        items: list[_Item] = []
        rows = 0
        while self._pending:
            head = self._pending[0]
            if head.future.done():  # cancelled: the connection closed while it waited
                self._pending.popleft()
                self._pending_rows -= head.x.shape[0]
                continue
            if items and rows + head.x.shape[0] > self.max_batch_size:
                break
            self._pending.popleft()
            self._pending_rows -= head.x.shape[0]
            rows += head.x.shape[0]
            items.append(head)
        return _Batch(items) if items else None

    def _done(self, batch: _Batch) -> None:
        self._idle += 1
        self._in_flight -= len(batch.items)
        self._settle(batch)
        if self._pending and not self._dispatch_scheduled:
            self._dispatch()

    def _settle(self, batch: _Batch) -> None:
        for item, result in zip(batch.items, batch.results, strict=True):
            if item.future.done():  # the client went away
                continue
            if isinstance(result, BaseException):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)

    def stop(self) -> None:
        for _ in self._threads:
            self._work.put(None)
        for t in self._threads:
            t.join(timeout=5)

    # ------------------------------------------------------------------ worker side
    def _worker(self) -> None:
        while (batch := self._work.get()) is not None:
            batch.results = self._run(batch.items, on_loop=False)
            try:
                self._loop.call_soon_threadsafe(self._done, batch)
            except RuntimeError:  # loop closed during shutdown
                return

    def _run(self, items: list[_Item], on_loop: bool) -> list[Outputs | BaseException]:
        wanted = frozenset().union(*(i.outputs for i in items))
        if len(items) == 1:
            return [self._call(items[0].x, wanted, on_loop)]
        x = np.concatenate([i.x for i in items])
        merged = self._call(x, wanted, on_loop)
        if isinstance(merged, BaseException):
            return [self._call(i.x, i.outputs, on_loop) for i in items]
        results: list[Outputs | BaseException] = []
        start = 0
        for item in items:
            stop = start + item.x.shape[0]
            results.append({k: merged[k][start:stop] for k in item.outputs})
            start = stop
        return results

    def _call(self, x: np.ndarray, wanted: frozenset[str],
              on_loop: bool) -> Outputs | BaseException:
        t0 = time.perf_counter()
        try:
            if self.split_large and x.shape[0] > self.max_batch_size:
                parts = [self._predict_one_call(x[i:i + self.max_batch_size], wanted, on_loop)
                         for i in range(0, x.shape[0], self.max_batch_size)]
                return {k: np.concatenate([p[k] for p in parts]) for k in wanted}
            return self._predict_one_call(x, wanted, on_loop)
        except Exception as exc:
            return exc
        finally:
            # capped: one call stalled by a busy machine (seconds, not the model's cost) must
            # not send a fast model's lone requests to a thread for the next many calls
            took = min(time.perf_counter() - t0, 2 * self.inline_max_s)
            self._call_s += 0.2 * (took - self._call_s)

    def _predict_one_call(self, x: np.ndarray, wanted: frozenset[str], on_loop: bool) -> Outputs:
        out = self._predict(x, wanted)
        if self._observe is not None:
            if on_loop:  # after the answer: the caller writes it in this same turn
                self._loop.call_soon(self._observe, x, out)
            else:
                self._observe(x, out)
        return out
