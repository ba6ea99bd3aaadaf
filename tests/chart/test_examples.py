"""Every manifest under examples/ is accepted by the real API server (server-side dry-run).

The Seaway examples go through the generated CRDs' schema and CEL rules; the GitOps folder goes
through kustomize (kubectl's) first, exactly as Argo CD and Flux would build it. The Argo CD and
Flux objects themselves are checked for their shape and the folder they point at: their CRDs are
not installed on the local plane.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from seaway import localplane
from tests.chart.conftest import ROOT

EXAMPLES = ROOT / "examples"
GITOPS = EXAMPLES / "gitops"
PLAIN = sorted(EXAMPLES.glob("*.yaml"))
APPS = sorted(p.parent for p in GITOPS.glob("apps/*/kustomization.yaml"))


def dry_run(plane: localplane.Plane, namespace: str, text: str) -> str:
    result = plane.kubectl(
        "apply", "--server-side", "--dry-run=server", "--field-manager=seaway-examples",
        "--namespace", namespace, "-f", "-", input=text,
    )  # fmt: skip
    return result.stdout


@pytest.mark.parametrize("path", PLAIN, ids=[p.stem for p in PLAIN])
def test_example_is_accepted_by_the_api_server(
    path: Path, control_plane: localplane.Plane, seaway_crds: list[str], namespace: str
) -> None:
    out = dry_run(control_plane, namespace, path.read_text())
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert out.count("serverside-applied (server dry run)") == len(documents), out


def test_gitops_folder_builds_and_is_accepted(
    control_plane: localplane.Plane, seaway_crds: list[str], namespace: str
) -> None:
    assert APPS, "examples/gitops/apps/<app>/kustomization.yaml"
    for app in APPS:
        built = control_plane.kubectl("kustomize", str(app)).stdout
        objects = [d for d in yaml.safe_load_all(built) if d]
        kinds = sorted(o["kind"] for o in objects)
        assert "ModelDeployment" in kinds and "Namespace" in kinds, kinds
        # The folder's own namespace may exist already (make demo); dry-run into this test's.
        workload = []
        for obj in objects:
            if obj["kind"] == "Namespace":
                labels = obj["metadata"].get("labels", {})
                assert labels.get("pod-security.kubernetes.io/enforce") == "restricted"
                continue
            obj["metadata"]["namespace"] = namespace
            workload.append(obj)
        out = dry_run(control_plane, namespace, yaml.safe_dump_all(workload))
        assert out.count("serverside-applied (server dry run)") == len(workload), out


def load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((GITOPS / name).read_text()) if d]


def test_argocd_application_points_at_the_folder() -> None:
    (app,) = load("argocd-application.yaml")
    assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
    source = app["spec"]["source"]
    assert (ROOT / source["path"] / "kustomization.yaml").exists()
    assert source["repoURL"] and source["targetRevision"]
    assert app["spec"]["destination"]["server"] and app["spec"]["project"]
    assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]


def test_flux_kustomization_points_at_the_folder() -> None:
    source, kustomization = load("flux-kustomization.yaml")
    assert (source["apiVersion"], source["kind"]) == (
        "source.toolkit.fluxcd.io/v1",
        "GitRepository",
    )
    assert (kustomization["apiVersion"], kustomization["kind"]) == (
        "kustomize.toolkit.fluxcd.io/v1",
        "Kustomization",
    )
    spec = kustomization["spec"]
    assert spec["sourceRef"] == {"kind": "GitRepository", "name": source["metadata"]["name"]}
    assert kustomization["metadata"]["namespace"] == source["metadata"]["namespace"]
    assert (ROOT / spec["path"] / "kustomization.yaml").exists()
    assert spec["interval"] and spec["prune"] is True
