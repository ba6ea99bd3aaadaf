"""A real node on the local plane: Seaway's model server runs in a real container, under the
chart's restricted security context, and answers predictions; Services, cluster DNS, readiness
probes and ``kubectl logs``/``exec`` work; ``seaway cluster down`` leaves the host as it was.

The tests run in file order on one cluster (fixtures in conftest.py); the last one stops it.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from seaway import __version__
from seaway.localplane import nodeconfig, processes
from tests.realnode.conftest import NAME, RealCluster
from tests.realnode.hostview import HostView

NAMESPACE = "rn"
SERVER_IMAGE = f"ghcr.io/seaway-dev/seaway-server:{__version__}"
MODEL = "iris"
RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@pytest.fixture(scope="module")
def model_dir() -> Iterator[tuple[Path, Any, np.ndarray]]:
    """A bundle of a fitted LogisticRegression, readable by the server's uid 10001 (hostPath)."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from seaway_serving import bundle

    x, y = load_iris(return_X_y=True)
    estimator = LogisticRegression(max_iter=1000).fit(x, y)
    root = Path(tempfile.mkdtemp(prefix="seaway-rn-model-", dir="/tmp"))
    try:
        bundle.create_from_estimator(estimator, root / MODEL, name=MODEL, data=x)
        for path in [root, *root.rglob("*")]:
            mode = 0o755 if path.is_dir() else 0o644
            path.chmod(mode)
        rows = x[::15]
        yield root / MODEL, estimator, rows
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(real_cluster: RealCluster) -> RealCluster:
    if real_cluster.is_down:
        pytest.fail("the session's real node was already stopped", pytrace=False)
    real_cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    return real_cluster


def pod_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def pods(cluster: RealCluster, selector: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "pods", "-n", NAMESPACE, "-l", selector, "-o", "json").stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def server_deployment(bundle_dir: Path, digest: str | None) -> dict[str, Any]:
    env = [
        {"name": "SEAWAY_BUNDLE", "value": "/models/iris"},
        {"name": "SEAWAY_MODEL_NAME", "value": MODEL},
    ]
    if digest:
        env.append({"name": "SEAWAY_MODEL_DIGEST", "value": digest})
    labels = {"app": "server"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "server", "namespace": NAMESPACE},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": RESTRICTED_POD,
                    "containers": [
                        {
                            "name": "server",
                            "image": SERVER_IMAGE,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["seaway-serve"],
                            "env": env,
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {
                                "httpGet": {"path": "/v2/health/ready", "port": "http"},
                                "periodSeconds": 1,
                            },
                            "securityContext": RESTRICTED_CONTAINER,
                            "volumeMounts": [
                                {"name": "tmp", "mountPath": "/tmp"},
                                {"name": "models", "mountPath": "/models/iris", "readOnly": True},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "tmp", "emptyDir": {}},
                        {
                            "name": "models",
                            "hostPath": {"path": str(bundle_dir), "type": "Directory"},
                        },
                    ],
                },
            },
        },
    }


def service(name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"selector": selector, "ports": [{"port": 8080, "targetPort": 8080}]},
    }


def bare_pod(name: str, command: list[str], **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": name}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": RESTRICTED_POD,
            "containers": [
                {
                    "name": "main",
                    "image": SERVER_IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": command,
                    "securityContext": RESTRICTED_CONTAINER,
                    **container,
                }
            ],
        },
    }


