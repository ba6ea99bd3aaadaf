"""ModelDeployment on the real API server with the operator running in-process.

Pods run on kwok's simulated node: they become Ready without containers, unless their template
carries the label ``sim.seaway.dev/not-ready: "true"`` (then they stay Running but never Ready),
which is how these tests make a revision fail. Nothing here connects to a Pod or Service address.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from click.testing import CliRunner
from tests.integration.mdtools import User, digest, md_body

from seaway.cli.main import main as cli

OPERATOR = ["seaway.handlers.operator"]
NOT_READY = {"sim.seaway.dev/not-ready": "true"}


@pytest.fixture
def user(kube_api: Any, namespace: str, seaway_crds: list[str]) -> User:
    return User(kube_api, namespace)


def ready_revision(user: User, name: str, number: int) -> bool:
    status = user.status(name)
    return status.get("stableRevision") == number and status.get("canaryRevision") is None


def fate(user: User, name: str, number: int) -> tuple[str, str | None]:
    revision = next(r for r in user.status(name)["revisions"] if r["number"] == number)
    return revision["fate"], revision.get("reason")


def test_happy_canary(
    run_operator: Any, user: User, namespace: str, eventually: Any, control_plane: Any
) -> None:
    with run_operator(OPERATOR, namespace=namespace):
        user.create(md_body("churn", 1))
        eventually(lambda: ready_revision(user, "churn", 1), timeout=30, what="r1 stable")
        assert user.condition("churn", "Ready")["status"] == "True"
        assert user.weights("churn") == {1: 100}

        user.patch_spec("churn", md_body("churn", 2)["spec"])
        seen: list[dict[int, int]] = []

        def promoted() -> bool:
            weights = user.weights("churn")
            if weights and (not seen or seen[-1] != weights):
                seen.append(weights)
            return ready_revision(user, "churn", 2)

        eventually(promoted, timeout=60, what="r2 stable")
        assert seen[-1] == {2: 100}
        canary_weights = [w.get(2, 0) for w in seen]
        assert [w for w in canary_weights if w in (20, 60, 100)] == [20, 60, 100], seen
        assert canary_weights == sorted(canary_weights), "weights only ever grew"

        status = user.status("churn")
        assert status["observedGeneration"] == user.get("churn")["metadata"]["generation"]
        fates = {r["number"]: r["fate"] for r in status["revisions"]}
        assert fates == {1: "Retired", 2: "Stable"}
        deployments = user.deployments("churn")
        eventually(lambda: user.deployments("churn")[1].spec.replicas == 0, what="r1 scaled down")
        assert deployments[2].spec.replicas == 2
        assert user.event_reasons("churn") == [
            "RevisionCreated",
            "RolloutStarted",
            "Promoted",
            "RevisionCreated",
            "RolloutStarted",
            "StepReached",
            "StepReached",
            "StepReached",
            "Promoted",
        ]
        table = control_plane.kubectl("get", "md", "churn", "-n", namespace).stdout.split("\n")
        assert table[0].split() == ["NAME", "STABLE", "CANARY", "WEIGHT", "READY", "REASON", "AGE"]
        assert table[1].split()[:4] == ["churn", "2", "True", "Available"]
        waited = control_plane.kubectl(
            "wait", "--for=condition=Ready", "md/churn", "-n", namespace, "--timeout=10s"
        )
        assert "condition met" in waited.stdout


class Hooks(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        Hooks.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A webhook on 127.0.0.1, which the operator (in this process) is allowed to call."""
    monkeypatch.setenv("SEAWAY_ALLOWED_WEBHOOK_HOSTS", "127.0.0.1")
    Hooks.received = []
    server = HTTPServer(("127.0.0.1", 0), Hooks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/seaway"
    finally:
        server.shutdown()
        server.server_close()


def test_readiness_failure_reverts_and_notifies(
    run_operator: Any, user: User, namespace: str, eventually: Any, consistently: Any, webhook: str
) -> None:
    with run_operator(OPERATOR, namespace=namespace):
        user.create(md_body("fraud", 1, notifications={"webhookURL": webhook}))
        eventually(lambda: ready_revision(user, "fraud", 1), timeout=30)

        bad = md_body("fraud", 2, notifications={"webhookURL": webhook})
        bad["spec"]["server"]["podLabels"] = NOT_READY
        user.patch_spec("fraud", bad["spec"])
        eventually(lambda: user.status("fraud").get("canaryRevision") == 2, what="r2 canary")
        # Pods exist and run, but never become ready: the canary gets no traffic meanwhile.
        consistently(lambda: user.weights("fraud").get(2, 0) == 0, duration=3)
        failed = eventually(
            lambda: (
                next(r for r in user.status("fraud")["revisions"] if r["number"] == 2)["fate"]
                == "Failed"
            ),
            timeout=15 + 10,
            what="r2 failed after progressDeadlineSeconds (15s) plus one pass",
        )
        assert failed
        status = user.status("fraud")
        r2 = next(r for r in status["revisions"] if r["number"] == 2)
        assert r2["reason"] == "ProgressDeadlineExceeded"
        assert status["stableRevision"] == 1 and "canaryRevision" not in status
        assert user.weights("fraud") == {1: 100}
        assert status["message"].startswith("desired revision 2 rejected: ProgressDeadlineExceeded")
        assert status["message"].endswith("serving revision 1")
        degraded = user.condition("fraud", "Degraded")
        assert (degraded["status"], degraded["reason"]) == ("True", "ProgressDeadlineExceeded")
        assert user.condition("fraud", "Ready")["status"] == "True"
        eventually(lambda: user.deployments("fraud")[2].spec.replicas == 0, what="r2 scaled to 0")
        assert "RolledBack" in user.event_reasons("fraud")
        spec = user.get("fraud")["spec"]
        assert spec["model"]["digest"] == digest(2), "the operator never rewrites the spec"
        eventually(
            lambda: any(h.get("event") == "RolledBack" for h in Hooks.received), what="webhook"
        )
        hook = next(h for h in Hooks.received if h["event"] == "RolledBack")
        assert (hook["name"], hook["revision"], hook["stableRevision"]) == ("fraud", 2, 1)
        assert hook["reason"] == "ProgressDeadlineExceeded"


def test_canary_that_stops_being_ready_is_reverted(
    run_operator: Any, user: User, namespace: str, eventually: Any, kube_api: Any
) -> None:
    from kubernetes import client

    with run_operator(OPERATOR, namespace=namespace):
        body = md_body("pricing", 1)
        body["spec"]["rollout"]["steps"] = [{"setWeight": 50}, {"pause": {}}]
        user.create(body)
        eventually(lambda: ready_revision(user, "pricing", 1), timeout=30)
        body2 = md_body("pricing", 2)
        body2["spec"]["rollout"]["steps"] = [{"setWeight": 50}, {"pause": {}}]
        user.patch_spec("pricing", body2["spec"])
        eventually(lambda: user.weights("pricing") == {1: 50, 2: 50}, what="canary at 50%")
        core = client.CoreV1Api(kube_api)
        pods = core.list_namespaced_pod(namespace, label_selector="seaway.dev/revision=2").items
        for pod in pods:  # the model server "crashes": kwok flips the live pods to NotReady
            core.patch_namespaced_pod(
                pod.metadata.name, namespace, {"metadata": {"labels": NOT_READY}}
            )
        eventually(lambda: user.weights("pricing") == {1: 100}, timeout=20, what="reverted")
        eventually(lambda: fate(user, "pricing", 2) == ("Failed", "PodsNotReady"), what="r2 failed")


def test_rollback_by_cli_and_by_spec_and_template_reuse(
    run_operator: Any, user: User, namespace: str, eventually: Any, control_plane: Any
) -> None:
    immediate = {"strategy": "Immediate"}
    with run_operator(OPERATOR, namespace=namespace):
        user.create(md_body("iris", 1, rollout=immediate))
        eventually(lambda: ready_revision(user, "iris", 1), timeout=30)
        user.patch_spec("iris", md_body("iris", 2, rollout=immediate)["spec"])
        eventually(lambda: ready_revision(user, "iris", 2), timeout=30)

        runner = CliRunner(env={"KUBECONFIG": str(control_plane.kubeconfig)})
        result = runner.invoke(
            cli, ["rollback", "iris", "--to-revision", "1", "-n", namespace, "--wait", "30"]
        )
        assert result.exit_code == 0, result.output
        assert "Revision 1 is serving." in result.output
        assert user.weights("iris") == {1: 100}
        assert user.get("iris")["spec"]["rollbackTo"] == {"revision": 1, "skipSteps": True}

        result = runner.invoke(cli, ["rollback", "iris", "--to-revision", "9", "-n", namespace])
        assert result.exit_code == 1 and "revision 9 is not in the history" in result.output

        # declaratively: drop rollbackTo, the template (v2) serves again, still revision 2
        user.patch_spec("iris", {"rollbackTo": None})
        eventually(lambda: ready_revision(user, "iris", 2), timeout=30)
        # re-applying v1's template (a git revert) reuses revision 1 instead of creating r3
        user.patch_spec("iris", md_body("iris", 1, rollout=immediate)["spec"])
        eventually(lambda: ready_revision(user, "iris", 1), timeout=30)
        assert [r["number"] for r in user.status("iris")["revisions"]] == [1, 2]
        assert sorted(user.deployments("iris")) == [1, 2]

        history = runner.invoke(cli, ["history", "iris", "-n", namespace])
        assert history.exit_code == 0 and "Stable" in history.output
        summary = runner.invoke(cli, ["status", "iris", "-n", namespace])
        assert "stable revision: 1" in summary.output and "Ready" in summary.output


def test_promote_and_abort_commands(
    run_operator: Any, user: User, namespace: str, eventually: Any, control_plane: Any
) -> None:
    steps = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 40}, {"pause": {}}]
    runner = CliRunner(env={"KUBECONFIG": str(control_plane.kubeconfig)})
    with run_operator(OPERATOR, namespace=namespace):
        body = md_body("churn", 1)
        body["spec"]["rollout"]["steps"] = steps
        user.create(body)
        eventually(lambda: ready_revision(user, "churn", 1), timeout=30)
        spec2 = md_body("churn", 2)["spec"]
        spec2["rollout"]["steps"] = steps
        user.patch_spec("churn", spec2)
        eventually(lambda: user.weights("churn") == {1: 90, 2: 10}, what="step 1")
        assert runner.invoke(cli, ["promote", "churn", "-n", namespace]).exit_code == 0
        eventually(lambda: user.weights("churn") == {1: 60, 2: 40}, what="promoted one step")
        assert runner.invoke(cli, ["abort", "churn", "-n", namespace]).exit_code == 0
        eventually(lambda: user.weights("churn") == {1: 100}, what="aborted")
        eventually(
            lambda: fate(user, "churn", 2) == ("RolledBack", "Aborted"), what="r2 rolled back"
        )
        # retry the same template, then promote all the way
        assert runner.invoke(cli, ["retry", "churn", "-n", namespace]).exit_code == 0
        eventually(lambda: user.weights("churn") == {1: 90, 2: 10}, what="retried")
        assert runner.invoke(cli, ["promote", "churn", "--full", "-n", namespace]).exit_code == 0
        eventually(lambda: ready_revision(user, "churn", 2), what="fully promoted")


