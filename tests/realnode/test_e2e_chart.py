"""The chart for real: ``helm install`` runs the operator in a Pod on the real node.

The operator here is the chart's: the locally built image (``make images``, imported into the
node's containerd by ``cluster up``), its ServiceAccount and least-privilege RBAC, in-cluster
configuration, in a namespace that enforces Pod Security "restricted". No ``seaway operator run``
process may run beside it (two writers), so this module builds its harness without the host
operator of :func:`tests.realnode.e2e.e2e` and checks that none of another module is left.

The installed operator then carries a canary and a revert through under live traffic (zero failed
requests), and ``helm uninstall`` keeps the CRDs and the ModelDeployments (docs/install.md).
Figures are printed: time from ``helm install`` to a Ready operator Pod, the canary's and the
revert's durations.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import config

from seaway.localplane import nodeconfig
from tests.realnode.e2e import E2E, Models, models
from tests.realnode.test_e2e_live_traffic import TOLERANCE, check_answers, md
from tests.realnode.traffic import BundleStore, Traffic
from tests.support import polling

CHART = Path(__file__).resolve().parents[2] / "charts" / "seaway"
RELEASE = "seaway"
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted",
              "pod-security.kubernetes.io/enforce-version": "latest"}


def host_operators(kubeconfig: Path) -> list[int]:
    """Pids of ``seaway operator run`` processes on this host that drive this cluster."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if b"seaway.cli.main" not in argv or b"operator" not in argv:
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"KUBECONFIG={kubeconfig}".encode() in environ:
            found.append(int(entry.name))
    return found


