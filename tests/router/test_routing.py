"""The router as a real process between real backends on 127.0.0.1: splits, stickiness, mirror,
weight changes under load, weight 0, bad documents, failing backends and limits."""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from typing import Any

from tests.router.conftest import (
    HOST,
    Client,
    blast,
    free_port,
    metric,
    raw_request,
    routes_doc,
)


def within_binomial(count: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    sd = math.sqrt(n * p * (1 - p))
    return abs(count - n * p) <= sigmas * sd


def test_ten_thousand_requests_split_90_10(backends, router):
    bk = backends("a", "b")
    rt = router(routes_doc(("churn-r1", 1, bk.url("a"), 90), ("churn-r2", 2, bk.url("b"), 10)))
    replies = blast(rt.port, [raw_request(body=b'{"inputs":[]}')] * 10_000)

    assert {r.status for r in replies} == {200}
    by_revision = Counter(r.revision for r in replies)
    by_body = Counter(r.json()["backend"] for r in replies)
    assert by_body == {"a": by_revision[1], "b": by_revision[2]}
    assert by_revision[1] + by_revision[2] == 10_000
    assert within_binomial(by_revision[2], 10_000, 0.10), by_revision
    # the backends saw exactly what the client saw, and so do the metrics
    assert bk.stats("a")["live"] == by_revision[1]
    assert bk.stats("b")["live"] == by_revision[2]
    text = rt.metrics()
    for rev in (1, 2):
        assert metric(text, "seaway_router_requests_total", revision=str(rev), code="200",
                      traffic="live") == by_revision[rev]
    assert metric(text, "seaway_router_backend_weight", backend="churn-r2") == 10


def test_weight_zero_gets_no_live_request_but_a_named_mirror_gets_copies(backends, router):
    bk = backends("a", "b", "c")
    doc = routes_doc(
        ("churn-r1", 1, bk.url("a"), 50), ("churn-r2", 2, bk.url("b"), 50),
        ("churn-r3", 3, bk.url("c"), 0),
        # an experiment naming the weight-0 revision changes nothing; the mirror names it as
        # a shadow, which gets copies only (live weight is about live traffic)
        experiment={"type": "ABTest", "variants": [{"revision": 2, "weight": 20},
                                                   {"revision": 3, "weight": 80}]},
        mirror={"revision": 3, "percent": 100})
    rt = router(doc)
    replies = blast(rt.port, [raw_request()] * 3000)

    assert {r.status for r in replies} == {200}
    seen = Counter(r.revision for r in replies)
    assert set(seen) == {1, 2}
    # r2 holds the whole experiment pool (r3 is out of it), so the split stays 50/50
    assert within_binomial(seen[2], 3000, 0.5), seen
    deadline = time.monotonic() + 10
    while bk.stats("c")["mirrored"] < 3000 and time.monotonic() < deadline:
        time.sleep(0.1)
    stats = bk.stats("c")
    assert stats["live"] == 0
    assert stats["mirrored"] > 2900, stats  # copies may be dropped only when too many in flight


def test_sticky_header_never_switches_and_moves_few_on_a_weight_change(backends, router):
    bk = backends("a", "b")
    ab = {"type": "ABTest", "sticky": {"header": "X-User-Id"},
          "variants": [{"revision": 1, "weight": 50}, {"revision": 2, "weight": 50}]}
    rt = router(routes_doc(("churn-r1", 1, bk.url("a"), 50), ("churn-r2", 2, bk.url("b"), 50),
                           experiment=ab))
    users = [f"user-{i}" for i in range(400)]
    requests = [raw_request(headers={"X-User-Id": u}) for u in users for _ in range(5)]
    replies = blast(rt.port, requests)
    first: dict[str, int | None] = {}
    for i, reply in enumerate(replies):
        user = users[i // 5]
        assert first.setdefault(user, reply.revision) == reply.revision, user
    assert within_binomial(sum(1 for v in first.values() if v == 2), 400, 0.5)

    ab["variants"] = [{"revision": 1, "weight": 70}, {"revision": 2, "weight": 30}]
    rt.write(routes_doc(("churn-r1", 1, bk.url("a"), 50), ("churn-r2", 2, bk.url("b"), 50),
                        experiment=ab))
    rt.wait_generation(2)
    after = {users[i // 5]: r.revision for i, r in enumerate(blast(rt.port, requests))}
    moved = [u for u in users if after[u] != first[u]]
    # keys only move towards the variant that gained share, and only about the share it gained
    assert all(first[u] == 2 and after[u] == 1 for u in moved)
    r2_users = sum(1 for v in first.values() if v == 2)
    assert within_binomial(len(moved), r2_users, 0.2 / 0.5), (len(moved), r2_users)


def test_sticky_cookie(backends, router):
    bk = backends("a", "b", "c")
    ab = {"type": "ABTest", "sticky": {"cookie": "session"},
          "variants": [{"revision": 1, "weight": 34}, {"revision": 2, "weight": 33},
                       {"revision": 3, "weight": 33}]}
    rt = router(routes_doc(("r1", 1, bk.url("a"), 34), ("r2", 2, bk.url("b"), 33),
                           ("r3", 3, bk.url("c"), 33), experiment=ab))
    sessions = [f"s{i}" for i in range(150)]
    requests = [raw_request(headers={"Cookie": f"theme=dark; session={s}; x=1"})
                for s in sessions for _ in range(4)]
    replies = blast(rt.port, requests)
    per_session: dict[str, set[int | None]] = {}
    for i, reply in enumerate(replies):
        per_session.setdefault(sessions[i // 4], set()).add(reply.revision)
    assert all(len(v) == 1 for v in per_session.values())
    assert {next(iter(v)) for v in per_session.values()} == {1, 2, 3}
    # without the cookie, requests are spread at random
    spread = Counter(r.revision for r in blast(rt.port, [raw_request()] * 300))
    assert set(spread) == {1, 2, 3}


def test_mirror_sends_copies_and_the_client_never_sees_them(backends, router):
    bk = backends("a", "b")
    rt = router(routes_doc(("churn-r1", 1, bk.url("a"), 90), ("churn-r2", 2, bk.url("b"), 10),
                           mirror={"revision": 2, "percent": 50}))
    bk.set("b", status=500)  # the mirror target fails: nobody but the metrics may notice
    replies = blast(rt.port, [raw_request(body=b"x" * 100)] * 4000)

    live = Counter(r.json()["backend"] for r in replies)
    assert not any(r.json()["mirror"] for r in replies)
    assert {r.status for r in replies if r.json()["backend"] == "a"} == {200}
    deadline = time.monotonic() + 5  # copies are fire-and-forget: let the last ones land
    while time.monotonic() < deadline:
        copies = bk.stats("b")["mirrored"]
        text = rt.metrics()
        counted = metric(text, "seaway_router_requests_total", traffic="mirror", code="500")
        if counted == copies and copies > 0 and rt.client().get("/healthz").status == 200:
            break
        time.sleep(0.05)
    assert bk.stats("b")["live"] == live["b"]
    # copies only of requests that went to r1 (r2's own requests need none), about half of them
    assert within_binomial(copies, live["a"], 0.5), (copies, live)
    assert counted == copies
    assert metric(text, "seaway_router_requests_total", traffic="mirror", code="200") == 0
    assert metric(text, "seaway_router_request_duration_seconds_count", traffic="mirror") == copies


def test_weight_change_takes_effect_within_a_second_under_load(backends, router):
    bk = backends("a", "b")
    rt = router(routes_doc(("churn-r1", 1, bk.url("a"), 100), ("churn-r2", 2, bk.url("b"), 0)))
    log: list[tuple[float, int, int | None]] = []
    stop = threading.Event()

    def load() -> None:  # bounded: stops on the event, after 8 s, or after 40,000 requests
        client = Client(rt.port)
        end = time.monotonic() + 8
        while not stop.is_set() and time.monotonic() < end and len(log) < 40_000:
            sent = time.monotonic()
            reply = client.get("/v2/models/m/ready")
            log.append((sent, reply.status, reply.revision))
        client.close()

    worker = threading.Thread(target=load)
    worker.start()
    time.sleep(0.5)
    changed = rt.write(routes_doc(("churn-r1", 1, bk.url("a"), 0),
                                  ("churn-r2", 2, bk.url("b"), 100)))
    time.sleep(1.5)
    stop.set()
    worker.join(timeout=15)

    assert {status for _, status, _ in log} == {200}
    before = [rev for sent, _, rev in log if sent < changed]
    after_1s = [rev for sent, _, rev in log if sent > changed + 1.0]
    assert before and set(before) == {1}
    assert after_1s and set(after_1s) == {2}, Counter(after_1s)
    last_old = max(sent for sent, _, rev in log if rev == 1)
    print(f"switched {max(0.0, last_old - changed) * 1000:.0f} ms after the file changed, "
          f"{len(log)} requests")


def test_bad_documents_are_refused_and_the_last_good_one_stays(backends, router):
    bk = backends("a", "b")
    good = routes_doc(("churn-r1", 1, bk.url("a"), 100), ("churn-r2", 2, bk.url("b"), 0))
    rt = router(good)
    bad: list[tuple[str, Any, str]] = [
        ("weights", routes_doc(("churn-r1", 1, bk.url("a"), 90), ("churn-r2", 2, bk.url("b"), 20)),
         "backend weights sum to 110, not 100"),
        ("unknown_backend", {**good, "experiment": {
            "type": "ABTest", "variants": [{"revision": 1, "weight": 50},
                                           {"revision": 7, "weight": 50}]}},
         "experiment variant revision 7 is not among the backends"),
        ("unknown_backend", {**good, "mirror": {"revision": 9, "percent": 10}},
         "mirror revision 9 is not among the backends"),
        ("unparsable", '{"version": 1, "backends": [', "not valid JSON"),
        ("version", {**good, "version": 2}, "unknown routes format version 2"),
        ("invalid", routes_doc(("churn-r1", 1, "https://x:1", 100)), "must be http://host"),
    ]
    client = rt.client()
    for n, (reason, doc, message) in enumerate(bad, start=1):
        rt.write(doc if isinstance(doc, str) else json.dumps(doc))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            text = rt.metrics()
            if metric(text, "seaway_router_config_refused_total") >= n:
                break
            time.sleep(0.02)
        assert metric(text, "seaway_router_config_refused_total", reason=reason) >= 1, reason
        assert metric(text, "seaway_router_config_valid") == 0
        assert metric(text, "seaway_router_config_generation") == 1
        refusals = [rec for rec in rt.log_lines() if rec.get("level") == "error"]
        assert message in refusals[-1]["msg"], refusals[-1]
        assert "kept generation 1 in force" in refusals[-1]["msg"]
        replies = [client.get("/v2/models/m/infer") for _ in range(20)]
        assert {(r.status, r.revision) for r in replies} == {(200, 1)}
        assert client.get("/readyz").status == 200
    assert rt.proc.poll() is None
    rt.write(routes_doc(("churn-r1", 1, bk.url("a"), 0), ("churn-r2", 2, bk.url("b"), 100)))
    rt.wait_generation(2)
    assert metric(rt.metrics(), "seaway_router_config_valid") == 1
    assert {client.get("/").revision for _ in range(10)} == {2}


def test_a_down_backend_fails_only_its_share(backends, router):
    bk = backends("a")
    rt = router(routes_doc(("churn-r1", 1, bk.url("a"), 70),
                           ("churn-r2", 2, f"http://127.0.0.1:{free_port()}", 30)))
    # a refused connection is tried again for 2 s before the 502: a wide window keeps it quick
    replies = blast(rt.port, [raw_request()] * 800, window=128, timeout=90)

    by_status = Counter((r.revision, r.status) for r in replies)
    assert set(by_status) == {(1, 200), (2, 502)}
    assert within_binomial(by_status[(2, 502)], 800, 0.3)
    failed = next(r for r in replies if r.status == 502)
    assert "churn-r2" in failed.json()["error"] and "unreachable" in failed.json()["error"]
    assert failed.headers["x-request-id"]
    text = rt.metrics()
    assert metric(text, "seaway_router_requests_total", revision="2", code="502") == \
        by_status[(2, 502)]
    assert metric(text, "seaway_router_upstream_errors_total", revision="2",
                  reason="connect") == by_status[(2, 502)]
    assert rt.proc.poll() is None and rt.client().get("/readyz").status == 200


def test_backend_timeout_body_limit_and_failing_backend(backends, router):
    bk = backends("slow::3000", "bad:503")
    rt = router(routes_doc(("r1", 1, bk.url("slow"), 100), ("r2", 2, bk.url("bad"), 0)),
                backend_timeout_s="0.3", max_body_bytes="1000", max_response_bytes="20000")
    client = rt.client()
    t0 = time.monotonic()
    reply = client.get("/v2/models/m/ready")
    assert reply.status == 504 and "did not answer within 0.3 s" in reply.json()["error"]
    assert time.monotonic() - t0 < 2.0
    too_big = client.post("/v2/models/m/infer", b"x" * 1001)
    assert too_big.status == 413
    assert bk.stats("slow")["live"] == 1  # the oversized body never left the router
    # a backend's own errors pass through untouched (not turned into router errors)
    rt.write(routes_doc(("r1", 1, bk.url("slow"), 0), ("r2", 2, bk.url("bad"), 100)))
    rt.wait_generation(2)
    reply = rt.client().get("/v2/models/m/ready")
    assert reply.status == 503 and reply.json()["backend"] == "bad"
    bk.set("bad", pad=30_000)  # an answer above the limit is not relayed
    reply = rt.client().get("/v2/models/m/ready")
    assert reply.status == 502
    assert reply.json()["error"] == "backend r2 answered more than 20000 bytes"
    bk.set("bad", pad=10_000)
    assert len(rt.client().get("/v2/models/m/ready").json()["pad"]) == 10_000
    text = rt.metrics()
    assert metric(text, "seaway_router_requests_total", revision="1", code="504") == 1
    assert metric(text, "seaway_router_upstream_errors_total", reason="timeout") == 1
    assert metric(text, "seaway_router_requests_total", revision="2", code="503") == 2
    assert metric(text, "seaway_router_upstream_errors_total", reason="protocol") == 1


def test_request_ids_headers_and_paths_pass_through(backends, router):
    bk = backends("a")
    rt = router(routes_doc(("r1", 1, bk.url("a"), 100)))
    client = rt.client()
    reply = client.post("/v2/models/m/versions/1/infer?x=1&y=%20", b'{"inputs": []}',
                        headers={"X-Request-Id": "abc-123", "Connection": "keep-alive, X-Drop",
                                 "X-Drop": "hop", "X-Keep": "end-to-end"})
    seen = reply.json()
    assert reply.headers["x-request-id"] == "abc-123" == seen["requestId"]
    assert (seen["method"], seen["path"], seen["query"]) == (
        "POST", "/v2/models/m/versions/1/infer", "x=1&y=%20")
    assert seen["bodyBytes"] == 14
    assert seen["headers"]["x-keep"] == "end-to-end"
    assert "x-drop" not in seen["headers"] and "connection" not in seen["headers"]
    assert reply.headers["x-backend"] == "a"  # the backend's own headers come back
    generated = client.get("/")
    assert len(generated.headers["x-request-id"]) == 24
    assert generated.json()["requestId"] == generated.headers["x-request-id"]
    assert client.get("/", headers={"X-Request-Id": "x" * 500}).headers["x-request-id"] != \
        "x" * 500


def test_not_ready_until_a_valid_document_then_follows_the_file(backends, router, tmp_path):
    bk = backends("a")
    rt = router(None, ready=False)
    client = rt.client()
    assert client.get("/healthz").status == 200
    assert client.get("/readyz").status == 503
    reply = client.get("/v2/models/m/ready")
    assert reply.status == 503 and "no routes yet" in reply.json()["error"]
    assert metric(rt.metrics(), "seaway_router_config_refused_total", reason="missing") == 1
    rt.write("not json")
    deadline = time.monotonic() + 5
    while metric(rt.metrics(), "seaway_router_config_refused_total", reason="unparsable") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert client.get("/readyz").status == 503
    written = rt.write(routes_doc(("r1", 1, bk.url("a"), 100)))
    assert rt.wait_generation(1) - written < 1.0
    assert client.get("/readyz").status == 200
    assert client.get("/v2/models/m/ready").revision == 1


def test_sigterm_finishes_requests_in_flight(backends, router):
    bk = backends("slow::600")
    rt = router(routes_doc(("r1", 1, bk.url("slow"), 100)))
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(Client(rt.port).get("/x").status))
    worker.start()
    deadline = time.monotonic() + 5
    while bk.stats("slow")["live"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert rt.stop() == 0
    worker.join(timeout=5)
    assert result == [200]
    assert any(rec.get("msg") == "Stopped" and rec.get("unfinished") == 0
               for rec in rt.log_lines())


def test_sigterm_answers_connections_the_loop_has_not_accepted_yet(backends, router):
    """Connections the kernel completed while the router could not accept (frozen here) hold
    sent requests: a SIGTERM before the loop accepts them must answer them, not reset them."""
    import http.client
    import os
    import signal

    bk = backends("a")
    rt = router(routes_doc(("r1", 1, bk.url("a"), 100)))
    os.kill(rt.proc.pid, signal.SIGSTOP)
    conns = []
    try:
        for _ in range(8):
            conn = http.client.HTTPConnection(HOST, rt.port, timeout=30)
            conn.request("POST", "/v2/models/m/infer", body=b"{}")
            conns.append(conn)
        os.kill(rt.proc.pid, signal.SIGTERM)
    finally:
        os.kill(rt.proc.pid, signal.SIGCONT)
    statuses = []
    for conn in conns:
        resp = conn.getresponse()
        resp.read()
        statuses.append(resp.status)
        conn.close()
    assert statuses == [200] * 8
    assert rt.proc.wait(timeout=30) == 0


def test_a_backend_that_refuses_for_a_moment_is_tried_again_not_failed(router):
    """A Service whose first endpoint just became ready may refuse until the node's proxy rules
    catch up (seen on the real node); such a request is tried again on the same backend."""
    import http.server
    import threading

    port = free_port()
    rt = router(routes_doc(("churn-r1", 1, f"http://127.0.0.1:{port}", 100)))

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_: object) -> None:
            pass

    late: list[http.server.HTTPServer] = []

    def listen_later() -> None:
        time.sleep(0.15)
        late.append(http.server.HTTPServer(("127.0.0.1", port), Answer))
        late[0].serve_forever()

    threading.Thread(target=listen_later, daemon=True).start()
    try:
        reply = rt.client().post("/v2/models/m/infer", b"{}")
        assert reply.status == 200, reply.body
        assert metric(rt.metrics(), "seaway_router_upstream_errors_total", reason="connect") == 0
    finally:
        if late:
            late[0].shutdown()
            late[0].server_close()
