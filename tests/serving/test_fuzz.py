"""Bad input in bulk: thousands of malformed and extreme requests, from a fixed seed.

A seeded mutation fuzzer: each case starts from a valid V2 inference request and breaks it in
one to three ways (shapes, datatypes, values, missing or extra fields, nesting, encodings, raw
bytes, paths and methods). The server must answer every case with a 2xx or 4xx (a 503 with
Retry-After is allowed: that is the overload budget speaking), never another 5xx for a client's
mistake; it must stay alive and ready, and its memory must stay bounded. The count of cases and
the answers by status are printed. ``SEAWAY_FUZZ_SEED`` and ``SEAWAY_FUZZ_CASES`` replay or
widen a run.
"""

from __future__ import annotations

import http.client
import json
import os
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.serving.conftest import HOST, Server

SEED = int(os.environ.get("SEAWAY_FUZZ_SEED", "20261130"))
CASES = int(os.environ.get("SEAWAY_FUZZ_CASES", "3000"))
WIDTH = 30
DATATYPES = ["FP64", "FP32", "FP16", "INT64", "INT32", "INT8", "UINT8", "UINT64", "BOOL",
             "BYTES", "fp64", "", "FP128", None, 7, ["FP64"]]
ODD_NUMBERS: list[Any] = [0, -0.0, 1e308, -1e308, 5e-324, 2**63, -(2**63) - 1, 2**64, 10**400,
                          True, False, None, "1", "", "NaN", [], {}, [1.0], 1.5]
RAW_TOKENS = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"0x10", b"01", b"+1",
              b".5", b"1.", b"nan", b"\"\\ud800\"", b"1" * 400]


def valid(rows: int = 1) -> dict[str, Any]:
    return {"inputs": [{"name": "input-0", "shape": [rows, WIDTH], "datatype": "FP64",
                        "data": [0.5] * (rows * WIDTH)}]}


def mutate(rng: random.Random, doc: dict[str, Any]) -> dict[str, Any] | bytes:
    """One way of breaking a request; a dict stays JSON, bytes are sent as they are."""
    item = doc["inputs"][0] if isinstance(doc.get("inputs"), list) and doc["inputs"] and \
        isinstance(doc["inputs"][0], dict) else {}
    kind = rng.randrange(16)
    if kind == 0:  # shapes: huge, negative, float, wrong rank, junk
        item["shape"] = rng.choice([
            [2**62, 2**62, 0], [2**31, WIDTH], [-1, WIDTH], [1.5, WIDTH], [], [0], [0, WIDTH],
            [1, WIDTH, 1], [WIDTH], "1,30", None, [[1], [30]], [1, 2**40], [10**30, WIDTH],
            [rng.randrange(-5, 100) for _ in range(rng.randrange(0, 5))]])
    elif kind == 1:
        item["datatype"] = rng.choice(DATATYPES)
    elif kind == 2:  # values of every odd kind
        current = item.get("data")
        data = list(current) if isinstance(current, list) else [0.0] * WIDTH
        for _ in range(rng.randrange(1, 5)):
            if data:
                data[rng.randrange(len(data))] = rng.choice(ODD_NUMBERS)
        item["data"] = data
    elif kind == 3:  # counts that do not match the shape
        item["data"] = [0.5] * rng.choice([0, 1, WIDTH - 1, WIDTH + 1, 3 * WIDTH, 5000])
    elif kind == 4:  # nested or ragged data
        item["data"] = rng.choice([[[0.5] * WIDTH], [[0.5] * 10, [0.5] * 20], [[[]]],
                                   {"a": 1}, "0.5", 0.5, None])
    elif kind == 5 and item:
        item.pop(rng.choice(["name", "shape", "datatype", "data"]), None)
    elif kind == 6:
        doc["inputs"] = rng.choice([None, {}, [], "x", [None], [[]], [1],
                                    [valid()["inputs"][0]] * 3])
    elif kind == 7:
        doc[rng.choice(["outputs", "parameters", "id", "inputs\u0000", "x" * 300])] = \
            rng.choice([None, 1, "x", [], [{"name": 5}], [{"name": "predict_proba"}] * 50, {}])
    elif kind == 8 and item:
        item["parameters"] = rng.choice([{"binary_data_size": -1}, {"binary_data_size": 2**62},
                                         {"content_type": 5}, [], "x"])
    elif kind == 9:  # many rows, or none
        rows = rng.choice([0, 2, 64, 65, 1000, 4000])
        doc = valid(rows) if rows else doc
        if not rows:
            item["shape"], item["data"] = [0, WIDTH], []
    elif kind == 10:  # deep nesting
        depth = rng.choice([50, 1000, 50_000])
        return b'{"inputs":' + b"[" * depth + b"]" * depth + b"}"
    elif kind == 11:  # a raw token where a number goes
        token = rng.choice(RAW_TOKENS)
        return (b'{"inputs":[{"name":"i","shape":[1,30],"datatype":"FP64","data":[' + token
                + b",1" * (WIDTH - 1) + b"]}]}")
    elif kind == 12:  # bytes flipped, dropped or cut
        raw = bytearray(json.dumps(doc).encode())
        for _ in range(rng.randrange(1, 6)):
            if raw:
                raw[rng.randrange(len(raw))] = rng.randrange(256)
        if rng.random() < 0.3:
            raw = raw[: rng.randrange(len(raw) + 1)]
        return bytes(raw)
    elif kind == 13:  # bad encodings
        return rng.choice([b"\xff\xfe" + json.dumps(doc).encode("utf-16-le"),
                           json.dumps(doc).encode("utf-32"), b"\xc3\x28" * 10,
                           b'{"inputs":"\xed\xa0\x80"}'])
    elif kind == 14:  # binary junk
        return bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 17, 4096])))
    else:  # duplicate keys and odd names
        return (b'{"inputs":[{"name":"a","name":"b","shape":[1,30],"shape":[2,30],'
                b'"datatype":"FP64","data":[' + b"1," * (WIDTH - 1) + b"1]}]}")
    return doc


