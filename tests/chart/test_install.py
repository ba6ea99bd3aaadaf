"""The chart on the real API server: dry-run, install, the ServiceAccount's permissions, and the
operator running with exactly those permissions (a TokenRequest token, never cluster admin).

The tests of this module share one release (the ``release`` fixture) and run in file order; the
last one uninstalls it and checks what an uninstall keeps.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from seaway import localplane
from tests.chart.conftest import (
    CHART,
    CI_VALUES,
    Release,
    create_namespace,
    eventually,
    render,
    run,
)
from tests.integration.mdtools import User, md_body

DRY_RUN = "serverside-applied (server dry run)"


# -- before installing ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["default", "ci", "namespaced"])
def test_rendered_manifests_pass_server_side_dry_run(
    mode: str, helm: Path, control_plane: localplane.Plane, seaway_crds: list[str]
) -> None:
    suffix = secrets.token_hex(3)
    release_ns, a, b = f"dry-{suffix}", f"dry-a-{suffix}", f"dry-b-{suffix}"
    for name in (release_ns, a, b):
        create_namespace(control_plane, name, {"seaway.dev/test": "1"})
    args = {
        "default": [],
        "ci": ["-f", str(CI_VALUES), "--set", f"rbac.secretReadNamespaces={{{a}}}"],
        "namespaced": ["--set", f"watchNamespaces={{{a},{b}}}"],
    }[mode]
    try:
        objects = render(helm, *args, namespace=release_ns)
        # No monitoring.coreos.com CRDs on the plane; test_render checks the ServiceMonitor.
        applied = [o for o in objects if o["kind"] != "ServiceMonitor"]
        out = control_plane.kubectl(
            "apply", "--server-side", "--dry-run=server", "--force-conflicts",
            "--field-manager=seaway-chart-test", "-f", "-", input=yaml.safe_dump_all(applied),
        ).stdout  # fmt: skip
        assert out.count(DRY_RUN) == len(applied), out
    finally:
        for name in (release_ns, a, b):
            control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


# -- installed -------------------------------------------------------------------------------


def pods(plane: localplane.Plane, namespace: str, selector: str) -> list[dict[str, Any]]:
    out = plane.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "yaml").stdout
    items: list[dict[str, Any]] = yaml.safe_load(out)["items"]
    return items


def test_install_succeeds_and_the_operator_pod_is_admitted_as_restricted(
    release: Release,
) -> None:
    status = run(
        [release.helm, "status", release.name, "-n", release.namespace, "--kubeconfig",
         release.plane.kubeconfig],
    ).stdout  # fmt: skip
    assert "STATUS: deployed" in status
    assert "get md -w" in status, "NOTES tell the user what to do next"
    # The namespace enforces "restricted": a non-compliant Pod would never be created.
    running = eventually(
        lambda: pods(release.plane, release.namespace, "app.kubernetes.io/component=operator"),
        timeout=60,
    )
    assert running[0]["spec"]["serviceAccountName"] == release.service_account


def can_i(release: Release, *args: str) -> str:
    result = release.kubectl("auth", "can-i", *args, f"--as={release.user}", check=False)
    return result.stdout.strip()


def rules_table(release: Release, namespace: str) -> dict[str, list[str]]:
    """``kubectl auth can-i --list`` as {resource: verbs} (non-resource URLs left out)."""
    out = release.kubectl("auth", "can-i", "--list", f"--as={release.user}", "-n", namespace)
    table: dict[str, list[str]] = {}
    for line in out.stdout.splitlines()[1:]:
        if not line.strip() or line.startswith(" "):
            continue  # a non-resource URL row has no resource
        resource = line.split()[0]
        verbs = line[line.rindex("[") + 1 : line.rindex("]")].split()
        table.setdefault(resource, []).extend(verbs)
    return table


def test_service_account_has_least_privilege(release: Release) -> None:
    for namespace in (release.models, "default", release.namespace):
        table = rules_table(release, namespace)
        assert table, "can-i --list showed nothing"
        for resource, verbs in table.items():
            assert "*" not in resource and "*" not in verbs, f"{resource}: {verbs}"
            assert not {"escalate", "bind", "impersonate"} & set(verbs), f"{resource}: {verbs}"
        assert table.get("secrets") == (["get"] if namespace == release.models else None), table
    assert table["modeldeployments.seaway.dev"] == ["get", "list", "watch"]
    # Nothing cluster-wide on Secrets; get only where granted.
    assert can_i(release, "list", "secrets", "--all-namespaces") == "no"
    assert can_i(release, "watch", "secrets", "--all-namespaces") == "no"
    assert can_i(release, "get", "secrets", "--all-namespaces") == "no"
    assert can_i(release, "get", "secrets", "-n", "default") == "no"
    assert can_i(release, "get", "secrets", "-n", release.models) == "yes"
    assert can_i(release, "list", "secrets", "-n", release.models) == "no"
    # Never the spec of a user's object, nor anything that grants more.
    assert can_i(release, "patch", "modeldeployments.seaway.dev", "-A") == "no"
    assert can_i(release, "update", "modeldeployments.seaway.dev", "-A") == "no"
    assert can_i(release, "create", "clusterrolebindings") == "no"
    assert can_i(release, "impersonate", "users") == "no"
    assert can_i(release, "create", "pods", "-A") == "no"


# -- the operator with the chart's ServiceAccount ------------------------------------------------


def service_account_kubeconfig(release: Release, path: Path) -> Path:
    """A kubeconfig holding a TokenRequest token of the chart's ServiceAccount (no admin cert)."""
    token = release.kubectl(
        "create", "token", release.service_account, "-n", release.namespace, "--duration=1h"
    ).stdout.strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "plane",
                "cluster": {
                    "server": release.plane.api_server,
                    "certificate-authority": str(release.plane.layout.ca_cert()),
                },
            }
        ],
        "users": [{"name": "seaway-operator", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "plane", "user": "seaway-operator"}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def operator_as_service_account(
    release: Release, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """``seaway operator run`` (all namespaces, like the chart's Deployment) as the chart's
    ServiceAccount; yields its log file."""
    work = tmp_path_factory.mktemp("operator-sa")
    kubeconfig = service_account_kubeconfig(release, work / "kubeconfig")
    whoami = run([release.plane.bins["kubectl"], f"--kubeconfig={kubeconfig}", "auth", "whoami",
                  "-o", "jsonpath={.status.userInfo.username}"]).stdout  # fmt: skip
    assert whoami == release.user
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAWAY_FAULT")}
    env["KUBECONFIG"] = str(kubeconfig)
    log = work / "operator.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "seaway.cli.main", "operator", "run", "--workers", "4"],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    try:
        eventually(lambda: "Started the Seaway operator" in log.read_text(), timeout=60)
        yield log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def refused(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if "forbidden" in line.lower()]


def test_operator_with_the_service_account_promotes_and_reverts_in_a_restricted_namespace(
    release: Release, operator_as_service_account: Path, kube_api: client.ApiClient
) -> None:
    """Every verb of the operator's role is used here: Secret get, status updates, Deployments,
    Services, the router ConfigMap, HPAs (autoscaling), Events, and deletes (history pruning)."""
    user = User(kube_api, release.models)  # the user's side: admin, as a person with kubectl
    user.core.create_namespaced_secret(
        release.models, {"metadata": {"name": "model-store"}, "stringData": {"key": "value"}}
    )
    body = md_body("churn", 1, revisionHistoryLimit=2)
    body["spec"]["model"]["secretRef"] = {"name": "model-store"}
    # replicas 1 = minReplicas: the rollout waits for spec.server.replicas ready pods even when
    # an HPA owns the count (and HPAs get no metrics on the local plane).
    body["spec"]["server"]["replicas"] = 1
    body["spec"]["server"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": 3}
    user.create(body)

    def stable(number: int) -> dict[str, Any]:
        status = user.status("churn")
        assert status.get("stableRevision") == number, status.get("conditions")
        assert status.get("canaryRevision") is None
        return status

    eventually(lambda: stable(1), timeout=60)
    user.patch_spec("churn", {"model": {"uri": "s3://models/churn/v2/model.joblib",
                                        "digest": "sha256:" + "2" * 64}})  # fmt: skip
    status = eventually(lambda: stable(2), timeout=90)
    assert {r["number"]: r.get("fate") for r in status["revisions"]}[2] == "Stable"

    # A revision that never gets ready: reverted, and revision 1 pruned (revisionHistoryLimit 2).
    user.patch_spec(
        "churn",
        {
            "model": {"uri": "s3://models/churn/v3/model.joblib", "digest": "sha256:" + "3" * 64},
            "server": {"podLabels": {"sim.seaway.dev/not-ready": "true"}},
            "rollout": {"progressDeadlineSeconds": 10},
        },
    )

    def reverted() -> dict[str, Any]:
        status = stable(2)
        fates = {r["number"]: r.get("fate") for r in status["revisions"]}
        assert fates.get(3) == "Failed", fates
        assert 1 not in fates, fates
        return status

    eventually(reverted, timeout=90)
    apps = client.AppsV1Api(kube_api)
    eventually(
        lambda: (
            [d.metadata.name for d in apps.list_namespaced_deployment(release.models).items]
            == ["churn-r2", "churn-r3", "churn-router"]
        ),
        timeout=30,
    )
    # The router's own ServiceAccount, Role and RoleBinding, created with the operator's rights.
    rbac = client.RbacAuthorizationV1Api(kube_api)
    assert rbac.read_namespaced_role_binding("churn-router", release.models).subjects[0].name == (
        "churn-router"
    )
    assert user.core.read_namespaced_service_account("churn-router", release.models)
    scalers = client.AutoscalingV2Api(kube_api).list_namespaced_horizontal_pod_autoscaler(
        release.models
    )
    assert [h.metadata.name for h in scalers.items] == ["churn-r2"]
    events = user.core.list_namespaced_event(release.models).items
    assert {"Promoted", "RolledBack"} <= {e.reason for e in events}

    # Every Pod the operator asked for passed the namespace's "restricted" admission: the
    # ReplicaSet controller reports a refused Pod as a FailedCreate event.
    assert not [e.message for e in events if e.reason == "FailedCreate"]
    assert pods(release.plane, release.models, "seaway.dev/revision=2")
    assert pods(release.plane, release.models, "app.kubernetes.io/component=router")
    assert not refused(operator_as_service_account), refused(operator_as_service_account)


def test_training_job_pods_are_admitted_as_restricted(
    release: Release, operator_as_service_account: Path, kube_api: client.ApiClient
) -> None:
    custom = client.CustomObjectsApi(kube_api)
    body = yaml.safe_load((CHART.parents[1] / "examples" / "retrainjob-manual.yaml").read_text())
    body["spec"]["modelDeployment"] = "churn"
    custom.create_namespaced_custom_object(
        "seaway.dev", "v1alpha1", release.models, "retrainjobs", body
    )
    trainers = eventually(
        lambda: pods(
            release.plane, release.models, f"seaway.dev/retrain-job={body['metadata']['name']}"
        ),
        timeout=60,
    )
    assert trainers[0]["spec"]["containers"][0]["name"] == "trainer"
    assert not refused(operator_as_service_account), refused(operator_as_service_account)


# -- upgrade and uninstall (last) ------------------------------------------------------------


def test_upgrade_changes_the_operator_and_keeps_managing_the_crds(release: Release) -> None:
    upgrade = [release.helm, "upgrade", release.name, CHART, "-n", release.namespace]
    run([*upgrade, "--kubeconfig", release.plane.kubeconfig, "--reuse-values", "--set=workers=2"])
    deployment = yaml.safe_load(
        release.kubectl(
            "get", "deployment", release.name, "-n", release.namespace, "-o", "yaml"
        ).stdout
    )
    assert "--workers=2" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    crd_yaml = release.kubectl("get", "crd", "modeldeployments.seaway.dev", "-o", "yaml").stdout
    crd = yaml.safe_load(crd_yaml)
    assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == release.name
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_uninstall_keeps_the_crds_and_the_approval_policy(release: Release) -> None:
    run([release.helm, "uninstall", release.name, "-n", release.namespace, "--kubeconfig",
         release.plane.kubeconfig, "--wait"], timeout=120)  # fmt: skip
    for name in ("crd/modeldeployments.seaway.dev", "crd/retrainjobs.seaway.dev",
                 "crd/scoringjobs.seaway.dev",
                 "validatingadmissionpolicy/seaway-approvals"):  # fmt: skip
        assert release.kubectl("get", name, check=False).returncode == 0, f"{name} was deleted"
    gone = release.kubectl("get", "deployment", release.name, "-n", release.namespace, check=False)
    assert gone.returncode != 0
    assert release.kubectl("get", "clusterrole", f"{release.name}-operator", check=False).returncode
    # The user's objects survive the operator's uninstall.
    assert release.kubectl("get", "md", "churn", "-n", release.models).returncode == 0
