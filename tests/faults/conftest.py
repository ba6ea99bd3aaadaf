"""The fault suite's own plane, operator process and witnesses.

``fault_plane`` (module)
    A control plane of its own, not the session's: freezing or killing its API server would
    stall every other test that shares it. The freeze is always lifted in a ``finally``.
``faults``
    What the scenarios do to the plane: :meth:`Faults.freeze_apiserver` (SIGSTOP, then SIGCONT
    after a while), :meth:`Faults.restart_apiserver` (SIGKILL, then the same flags and the same
    etcd), :meth:`Faults.restart_etcd`.
``operator_process``
    Starts ``seaway operator run`` as a separate process (so it can be killed and frozen) with
    its output in a file; stops whatever it started at the end.
``Weights``
    A watch on a router ConfigMap that records every split it ever held with the API server's
    own time of the write (the ``seaway`` entry of ``managedFields``). The bake at a weight is
    the time from its write to the next one's.

Server times have whole seconds. A bake is measured as ``floor(next) - floor(this)``, which is
more than the true bake minus one second; being a whole number, it is at least ``d`` whenever
the true bake is at least a whole ``d``. So "measured >= written" never fails on a correct
operator, and a skipped pause (measured 0 or 1) always fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import CRDS, namespace_name, start_plane

from seaway import localplane
from seaway.localplane import api as plane_api
from seaway.localplane import processes
from seaway.planning import children

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="module")
def fault_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[localplane.Plane]:
    plane = start_plane(tmp_path_factory.mktemp("fault-plane"), "seaway-faults")
    try:
        plane.install_crds(CRDS)
        wait_for_custom_storage(plane)
        yield plane
    finally:
        for component in plane.components:  # never leave a frozen process behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(component.pid, signal.SIGCONT)
        plane.stop()


def wait_for_custom_storage(plane: localplane.Plane, timeout: float = 60.0) -> None:
    """Until the new CRDs' storage answers (429 "storage is (re)initializing" before): the
    operator would log that as an outage of its own."""
    deadline = time.monotonic() + timeout
    while plane.kubectl("get", "md,rj", "-A", check=False).returncode != 0:
        assert time.monotonic() < deadline, "the custom resources' storage never answered"
        time.sleep(0.2)


@pytest.fixture
def api(fault_plane: localplane.Plane) -> Iterator[Any]:
    from kubernetes import config as kube_config

    client = kube_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(fault_plane.kubeconfig)
    )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def fault_namespace(request: pytest.FixtureRequest, fault_plane: localplane.Plane) -> str:
    name = namespace_name(request.node.name)
    fault_plane.kubectl("create", "namespace", name)
    fault_plane.wait_for_service_account(name)
    return name


class Faults:
    def __init__(self, plane: localplane.Plane) -> None:
        self.plane = plane

    def pid(self, name: str) -> int:
        return self.plane.component(name).pid

    @contextlib.contextmanager
    def frozen(self, name: str) -> Iterator[None]:
        """``name`` stopped (SIGSTOP) for the block; always resumed."""
        pid = self.pid(name)
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)

    def kill(self, name: str) -> processes.Component:
        """SIGKILL ``name`` and forget it; returns its record (for its flags)."""
        component = self.plane.component(name)
        os.kill(component.pid, signal.SIGKILL)
        handle = self.plane.handles.pop(component.pid, None)
        if handle is not None:
            handle.wait(timeout=30)
        self.plane.components.remove(component)
        return component

    def start_again(self, old: processes.Component, ready: Callable[[], bool]) -> float:
        """Start ``old`` with the same flags; seconds until ``ready()``."""
        began = time.monotonic()
        self.plane.spawn(old.name, list(old.argv))
        deadline = began + 60
        while not ready():
            assert time.monotonic() < deadline, f"{old.name} did not come back within 60s"
            time.sleep(0.1)
        return time.monotonic() - began

    def etcd_ready(self) -> bool:
        try:
            status, text = plane_api.http_get(self.plane.ports.etcd_client, "/health", 1.0)
        except OSError:
            return False
        return status == 200 and '"health":"true"' in text

    def api_ready(self) -> bool:
        try:
            response = self.plane.client(timeout=1.0).request("GET", "/readyz")
        except Exception:  # not up yet, whatever the way
            return False
        return response.status == 200


@pytest.fixture
def faults(fault_plane: localplane.Plane) -> Faults:
    return Faults(fault_plane)


def seaway_command() -> list[str]:
    found = shutil.which("seaway", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "seaway.cli.main"]


@dataclass
class OperatorProcess:
    plane: localplane.Plane
    namespace: str
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        merged = {**self.plane.env(), **self.env, **env}
        with self.log.open("ab") as out:
            proc = subprocess.Popen(
                [*seaway_command(), "operator", "run", "-n", self.namespace, *args],
                env=merged, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def operator_process(
    fault_plane: localplane.Plane, fault_namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    op = OperatorProcess(fault_plane, fault_namespace, tmp_path / "operator.log")
    try:
        yield op
    finally:
        op.stop_all()
        print(f"--- operator output ({op.log}) ---\n{op.output()[-6000:]}")


@dataclass(frozen=True)
class Change:
    weights: dict[int, int]
    #: The API server's time of the write (whole seconds).
    server: datetime
    #: When the watch delivered it here (time.time()), for the report only.
    seen: float


class Weights:
    """Every split a router ConfigMap held, in order, from a watch that resumes after errors."""

    def __init__(self, api: Any, namespace: str, md_name: str) -> None:
        self.api = api
        self.namespace = namespace
        self.name = children.router_name(md_name)
        self.changes: list[Change] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.errors = 0
        #: Watches started anew from a list (after a 410): a change between two could be missed.
        self.relists = 0

    def __enter__(self) -> Weights:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        import json

        from kubernetes import client, watch

        core = client.CoreV1Api(self.api)
        version = ""
        while not self._stop.is_set():
            try:
                stream = watch.Watch().stream(
                    core.list_namespaced_config_map, self.namespace,
                    field_selector=f"metadata.name={self.name}", resource_version=version,
                    timeout_seconds=5, _request_timeout=(3, 8),
                )  # fmt: skip
                for event in stream:
                    body = event["object"]
                    version = body.metadata.resource_version
                    if event["type"] not in ("ADDED", "MODIFIED"):
                        continue
                    document = json.loads((body.data or {}).get(children.ROUTES_KEY, "{}"))
                    weights = {b["revision"]: b["weight"] for b in document.get("backends", [])}
                    if self.changes and self.changes[-1].weights == weights:
                        continue
                    stamp = max(
                        (
                            m.time
                            for m in body.metadata.managed_fields or []
                            if m.manager == "seaway"
                        ),
                        default=body.metadata.creation_timestamp,
                    )
                    self.changes.append(Change(weights, stamp, time.time()))
                    if self._stop.is_set():
                        return
            except Exception as exc:  # the API server is down on purpose: resume
                self.errors += 1
                if getattr(exc, "status", None) == 410:  # restarted: its watch cache is new
                    version = ""
                    self.relists += 1
                time.sleep(0.2)

    def bakes(self, revision: int) -> list[tuple[int, int, float]]:
        """(canary weight, measured seconds from server times, seconds as seen here) per
        weight ``revision`` held as the canary, until the next change."""
        found = []
        for this, after in zip(self.changes, self.changes[1:], strict=False):
            weight = this.weights.get(revision)
            if weight is None:
                continue
            if weight == 100:
                break  # promoted: what it holds later is as the stable revision
            server = after.server.replace(microsecond=0) - this.server.replace(microsecond=0)
            found.append((weight, int(server.total_seconds()), round(after.seen - this.seen, 2)))
        return found
