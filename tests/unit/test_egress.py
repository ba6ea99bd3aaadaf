"""No SSRF through the operator (issue 15, item 3): spec-given Prometheus and webhook URLs.

An attacker who may write a ModelDeployment names internal URLs as its Prometheus address or
webhook and reads what the operator fetched back from ``status.analysis.message`` and Events.
Each test gives the attacker's input to the operator's own code, against real HTTP servers on
127.0.0.1, and checks what reaches the user-visible text and which requests were made.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from seaway import egress
from seaway.handlers import notify
from seaway.metrics.prometheus import Prometheus, query_url

SECRET = "internal-secret-7f3a"


class Peer:
    """A loopback HTTP server that records requests and answers with a canned response."""

    def __init__(self, status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None):
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                peer.requests.append((self.command, self.path, dict(self.headers)))
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = answer

            def log_message(self, *_: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def peers() -> Iterator[list[Peer]]:
    made: list[Peer] = []
    yield made
    for peer in made:
        peer.close()


def start(peers: list[Peer], *args: Any, **kwargs: Any) -> Peer:
    peer = Peer(*args, **kwargs)
    peers.append(peer)
    return peer


LOOPBACK = egress.Client(egress.Allowlist(("127.0.0.1",), "the test's allowlist"), timeout=5)


def measure(prometheus: Prometheus) -> str | None:
    return prometheus.measure(namespace="ml", name="churn", canary=2, stable=1, window="1m").problem


def test_a_trailing_hash_cannot_turn_the_address_into_the_url_fetched(peers: list[Peer]) -> None:
    internal = start(peers, 200, json.dumps({"status": "error", "error": SECRET}).encode())
    problem = measure(Prometheus(f"{internal.url}/admin/secret#", LOOPBACK))
    assert internal.requests == []
    assert problem is not None and SECRET not in problem
    with pytest.raises(egress.NotAllowed):
        query_url("http://prometheus:9090/x?", "up")
    assert query_url("http://thanos:9090/prom/", "up") == (
        "http://thanos:9090/prom/api/v1/query?query=up"
    )


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, json.dumps({"status": "error", "error": SECRET}).encode()),
        (200, f"<html>{SECRET}</html>".encode()),
        (500, SECRET.encode()),
        (
            200,
            json.dumps(
                {"status": "success", "data": {"result": [{"value": [0, SECRET]}]}}
            ).encode(),
        ),
    ],
    ids=["prometheus-error-text", "internal-page", "http-500", "value-not-a-number"],
)
def test_what_an_internal_url_answers_never_reaches_the_status(
    peers: list[Peer], status: int, body: bytes
) -> None:
    internal = start(peers, status, body)
    problem = measure(Prometheus(internal.url, LOOPBACK))
    assert internal.requests, "the allowed host was asked"
    assert problem is not None and SECRET not in problem
    assert problem.startswith(f"Prometheus: 127.0.0.1:{internal.httpd.server_address[1]} ")


def test_connection_errors_read_the_same_so_ports_cannot_be_told_apart() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    problem = measure(Prometheus(f"http://127.0.0.1:{port}", LOOPBACK))
    assert problem == f"Prometheus: 127.0.0.1:{port} could not be reached"


def test_hosts_off_the_allowlist_are_never_asked(peers: list[Peer]) -> None:
    internal = start(peers, 200, b"{}")
    nobody = egress.Client(egress.Allowlist((), "the operator's --allow-prometheus-host"))
    problem = measure(Prometheus(internal.url, nobody))
    assert internal.requests == []
    assert problem == (
        f"Prometheus: host {egress.describe(internal.url)} is not allowed by the operator's"
        " --allow-prometheus-host"
    )


def test_redirects_are_not_followed(peers: list[Peer]) -> None:
    elsewhere = start(peers, 200, json.dumps({"status": "error", "error": SECRET}).encode())
    # "localhost" is another host than the allowed 127.0.0.1: the redirect would leave the list.
    target = elsewhere.url.replace("127.0.0.1", "localhost") + "/internal"
    redirecting = start(peers, 307, b"", headers={"Location": target})
    problem = measure(Prometheus(redirecting.url, LOOPBACK))
    assert redirecting.requests and elsewhere.requests == []
    assert problem is not None and "redirect (307), not followed" in problem
    assert SECRET not in problem


class Events:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    def event(self, body: Any, type_: str, reason: str, message: str) -> None:
        self.sent.append((type_, reason, message))


BODY = {"kind": "ModelDeployment", "metadata": {"namespace": "ml", "name": "churn"}}


def test_a_webhook_off_the_allowlist_is_not_called_and_an_event_says_why(
    peers: list[Peer],
) -> None:
    internal = start(peers, 200, b"")
    kube = Events()
    client = egress.Client(egress.Allowlist((), "the operator's --allow-webhook-host"))
    notify.announce(kube, BODY, [], [{"event": "RolledBack"}], webhook=internal.url, client=client)
    assert internal.requests == []
    assert kube.sent == [
        (
            "Warning",
            "WebhookNotAllowed",
            f"notifications.webhookURL: host {egress.describe(internal.url)} is not allowed by"
            " the operator's --allow-webhook-host; 1 notification(s) not sent",
        )
    ]


def test_a_webhook_redirect_is_not_followed(peers: list[Peer]) -> None:
    elsewhere = start(peers, 200, b"")
    target = elsewhere.url.replace("127.0.0.1", "localhost")
    hook = start(peers, 307, b"", headers={"Location": target})
    kube = Events()
    notify.announce(kube, BODY, [], [{"event": "RolledBack"}], webhook=hook.url, client=LOOPBACK)
    assert [r[0] for r in hook.requests] == ["POST"] and elsewhere.requests == []
    assert kube.sent == []


def test_an_allowed_webhook_gets_the_document(peers: list[Peer]) -> None:
    hook = start(peers, 204, b"")
    notify.announce(Events(), BODY, [], [{"event": "Promoted"}], webhook=hook.url, client=LOOPBACK)
    assert [(m, p) for m, p, _ in hook.requests] == [("POST", "/")]


@pytest.mark.parametrize(
    ("entries", "url", "allowed"),
    [
        (("prometheus.monitoring",), "http://prometheus.monitoring:9090", True),
        (("prometheus.monitoring",), "http://PROMETHEUS.monitoring:9090/x", True),
        (("prometheus.monitoring:9090",), "http://prometheus.monitoring:9091", False),
        (("prometheus.monitoring",), "http://prometheus.monitoring.evil.com", False),
        (("*.thanos.svc",), "http://q.thanos.svc", True),
        (("*.thanos.svc",), "http://thanos.svc", False),
        (("*.thanos.svc",), "http://evilthanos.svc", False),
        (("hooks.example.com",), "https://user:pw@hooks.example.com/", False),
        (("hooks.example.com",), "ftp://hooks.example.com/", False),
        (("[::1]:9090",), "http://[::1]:9090/", True),
        (("*",), "http://anything:1", True),
        ((), "http://anything:1", False),
    ],
)
def test_allowlist_entries(entries: tuple[str, ...], url: str, allowed: bool) -> None:
    assert egress.Allowlist(entries).permits(url) is allowed


def test_the_operators_default_prometheus_is_always_allowed() -> None:
    policy = egress.Policy.from_env(
        {egress.WEBHOOK_HOSTS_ENV: "hooks.example.com, *.corp"},
        default_prometheus="http://prometheus-operated.monitoring:9090",
    )
    assert policy.prometheus.permits("http://prometheus-operated.monitoring:9090/")
    assert not policy.prometheus.permits("http://prometheus-operated.monitoring:8080/")
    assert policy.webhooks.permits("https://a.corp/hook")
    assert not egress.Policy.from_env({}, default_prometheus=None).webhooks.permits(
        "https://hooks.example.com"
    )
