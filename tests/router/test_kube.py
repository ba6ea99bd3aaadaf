"""The router following its ConfigMap on the REAL local API server (the ``control_plane``
fixture), as the operator writes it: new weights within a second, bad or deleted documents
never replace the last good one, and a least-privilege ServiceAccount is all it needs."""

from __future__ import annotations

import json
import shutil
import time
from typing import Any

from seaway.api.modeldeployment import ModelDeploymentSpec
from seaway.planning import children
from tests.router.conftest import Client, metric

SPEC = ModelDeploymentSpec.model_validate({
    "model": {"uri": "file:///models/churn", "format": "skops"},
    "server": {"image": "example/seaway-server:0.1.0"},
})


def configmap(namespace: str, weights: dict[int, int]) -> dict[str, Any]:
    """The operator's ConfigMap for ``weights``, built by the operator's own code. Without the
    owner reference: its owner does not exist here, and the garbage collector would delete it."""
    document = children.routes("churn", namespace, weights, SPEC)
    cm = children.router_configmap(md_name="churn", namespace=namespace,
                                   owner=children.owner_reference("churn", "0"),
                                   document=document)
    del cm["metadata"]["ownerReferences"]
    return cm


def router_args(namespace: str) -> list[str]:
    """The ConfigMap option exactly as the operator's router Deployment passes it."""
    deployment = children.router_deployment(md_name="churn", namespace=namespace,
                                            owner=children.owner_reference("churn", "0"),
                                            image="example/router", service_account="router")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert container["command"] == ["seaway-router"]
    assert args[0] == "--configmap" and args[2] == "--port"
    return args[0:2]


def overrides(bk) -> list[str]:
    return ["--backend-url", f"churn-r1={bk.url('a')}", "--backend-url",
            f"churn-r2={bk.url('b')}"]


def wait_weight(rt, backend: str, weight: float, timeout: float = 3.0) -> float:
    """Poll the router's weight gauge until ``backend`` has ``weight``; when (monotonic)."""
    deadline = time.monotonic() + timeout
    client = Client(rt.port)
    try:
        while time.monotonic() < deadline:
            text = client.get("/metrics").body.decode()
            if metric(text, "seaway_router_backend_weight", backend=backend) == weight:
                return time.monotonic()
            time.sleep(0.005)
    finally:
        client.close()
    raise AssertionError(f"{backend} never got weight {weight}:\n{rt.log_path.read_text()}")


def test_follows_the_operators_configmap_within_a_second(control_plane, kube_api, namespace,
                                                         backends, router):
    from kubernetes import client as k8s

    core = k8s.CoreV1Api(kube_api)
    core.create_namespaced_config_map(namespace, configmap(namespace, {1: 100, 2: 0}))
    bk = backends("a", "b")
    # watches of 1 s: the changes below also cross watch renewals (resumed from the last
    # version seen, so nothing is missed between two watches)
    rt = router(None, *router_args(namespace), "--kubeconfig", str(control_plane.kubeconfig),
                *overrides(bk), kube_watch_seconds="1", log_level="DEBUG")
    http = rt.client()
    assert {http.get("/v2/models/churn/ready").revision for _ in range(10)} == {1}

    for step, weights in enumerate(({1: 50, 2: 50}, {1: 0, 2: 100}, {1: 90, 2: 10})):
        time.sleep(0.7)
        sent = time.monotonic()
        core.patch_namespaced_config_map("churn-router", namespace,
                                         {"data": configmap(namespace, weights)["data"]})
        applied = wait_weight(rt, "churn-r2", weights[2])
        assert applied - sent < 1.0, f"step {step}: {applied - sent:.3f} s"
        print(f"{weights}: in force {1000 * (applied - sent):.0f} ms after the patch was sent")
    assert metric(rt.metrics(), "seaway_router_config_generation") == 4
    assert sum("Renewed the watch" in str(r.get("msg")) for r in rt.log_lines()) >= 2

    # a bad document is refused; the last good routes stay
    bad = configmap(namespace, {1: 90, 2: 10})
    doc = json.loads(bad["data"]["routes.json"])
    doc["backends"][0]["weight"] = 80
    core.patch_namespaced_config_map("churn-router", namespace,
                                     {"data": {"routes.json": json.dumps(doc)}})
    deadline = time.monotonic() + 5
    while metric(rt.metrics(), "seaway_router_config_refused_total", reason="weights") < 1:
        assert time.monotonic() < deadline, rt.log_path.read_text()
        time.sleep(0.02)
    assert metric(rt.metrics(), "seaway_router_backend_weight", backend="churn-r2") == 10

    # deleted: still routing with the last good routes, still ready
    core.patch_namespaced_config_map("churn-router", namespace,
                                     {"data": configmap(namespace, {1: 0, 2: 100})["data"]})
    wait_weight(rt, "churn-r2", 100)
    core.delete_namespaced_config_map("churn-router", namespace)
    deadline = time.monotonic() + 5
    while metric(rt.metrics(), "seaway_router_config_refused_total", reason="missing") < 1:
        assert time.monotonic() < deadline, rt.log_path.read_text()
        time.sleep(0.02)
    assert {http.get("/").revision for _ in range(10)} == {2}
    assert http.get("/readyz").status == 200
    # created again: followed again
    core.create_namespaced_config_map(namespace, configmap(namespace, {1: 100, 2: 0}))
    wait_weight(rt, "churn-r2", 0)
    assert {http.get("/").revision for _ in range(10)} == {1}


