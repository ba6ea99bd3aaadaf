"""End-to-end helpers: the operator as a process on the real cluster, bundles, models.

The end-to-end tests share the session's real cluster (``real_cluster``), run ``seaway operator
run`` against it for the module (:func:`e2e`), and publish bundles on an HTTP store bound to the
node's bridge gateway, the host address Pods reach. Addresses dialled: the gateway, Pod IPs and
ClusterIPs of the real node, and loopback; never a simulated node's.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kubernetes import client, config
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.tree import DecisionTreeClassifier

from seaway.handlers.modeldeployment import Settings
from seaway.localplane import nodeconfig
from seaway.planning import children
from seaway_serving import bundle
from tests.realnode.traffic import BundleStore

Status = dict[str, Any]


@dataclass
class Models:
    """Two different classifiers on one data set, their bundles, and their predictions."""

    rows: np.ndarray
    fitted: dict[str, Any]
    train_rows: np.ndarray
    dirs: dict[str, Path] = field(default_factory=dict)
    _predictions: dict[str, list[Any]] = field(default_factory=dict)

    @classmethod
    def make(cls) -> Models:
        x, y = load_breast_cancer(return_X_y=True)
        x_tr, x_te, y_tr, _ = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
        fitted = {"logreg": LogisticRegression(max_iter=10000, random_state=0).fit(x_tr, y_tr),
                  "tree": DecisionTreeClassifier(max_depth=2, random_state=0).fit(x_tr, y_tr)}
        return cls(rows=x_te[:100], fitted=fitted, train_rows=x_tr)

    def bundle(self, name: str) -> Path:
        if name not in self.dirs:
            import tempfile

            out = Path(tempfile.mkdtemp(prefix=f"e2e-{name}-")) / name
            bundle.create_from_estimator(self.fitted[name], out, name=name,
                                         data=self.train_rows)
            self.dirs[name] = out
        return self.dirs[name]

    def predict(self, name: str, row: int) -> Any:
        if name not in self._predictions:
            self._predictions[name] = self.fitted[name].predict(self.rows).tolist()
        return self._predictions[name][row]


class E2E:
    """The test's side of the real cluster: apply and read as a user, follow status closely."""

    SERVER_IMAGE = Settings().router_image

    def __init__(self, kubectl: Callable[..., subprocess.CompletedProcess[str]], api: Any,
                 store: BundleStore) -> None:
        self._kubectl = kubectl
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.store = store
        self.namespaces: list[str] = []

    def kubectl(self, *args: str, input: str | None = None) -> str:
        result = self._kubectl(*args, input=input)
        return str(result.stdout)

    def namespace(self, prefix: str) -> str:
        name = f"e2e-{prefix}-{int(time.time() * 1000) % 100000}"
        self.kubectl("create", "namespace", name)
        self.namespaces.append(name)
        return name

    def apply(self, ns: str, body: dict[str, Any]) -> None:
        self.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(body))

    def patch(self, ns: str, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object("seaway.dev", "v1alpha1", ns,
                                                   "modeldeployments", name, {"spec": spec})

    def status(self, ns: str, name: str) -> Status:
        body = self.custom.get_namespaced_custom_object("seaway.dev", "v1alpha1", ns,
                                                        "modeldeployments", name)
        return dict(body.get("status") or {})

    @staticmethod
    def condition(status: Status, type_: str) -> str | None:
        return next((c["status"] for c in status.get("conditions", []) if c["type"] == type_),
                    None)

    def wait(self, ns: str, name: str, done: Callable[[Status], bool], *, timeout: float,
             what: str) -> Status:
        deadline = time.monotonic() + timeout
        status: Status = {}
        while time.monotonic() < deadline:
            status = self.status(ns, name)
            if done(status):
                return status
            time.sleep(0.25)
        events = self.kubectl("get", "events", "-n", ns, "--sort-by=.lastTimestamp")
        raise AssertionError(f"{what}: not within {timeout:.0f}s; status {json.dumps(status)}"
                             f"\nevents:\n{events[-3000:]}")

    def follow(self, ns: str, name: str, *, until: Callable[[Status], bool],
               timeout: float) -> list[tuple[float, Status]]:
        """Status read every 0.2 s, with the monotonic time of each read, until ``until``."""
        timeline: list[tuple[float, Status]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status(ns, name)
            timeline.append((time.monotonic(), status))
            if until(status):
                return timeline
            time.sleep(0.2)
        raise AssertionError(f"rollout of {ns}/{name} did not finish in {timeout:.0f}s: "
                             f"{json.dumps(timeline[-1][1])}")

    @staticmethod
    def weight_windows(timeline: list[tuple[float, Status]], *, canary: int,
                       settle: float) -> list[tuple[int, float, float]]:
        """(canary weight, start, end) for each stretch of one weight in status.

        A stretch starts ``settle`` seconds after status first showed the weight (the router
        picks its routes up from a watch) and ends when status shows the next one.
        """
        windows: list[tuple[int, float, float]] = []
        current: int | None = None
        began = 0.0
        for at, status in timeline:
            weights = {w["revision"]: w["weight"] for w in status.get("weights", [])}
            weight = weights.get(canary, 0)
            if weight != current:
                if current is not None:
                    windows.append((current, began + settle, at))
                current, began = weight, at
        if current is not None:
            windows.append((current, began + settle, timeline[-1][0]))
        return windows

    def router_address(self, ns: str, name: str, timeout: float = 120.0) -> tuple[str, int]:
        """The router Service's ClusterIP and port, once a router pod is ready behind it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pods = self.core.list_namespaced_pod(
                ns, label_selector=f"{children.MD_LABEL}={name},"
                                   f"{children.COMPONENT_LABEL}=router").items
            ready = [p for p in pods if any(c.type == "Ready" and c.status == "True"
                                            for c in (p.status.conditions or []))]
            if ready:
                service = self.core.read_namespaced_service(name, ns)
                address = (service.spec.cluster_ip, children.SERVICE_PORT)
                if self._answers(*address):  # kube-proxy has the endpoint's rules too
                    return address
            time.sleep(0.5)
        raise AssertionError(f"no ready router for {ns}/{name} in {timeout:.0f}s")

    @staticmethod
    def _answers(host: str, port: int) -> bool:
        try:
            conn = http.client.HTTPConnection(host, port, timeout=2)
            conn.request("GET", "/readyz")
            status = conn.getresponse().status
            conn.close()
        except OSError:
            return False
        return status == 200

    def termination_messages(self, ns: str, name: str, revision: int) -> list[str]:
        pods = self.core.list_namespaced_pod(
            ns, label_selector=f"{children.MD_LABEL}={name},{children.REVISION_LABEL}={revision}"
        ).items
        messages = []
        for pod in pods:
            for cs in pod.status.container_statuses or []:
                for state in (cs.state, cs.last_state):
                    if state is not None and state.terminated is not None:
                        messages.append(state.terminated.message or "")
        return [m for m in messages if m]

    @staticmethod
    def timestamp(text: str) -> float:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def models() -> Models:
    return Models.make()


@pytest.fixture(scope="module")
def e2e(real_cluster: Any, tmp_path_factory: pytest.TempPathFactory,
        request: pytest.FixtureRequest) -> Iterator[E2E]:
    """The session's real cluster with ``seaway operator run`` started for this module (with
    the module's ``OPERATOR_ARGS``, e.g. an allowed Prometheus host)."""
    logs = tmp_path_factory.mktemp("e2e")
    env = dict(real_cluster.env)
    env["KUBECONFIG"] = str(real_cluster.kubeconfig)
    log = (logs / "operator.log").open("wb")
    args = list(getattr(request.module, "OPERATOR_ARGS", ()))
    operator = subprocess.Popen([sys.executable, "-m", "seaway.cli.main", "operator", "run",
                                 *args], env=env, stdout=log, stderr=subprocess.STDOUT)
    api = config.new_client_from_config(str(real_cluster.kubeconfig))
    store = BundleStore(logs / "bundles", nodeconfig.GATEWAY)
    harness = E2E(real_cluster.kubectl, api, store)
    try:
        yield harness
    finally:
        store.close()
        operator.send_signal(signal.SIGTERM)
        try:
            operator.wait(timeout=30)
        except subprocess.TimeoutExpired:
            operator.kill()
            operator.wait(timeout=10)
        log.close()
        for ns in harness.namespaces:
            real_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        if os.environ.get("SEAWAY_E2E_KEEP_LOGS"):
            print(f"operator log: {logs / 'operator.log'}")