def test_missing_secret_is_reported_not_retried_forever(
    run_operator: Any, user: User, namespace: str, eventually: Any, consistently: Any
) -> None:
    with run_operator(OPERATOR, namespace=namespace) as runner:
        body = md_body("creds", 1)
        body["spec"]["model"]["secretRef"] = {"name": "model-store"}
        user.create(body)
        eventually(lambda: user.condition("creds", "Ready").get("reason") == "SecretNotFound")
        assert "model-store" in user.condition("creds", "Ready")["message"]
        assert user.event_reasons("creds") == ["SecretNotFound"]
        consistently(lambda: user.event_reasons("creds") == ["SecretNotFound"], duration=3)
        assert user.deployments("creds") == {}
    assert "Traceback" not in runner.output


def test_operator_never_writes_spec(
    run_operator: Any, user: User, namespace: str, eventually: Any
) -> None:
    with run_operator(OPERATOR, namespace=namespace):
        user.create(md_body("audit", 1))
        eventually(lambda: ready_revision(user, "audit", 1), timeout=30)
    managed = user.get("audit")["metadata"]["managedFields"]
    for entry in managed:
        if entry["manager"] == "seaway":
            assert entry.get("subresource") == "status", entry
            assert "f:spec" not in entry["fieldsV1"]


