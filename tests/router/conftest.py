"""Fixtures for the router tests: real backend and router processes on 127.0.0.1.

``backends("a", "b:500", "c::200")`` starts minimal backends (tests/router/backends.py) in one
process; ``router(routes_doc, **env)`` writes the routes file and starts ``seaway-router`` on it
(port 0, read back from its "Listening" log line). Both are stopped by PID at teardown. Waits
poll with deadlines; load loops are bounded in count and time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httptools
import pytest

from tests.serving import conftest as serving

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- HTTP clients
@dataclass
class Reply(serving.Reply):
    @property
    def revision(self) -> int | None:
        value = self.headers.get("seaway-revision")
        return int(value) if value else None


class Client(serving.Client):
    """A keep-alive HTTP/1.1 client (one per thread) that sends bodies as given."""

    json_by_default = False
    reply_type = Reply

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        super().__init__(port, timeout)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Reply:
        reply = super().request(method, path, body, headers)
        assert isinstance(reply, Reply)
        return reply

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> Reply:
        return self.request("GET", path, headers=headers)

    def post(self, path: str, body: bytes | dict[str, Any] | list[Any],
             headers: Mapping[str, str] | None = None) -> Reply:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.request("POST", path, data, {"content-type": "application/json",
                                                  **(headers or {})})

    def close(self) -> None:
        self.conn.close()


class _Collector:
    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.parser: httptools.HttpResponseParser | None = None

    def on_message_begin(self) -> None:
        self.headers, self.body = {}, []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        assert self.parser is not None
        self.replies.append(Reply(self.parser.get_status_code(), self.headers,
                                  b"".join(self.body)))


def blast(port: int, requests: Sequence[bytes], window: int = 32,
          timeout: float = 60.0) -> list[Reply]:
    """Send raw requests pipelined on one connection (``window`` in flight); the replies in
    order. Much faster than one round trip each, so 10,000 requests take a couple of seconds."""
    deadline = time.monotonic() + timeout
    collector = _Collector()
    parser = httptools.HttpResponseParser(collector)
    collector.parser = parser
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sent = 0
        while len(collector.replies) < len(requests):
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(collector.replies)} of {len(requests)} replies "
                                     f"in {timeout} s")
            if sent - len(collector.replies) < window and sent < len(requests):
                batch = requests[sent:sent + window - (sent - len(collector.replies))]
                sock.sendall(b"".join(batch))
                sent += len(batch)
            data = sock.recv(1 << 16)
            if not data:
                raise AssertionError("router closed the connection")
            parser.feed_data(data)
    return collector.replies


def raw_request(method: str = "GET", path: str = "/v2/models/m/infer", body: bytes = b"",
                headers: Mapping[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: router"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# --------------------------------------------------------------------------- metrics
def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric_name = head.split("{", 1)[0]
        if metric_name != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


# --------------------------------------------------------------------------- processes
def _child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SEAWAY_") and not k.startswith("KUBERNETES_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def _stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


@dataclass
class Backends:
    proc: subprocess.Popen[bytes]
    ports: dict[str, int]

    def url(self, name: str) -> str:
        return f"http://{HOST}:{self.ports[name]}"

    def stats(self, name: str) -> dict[str, int]:
        c = Client(self.ports[name])
        try:
            return c.get("/_stats").json()  # type: ignore[no-any-return]
        finally:
            c.close()

    def set(self, name: str, *, status: int | None = None, delay_ms: float | None = None,
            pad: int | None = None) -> None:
        query = [] if pad is None else [f"pad={pad}"]
        if status is not None:
            query.append(f"status={status}")
        if delay_ms is not None:
            query.append(f"delay_ms={delay_ms}")
        c = Client(self.ports[name])
        try:
            assert c.post("/_set?" + "&".join(query), b"").status == 200
        finally:
            c.close()


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[Callable[..., Backends]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*specs: str) -> Backends:
        out = tmp_path / f"backends-{len(started)}.out"
        with out.open("wb") as sink:
            proc = subprocess.Popen([sys.executable, "-m", "tests.router.backends", *specs],
                                    stdout=sink, stderr=subprocess.STDOUT, cwd=REPO,
                                    env=_child_env())
        started.append(proc)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for line in out.read_text().splitlines():
                if line.startswith('{"ports"'):
                    return Backends(proc, json.loads(line)["ports"])
            if proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"backends did not start: {out.read_text()}")

    yield start
    for proc in started:
        _stop(proc)


def routes_doc(*backends: tuple[str, int, str, int], experiment: dict[str, Any] | None = None,
               mirror: dict[str, Any] | None = None, owner: str = "churn") -> dict[str, Any]:
    """A routes document (format v1) from (name, revision, url, weight) tuples."""
    doc: dict[str, Any] = {
        "version": 1, "modelDeployment": owner,
        "backends": [{"name": n, "revision": r, "url": u, "weight": w}
                     for n, r, u, w in backends],
    }
    if experiment is not None:
        doc["experiment"] = experiment
    if mirror is not None:
        doc["mirror"] = mirror
    return doc


@dataclass
class Router:
    proc: subprocess.Popen[bytes]
    log_path: Path
    config_path: Path | None
    port: int = 0
    clients: list[Client] = field(default_factory=list)

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"msg": line})
        return out

    def wait_port(self, timeout: float = 20.0) -> Router:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for rec in self.log_lines():
                if "port" in rec and str(rec.get("msg", "")).startswith("Listening"):
                    self.port = int(rec["port"])
                    return self
            if self.proc.poll() is not None:
                raise AssertionError(f"router exited with {self.proc.returncode}:\n"
                                     f"{self.log_path.read_text()}")
            time.sleep(0.02)
        raise AssertionError(f"router did not listen in time:\n{self.log_path.read_text()}")

    def wait_ready(self, timeout: float = 20.0) -> Router:
        if not self.port:
            self.wait_port(timeout)
        deadline = time.monotonic() + timeout
        c = Client(self.port)
        try:
            while time.monotonic() < deadline:
                if c.get("/readyz").status == 200:
                    return self
                time.sleep(0.02)
        finally:
            c.close()
        raise AssertionError(f"router not ready in time:\n{self.log_path.read_text()}")

    def client(self) -> Client:
        c = Client(self.port)
        self.clients.append(c)
        return c

    def metrics(self) -> str:
        c = Client(self.port)
        try:
            return c.get("/metrics").body.decode()
        finally:
            c.close()

    def write(self, doc: dict[str, Any] | str) -> float:
        """Replace the routes file atomically; the time it was replaced (monotonic)."""
        assert self.config_path is not None
        text = doc if isinstance(doc, str) else json.dumps(doc)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)
        return time.monotonic()

    def wait_generation(self, generation: int, timeout: float = 5.0) -> float:
        """Until ``seaway_router_config_generation`` reaches ``generation``; when (monotonic)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if metric(self.metrics(), "seaway_router_config_generation") >= generation:
                return time.monotonic()
            time.sleep(0.01)
        raise AssertionError(f"generation {generation} not applied:\n{self.log_path.read_text()}")

    def stop(self) -> int:
        for c in self.clients:
            c.close()
        return _stop(self.proc)


