"""Fixtures for the model server tests: trained models, bundles and real server processes.

Every server here is a real ``python -m seaway_serving`` process on 127.0.0.1 with a port the
kernel picks (``SEAWAY_PORT=0``, read back from its "Listening" log line), stopped by its PID.
Waits poll with deadlines; nothing sleeps blindly.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from seaway_serving import bundle

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Data:
    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray


@pytest.fixture(scope="session")
def data() -> Data:
    x, y = load_breast_cancer(return_X_y=True)
    x_tr, x_te, y_tr, _ = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    return Data(x_tr, x_te, y_tr)


@pytest.fixture(scope="session")
def logreg(data: Data) -> LogisticRegression:
    return LogisticRegression(max_iter=10000, random_state=0).fit(data.x_train, data.y_train)


@pytest.fixture(scope="session")
def forest(data: Data) -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=30, random_state=0).fit(data.x_train,
                                                                     data.y_train)


@pytest.fixture(scope="session")
def logreg_bundle(tmp_path_factory: pytest.TempPathFactory, logreg: Any, data: Data) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "logreg"
    bundle.create_from_estimator(logreg, out, name="logreg", data=data.x_train)
    return out


@pytest.fixture(scope="session")
def forest_bundle(tmp_path_factory: pytest.TempPathFactory, forest: Any, data: Data) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "forest"
    bundle.create_from_estimator(forest, out, name="forest", data=data.x_train)
    return out


def side_venv(name: str, packages: list[str]) -> Path:
    """A virtualenv for a test tool whose pins conflict with ours, made on first use.

    ``$SEAWAY_TEST_<NAME>_VENV`` or ``~/.cache/seaway/<name>-venv``. When it cannot be created
    (no network), the test fails under CI and is skipped otherwise.
    """
    venv = Path(os.environ.get(f"SEAWAY_TEST_{name.upper()}_VENV")
                or Path.home() / ".cache" / "seaway" / f"{name}-venv")
    marker = venv / ".seaway-complete"
    if marker.exists():
        return venv
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True,
                       timeout=120)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", *packages],
                       check=True, timeout=900, capture_output=True)
        marker.write_text(" ".join(packages) + "\n")
    except (subprocess.SubprocessError, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        reason = f"cannot install {' '.join(packages)} into {venv}: {exc} {detail[-500:]!r}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return venv


def v2_body(rows: np.ndarray, **extra: Any) -> bytes:
    rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    doc = {"inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP64",
                       "data": rows.ravel().tolist()}], **extra}
    return json.dumps(doc).encode()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """A keep-alive HTTP/1.1 client for one server; one per thread."""

    #: A body without a Content-Type is sent as JSON (the router's tests send bodies as given).
    json_by_default = True
    reply_type: type[Reply] = Reply

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.port = port
        self.timeout = timeout
        self.conn = http.client.HTTPConnection(HOST, port, timeout=timeout)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Reply:
        json_body = body is not None and self.json_by_default
        hdrs = {"Content-Type": "application/json"} if json_body else {}
        hdrs.update(headers or {})
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                resp = self.conn.getresponse()
                data = resp.read()
                headers_ = {k.lower(): v for k, v in resp.getheaders()}
                reply = self.reply_type(resp.status, headers_, data)
                if reply.headers.get("connection") == "close":
                    self.conn.close()
                return reply
            except (ConnectionError, http.client.RemoteDisconnected):
                self.conn.close()
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, body: bytes, headers: Mapping[str, str] | None = None) -> Reply:
        return self.request("POST", path, body, headers)

    def close(self) -> None:
        self.conn.close()


@dataclass
class Server:
    """A ``seaway-serve`` process; ``port`` is known once it has logged that it listens."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    termination_log: Path
    port: int = 0
    ever_ready: bool = False
    clients: list[Client] = field(default_factory=list)

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"msg": line})
        return out

    def wait_port(self, deadline: float) -> bool:
        """Until the server logs its port (True) or exits (False)."""
        while time.monotonic() < deadline:
            for rec in self.log_lines():
                if "port" in rec:
                    self.port = int(rec["port"])
                    return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.02)
        raise AssertionError(f"server did not listen in time; log:\n{self.log_path.read_text()}")

    def ready_status(self) -> int | None:
        try:
            conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
            conn.request("GET", "/v2/health/ready")
            status = conn.getresponse().status
            conn.close()
        except OSError:
            return None
        if status == 200:
            self.ever_ready = True
        return status

    def wait_ready(self, timeout: float = 60.0) -> Server:
        deadline = time.monotonic() + timeout
        if not self.wait_port(deadline):
            raise AssertionError(f"server exited with {self.proc.returncode}; log:\n"
                                 f"{self.log_path.read_text()}")
        while time.monotonic() < deadline:
            if self.ready_status() == 200:
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}; log:\n"
                                     f"{self.log_path.read_text()}")
            time.sleep(0.02)
        raise AssertionError(f"server not ready in time; log:\n{self.log_path.read_text()}")

    def wait_exit(self, timeout: float = 60.0) -> int:
        """Wait for the process to end, probing readiness while it lives."""
        deadline = time.monotonic() + timeout
        if self.wait_port(deadline):
            while self.proc.poll() is None and time.monotonic() < deadline:
                self.ready_status()
                time.sleep(0.02)
        try:
            return self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError("server did not exit in time") from None

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

    def stop(self, timeout: float = 30.0) -> int:
        for c in self.clients:
            c.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus exposition, or None if absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return None


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Any]:
    """Factory: ``start_server(bundle, **env)`` launches a server; all are stopped at teardown."""
    servers: list[Server] = []

    def start(bundle_uri: str | Path, env: Mapping[str, str] | None = None,
              args: tuple[str, ...] = ()) -> Server:
        n = len(servers)
        log_path = tmp_path / f"server-{n}.log"
        term = tmp_path / f"termination-{n}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("SEAWAY_")}
        full_env.update({
            "SEAWAY_BUNDLE": str(bundle_uri), "SEAWAY_HOST": HOST, "SEAWAY_PORT": "0",
            "SEAWAY_TERMINATION_LOG": str(term), "SEAWAY_WORK_DIR": str(tmp_path / "work"),
            "SEAWAY_SHUTDOWN_GRACE_S": "10", "PYTHONUNBUFFERED": "1",
        })
        full_env.update(env or {})
        with log_path.open("wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "seaway_serving", *args],
                                    env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=REPO)
        server = Server(proc, log_path, term)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Factory for servers shared by a module's tests (started once, stopped at module end)."""
    servers: list[Server] = []
    base = tmp_path_factory.mktemp("module-servers")

    def start(bundle_uri: str | Path, env: Mapping[str, str] | None = None) -> Server:
        n = len(servers)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("SEAWAY_")}
        full_env.update({
            "SEAWAY_BUNDLE": str(bundle_uri), "SEAWAY_HOST": HOST, "SEAWAY_PORT": "0",
            "SEAWAY_TERMINATION_LOG": str(base / f"termination-{n}.log"),
            "SEAWAY_WORK_DIR": str(base / "work"), "PYTHONUNBUFFERED": "1",
        })
        full_env.update(env or {})
        log_path = base / f"server-{n}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "seaway_serving"], env=full_env,
                                    stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        server = Server(proc, log_path, base / f"termination-{n}.log")
        servers.append(server)
        return server.wait_ready()

    yield start
    for s in servers:
        s.stop()