def test_gateway_api_backend(
    run_operator: Any,
    user: User,
    namespace: str,
    eventually: Any,
    control_plane: Any,
    kube_api: Any,
) -> None:
    import os

    from kubernetes import client

    from seaway.localplane import config

    gateway_crds = config.bin_dir(os.environ).parent / "gateway-api"
    assert sorted(gateway_crds.glob("*.yaml")), f"no Gateway API CRDs in {gateway_crds}"
    control_plane.install_crds(gateway_crds)
    body = md_body(
        "edge",
        1,
        traffic={"router": "gateway-api", "gateway": {"parentRefs": [{"name": "public"}]}},
    )
    custom = client.CustomObjectsApi(kube_api)

    def route_weights() -> dict[int, int]:
        try:
            route = custom.get_namespaced_custom_object(
                "gateway.networking.k8s.io", "v1", namespace, "httproutes", "edge"
            )
        except client.ApiException:
            return {}
        refs = route["spec"]["rules"][0]["backendRefs"]
        return {int(r["name"].removeprefix("edge-r")): r["weight"] for r in refs}

    with run_operator(OPERATOR, namespace=namespace):
        user.create(body)
        eventually(lambda: ready_revision(user, "edge", 1), timeout=30)
        assert route_weights() == {1: 100}
        spec2 = md_body("edge", 2, traffic=body["spec"]["traffic"])["spec"]
        spec2["rollout"]["steps"] = [{"setWeight": 30}, {"pause": {}}]
        user.patch_spec("edge", spec2)
        eventually(lambda: route_weights() == {1: 70, 2: 30}, what="HTTPRoute at 30%")
    assert user.weights("edge") == {}, "no built-in router for gateway-api"


