"""Fixtures of the chart, image and example tests: helm, rendering, and the chart installed.

``helm`` is the binary the control-plane build script builds next to kubectl (pinned v3.22.0);
``$SEAWAY_HELM`` overrides it. Like the plane, a missing helm FAILS the tests when ``CI`` is set
and skips them otherwise.

``release`` (module scope, needs the plane) installs the chart the way a user would — the CI
values file, the cluster-wide default mode — into a namespace labelled Pod Security "restricted",
with a second restricted namespace (``release.models``) where the operator may read Secrets.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from seaway import localplane
from seaway.localplane import config
from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "seaway"
CI_VALUES = CHART / "ci" / "ci-values.yaml"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


T = TypeVar("T")


def eventually(check: Callable[[], T], *, timeout: float = 30.0) -> T:
    """Call ``check`` until it returns a truthy value without raising AssertionError."""
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        try:
            result = check()
        except AssertionError:
            if time.monotonic() >= deadline:
                raise
        else:
            if result:
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(f"not reached within {timeout:.0f}s: {check}")
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)


def find_helm() -> Path | None:
    override = os.environ.get("SEAWAY_HELM")
    if override:
        return Path(override)
    beside = config.bin_dir(os.environ) / "helm"
    if beside.exists():
        return beside
    found = shutil.which("helm")
    return Path(found) if found else None


@pytest.fixture(scope="session")
def helm() -> Path:
    path = find_helm()
    if path is None or not path.exists():
        unavailable(
            "helm not found: `make control-plane` builds it next to kubectl "
            f"({config.bin_dir(os.environ)}), or set SEAWAY_HELM"
        )
    return path


def run(argv: Sequence[str | Path], *, check: bool = True, timeout: float = 120.0,
        env: dict[str, str] | None = None, input: str | None = None,
        ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    result = subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        input=input,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(str(a) for a in argv[:3])} failed ({result.returncode}):\n"
            f"{result.stderr}{result.stdout[-2000:]}"
        )
    return result


def render(helm: Path, *args: str, namespace: str = "seaway-system") -> list[dict[str, Any]]:
    """``helm template seaway charts/seaway ARGS``, parsed into objects."""
    out = run([helm, "template", "seaway", CHART, "--namespace", namespace, *args]).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def kinds(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


@dataclass
class Release:
    name: str
    namespace: str  # where the chart (the operator's Deployment and ServiceAccount) lives
    models: str  # a restricted namespace where the operator may get Secrets
    service_account: str
    plane: localplane.Plane
    helm: Path

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.plane.kubectl(*args, check=check)

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def create_namespace(plane: localplane.Plane, name: str, labels: dict[str, str]) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))
    plane.wait_for_service_account(name)


@pytest.fixture(scope="module")
def release(helm: Path, control_plane: localplane.Plane) -> Iterator[Release]:
    suffix = secrets.token_hex(3)
    namespace, models = f"seaway-system-{suffix}", f"seaway-models-{suffix}"
    for name in (namespace, models):
        create_namespace(control_plane, name, {**RESTRICTED, "seaway.dev/test": "1"})
    env = control_plane.env(dict(os.environ))
    name = f"seaway-{suffix}"
    run(
        [
            helm, "install", name, CHART, "--namespace", namespace, "--kubeconfig",
            control_plane.kubeconfig, "-f", CI_VALUES,
            "--set", f"rbac.secretReadNamespaces={{{models}}}",
            # The plane has no monitoring.coreos.com CRDs; test_render checks the ServiceMonitor.
            "--set", "serviceMonitor.enabled=false",
            # The session's plane may hold Seaway's CRDs already (the seaway_crds fixture):
            # adopt them, as a user moving from `seaway crds | kubectl apply` to the chart would.
            "--take-ownership", "--wait=false", "--timeout", "60s",
        ],
        env=env, timeout=180,
    )  # fmt: skip
    try:
        yield Release(name, namespace, models, name, control_plane, helm)
    finally:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            run([helm, "uninstall", name, "--namespace", namespace, "--kubeconfig",
                 control_plane.kubeconfig, "--wait=false"], env=env, timeout=120)  # fmt: skip
        for ns in (namespace, models):
            control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)