def test_a_least_privilege_service_account_is_enough(control_plane, kube_api, namespace,
                                                     backends, router, tmp_path):
    """In-cluster discovery (KUBERNETES_SERVICE_HOST/PORT, token and CA files) with a Role that
    allows get/list/watch on the one ConfigMap by name, and nothing else."""
    from kubernetes import client as k8s

    core = k8s.CoreV1Api(kube_api)
    core.create_namespaced_config_map(namespace, configmap(namespace, {1: 100, 2: 0}))
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "router"}})
    rbac = k8s.RbacAuthorizationV1Api(kube_api)
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "router"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                   "resourceNames": ["churn-router"], "verbs": ["get", "list", "watch"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "router"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "router"},
        "subjects": [{"kind": "ServiceAccount", "name": "router", "namespace": namespace}]})
    token = control_plane.kubectl("create", "token", "router", "-n", namespace).stdout.strip()
    sa_dir = tmp_path / "serviceaccount"
    sa_dir.mkdir()
    (sa_dir / "token").write_text(token)
    shutil.copy(control_plane.layout.ca_cert(), sa_dir / "ca.crt")
    in_cluster = {"KUBERNETES_SERVICE_HOST": "127.0.0.1",
                  "KUBERNETES_SERVICE_PORT": str(control_plane.ports.apiserver)}

    bk = backends("a", "b")
    rt = router(None, *router_args(namespace), *overrides(bk), extra_env=in_cluster,
                kube_serviceaccount_dir=str(sa_dir))
    assert rt.client().get("/").revision == 1
    sent = time.monotonic()
    core.patch_namespaced_config_map("churn-router", namespace,
                                     {"data": configmap(namespace, {1: 0, 2: 100})["data"]})
    assert wait_weight(rt, "churn-r2", 100) - sent < 1.0
    assert {rt.client().get("/").revision for _ in range(5)} == {2}

    # the same token may not read another ConfigMap: the router says so and stays unready
    # (explicit --kube-api / --kube-token-file / --kube-ca-file this time)
    denied = router(None, "--configmap", f"{namespace}/other-router", "--kube-api",
                    control_plane.api_server, "--kube-token-file", str(sa_dir / "token"),
                    "--kube-ca-file", str(sa_dir / "ca.crt"), ready=False)
    deadline = time.monotonic() + 10
    while not any("HTTP 403" in str(r.get("msg")) for r in denied.log_lines()):
        assert time.monotonic() < deadline, denied.log_path.read_text()
        time.sleep(0.05)
    message = next(str(r["msg"]) for r in denied.log_lines() if "HTTP 403" in str(r.get("msg")))
    assert f"ConfigMap {namespace}/other-router" in message
    assert "needs get, list and watch on this ConfigMap" in message
    assert denied.client().get("/readyz").status == 503
    assert denied.proc.poll() is None

