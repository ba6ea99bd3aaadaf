"""An API server outage is one warning each way, fails fast, and is never retried in silence.

The client talks to a small HTTP server on 127.0.0.1 that answers what each test tells it to:
a status, or nothing at all (a frozen API server: the connection is accepted, no answer comes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from seaway.k8s import kube as kube_module
from seaway.k8s.kube import Kube, StalePass, Unavailable, load_api_client
from seaway.k8s.outage import Outage


class FakeServer:
    def __init__(self) -> None:
        self.status = 200
        self.frozen = threading.Event()
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                owner.requests.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                if owner.frozen.is_set():
                    owner.frozen.wait(0)  # hold the connection without a word
                    time.sleep(3)
                    return
                body = b'{"kind": "ConfigMap", "metadata": {"name": "x"}}'
                if owner.status >= 400:
                    body = b'{"kind": "Status", "message": "etcdserver: request timed out"}'
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_PATCH = do_POST = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    try:
        yield fake
    finally:
        fake.httpd.shutdown()


def kube_at(port: int, tmp_path: Path) -> Kube:
    """A Kube loaded the operator's way, from a kubeconfig for http://127.0.0.1:<port>."""
    config = tmp_path / f"kubeconfig-{port}"
    config.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
"""
    )
    client = Kube(load_api_client(str(config)))
    client.outage = Outage(settle=0.0)
    return client


@pytest.fixture
def kube(server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Kube:
    monkeypatch.setattr(kube_module, "REQUEST_TIMEOUT", (1.0, 0.5))
    return kube_at(server.port, tmp_path)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("status", [500, 503, 504, 429])
def test_5xx_and_429_are_an_outage(
    kube: Kube, server: FakeServer, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    server.status = status
    for _ in range(3):
        with pytest.raises(Unavailable) as raised:
            kube.get("ConfigMap", "ns", "x")
        assert raised.value.status == status
    assert len(server.requests) == 3, "not retried behind the caller's back"
    server.status = 200
    assert kube.get("ConfigMap", "ns", "x") is not None
    found = warnings(caplog)
    assert found[0] == (
        f"Lost the Kubernetes API server: {status} etcdserver: request timed out;"
        " retrying with back-off"
    )
    assert found[1].startswith("The Kubernetes API server answers again, after ")
    assert len(found) == 2
    assert all(r.exc_info is None for r in caplog.records)


def test_a_frozen_server_fails_the_request_fast_and_once(
    kube: Kube, server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.frozen.set()
    began = time.monotonic()
    with pytest.raises(Unavailable) as raised:
        kube.replace({"kind": "ConfigMap", "metadata": {"namespace": "ns", "name": "x"}})
    assert time.monotonic() - began < 2.5
    assert raised.value.status == 0 and raised.value.message == "timed out"
    assert server.requests == ["PUT /api/v1/namespaces/ns/configmaps/x"], "a PUT is not re-sent"
    assert kube.outage.ongoing
    assert warnings(caplog) == ["Lost the Kubernetes API server: timed out; retrying with back-off"]


def test_refused_connections_are_an_outage(kube: Kube, server: FakeServer) -> None:
    server.httpd.shutdown()
    server.httpd.server_close()
    with pytest.raises(Unavailable) as raised:
        kube.get("ConfigMap", "ns", "x")
    assert raised.value.message == "connection refused"


def test_404_and_403_are_answers_not_outages(kube: Kube, server: FakeServer) -> None:
    server.status = 404
    assert kube.get("ConfigMap", "ns", "x") is None
    server.status = 403
    with pytest.raises(Exception) as raised:
        kube.get("ConfigMap", "ns", "x")
    assert not isinstance(raised.value, Unavailable)
    assert not kube.outage.ongoing


def test_a_write_past_the_pass_budget_is_not_sent(kube: Kube, server: FakeServer) -> None:
    manifest = {"kind": "ConfigMap", "metadata": {"namespace": "ns", "name": "x"}}
    with kube.budget(0.2):
        kube.get("ConfigMap", "ns", "x")
        time.sleep(0.3)
        assert kube.get("ConfigMap", "ns", "x") is not None, "reads are still allowed"
        with pytest.raises(StalePass):
            kube.apply(manifest)
    assert [r.split()[0] for r in server.requests] == ["GET", "GET"]
    kube.apply(manifest)  # outside a pass: no budget


def test_the_outage_record_spans_from_the_first_unanswered_request() -> None:
    t0 = datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
    clock = [t0]

    def seconds() -> float:
        return (clock[0] - t0).total_seconds()

    outage = Outage(clock=lambda: clock[0], monotonic=seconds, settle=5.0)
    sent, mono = outage.now()
    clock[0] = t0 + timedelta(seconds=10)  # the first request times out 10 s later
    outage.failed("timed out", sent_at=sent, sent_mono=mono)
    outage.failed("timed out", sent_at=clock[0], sent_mono=10.0)
    assert outage.windows() == [(t0, t0 + timedelta(seconds=10))]
    clock[0] = t0 + timedelta(seconds=61)
    outage.answered(sent_at=t0 - timedelta(seconds=1))  # sent before: says nothing of now
    assert outage.ongoing
    outage.answered(sent_at=clock[0])
    assert outage.ongoing, "settling: a restarted API server may fail again at first"
    clock[0] = t0 + timedelta(seconds=63)
    outage.failed("429 storage is (re)initializing", sent_at=clock[0], sent_mono=63.0)
    clock[0] = t0 + timedelta(seconds=64)
    outage.answered(sent_at=clock[0])
    assert outage.windows() == [(t0, t0 + timedelta(seconds=64))]
    clock[0] = t0 + timedelta(seconds=69)
    outage.answered(sent_at=clock[0])
    assert not outage.ongoing
    assert outage.windows() == [(t0, t0 + timedelta(seconds=64))], "ended at the first answer"


def test_kopf_retry_lines_become_one_outage(caplog: pytest.LogCaptureFixture) -> None:
    from seaway.k8s.outage import WatchRetries

    outage = Outage()
    retries = WatchRetries(outage)
    kopf_logger = logging.getLogger("kopf._cogs.clients.watching")
    line = (
        "Request attempt #3 failed; will retry: GET https://127.0.0.1:1/api/v1/configmaps"
        "?watch=true -> ClientConnectorError(ConnectionKey(host='127.0.0.1'))"
    )
    record = kopf_logger.makeRecord(kopf_logger.name, logging.ERROR, __file__, 1, line, (), None)
    assert retries.filter(record) is False
    assert retries.filter(record) is False
    other = kopf_logger.makeRecord(kopf_logger.name, logging.ERROR, __file__, 1, "Bug", (), None)
    assert retries.filter(other) is True
    forbidden = line.replace("ClientConnectorError(", "APIForbiddenError(")
    denied = kopf_logger.makeRecord(
        kopf_logger.name, logging.ERROR, __file__, 1, forbidden, (), None
    )
    assert retries.filter(denied) is True, "a 403 is an answer, not an outage"
    assert outage.ongoing
    assert warnings(caplog) == [
        "Lost the Kubernetes API server: watch requests fail (ClientConnectorError);"
        " retrying with back-off"
    ]


def test_kopf_backoffs_never_run_out_and_jitter() -> None:
    import itertools

    from seaway.k8s.outage import Backoffs

    delays = list(itertools.islice(iter(Backoffs(cap=10.0)), 100))
    ceilings = [1, 2, 4, 8] + [10] * 96
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) > 90


def test_after_the_lease_may_have_expired_only_the_lease_is_written(
    kube: Kube, server: FakeServer
) -> None:
    manifest = {"kind": "ConfigMap", "metadata": {"namespace": "ns", "name": "x"}}
    kube.lead_until(time.monotonic() + 60)
    kube.apply(manifest)
    kube.lead_until(time.monotonic() - 1)  # e.g. frozen for longer than the Lease
    with pytest.raises(StalePass):
        kube.apply(manifest)
    kube.replace({"kind": "Lease", "metadata": {"namespace": "ns", "name": "seaway-operator"}})
    assert kube.get("ConfigMap", "ns", "x") is not None, "reads are harmless"
    assert [r.split()[0] for r in server.requests] == ["PATCH", "PUT", "GET"]


def test_a_server_that_dies_mid_request_is_one_short_reason(tmp_path: Path) -> None:
    import socket

    with socket.socket() as listener:  # accepts, reads, and closes without a word
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        kube = kube_at(listener.getsockname()[1], tmp_path)

        def slam() -> None:
            conn, _ = listener.accept()
            conn.recv(65536)
            conn.close()

        thread = threading.Thread(target=slam, daemon=True)
        thread.start()
        with pytest.raises(Unavailable) as raised:
            kube.get("ConfigMap", "ns", "x")
        thread.join(timeout=5)
    assert raised.value.message == "connection closed without an answer"
