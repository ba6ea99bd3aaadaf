"""Tests against a real node: Pods run in containers on this host (``cluster up --real-node``).

Every test here is marked ``real_node`` (and ``cluster``: a control plane runs too). They share
ONE cluster for the session (the node takes seconds to come up and its images as long to
import), started with the command a user runs, in a temporary cache directory, and stopped with
``seaway cluster down`` by the last test (:data:`LAST`, ordered last whatever modules are here),
which then checks the host item by item against what it was before ``up``.

Only one real node can run on a host, so sessions on the same host queue on a lock file
(:data:`QUEUE`) before starting theirs. When the node cannot come up (not root, ``make node`` or
``make images`` not run, another real node running), the tests FAIL with the reason if ``CI`` is
set and are skipped with it otherwise.

Addresses: the tests dial Pod IPs (``10.88.0.0/16``) and ClusterIPs, which exist on this host
(the node's bridge and kube-proxy's rules), never a simulated node's addresses
(docs/localplane.md, network rule).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest

from seaway.localplane import config, nodeconfig
from tests.realnode.hostview import HostView
from tests.support import polling

HERE = Path(__file__).resolve().parent
#: Test sessions on one host wait here for their turn at the one real node.
QUEUE = Path("/run/seaway-real-node-tests.lock")
QUEUE_TIMEOUT = 1800.0
NAME = "rn-test"
T = TypeVar("T")


#: Runs first: it needs the host without a real node (each test there starts its own or none).
FIRST = "test_failed_start.py"
#: Runs last: it stops the session's cluster and compares the host with what it was before.
LAST = "test_down_leaves_the_host_as_it_was"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark this directory's tests, and order them: :data:`FIRST`'s module, the rest in file
    order, then :data:`LAST` (whatever other modules the directory holds)."""
    mine = [i for i, item in enumerate(items) if HERE in Path(str(item.path)).resolve().parents]
    for index in mine:
        items[index].add_marker(pytest.mark.real_node)
        items[index].add_marker(pytest.mark.cluster)  # it runs a control plane too

    def rank(item: pytest.Item) -> int:
        if Path(str(item.path)).name == FIRST:
            return 0
        return 2 if item.name == LAST else 1

    ordered = sorted((items[i] for i in mine), key=rank)
    for index, item in zip(mine, ordered, strict=True):
        items[index] = item


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"a real node is required when CI is set: {reason}", pytrace=False)
    pytest.skip(f"a real node is unavailable: {reason}")


@dataclass
class RealCluster:
    """The session's cluster, driven through the ``seaway`` and ``kubectl`` commands."""

    env: dict[str, str]
    run_dir: Path
    node_dir: Path
    before: HostView
    up_output: str = ""
    up_seconds: float = 0.0
    down_output: str = ""
    is_down: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.run_dir / "kubeconfig"

    @property
    def kubectl_binary(self) -> Path:
        return Path(self.env["SEAWAY_CONTROL_PLANE_BIN"]) / "kubectl"

    def seaway(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "seaway.cli.main", *args],
            env=self.env, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.kubectl_binary), f"--kubeconfig={self.kubeconfig}", *args],
            input=input, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def apply(self, *objects: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                          "items": list(objects)}))  # fmt: skip

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        out = self.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout
        return json.loads(out)  # type: ignore[no-any-return]

    def down(self) -> subprocess.CompletedProcess[str]:
        result = self.seaway("cluster", "down", "--name", NAME)
        self.is_down = True
        self.down_output = result.stderr
        return result


@contextlib.contextmanager
def _queue() -> Iterator[None]:
    """Wait (up to half an hour) for other test sessions' real nodes on this host."""
    QUEUE.parent.mkdir(parents=True, exist_ok=True)
    with QUEUE.open("a") as handle:
        deadline = time.monotonic() + QUEUE_TIMEOUT
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    unavailable(f"waited {QUEUE_TIMEOUT:.0f}s for another test session's node")
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def host_turn() -> Iterator[None]:
    """This session's turn at the host's one real node (held until the session ends)."""
    if os.geteuid() != 0:
        unavailable("not root")
    with _queue():
        yield


def cli_env(cache: Path, node_dir: Path | None = None) -> dict[str, str]:
    """The environment of a ``seaway`` command with its own cache directory."""
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["SEAWAY_CONTROL_PLANE_BIN"] = str(config.bin_dir(os.environ))
    env["SEAWAY_NODE_DIR"] = str(node_dir or nodeconfig.node_dir(os.environ))
    env["XDG_CACHE_HOME"] = str(cache)
    return env


@pytest.fixture(scope="session")
def real_cluster(
    tmp_path_factory: pytest.TempPathFactory, host_turn: None
) -> Iterator[RealCluster]:
    env = cli_env(tmp_path_factory.mktemp("rn"))
    run_dir = config.cluster_dir(NAME, env)
    before = HostView.capture(run_dir, Path(env["SEAWAY_NODE_DIR"]))
    cluster = RealCluster(env, run_dir, Path(env["SEAWAY_NODE_DIR"]), before)
    began = time.monotonic()
    up = cluster.seaway("cluster", "up", "--real-node", "--name", NAME, "--no-operator")
    cluster.up_seconds = time.monotonic() - began
    cluster.up_output = up.stderr
    if up.returncode != 0:
        errors = [line for line in up.stderr.splitlines() if line.startswith("Error:")]
        unavailable("; ".join(errors) or up.stderr[-2000:])
    try:
        yield cluster
    finally:
        if not cluster.is_down:
            cluster.down()


def _eventually(check: Callable[[], T], *, timeout: float = 60.0, what: str = "") -> T:
    return polling.eventually(check, timeout=timeout, what=what, max_delay=1.0)


@pytest.fixture
def eventually() -> Callable[..., Any]:
    return _eventually
