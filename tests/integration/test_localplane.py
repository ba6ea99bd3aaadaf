"""The local control plane, for real: Deployments roll out on the simulated node, the
``sim.seaway.dev/*`` labels steer Pods, and ``seaway cluster up/status/down`` leave nothing behind.

Nothing here connects to a Pod or Service address: everything goes through the API server on
127.0.0.1 (docs/localplane.md, "Network rule").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from seaway import localplane
from seaway.localplane import config, processes

NOT_READY = config.NOT_READY_LABEL
EXPECTED_COMPONENTS = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
]


def deployment(
    name: str, replicas: int, pod_labels: dict[str, str] | None = None
) -> client.V1Deployment:
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={**labels, **(pod_labels or {})}),
                spec=client.V1PodSpec(
                    containers=[client.V1Container(name="server", image="sim/model-server:1")]
                ),
            ),
        ),
    )


def job(name: str) -> client.V1Job:
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1JobSpec(
            backoff_limit=0,
            template=client.V1PodTemplateSpec(
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    containers=[client.V1Container(name="train", image="sim/trainer:1")],
                )
            ),
        ),
    )


def condition(obj: Any, kind: str) -> str | None:
    for item in obj.status.conditions or []:
        if item.type == kind:
            return str(item.status)
    return None


def pods(kube_api: ApiClient, namespace: str, selector: str) -> list[client.V1Pod]:
    items: list[client.V1Pod] = (
        client.CoreV1Api(kube_api).list_namespaced_pod(namespace, label_selector=selector).items
    )
    return items


def only(items: list[Any]) -> Any:
    assert len(items) == 1, f"expected exactly one, found {len(items)}"
    return items[0]


def assert_ready_on_the_simulated_node(pod: client.V1Pod) -> None:
    assert pod.status.phase == "Running", pod.status.phase
    assert condition(pod, "Ready") == "True"
    assert pod.spec.node_name == config.NODE_NAME
    assert pod.status.host_ip == "127.0.0.1"
    assert pod.status.pod_ip, "kwok hands out a (fake) Pod address"
    status = only(pod.status.container_statuses)
    assert status.ready is True
    assert status.state.running is not None


def assert_crash_looping(pod: client.V1Pod) -> None:
    assert pod.status.phase == "Running", pod.status.phase
    assert condition(pod, "Ready") == "False"
    status = only(pod.status.container_statuses)
    assert status.ready is False
    assert status.restart_count >= 1
    assert status.state.waiting is not None
    assert status.state.waiting.reason == "CrashLoopBackOff"
    assert status.last_state.terminated is not None
    assert status.last_state.terminated.exit_code == 1


def test_kubectl_shows_the_simulated_node_ready(control_plane: localplane.Plane) -> None:
    result = control_plane.kubectl("get", "nodes", "--no-headers")
    rows = [line.split() for line in result.stdout.splitlines()]
    assert [row[:2] for row in rows] == [["kwok-node-0", "Ready"]]
    node = json.loads(control_plane.kubectl("get", "node", "kwok-node-0", "-o", "json").stdout)
    assert node["spec"].get("taints") is None
    assert {a["type"]: a["address"] for a in node["status"]["addresses"]} == {
        "InternalIP": "127.0.0.1",
        "Hostname": "kwok-node-0",
    }


def test_kwok_leaves_a_node_without_the_fake_annotation_and_its_pods_alone(
    kube_api: ApiClient, namespace: str, consistently: Any
) -> None:
    # What a real kubelet's node looks like to kwok: no kwok.x-k8s.io/node annotation. kwok
    # must neither mark it Ready nor play the kubelet for its Pods (it would race the kubelet).
    core = client.CoreV1Api(kube_api)
    name = f"real-{namespace}"[:63]
    core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=name)))
    try:
        pod = client.V1Pod(
            metadata=client.V1ObjectMeta(name="pinned"),
            spec=client.V1PodSpec(
                node_name=name, containers=[client.V1Container(name="c", image="sim/c:1")]
            ),
        )
        core.create_namespaced_pod(namespace, pod)

        def untouched() -> None:
            node = core.read_node(name)
            assert not node.status.conditions, node.status.conditions
            assert not (node.metadata.annotations or {}).get(config.SIMULATED_NODE_ANNOTATION)
            status = core.read_namespaced_pod("pinned", namespace).status
            assert status.phase == "Pending", status.phase
            assert not status.pod_ip
            assert not status.container_statuses

        consistently(untouched, duration=3)
    finally:
        core.delete_node(name)


def test_deployment_pods_become_ready_on_the_simulated_node(
    kube_api: ApiClient, namespace: str, eventually: Any
) -> None:
    apps = client.AppsV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, deployment("web", replicas=2))

    def rolled_out() -> None:
        status = apps.read_namespaced_deployment_status("web", namespace).status
        assert status.ready_replicas == 2
        assert status.available_replicas == 2
        found = pods(kube_api, namespace, "app=web")
        assert len(found) == 2
        for pod in found:
            assert_ready_on_the_simulated_node(pod)

    eventually(rolled_out, timeout=60)


def test_pods_labelled_not_ready_run_but_never_become_ready(
    kube_api: ApiClient, namespace: str, eventually: Any, consistently: Any
) -> None:
    apps = client.AppsV1Api(kube_api)
    apps.create_namespaced_deployment(
        namespace, deployment("broken", replicas=2, pod_labels={NOT_READY: "true"})
    )

    def crash_looping() -> None:
        found = pods(kube_api, namespace, "app=broken")
        assert len(found) == 2
        for pod in found:
            assert_crash_looping(pod)

    eventually(crash_looping, timeout=60)

    def still_not_ready() -> None:
        status = apps.read_namespaced_deployment_status("broken", namespace).status
        assert not status.ready_replicas
        assert not status.available_replicas
        crash_looping()

    consistently(still_not_ready, duration=3)


def test_the_not_ready_label_flips_a_live_pod_both_ways(
    kube_api: ApiClient, namespace: str, eventually: Any
) -> None:
    apps = client.AppsV1Api(kube_api)
    core = client.CoreV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, deployment("flip", replicas=1))

    def one_ready_pod() -> client.V1Pod:
        pod = only(pods(kube_api, namespace, "app=flip"))
        assert_ready_on_the_simulated_node(pod)
        assert apps.read_namespaced_deployment_status("flip", namespace).status.ready_replicas == 1
        return pod

    pod = eventually(one_ready_pod, timeout=60)
    name, ip = pod.metadata.name, pod.status.pod_ip

    core.patch_namespaced_pod(name, namespace, {"metadata": {"labels": {NOT_READY: "true"}}})

    def crashed() -> None:
        assert_crash_looping(core.read_namespaced_pod(name, namespace))
        assert not apps.read_namespaced_deployment_status("flip", namespace).status.ready_replicas

    eventually(crashed, timeout=30)

    core.patch_namespaced_pod(name, namespace, {"metadata": {"labels": {NOT_READY: None}}})

    def recovered() -> None:
        pod = core.read_namespaced_pod(name, namespace)
        assert_ready_on_the_simulated_node(pod)
        assert pod.status.pod_ip == ip, "the same Pod recovers in place"
        status = only(pod.status.container_statuses)
        assert status.restart_count == 1
        assert status.last_state.terminated is not None
        assert status.last_state.terminated.reason == "Error"
        assert apps.read_namespaced_deployment_status("flip", namespace).status.ready_replicas == 1

    eventually(recovered, timeout=30)


def test_job_pods_keep_running_until_labelled_complete(
    kube_api: ApiClient, namespace: str, eventually: Any, consistently: Any
) -> None:
    batch = client.BatchV1Api(kube_api)
    core = client.CoreV1Api(kube_api)
    batch.create_namespaced_job(namespace, job("train"))

    def running_pod() -> client.V1Pod:
        pod = only(pods(kube_api, namespace, "job-name=train"))
        assert_ready_on_the_simulated_node(pod)
        return pod

    pod = eventually(running_pod, timeout=60)

    def not_finished() -> None:
        status = batch.read_namespaced_job_status("train", namespace).status
        assert not status.succeeded
        assert not status.failed
        running_pod()

    consistently(not_finished, duration=2)

    label = {"metadata": {"labels": {config.COMPLETE_LABEL: "true"}}}
    core.patch_namespaced_pod(pod.metadata.name, namespace, label)

    def complete() -> None:
        finished = batch.read_namespaced_job_status("train", namespace)
        assert finished.status.succeeded == 1
        assert condition(finished, "Complete") == "True"
        done = core.read_namespaced_pod(pod.metadata.name, namespace)
        assert done.status.phase == "Succeeded"
        terminated = only(done.status.container_statuses).state.terminated
        assert terminated is not None
        assert terminated.exit_code == 0

    eventually(complete, timeout=60)


def test_job_pods_labelled_fail_make_the_job_fail(
    kube_api: ApiClient, namespace: str, eventually: Any
) -> None:
    batch = client.BatchV1Api(kube_api)
    core = client.CoreV1Api(kube_api)
    batch.create_namespaced_job(namespace, job("train"))
    pod = eventually(lambda: only(pods(kube_api, namespace, "job-name=train")), timeout=60)

    label = {"metadata": {"labels": {config.FAIL_LABEL: "true"}}}
    core.patch_namespaced_pod(pod.metadata.name, namespace, label)

    def failed() -> None:
        finished = batch.read_namespaced_job_status("train", namespace)
        assert condition(finished, "Failed") == "True"
        assert finished.status.failed == 1

    eventually(failed, timeout=60)


def test_deleted_pods_go_away_and_are_replaced(
    kube_api: ApiClient, namespace: str, eventually: Any
) -> None:
    apps = client.AppsV1Api(kube_api)
    core = client.CoreV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, deployment("gone", replicas=1))

    def ready_pod() -> client.V1Pod:
        pod = only(pods(kube_api, namespace, "app=gone"))
        assert_ready_on_the_simulated_node(pod)
        return pod

    old = eventually(ready_pod, timeout=60).metadata.name
    core.delete_namespaced_pod(old, namespace)

    def deleted() -> None:
        try:
            core.read_namespaced_pod(old, namespace)
        except ApiException as error:
            assert error.status == 404
            return
        raise AssertionError(f"Pod {old} still exists")

    eventually(deleted, timeout=30)
    assert eventually(ready_pod, timeout=60).metadata.name != old


def test_a_bare_pod_can_be_created_as_soon_as_the_namespace_fixture_returns(
    kube_api: ApiClient, namespace: str, eventually: Any
) -> None:
    core = client.CoreV1Api(kube_api)
    body = client.V1Pod(
        metadata=client.V1ObjectMeta(name="bare"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="sim/c:1")]),
    )
    created = core.create_namespaced_pod(namespace, body)
    assert created.spec.service_account_name == "default"

    def ready() -> bool:
        assert_ready_on_the_simulated_node(core.read_namespaced_pod("bare", namespace))
        return True

    eventually(ready, timeout=60)


def test_seaway_crds_are_installed_and_served(
    control_plane: localplane.Plane, seaway_crds: list[str], namespace: str
) -> None:
    assert sorted(seaway_crds) == [
        "modeldeployments.seaway.dev", "retrainjobs.seaway.dev", "scoringjobs.seaway.dev"
    ]
    resources = control_plane.kubectl("api-resources", "--api-group=seaway.dev", "--no-headers")
    short_names = {line.split()[0]: line.split()[1] for line in resources.stdout.splitlines()}
    assert short_names == {"modeldeployments": "md", "retrainjobs": "rj", "scoringjobs": "sj"}
    listed = control_plane.kubectl("get", "md,rj,sj", "-n", namespace, "-o", "json")
    assert json.loads(listed.stdout)["items"] == []


def test_the_kubernetes_clients_default_kubeconfig_is_the_plane(
    control_plane: localplane.Plane,
) -> None:
    # What kopf's default login and operator code calling load_kube_config() rely on.
    from kubernetes import config as kube_config

    kube_config.load_kube_config()  # type: ignore[no-untyped-call]
    assert client.Configuration.get_default_copy().host == control_plane.api_server
    assert os.environ["KUBECONFIG"] == str(control_plane.kubeconfig)


def test_run_operator_runs_kopf_handlers_against_the_plane(
    kube_api: ApiClient, namespace: str, run_operator: Any, eventually: Any
) -> None:
    registry = kopf.OperatorRegistry()

    @kopf.on.create("configmaps", registry=registry)
    def mark(patch: kopf.Patch, **_: Any) -> None:
        patch.metadata.annotations["seaway.dev/seen-by"] = "test-operator"

    core = client.CoreV1Api(kube_api)
    with run_operator(namespace=namespace, registry=registry) as runner:
        core.create_namespaced_config_map(
            namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="probe"))
        )

        def annotated() -> None:
            annotations = core.read_namespaced_config_map("probe", namespace).metadata.annotations
            assert (annotations or {}).get("seaway.dev/seen-by") == "test-operator"

        eventually(annotated, timeout=60)
    assert runner.exit_code == 0


# -- the CLI ------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, control_plane: localplane.Plane) -> Iterator[dict[str, str]]:
    """An environment whose cache (and so the CLI's run dirs) is a temporary directory."""
    env = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env["SEAWAY_CONTROL_PLANE_BIN"] = str(control_plane.bins["kubectl"].parent)
    yield env
    # Whatever a failed test left running is stopped here.
    for run_dir in (tmp_path / "cache" / "seaway" / "clusters").glob("*"):
        localplane.stop(run_dir)


def seaway(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seaway.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def processes_using(run_dir: Path) -> list[str]:
    """Command lines of live processes that mention ``run_dir`` (each component's flags do)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode("utf-8", "replace").split("\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(str(run_dir) in arg for arg in argv):
            found.append(" ".join(argv))
    return found


def recorded_components(run_dir: Path) -> list[processes.Component]:
    state = processes.read_state(run_dir / "state.json")
    assert state is not None
    return state[1]


def test_cli_up_status_down_round_trip_leaves_no_process_behind(
    cli_env: dict[str, str], control_plane: localplane.Plane
) -> None:
    run_dir = Path(cli_env["XDG_CACHE_HOME"]) / "seaway" / "clusters" / "roundtrip"
    kubeconfig = run_dir / "kubeconfig"

    up = seaway(cli_env, "cluster", "up", "--name", "roundtrip", "--simulated")
    assert up.returncode == 0, up.stderr
    assert up.stdout == f"export KUBECONFIG={kubeconfig}\n"
    assert f"Kubeconfig: {kubeconfig}" in up.stderr
    assert "Traceback" not in up.stderr
    components = recorded_components(run_dir)
    assert [c.name for c in components] == [*EXPECTED_COMPONENTS, "seaway-operator"]
    assert all(processes.is_alive(c) for c in components)
    assert len(processes_using(run_dir)) == len(EXPECTED_COMPONENTS)
    assert "Started the Seaway operator" in up.stderr

    nodes = subprocess.run(
        [str(control_plane.bins["kubectl"]), "get", "nodes", "--no-headers"],
        env={**cli_env, "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert nodes.stdout.split()[:2] == ["kwok-node-0", "Ready"]
    crds = subprocess.run(
        [str(control_plane.bins["kubectl"]), f"--kubeconfig={kubeconfig}", "get", "crd", "-o",
         "name"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert "customresourcedefinition.apiextensions.k8s.io/modeldeployments.seaway.dev" in (
        crds.stdout
    )

    # the main job: the operator that `up` started serves an example from examples/
    kubectl = [str(control_plane.bins["kubectl"]), f"--kubeconfig={kubeconfig}"]
    example = Path(__file__).resolve().parents[2] / "examples" / "modeldeployment-minimal.yaml"
    subprocess.run(
        [*kubectl, "apply", "-f", str(example)], check=True, capture_output=True, timeout=60
    )
    waited = subprocess.run(
        [*kubectl, "wait", "--for=condition=Ready", "md/iris", "--timeout=60s"],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert "condition met" in waited.stdout, waited.stderr

    status = seaway(cli_env, "cluster", "status", "--name", "roundtrip")
    assert status.returncode == 0, status.stderr
    assert "Cluster roundtrip: running" in status.stderr
    assert "Node kwok-node-0: Ready" in status.stderr
    assert "API server: https://127.0.0.1:" in status.stderr
    for name in EXPECTED_COMPONENTS:
        assert f"{name} " in status.stderr

    again = seaway(cli_env, "cluster", "up", "--name", "roundtrip", "--simulated")
    assert again.returncode == 0, again.stderr
    assert "already up" in again.stderr
    assert again.stdout == up.stdout
    assert recorded_components(run_dir) == components, "an idempotent up starts nothing new"

    down = seaway(cli_env, "cluster", "down", "--name", "roundtrip")
    assert down.returncode == 0, down.stderr
    assert "6 processes stopped" in down.stderr
    left = [c for c in components if processes.is_alive(c)]
    assert not left, f"processes left behind: {left}"
    assert processes_using(run_dir) == []

    stopped = seaway(cli_env, "cluster", "status", "--name", "roundtrip")
    assert stopped.returncode == 1
    assert "Cluster roundtrip: stopped" in stopped.stderr
    again_down = seaway(cli_env, "cluster", "down", "--name", "roundtrip")
    assert again_down.returncode == 0
    assert "was not running" in again_down.stderr


def test_cli_reports_a_component_that_fails_in_one_line_and_cleans_up(
    cli_env: dict[str, str], tmp_path: Path, control_plane: localplane.Plane
) -> None:
    broken = tmp_path / "bin"
    broken.mkdir()
    for name, path in control_plane.bins.items():
        (broken / name).symlink_to(path)
    (broken / "kube-scheduler").unlink()
    (broken / "kube-scheduler").write_text(
        "#!/bin/sh\necho 'E0101 simulated scheduler failure: bad config' >&2\nexit 3\n"
    )
    (broken / "kube-scheduler").chmod(0o755)
    env = {**cli_env, "SEAWAY_CONTROL_PLANE_BIN": str(broken)}

    up = seaway(env, "cluster", "up", "--name", "broken", "--timeout", "60", "--simulated")
    assert up.returncode == 1
    errors = [line for line in up.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        "Error: kube-scheduler exited with code 3 while waiting for scheduler /healthz; "
        "last log line: E0101 simulated scheduler failure: bad config "
        f"(log: {Path(env['XDG_CACHE_HOME']) / 'seaway/clusters/broken/logs/kube-scheduler.log'})"
    ]
    assert "Traceback" not in up.stderr
    assert up.stdout == ""
    run_dir = Path(env["XDG_CACHE_HOME"]) / "seaway" / "clusters" / "broken"
    assert not (run_dir / "state.json").exists(), "a failed start stops what it started"
    assert processes_using(run_dir) == []
    status = seaway(env, "cluster", "status", "--name", "broken")
    assert status.returncode == 1