class Helm:
    """The helm binary of the control plane's toolset, with its state in a temporary home."""

    def __init__(self, real_cluster: Any, home: Path) -> None:
        self.binary = Path(real_cluster.env["SEAWAY_CONTROL_PLANE_BIN"]) / "helm"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
        self.env.update(KUBECONFIG=str(real_cluster.kubeconfig),
                        HELM_CACHE_HOME=str(home / "cache"),
                        HELM_CONFIG_HOME=str(home / "config"),
                        HELM_DATA_HOME=str(home / "data"))

        self.installed: list[str] = []  # namespaces of releases still installed

    def __call__(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        result = subprocess.run([str(self.binary), *args], env=self.env, capture_output=True,
                                text=True, timeout=timeout, check=False)
        assert not check or result.returncode == 0, (
            f"helm {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def install(self, namespace: str) -> None:
        self.installed.append(namespace)
        self("install", RELEASE, str(CHART), "--namespace", namespace, "--take-ownership")

    def uninstall(self, namespace: str, *, check: bool = True) -> None:
        self("uninstall", RELEASE, "--namespace", namespace, "--wait", check=check)
        self.installed.remove(namespace)


@pytest.fixture(scope="module")
def plane(real_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    """The harness of :mod:`tests.realnode.e2e` without a host operator: the chart brings one."""
    assert not host_operators(real_cluster.kubeconfig), "a host operator still drives the node"
    work = tmp_path_factory.mktemp("chart")
    api = config.new_client_from_config(str(real_cluster.kubeconfig))
    store = BundleStore(work / "bundles", nodeconfig.GATEWAY)
    harness = E2E(real_cluster.kubectl, api, store)
    try:
        yield harness
    finally:
        store.close()
        for ns in harness.namespaces:
            real_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture
def helm(real_cluster: Any, tmp_path: Path) -> Iterator[Helm]:
    """helm for one test; a release a failed test left is uninstalled, so the next module's
    host operator is never a second writer beside the chart's."""
    tool = Helm(real_cluster, tmp_path / "helm")
    try:
        yield tool
    finally:
        for namespace in list(tool.installed):
            tool.uninstall(namespace, check=False)


def restricted_namespace(plane: E2E, real_cluster: Any, prefix: str) -> str:
    """A namespace enforcing "restricted", checked: a Pod without a securityContext is refused."""
    ns = plane.namespace(prefix)
    plane.kubectl("label", "namespace", ns, *(f"{k}={v}" for k, v in RESTRICTED.items()))

    def enforced() -> None:  # admission reads the label from the API server's cache
        refused = real_cluster.kubectl("run", "plain", "-n", ns, f"--image={E2E.SERVER_IMAGE}",
                                       "--dry-run=server", check=False)
        assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr, (
            refused.stderr)

    polling.eventually(enforced, timeout=10, what=f"Pod Security restricted in force in {ns}")
    return ns


def operator_ready(plane: E2E, ns: str) -> dict[str, Any] | None:
    """The operator Pod of the release once it is Ready, else None."""
    pods = plane.core.list_namespaced_pod(
        ns, label_selector="app.kubernetes.io/component=operator").items
    for pod in pods:
        if any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []):
            return {"name": pod.metadata.name, "sa": pod.spec.service_account_name,
                    "image": pod.spec.containers[0].image}
    return None


def test_chart_operator_carries_a_canary_and_a_revert(plane: E2E, models: Models, helm: Helm,
                                                      real_cluster: Any) -> None:
    system = restricted_namespace(plane, real_cluster, "chart-system")
    ns = restricted_namespace(plane, real_cluster, "chart-app")

    # -- install: the chart's operator in a restricted namespace, CRDs adopted ----------------
    t_install = time.monotonic()
    helm.install(system)
    deadline = time.monotonic() + 180
    ready = None
    while ready is None:
        assert time.monotonic() < deadline, plane.kubectl(
            "get", "pods,events", "-n", system, "-o", "wide")
        time.sleep(0.5)
        ready = operator_ready(plane, system)
    t_ready = time.monotonic() - t_install
    print(f"\n[chart] helm install to operator Ready (answering /healthz): {t_ready:.1f}s "
          f"({ready['name']}, serviceAccount {ready['sa']}, image {ready['image']})")
    assert ready["sa"] == RELEASE
    assert ready["image"] == "ghcr.io/seaway-dev/seaway-operator:0.1.0"
    pod = plane.core.read_namespaced_pod(ready["name"], system)
    env = {e.name for e in pod.spec.containers[0].env or []}
    assert "KUBECONFIG" not in env  # in-cluster configuration, from the ServiceAccount's token

    # -- a canary under live traffic, carried by the chart's operator -------------------------
    uri1, digest1 = plane.store.publish(models.bundle("logreg"), "chart-r1")
    uri2, digest2 = plane.store.publish(models.bundle("tree"), "chart-r2")
    # the pause leaves room for the router to follow its ConfigMap on a busy node (settle 3 s)
    steps = [{"setWeight": 30}, {"pause": {"duration": "10s"}}]
    t_apply = time.monotonic()
    plane.apply(ns, md("churn", uri1, digest1, steps=steps, deadline=30))
    plane.wait(ns, "churn", lambda s: s.get("stableRevision") == 1
               and plane.condition(s, "Ready") == "True", timeout=180, what="r1 serving")
    traffic = Traffic(*plane.router_address(ns, "churn"), model="churn", rows=models.rows,
                      rate=40.0).start()
    try:
        first = traffic.wait_for(1, timeout=60)
        print(f"[chart] apply to first answer: {first[0].at - t_apply:.1f}s")
        t_canary = time.monotonic()
        plane.patch(ns, "churn", md("churn", uri2, digest2, steps=steps, deadline=30)["spec"])
        timeline = plane.follow(ns, "churn", until=lambda s: s.get("stableRevision") == 2
                                and not s.get("canaryRevision"), timeout=240)
        canary_s = time.monotonic() - t_canary
        windows = plane.weight_windows(timeline, canary=2, settle=3.0)
        split = [w for w in windows if w[0] == 30]
        assert split, windows
        _, start, end = split[0]
        answers = [a for a in traffic.snapshot() if start <= a.at < end and a.status == 200]
        share = Traffic.shares(answers).get(2, 0.0)
        print(f"[chart] canary r1 -> r2 promoted in {canary_s:.1f}s; at weight 30% "
              f"observed {share:.1f}% on r2 over {len(answers)} answers")
        assert len(answers) >= 40 and abs(share - 30) <= TOLERANCE, (share, len(answers))

        # -- a broken revision 3 (r1's bytes under r2's digest) reverted to r2 ---------------
        uri3, _ = plane.store.publish(models.bundle("logreg"), "chart-r3")
        t_revert = time.monotonic()
        plane.patch(ns, "churn", md("churn", uri3, digest2, steps=steps, deadline=20)["spec"])
        status = plane.wait(ns, "churn", lambda s: any(
            r["number"] == 3 and r["fate"] in ("Failed", "RolledBack")
            for r in s.get("revisions", [])), timeout=120, what="r3 taken out")
        revert_s = time.monotonic() - t_revert
        reverted_at = time.monotonic()
        time.sleep(2.0)
    finally:
        traffic.stop()
    r3 = next(r for r in status["revisions"] if r["number"] == 3)
    print(f"[chart] broken r3 {r3['fate']} ({r3.get('reason')}) {revert_s:.1f}s after the edit "
          f"(deadline 20s)")
    assert r3["reason"] == "ProgressDeadlineExceeded", r3
    assert {w["revision"]: w["weight"] for w in status["weights"]} == {2: 100}
    total = check_answers(traffic, models, {1: "logreg", 2: "tree"})
    failed = traffic.failures()
    after = [a for a in traffic.snapshot() if a.at >= reverted_at]
    print(f"[chart] {total} answers, {len(failed)} failed; {len(after)} after the revert")
    assert not failed, failed[:5]
    assert after and Traffic.shares(after) == {2: 100.0}

    # -- uninstall: the operator goes, the CRDs and the ModelDeployments stay ----------------
    helm.uninstall(system)
    deadline = time.monotonic() + 60
    while plane.core.list_namespaced_pod(
            system, label_selector="app.kubernetes.io/component=operator").items:
        assert time.monotonic() < deadline, "the operator Pod outlived helm uninstall"
        time.sleep(0.5)
    crds = json.loads(plane.kubectl("get", "crd", "-o", "json"))["items"]
    names = {c["metadata"]["name"] for c in crds}
    assert {"modeldeployments.seaway.dev", "retrainjobs.seaway.dev",
            "scoringjobs.seaway.dev"} <= names, names
    kept = plane.status(ns, "churn")
    assert kept.get("stableRevision") == 2
    print("[chart] helm uninstall kept the CRDs and ModelDeployment churn (stable r2)")


__all__ = ["models"]