def post_json(url: str, body: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


# -- the tests, in order -----------------------------------------------------------------------


def test_up_reports_the_real_node_ready(cluster: RealCluster) -> None:
    assert "Mode: real node (--real-node)" in cluster.up_output
    assert f"node {nodeconfig.NODE_NAME} Ready" in cluster.up_output
    print(f"\n  seaway cluster up --real-node: {cluster.up_seconds:.1f}s")
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert [n["metadata"]["name"] for n in nodes] == [nodeconfig.NODE_NAME], (
        "no simulated node receives workloads in this mode"
    )
    (node,) = nodes
    assert pod_ready({"status": node["status"]})
    assert not node["spec"].get("taints")
    info = node["status"]["nodeInfo"]
    assert info["containerRuntimeVersion"].startswith("containerd://2."), info
    assert info["kubeletVersion"].startswith("v1.35")
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == nodeconfig.GATEWAY

    status = cluster.seaway("cluster", "status", "--name", NAME)
    assert status.returncode == 0, status.stderr
    assert f"Node {nodeconfig.NODE_NAME}: Ready" in status.stderr
    state = processes.read_state(cluster.run_dir / "state.json")
    assert state is not None
    assert [c.name for c in state[1]] == [
        "containerd", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
        "kubelet", "kube-proxy", "coredns",
    ], "no kwok; containerd first: its image imports overlap the plane's start"  # fmt: skip
    assert all(processes.is_alive(c) for c in state[1])


def test_the_model_server_image_runs_restricted_and_predicts_like_scikit_learn(
    cluster: RealCluster, model_dir: tuple[Path, Any, np.ndarray], eventually: Callable[..., Any]
) -> None:
    bundle_dir, estimator, rows = model_dir
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    began = time.monotonic()
    cluster.apply(server_deployment(bundle_dir, manifest.get("sha256")),
                  service("server", {"app": "server"}))  # fmt: skip

    def ready_pod() -> dict[str, Any]:
        (pod,) = pods(cluster, "app=server")
        assert pod_ready(pod), pod.get("status", {}).get("conditions")
        return pod

    pod = eventually(ready_pod, timeout=120, what="the model server Pod Ready")
    cluster.timings["server pod ready"] = time.monotonic() - began
    print(f"\n  model server Pod Ready {cluster.timings['server pod ready']:.1f}s after apply")
    assert pod["spec"]["nodeName"] == nodeconfig.NODE_NAME
    container = pod["status"]["containerStatuses"][0]
    assert container["ready"] is True
    assert container["restartCount"] == 0
    assert container["imageID"], "the image came from the node's containerd"

    pod_ip = pod["status"]["podIP"]
    assert pod_ip.startswith("10.88."), pod_ip
    result = post_json(
        f"http://{pod_ip}:8080/v2/models/{MODEL}/infer",
        {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": list(rows.shape),
                     "data": rows.ravel().tolist()}]},
    )  # fmt: skip
    (output,) = [o for o in result["outputs"] if o["name"] == "predict"]
    assert output["data"] == estimator.predict(rows).tolist()
    assert result["model_name"] == MODEL


def test_kubectl_logs_shows_the_servers_json_log_and_exec_runs_in_the_container(
    cluster: RealCluster,
) -> None:
    (pod,) = pods(cluster, "app=server")
    name = pod["metadata"]["name"]
    logs = cluster.kubectl("logs", "-n", NAMESPACE, name).stdout
    records = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert records, logs[-2000:]
    assert all({"ts", "level", "msg"} <= set(r) for r in records)
    assert any(r.get("model") == MODEL for r in records), records
    whoami = cluster.kubectl("exec", "-n", NAMESPACE, name, "--", "id", "-u").stdout.strip()
    assert whoami == "10001"


def test_a_service_and_its_dns_name_answer_from_another_pod(
    cluster: RealCluster, eventually: Callable[..., Any]
) -> None:
    cluster_ip = cluster.get("service", "server", NAMESPACE)["spec"]["clusterIP"]
    # A new Service's rules and DNS record may lag its first endpoint by a moment on a busy
    # node: each URL is tried for up to 15 s, as a client would, and the last error is printed.
    script = (
        "import sys, time, urllib.request\n"
        "for url in sys.argv[1:]:\n"
        "    for attempt in range(30):\n"
        "        try:\n"
        "            with urllib.request.urlopen(url, timeout=10) as r:\n"
        "                print(url, r.status, r.read().decode())\n"
        "            break\n"
        "        except OSError as exc:\n"
        "            print(url, 'attempt', attempt, exc, file=sys.stderr)\n"
        "            time.sleep(0.5)\n"
    )
    urls = [
        f"http://{cluster_ip}:8080/v2/health/ready",
        f"http://server.{NAMESPACE}.svc:8080/v2/health/ready",
        f"http://server.{NAMESPACE}.svc.cluster.local:8080/v2/models/{MODEL}",
    ]
    cluster.apply(bare_pod("client", ["python", "-c", script, *urls]))

    def finished() -> dict[str, Any]:
        pod = cluster.get("pod", "client", NAMESPACE)
        assert pod["status"].get("phase") in ("Succeeded", "Failed"), pod["status"].get("phase")
        return pod

    pod = eventually(finished, timeout=90, what="the client Pod to finish")
    logs = cluster.kubectl("logs", "-n", NAMESPACE, "client").stdout
    assert pod["status"]["phase"] == "Succeeded", logs
    for url in urls:
        assert f"{url} 200" in logs, logs
    # And the ClusterIP from the host, through kube-proxy's rules.
    with urllib.request.urlopen(f"http://{cluster_ip}:8080/v2/health/ready", timeout=10) as r:
        assert r.status == 200