def test_deleting_the_model_deployment_removes_its_children(
    run_operator: Any, user: User, namespace: str, eventually: Any
) -> None:
    with run_operator(OPERATOR, namespace=namespace):
        user.create(md_body("gone", 1, revisionHistoryLimit=1, rollout={"strategy": "Immediate"}))
        eventually(lambda: ready_revision(user, "gone", 1), timeout=30)
        user.patch_spec("gone", md_body("gone", 2, rollout={"strategy": "Immediate"})["spec"])
        eventually(lambda: ready_revision(user, "gone", 2), timeout=30)
        # revisionHistoryLimit 1: revision 1 and its children are pruned, never the stable one
        eventually(lambda: sorted(user.deployments("gone")) == [2], what="r1 pruned")
        assert [r["number"] for r in user.status("gone")["revisions"]] == [2]
        user.custom.delete_namespaced_custom_object(
            "seaway.dev", "v1alpha1", namespace, "modeldeployments", "gone"
        )
        eventually(lambda: user.deployments("gone") == {}, timeout=60, what="children collected")
        eventually(lambda: user.weights("gone") == {}, timeout=60, what="router config collected")


def test_the_router_may_read_its_routes_and_nothing_else(
    run_operator: Any, user: User, namespace: str, eventually: Any, control_plane: Any
) -> None:
    with run_operator(OPERATOR, namespace=namespace):
        user.create(md_body("routed", 1, rollout={"strategy": "Immediate"}))
        eventually(lambda: ready_revision(user, "routed", 1), timeout=30)
    router = user.apps.read_namespaced_deployment("routed-router", namespace)
    pod = router.spec.template.spec
    assert pod.service_account_name == "routed-router"
    assert pod.containers[0].command == ["seaway-router"]
    assert pod.containers[0].args[:2] == ["--configmap", f"{namespace}/routed-router"]
    server = user.apps.read_namespaced_deployment("routed-r1", namespace).spec.template.spec
    assert server.containers[0].command == ["seaway-serve"]
    assert server.automount_service_account_token is False
    who = f"--as=system:serviceaccount:{namespace}:routed-router"

    def can(*args: str) -> str:
        result = control_plane.kubectl("auth", "can-i", *args, "-n", namespace, who, check=False)
        return str(result.stdout.strip())

    assert can("get", "configmaps/routed-router") == "yes"
    assert can("watch", "configmaps/routed-router") == "yes"
    assert can("get", "configmaps/other") == "no"
    assert can("get", "secrets") == "no"
    assert can("list", "pods") == "no"
