"""Adaptive batching under real concurrency: merged predict calls, rows never mixed up; a full
queue answers 503 with Retry-After and nothing else goes wrong."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.serving.conftest import Client, Data, Server, metric_value, v2_body

THREADS = 24
REQUESTS_PER_THREAD = 20


def run_clients(server: Server, work: list[list[np.ndarray]], deadline_s: float = 60.0,
                **extra: Any) -> list[list[tuple[np.ndarray, Any]]]:
    """One keep-alive client per thread; each sends its own list of row blocks in order."""
    results: list[list[tuple[np.ndarray, Any]]] = [[] for _ in work]
    deadline = time.monotonic() + deadline_s
    start = threading.Barrier(len(work))

    def worker(i: int) -> None:
        client = Client(server.port)
        try:
            start.wait(timeout=30)
            for rows in work[i]:
                if time.monotonic() > deadline:
                    return
                reply = client.post("/v2/models/forest/infer", v2_body(rows, **extra))
                results[i].append((rows, reply))
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(work))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=deadline_s + 30)
    return results


@pytest.mark.parametrize("workers", ["1", "2"])
def test_concurrent_requests_are_merged_and_split_back_exactly(
        module_server: Any, forest_bundle: Path, forest: Any, data: Data, workers: str) -> None:
    server = module_server(forest_bundle, {"SEAWAY_MAX_BATCH_SIZE": "64",
                                           "SEAWAY_MAX_BATCH_WAIT_MS": "2",
                                           "SEAWAY_PREDICT_WORKERS": workers})
    rng = np.random.default_rng(1)
    pool = np.vstack([data.x_test, data.x_test * rng.uniform(0.5, 1.5, data.x_test.shape)])
    work = [[pool[rng.choice(len(pool), size=int(rng.integers(1, 5)), replace=False)]
             for _ in range(REQUESTS_PER_THREAD)] for _ in range(THREADS)]
    before = metric_value(server.metrics(), "seaway_batch_size_rows_count") or 0.0
    results = run_clients(server, work, outputs=[{"name": "predict"},
                                                 {"name": "predict_proba"}])
    sent = 0
    for per_thread in results:
        assert len(per_thread) == REQUESTS_PER_THREAD
        for rows, reply in per_thread:
            sent += 1
            assert reply.status == 200, reply.body
            pred, proba = reply.json()["outputs"]
            assert pred["data"] == forest.predict(rows).tolist()
            assert pred["shape"] == [len(rows)]
            np.testing.assert_allclose(np.reshape(proba["data"], proba["shape"]),
                                       forest.predict_proba(rows))
    calls = (metric_value(server.metrics(), "seaway_batch_size_rows_count") or 0.0) - before
    assert sent == THREADS * REQUESTS_PER_THREAD
    # far fewer predict calls than requests: concurrent requests shared calls
    assert calls < sent / 2, (calls, sent)


def test_a_lone_client_never_waits_for_the_batch_window(
        start_server: Any, logreg_bundle: Path, logreg: Any, data: Data) -> None:
    """With a one-minute batch window, a client that sends one request at a time is answered
    well within its 10-second timeout every time, each request in a predict call of its own."""
    server = start_server(logreg_bundle, {"SEAWAY_MAX_BATCH_WAIT_MS": "60000"}).wait_ready()
    client = Client(server.port, timeout=10)
    try:
        for i in range(30):
            rows = data.x_test[i:i + 1 + i % 3]
            reply = client.post("/v2/models/logreg/infer", v2_body(rows))
            assert reply.status == 200, reply.body
            assert reply.json()["outputs"][0]["data"] == logreg.predict(rows).tolist()
    finally:
        client.close()
    text = server.metrics()
    assert metric_value(text, "seaway_batch_size_rows_count") == 30
    assert metric_value(text, "seaway_batch_size_rows_sum") == sum(1 + i % 3 for i in range(30))
    assert metric_value(text, "seaway_requests_total", code="200") == 30


def test_a_large_request_is_not_split_unless_configured(
        start_server: Any, forest_bundle: Path, forest: Any, data: Data) -> None:
    rows = np.vstack([data.x_test] * 2)[:200]
    for split, biggest_bucket in (("false", "256.0"), ("true", "64.0")):
        server = start_server(forest_bundle, {"SEAWAY_MAX_BATCH_SIZE": "64",
                                              "SEAWAY_SPLIT_LARGE_REQUESTS": split}).wait_ready()
        client = server.client()
        reply = client.post("/v2/models/forest/infer", v2_body(rows))
        assert reply.status == 200
        assert reply.json()["outputs"][0]["data"] == forest.predict(rows).tolist()
        text = server.metrics()
        calls = metric_value(text, "seaway_batch_size_rows_count")
        within = metric_value(text, "seaway_batch_size_rows_bucket", le=biggest_bucket)
        below = metric_value(text, "seaway_batch_size_rows_bucket",
                             le=str(float(biggest_bucket) / 2))
        assert calls == within  # no call above the bucket
        assert below is not None and within is not None and within > below
        if split == "true":
            assert calls == 4  # 64 + 64 + 64 + 8 rows
        else:
            assert calls == 1
        server.stop()


def test_overload_answers_only_200_or_503(start_server: Any, forest_bundle: Path,
                                          forest: Any, data: Data) -> None:
    server = start_server(forest_bundle, {"SEAWAY_MAX_QUEUE": "2", "SEAWAY_MAX_BATCH_SIZE": "1",
                                          "SEAWAY_MAX_BATCH_WAIT_MS": "0"}).wait_ready()
    work = [[data.x_test[i % len(data.x_test):i % len(data.x_test) + 1]] * 12
            for i in range(32)]
    results = run_clients(server, work)
    statuses: Counter[int] = Counter()
    for per_thread in results:
        for rows, reply in per_thread:
            statuses[reply.status] += 1
            if reply.status == 200:
                assert reply.json()["outputs"][0]["data"] == forest.predict(rows).tolist()
            else:
                assert reply.headers["retry-after"] == "1"
                assert "overloaded" in reply.json()["error"]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[200] > 0 and statuses[503] > 0, statuses
    assert sum(statuses.values()) == 32 * 12
    assert server.ready_status() == 200
    assert server.proc.poll() is None
    text = server.metrics()
    assert metric_value(text, "seaway_request_errors_total", code="503") == statuses[503]