def test_a_pod_reaches_the_api_server_through_the_kubernetes_service(
    cluster: RealCluster, eventually: Callable[..., Any]
) -> None:
    # How in-cluster clients (the router, the chart's operator) find the API server.
    script = (
        "import json, os, ssl, urllib.request\n"
        "sa = '/var/run/secrets/kubernetes.io/serviceaccount'\n"
        "token = open(sa + '/token').read()\n"
        "context = ssl.create_default_context(cafile=sa + '/ca.crt')\n"
        "host = os.environ['KUBERNETES_SERVICE_HOST'], os.environ['KUBERNETES_SERVICE_PORT']\n"
        "for base in ('https://kubernetes.default.svc', 'https://%s:%s' % host):\n"
        "    request = urllib.request.Request(base + '/version',\n"
        "                                     headers={'Authorization': 'Bearer ' + token})\n"
        "    with urllib.request.urlopen(request, context=context, timeout=10) as r:\n"
        "        print(base, r.status, json.load(r)['gitVersion'])\n"
    )
    pod = bare_pod("in-cluster", ["python", "-c", script])
    pod["spec"]["automountServiceAccountToken"] = True
    cluster.apply(pod)

    def finished() -> dict[str, Any]:
        found = cluster.get("pod", "in-cluster", NAMESPACE)
        assert found["status"].get("phase") in ("Succeeded", "Failed")
        return found

    found = eventually(finished, timeout=90, what="the in-cluster Pod to finish")
    logs = cluster.kubectl("logs", "-n", NAMESPACE, "in-cluster").stdout
    assert found["status"]["phase"] == "Succeeded", logs
    assert "https://kubernetes.default.svc 200 v1.35.4" in logs, logs
    assert "https://10.96.0.1:443 200 v1.35.4" in logs, logs


def test_a_cluster_ip_without_a_service_is_refused_on_this_machine(
    cluster: RealCluster, eventually: Callable[..., Any]
) -> None:
    """A ClusterIP kube-proxy has no rule for (yet) is refused by the node's guard chain, from a
    Pod and from the host, instead of following the default route off this machine (where a
    gateway may answer it, e.g. a 404 that a router then keeps alive for a new revision)."""
    import socket
    import subprocess

    from seaway.localplane import config, network

    # The guard is checked first: without it nothing below may connect (off-machine traffic).
    rules = subprocess.run(["iptables", "-w", "5", "-S", network.GUARD_CHAIN],
                           capture_output=True, text=True, check=False).stdout
    assert f"-d {config.SERVICE_CIDR} -p tcp" in rules and "tcp-reset" in rules, rules
    hooks = subprocess.run(["iptables", "-w", "5", "-S"], capture_output=True, text=True,
                           check=False).stdout
    for hook in ("FORWARD", "OUTPUT"):
        assert f"-A {hook} -j {network.GUARD_CHAIN}" in hooks, hooks

    unused = "10.96.255.254"  # in the Service range, never allocated by these tests
    services = json.loads(cluster.kubectl("get", "services", "-A", "-o", "json").stdout)
    assert not [svc for svc in services["items"] if svc["spec"].get("clusterIP") == unused]
    script = (
        "import socket, sys\n"
        "try:\n"
        "    socket.create_connection((sys.argv[1], 80), timeout=10).close()\n"
        "    print('connected')\n"
        "except OSError as exc:\n"
        "    print(type(exc).__name__)\n"
    )
    cluster.apply(bare_pod("no-service", ["python", "-c", script, unused]))

    def finished() -> dict[str, Any]:
        pod = cluster.get("pod", "no-service", NAMESPACE)
        assert pod["status"].get("phase") in ("Succeeded", "Failed"), pod["status"].get("phase")
        return pod

    eventually(finished, timeout=90, what="the no-service Pod to finish")
    logs = cluster.kubectl("logs", "-n", NAMESPACE, "no-service").stdout
    assert logs.strip() == "ConnectionRefusedError", logs
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((unused, 80), timeout=10).close()


