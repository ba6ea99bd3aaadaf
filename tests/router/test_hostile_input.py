"""What held up in the security review of the router, kept tested: a request never picks where
the router sends it (only the route table does), and smuggling attempts are refused."""

from __future__ import annotations

import socket

from tests.router.conftest import HOST, blast, raw_request, routes_doc


def test_the_route_table_alone_picks_the_destination(backends, router):
    bk = backends("a")
    elsewhere = backends("evil")
    rt = router(routes_doc(("r1", 1, bk.url("a"), 100)))
    evil = elsewhere.url("evil").removeprefix("http://")
    requests = [
        raw_request(path=f"http://{evil}/v2/models/m/infer", body=b"{}"),  # absolute form
        raw_request(body=b"{}", headers={"Host": evil}),
        raw_request(body=b"{}", headers={"X-Forwarded-Host": evil, "Forwarded": f"host={evil}"}),
        raw_request(path=f"//{evil}/v2/models/m/infer", body=b"{}"),
    ]
    replies = blast(rt.port, requests)
    for reply in replies:
        assert reply.status in (200, 400), reply.status
        if reply.status == 200:
            assert reply.json()["backend"] == "a"
    assert elsewhere.stats("evil")["live"] == 0


def test_smuggling_through_the_router_is_refused(backends, router):
    bk = backends("a")
    rt = router(routes_doc(("r1", 1, bk.url("a"), 100)))
    raw = (b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
    with socket.create_connection((HOST, rt.port), timeout=10) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ") and answer.count(b"HTTP/1.1 ") == 1
    assert bk.stats("a")["live"] == 0


def test_bodies_waiting_for_a_backend_are_bounded_together(backends, router):
    import threading

    from tests.router.conftest import Client

    bk = backends("slow::400")  # answers after 400 ms
    rt = router(routes_doc(("r1", 1, bk.url("slow"), 100)), max_inflight_bytes=str(1_000_000))
    body = b"x" * 600_000
    replies = []

    def send() -> None:
        client = Client(rt.port)
        try:
            replies.append(client.post("/v2/models/m/infer", body))
        finally:
            client.close()

    threads = [threading.Thread(target=send) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    codes = sorted(r.status for r in replies)
    assert codes[0] == 200 and codes[-1] == 503, codes
    busy = next(r for r in replies if r.status == 503)
    assert busy.headers["retry-after"] == "1"
    assert "SEAWAY_MAX_INFLIGHT_BYTES" in busy.json()["error"]
    assert Client(rt.port).post("/v2/models/m/infer", body).status == 200, "the budget came back"
