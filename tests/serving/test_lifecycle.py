"""Start-up order, graceful SIGTERM, and drift metrics over the sliding window."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np

from tests.serving.conftest import HOST, Data, Server, metric_value, v2_body


def test_sigterm_finishes_in_flight_requests(start_server: Any, forest_bundle: Path,
                                             forest: Any, data: Data) -> None:
    server: Server = start_server(forest_bundle, {"SEAWAY_MAX_BATCH_SIZE": "1",
                                                  "SEAWAY_MAX_BATCH_WAIT_MS": "0"}).wait_ready()
    rows = np.vstack([data.x_test] * 4)[:500]
    n = 12
    sent = threading.Barrier(n + 1)
    replies: list[tuple[int, bytes] | Exception] = [RuntimeError("no reply")] * n

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(HOST, server.port, timeout=60)
        try:
            conn.request("POST", "/v2/models/forest/infer", body=v2_body(rows),
                         headers={"Content-Type": "application/json"})
            sent.wait(timeout=30)
            resp = conn.getresponse()
            replies[i] = (resp.status, resp.read())
        except Exception as exc:
            replies[i] = exc
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    sent.wait(timeout=30)
    server.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(timeout=60)
    assert server.proc.wait(timeout=30) == 0
    expected = forest.predict(rows).tolist()
    for reply in replies:
        assert not isinstance(reply, Exception), reply
        status, body = reply
        assert status == 200
        assert json.loads(body)["outputs"][0]["data"] == expected
    msgs = [r.get("msg") for r in server.log_lines()]
    assert "Draining: finishing in-flight requests" in msgs
    assert msgs[-1] == "Stopped"


def test_sigterm_answers_connections_the_loop_has_not_accepted_yet(
        start_server: Any, logreg_bundle: Path, logreg: Any, data: Data) -> None:
    """A client whose connect succeeded while the server was too busy to accept (here: frozen)
    has sent its request; a SIGTERM arriving before the loop accepts must not reset it."""
    server: Server = start_server(logreg_bundle).wait_ready()
    rows = data.x_test[:5]
    os.kill(server.proc.pid, signal.SIGSTOP)
    conns = []
    try:
        for _ in range(8):  # the kernel completes these handshakes; nothing reads them yet
            conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
            conn.request("POST", "/v2/models/logreg/infer", body=v2_body(rows),
                         headers={"Content-Type": "application/json"})
            conns.append(conn)
        os.kill(server.proc.pid, signal.SIGTERM)  # pending until the process runs again
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    expected = logreg.predict(rows).tolist()
    for conn in conns:
        resp = conn.getresponse()
        assert resp.status == 200
        assert json.loads(resp.read())["outputs"][0]["data"] == expected
        conn.close()
    assert server.proc.wait(timeout=30) == 0


def test_live_before_ready_and_logs_are_json(start_server: Any, logreg_bundle: Path) -> None:
    server: Server = start_server(logreg_bundle).wait_ready()
    records = server.log_lines()
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records), records
    order = [r["msg"] for r in records]
    assert order.index(f"Listening on {HOST}:{server.port}") < order.index(
        "Loaded and self-checked bundle") < next(
        i for i, m in enumerate(order) if m.startswith("Serving model logreg"))
    assert server.stop() == 0


def test_drift_scores_follow_the_input_distribution(start_server: Any, logreg_bundle: Path,
                                                    data: Data) -> None:
    server: Server = start_server(logreg_bundle, {"SEAWAY_DRIFT_WINDOW": "200",
                                                  "SEAWAY_DRIFT_MIN_ROWS": "100"}).wait_ready()
    client = server.client()
    text = server.metrics()
    assert metric_value(text, "seaway_feature_drift_psi") is None  # not enough rows yet

    def send(rows: np.ndarray) -> None:
        for i in range(0, len(rows), 10):
            assert client.post("/v2/models/logreg/infer", v2_body(rows[i:i + 10])).status == 200

    # rows like the training data: a stable window
    send(data.x_train[:200])
    text = server.metrics()
    same = [metric_value(text, "seaway_feature_drift_psi", model="logreg", feature=f"x{j}")
            for j in range(30)]
    assert all(v is not None for v in same)
    assert max(v for v in same if v is not None) < 0.1
    assert metric_value(text, "seaway_drift_window_rows") == 200
    pred_same = metric_value(text, "seaway_prediction_drift_psi", model="logreg")
    assert pred_same is not None and pred_same < 0.1

    # feature 0 shifted far beyond its training range: only that feature drifts
    shifted = data.x_train[200:400].copy()
    shifted[:, 0] = shifted[:, 0] * 3 + 50
    send(shifted)
    text = server.metrics()
    drifted = metric_value(text, "seaway_feature_drift_psi", model="logreg", feature="x0")
    steady = metric_value(text, "seaway_feature_drift_psi", model="logreg", feature="x5")
    assert drifted is not None and drifted > 1.0
    assert steady is not None and steady < 0.1