@pytest.fixture
def router(tmp_path: Path) -> Iterator[Callable[..., Router]]:
    """``router(doc, *args, **env)``: a router following a routes file holding ``doc`` (None:
    no file yet), with extra CLI ``args`` and ``SEAWAY_*`` environment (``extra_env``: other
    variables). With ``--configmap`` in ``args`` there is no file."""
    started: list[Router] = []

    def start(doc: dict[str, Any] | str | None, *args: str, ready: bool = True,
              config: Path | None = None, extra_env: Mapping[str, str] | None = None,
              **env: str) -> Router:
        n = len(started)
        log_path = tmp_path / f"router-{n}.log"
        if "--configmap" not in args:
            config = config or tmp_path / f"routes-{n}.json"
        argv = [sys.executable, "-m", "seaway_serving.router", "--host", HOST, "--port", "0"]
        if config is not None:
            argv += ["--config", str(config)]
        argv += list(args)
        handle = Router(proc=None, log_path=log_path, config_path=config)  # type: ignore[arg-type]
        if doc is not None:
            handle.write(doc)
        with log_path.open("wb") as sink:
            handle.proc = subprocess.Popen(
                argv, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO,
                env=_child_env({"SEAWAY_TERMINATION_LOG": str(tmp_path / f"term-{n}"),
                                **{f"SEAWAY_{k.upper()}": v for k, v in env.items()},
                                **(extra_env or {})}))
        started.append(handle)
        handle.wait_port()
        if ready:
            handle.wait_ready()
        return handle

    yield start
    for handle in started:
        handle.stop()


def free_port() -> int:
    """A port nothing listens on (bound then closed)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])
