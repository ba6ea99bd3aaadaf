"""Malformed requests get a 4xx with a message, and the server stays ready after each."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from seaway_serving import bundle
from tests.serving.conftest import Client, Data, Server, v2_body

ROW = [1.0] * 30


def tensor(data: Any, shape: Any = None, datatype: Any = "FP64", **extra: Any) -> bytes:
    item = {"name": "input-0", "shape": [1, 30] if shape is None else shape,
            "datatype": datatype, "data": data}
    return json.dumps({"inputs": [item], **extra}).encode()


@pytest.fixture(scope="module")
def server(module_server: Any, logreg_bundle: Path) -> Server:
    return module_server(logreg_bundle, {"SEAWAY_MAX_BODY_BYTES": str(4 << 20)})  # type: ignore[no-any-return]


CASES = [
    ("not json", b"{inputs", "not valid JSON"),
    ("not utf-8", b"\xff\xfe{}", "not UTF-8"),
    ("array body", b"[]", "must be a JSON object"),
    ("no inputs", b"{}", "'inputs' must be a non-empty list"),
    ("empty inputs", b'{"inputs": []}', "'inputs' must be a non-empty list"),
    ("input not object", b'{"inputs": [1]}', "inputs[0] must be an object"),
    ("no name", json.dumps({"inputs": [{"datatype": "FP64", "shape": [1, 30],
                                        "data": ROW}]}).encode(), "needs a string 'name'"),
    ("wrong width", tensor([1.0] * 29, [1, 29]), "shape [1, 29] is not [N, 30]"),
    ("1-d shape", tensor(ROW, [30]), "shape [30] is not [N, 30]"),
    ("count mismatch", tensor([1.0] * 29), "shape [1, 30] needs 30 values, 'data' has 29"),
    ("negative dim", tensor(ROW, [-1, 30]), "non-negative integers"),
    ("float dim", tensor(ROW, [1.0, 30]), "non-negative integers"),
    ("no rows", tensor([], [0, 30]), "has no rows"),
    ("strings", tensor(["a"] * 30), "holds strings, not FP64"),
    ("numeric strings", tensor(["1.5"] * 30), "holds strings, not FP64"),
    ("null", tensor([None] * 30), "holds mixed or null values, not FP64"),
    ("bool as float", tensor([True] * 30), "holds booleans, not FP64"),
    ("float as int", tensor([1.5] * 30, datatype="INT64"), "holds floats, not INT64"),
    ("int out of range", tensor([300] * 30, datatype="UINT8"), "out of range for UINT8"),
    ("bytes", tensor(ROW, datatype="BYTES"), "BYTES is not supported"),
    ("unknown datatype", tensor(ROW, datatype="FP128"), "unknown datatype 'FP128'"),
    ("ragged", tensor([[1.0] * 30, [1.0]], [2, 30]), "ragged or not numbers"),
    ("NaN", b'{"inputs":[{"name":"i","shape":[1,30],"datatype":"FP64","data":[NaN'
            + b",1" * 29 + b"]}]}", "NaN is not allowed"),
    ("Infinity", b'{"inputs":[{"name":"i","shape":[1,30],"datatype":"FP64","data":[-Infinity'
                 + b",1" * 29 + b"]}]}", "-Infinity is not allowed"),
    ("largest finite float", tensor([1.7976931348623157e308] * 30), None),
    ("float overflowing to inf", b'{"inputs":[{"name":"i","shape":[1,30],"datatype":"FP64",'
                                 b'"data":[1e999' + b",1" * 29 + b"]}]}", "NaN or infinity"),
    ("deep json", b'{"inputs":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    ("unknown output", tensor(ROW, outputs=[{"name": "decision_function"}]),
     "unknown output 'decision_function'"),
    ("bad id", tensor(ROW, id=5), "'id' must be a string"),
    ("bad parameters", tensor(ROW, parameters=[1]), "'parameters' must be an object"),
    ("per-feature wrong names", json.dumps({"inputs": [
        {"name": "a", "shape": [1], "datatype": "FP64", "data": [1.0]},
        {"name": "b", "shape": [1], "datatype": "FP64", "data": [1.0]}]}).encode(),
     "inputs must be exactly the model's 30 features"),
]


@pytest.mark.parametrize(("body", "message"), [(b, m) for _, b, m in CASES],
                         ids=[c[0] for c in CASES])
def test_malformed_body(server: Server, body: bytes, message: str | None) -> None:
    client = server.client()
    reply = client.post("/v2/models/logreg/infer", body)
    if message is None:  # a valid edge case: finite extremes are fine
        assert reply.status == 200
    else:
        assert reply.status == 400, reply.body
        assert message in reply.json()["error"]
    assert client.get("/v2/health/ready").status == 200


def test_binary_size_mismatch(server: Server) -> None:
    raw = np.ones(30, dtype=np.float32).tobytes()
    header = json.dumps({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 30],
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
    reply = server.client().post("/v2/models/logreg/infer", header + raw,
                                 {"Inference-Header-Content-Length": str(len(header))})
    assert reply.status == 400
    assert "needs 240 bytes, binary_data_size is 120" in reply.json()["error"]


def test_binary_nan_refused(server: Server) -> None:
    raw = np.full(30, np.nan).tobytes()
    header = json.dumps({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 30],
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
    reply = server.client().post("/v2/models/logreg/infer", header + raw,
                                 {"Inference-Header-Content-Length": str(len(header))})
    assert reply.status == 400
    assert "NaN or infinity" in reply.json()["error"]


def test_50_mb_body_gets_413(server: Server) -> None:
    client = server.client()
    body = b'{"inputs": [' + b" " * (50 << 20) + b"]}"
    reply = client.post("/v2/models/logreg/infer", body)
    assert reply.status == 413
    assert "larger than 4194304 bytes" in reply.json()["error"]
    assert server.client().get("/v2/health/ready").status == 200


def test_expect_continue_with_too_large_body_is_refused_before_upload(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /v2/models/logreg/infer HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 52428800\r\nExpect: 100-continue\r\n\r\n")
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 413 ")


def test_expect_continue_within_limit(server: Server, logreg: Any, data: Data) -> None:
    body = v2_body(data.x_test[:1])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /v2/models/logreg/infer HTTP/1.1\r\nHost: x\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        reply = b""
        while not reply.endswith(b"]}]}"):
            chunk = sock.recv(4096)
            assert chunk
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 ")
    doc = json.loads(reply[reply.index(b"\r\n\r\n") + 4:])
    assert doc["outputs"][0]["data"] == logreg.predict(data.x_test[:1]).tolist()


@pytest.mark.parametrize(("raw", "status"), [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n", 431),
])
def test_broken_http_is_answered_and_closed(server: Server, raw: bytes, status: int) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(raw)
        head = sock.recv(4096)
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), head[:100]
    assert Client(server.port).get("/v2/health/ready").status == 200


def test_nan_accepted_when_the_model_takes_it(start_server: Any, tmp_path: Path,
                                              data: Data) -> None:
    model = HistGradientBoostingClassifier(max_iter=10, random_state=0)
    model.fit(data.x_train, data.y_train)
    m = bundle.create_from_estimator(model, tmp_path / "hgb", name="hgb", data=data.x_train)
    assert m.allow_nan
    server = start_server(tmp_path / "hgb").wait_ready()
    rows = data.x_test[:2].copy()
    rows[0, 3] = np.nan
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP64", "shape": [2, 30],
                                   "data": [None if np.isnan(v) else v
                                            for v in rows.ravel()]}]})
    # JSON has no NaN: clients send the NaN token (Python's json does) for missing values
    body = body.replace("null", "NaN")
    reply = server.client().post("/v2/models/hgb/infer", body.encode())
    assert reply.status == 200, reply.body
    assert reply.json()["outputs"][0]["data"] == model.predict(rows).tolist()


def test_slow_request_gets_408_and_idle_connection_is_closed(start_server: Any,
                                                             logreg_bundle: Path) -> None:
    server = start_server(logreg_bundle, {"SEAWAY_REQUEST_TIMEOUT_S": "1",
                                          "SEAWAY_KEEPALIVE_TIMEOUT_S": "1"}).wait_ready()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
        slow.sendall(b"POST /v2/models/logreg/infer HTTP/1.1\r\nHost: x\r\nContent-Le")
        head = slow.recv(4096)  # the server's sweep answers within about 2 s
        assert head.startswith(b"HTTP/1.1 408 ")
        assert slow.recv(4096) == b""  # and closes
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as idle:
        idle.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(4096).startswith(b"HTTP/1.1 200 ")
        assert idle.recv(4096) == b""  # closed after the keep-alive timeout