def test_a_pod_whose_readiness_probe_fails_stays_not_ready(
    cluster: RealCluster, eventually: Callable[..., Any]
) -> None:
    cluster.apply(
        bare_pod(
            "never-ready",
            ["python", "-m", "http.server", "8080", "--directory", "/"],
            readinessProbe={"httpGet": {"path": "/no-such-page", "port": 8080},
                            "periodSeconds": 1},
        )
    )  # fmt: skip

    def running() -> dict[str, Any]:
        pod = cluster.get("pod", "never-ready", NAMESPACE)
        state = (pod["status"].get("containerStatuses") or [{}])[0].get("state", {})
        assert "running" in state, state
        return pod

    eventually(running, timeout=60, what="never-ready running")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        pod = cluster.get("pod", "never-ready", NAMESPACE)
        assert pod["status"]["phase"] == "Running"
        assert not pod_ready(pod)
        time.sleep(0.5)
    events = cluster.kubectl(
        "get", "events", "-n", NAMESPACE, "--field-selector", "involvedObject.name=never-ready",
        "-o", "json",
    ).stdout  # fmt: skip
    messages = [e["message"] for e in json.loads(events)["items"] if e["reason"] == "Unhealthy"]
    assert any("statuscode: 404" in m for m in messages), messages


def test_a_second_real_node_is_refused_and_nothing_is_started(cluster: RealCluster) -> None:
    other = cluster.seaway("cluster", "up", "--real-node", "--name", "rn-other", "--no-operator")
    assert other.returncode == 1
    assert "Traceback" not in other.stderr
    errors = [line for line in other.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        f"Error: another real node runs on this host: cluster {NAME} (run dir {cluster.run_dir}); "
        "only one can (stop it with `seaway cluster down`, or use --simulated)"
    ]
    other_dir = cluster.run_dir.parent / "rn-other"
    assert not (other_dir / "state.json").exists()


def test_up_again_is_idempotent_and_refuses_to_change_the_mode(cluster: RealCluster) -> None:
    again = cluster.seaway("cluster", "up", "--real-node", "--name", NAME, "--no-operator")
    assert again.returncode == 0, again.stderr
    assert f"Cluster {NAME} is already up." in again.stderr
    assert f"Mode: real node {nodeconfig.NODE_NAME} (Pods run in containers)" in again.stderr
    other = cluster.seaway("cluster", "up", "--simulated", "--name", NAME, "--no-operator")
    assert other.returncode == 1
    assert other.stderr.splitlines() == [
        f"Error: cluster {NAME} is already up with a real node; stop it first "
        f"(seaway cluster down --name {NAME}) to start it with a simulated node"
    ]


def test_down_leaves_the_host_as_it_was(cluster: RealCluster) -> None:
    state = processes.read_state(cluster.run_dir / "state.json")
    assert state is not None
    components = state[1]
    began = time.monotonic()
    down = cluster.down()
    print(f"\n  seaway cluster down: {time.monotonic() - began:.1f}s")
    assert down.returncode == 0, down.stderr
    assert "Could not undo" not in down.stderr, down.stderr
    assert not [c for c in components if processes.is_alive(c)]
    after = HostView.capture(cluster.run_dir, cluster.node_dir)
    differences = cluster.before.differences(after)
    assert differences == {}, "\n".join(f"{k}: {v}" for k, v in differences.items())
    assert not (cluster.run_dir / "node").exists(), "the node's files are removed"
    assert not nodeconfig.LOCK_FILE.exists()
    assert os.path.exists(cluster.run_dir / "logs" / "kubelet.log"), "logs stay"
    assert stat.S_ISDIR(os.stat(cluster.run_dir).st_mode)