def case(rng: random.Random) -> tuple[str, str, bytes, dict[str, str]]:
    """(method, path, body, headers) of one case."""
    doc: dict[str, Any] | bytes = valid()
    for _ in range(rng.randrange(1, 4)):
        if isinstance(doc, bytes):
            break
        doc = mutate(rng, doc)
    body = doc if isinstance(doc, bytes) else json.dumps(doc, allow_nan=True).encode()
    headers = {"Content-Type": rng.choice(["application/json", "application/json",
                                           "text/plain", "application/octet-stream", ""])}
    method, path = "POST", "/v2/models/logreg/infer"
    odd = rng.random()
    if odd < 0.05:
        path = rng.choice(["/v2/models/logreg/versions/9/infer", "/v2/models/%00/infer",
                           "/v2/models/" + "x" * 5000 + "/infer", "/v2//models/logreg/infer",
                           "/v2/models/logreg/infer?x=" + "y" * 3000, "/../../etc/passwd"])
    elif odd < 0.08:
        method = rng.choice(["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
    return method, path, body, headers


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server(module_server: Any, logreg_bundle: Path) -> Server:
    return module_server(logreg_bundle)  # type: ignore[no-any-return]


def test_thousands_of_bad_requests_get_4xx_and_the_server_stays_up(server: Server) -> None:
    rng = random.Random(SEED)
    idle = rss_bytes(server.proc.pid)
    peak = idle
    answers: Counter[int] = Counter()
    server_errors: list[tuple[int, str, bytes, bytes]] = []
    conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
    for n in range(CASES):
        method, path, body, headers = case(rng)
        headers = {k: v for k, v in headers.items() if v}
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            reply = resp.read()
            status = resp.status
            if resp.getheader("connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
        except (http.client.HTTPException, ConnectionError):
            # the server may close a connection after a request it cannot frame; a new one
            conn.close()
            conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
            status, reply = 0, b""
        answers[status] += 1
        if status >= 500 and status != 503:
            server_errors.append((status, path[:80], body[:200], reply[:200]))
        if n % 250 == 0:
            peak = max(peak, rss_bytes(server.proc.pid))
    conn.close()
    peak = max(peak, rss_bytes(server.proc.pid))
    print(f"\n[fuzz] seed {SEED}: {CASES} cases, answers by status "
          f"{dict(sorted(answers.items()))}, RSS idle {idle >> 20} MiB, peak {peak >> 20} MiB")
    assert not server_errors, server_errors[:5]
    assert answers[0] <= CASES // 100, "connections dropped without an answer"
    assert server.proc.poll() is None, "the server died"
    assert server.ready_status() == 200
    assert peak - idle < 400 << 20, f"memory grew by {(peak - idle) >> 20} MiB"
