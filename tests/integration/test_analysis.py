"""Metric analysis end to end: router, Prometheus and operator as real processes on 127.0.0.1.

The operator writes the router's ConfigMap on the local plane; a real ``seaway-router`` process
watches that ConfigMap and sends each revision's share to a local backend (revision 1 answers
200, revision 2 answers 500); a real Prometheus (Debian's ``prometheus``) scrapes the router;
the operator's analysis queries that Prometheus. Nothing connects to a simulated Pod address:
the router is told each backend's local URL explicitly.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import unavailable
from tests.integration.mdtools import User, md_body

OPERATOR = ["seaway.handlers.operator"]


@pytest.fixture(autouse=True)
def loopback_prometheus(monkeypatch: pytest.MonkeyPatch) -> None:
    """The specs here name a Prometheus on 127.0.0.1: the operator (in this process) may ask it."""
    monkeypatch.setenv("SEAWAY_ALLOWED_PROMETHEUS_HOSTS", "127.0.0.1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def backend(status: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = b'{"outputs": []}' if status == 200 else b'{"error": "model crashed"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout}s")


@contextlib.contextmanager
def process(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def load(url: str, seconds: float) -> Iterator[list[int]]:
    """A bounded stream of requests (at most ``seconds`` long, ~50 per second)."""
    codes: list[int] = []
    stop = threading.Event()

    def run() -> None:
        deadline = time.monotonic() + seconds
        while not stop.is_set() and time.monotonic() < deadline:
            request = urllib.request.Request(url, data=b'{"inputs": []}', method="POST")
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    codes.append(response.status)
            except urllib.error.HTTPError as exc:
                codes.append(exc.code)
            except (urllib.error.URLError, OSError):
                codes.append(0)
            time.sleep(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield codes
    finally:
        stop.set()
        thread.join(timeout=10)


@pytest.fixture
def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        unavailable(
            "the prometheus binary is missing (Debian package prometheus; `make test` installs it)"
        )
    assert found is not None
    return found


def canary_spec(version: int, prometheus: str, **analysis: Any) -> dict[str, Any]:
    spec: dict[str, Any] = md_body("scored", version)["spec"]
    spec["server"]["replicas"] = 1
    spec["rollout"] = {
        "strategy": "Canary",
        "steps": [{"setWeight": 50}, {"pause": {"duration": "1h"}}],
        "progressDeadlineSeconds": 60,
        "analysis": {
            "interval": "4s",
            "maxErrorRatio": "0.1",
            "minRequests": 10,
            "failureLimit": 2,
            "provider": {"prometheus": {"address": prometheus}},
            **analysis,
        },
    }
    return spec


def test_a_canary_answering_500_is_reverted_by_its_metrics(
    run_operator: Any, kube_api: Any, namespace: str, seaway_crds: Any, control_plane: Any,
    prometheus_binary: str, tmp_path: Path, eventually: Any,
) -> None:  # fmt: skip
    user = User(kube_api, namespace)
    good, bad = backend(200), backend(500)
    router_port, prom_port = free_port(), free_port()
    prometheus = f"http://127.0.0.1:{prom_port}"
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"- job_name: router\n  static_configs: [{{targets: ['127.0.0.1:{router_port}']}}]\n"
    )
    router = [
        sys.executable, "-m", "seaway_serving.router",
        "--configmap", f"{namespace}/scored-router", "--kubeconfig", str(control_plane.kubeconfig),
        "--backend-url", f"scored-r1=http://127.0.0.1:{good.server_port}",
        "--backend-url", f"scored-r2=http://127.0.0.1:{bad.server_port}",
        "--host", "127.0.0.1", "--port", str(router_port),
    ]  # fmt: skip
    prom = [
        prometheus_binary, f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}",
    ]  # fmt: skip
    try:
        with run_operator(OPERATOR, namespace=namespace):
            body = md_body("scored", 1)
            body["spec"] = canary_spec(1, prometheus)
            user.create(body)
            eventually(lambda: user.status("scored").get("stableRevision") == 1, timeout=30)
            with (
                process(router, tmp_path / "router.log"),
                process(prom, tmp_path / "prometheus.log"),
            ):
                wait_http(f"http://127.0.0.1:{router_port}/readyz")
                wait_http(f"{prometheus}/-/ready")
                with load(f"http://127.0.0.1:{router_port}/v2/models/scored/infer", 120) as codes:
                    user.patch_spec("scored", canary_spec(2, prometheus))
                    eventually(lambda: user.weights("scored") == {1: 50, 2: 50}, what="50% canary")
                    eventually(lambda: 500 in codes, timeout=30, what="the canary's 500s")
                    eventually(
                        lambda: user.weights("scored") == {1: 100}, timeout=60, what="reverted"
                    )
            status = user.status("scored")
            r2 = next(r for r in status["revisions"] if r["number"] == 2)
            assert (r2["fate"], r2["reason"]) == ("Failed", "AnalysisFailed")
            assert "maxErrorRatio 0.1" in r2["message"] and "error ratio" in r2["message"]
            assert status["analysis"]["failures"] >= 2
            rolled = [e for e in user.events("scored") if e.reason == "RolledBack"]
            assert rolled and "AnalysisFailed" in rolled[-1].message
            assert "maxErrorRatio 0.1" in rolled[-1].message
    finally:
        good.shutdown()
        bad.shutdown()


def test_missing_metrics_never_promote(
    run_operator: Any, kube_api: Any, namespace: str, seaway_crds: Any, eventually: Any,
    consistently: Any,
) -> None:  # fmt: skip
    user = User(kube_api, namespace)
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with run_operator(OPERATOR, namespace=namespace):
        body = md_body("blind", 1)
        body["metadata"]["name"] = "blind"
        spec = canary_spec(1, nowhere, interval="2s", noDataLimit=3)
        spec["rollout"]["steps"] = [{"setWeight": 50}, {"pause": {"duration": "2s"}}]
        body["spec"] = spec
        user.create(body)
        eventually(lambda: user.status("blind").get("stableRevision") == 1, timeout=30)
        spec2 = canary_spec(2, nowhere, interval="2s", noDataLimit=3)
        spec2["rollout"]["steps"] = [{"setWeight": 50}, {"pause": {"duration": "2s"}}]
        user.patch_spec("blind", spec2)
        eventually(lambda: user.status("blind").get("canaryRevision") == 2)
        consistently(lambda: user.status("blind").get("stableRevision") == 1, duration=4)

        def aborted() -> bool:
            revisions = user.status("blind")["revisions"]
            return any(r.get("reason") == "AnalysisInconclusive" for r in revisions)

        eventually(aborted, timeout=30, what="aborted after noDataLimit")
        assert user.status("blind")["stableRevision"] == 1
        assert user.weights("blind") == {1: 100}
