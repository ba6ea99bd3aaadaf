"""The pure half of the local plane: where things live, which flags each component gets.

Everything here is a function of its arguments (no clock, no environment, no processes), so the
command lines, the kubeconfig and the kwok configuration are unit-tested without starting
anything. :mod:`seaway.localplane.plane` feeds these into real processes.

Every component binds 127.0.0.1 only. The simulated node reports 127.0.0.1 as its address and
the kwok server port as its kubelet port, so even an API server call that would reach a kubelet
(logs, exec) stays on this machine; Pod and Service addresses (10.x) are fake and never dialled.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

#: The Kubernetes version the build script builds by default (``SEAWAY_K8S_VERSION`` overrides).
DEFAULT_K8S_VERSION = "v1.35.4"
#: Name of the cluster ``seaway cluster up`` starts when no ``--name`` is given.
DEFAULT_CLUSTER_NAME = "seaway"
#: The simulated node every Pod is scheduled to.
NODE_NAME = "kwok-node-0"
LOOPBACK = "127.0.0.1"
#: Fake address ranges: handed out to Services and Pods, never connected to.
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

#: Label that keeps a Pod Running but never Ready (containers in CrashLoopBackOff).
NOT_READY_LABEL = "sim.seaway.dev/not-ready"
#: Label that makes a Running Pod succeed (exit code 0), e.g. a Job's Pod.
COMPLETE_LABEL = "sim.seaway.dev/complete"
#: Label that makes a Running Pod fail (exit code 1), e.g. a Job's Pod.
FAIL_LABEL = "sim.seaway.dev/fail"

#: Binaries the plane needs, in start order (kubectl installs manifests).
REQUIRED_BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kubectl",
)
STAGES_RESOURCE = "kwok-stages.yaml"
#: kwok manages only nodes carrying this annotation with the value ``fake``.
SIMULATED_NODE_ANNOTATION = "kwok.x-k8s.io/node"

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")


def cache_home(env: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME``, or ``~/.cache`` when it is unset or empty (as the XDG spec says)."""
    value = env.get("XDG_CACHE_HOME", "")
    if value:
        return Path(value)
    return Path(env.get("HOME", str(Path.home()))) / ".cache"


def k8s_version(env: Mapping[str, str]) -> str:
    return env.get("SEAWAY_K8S_VERSION") or DEFAULT_K8S_VERSION


def default_bin_dir(env: Mapping[str, str]) -> Path:
    """Where ``hack/build-control-plane.sh`` puts the binaries."""
    return cache_home(env) / "seaway" / "control-plane" / k8s_version(env) / "bin"


def bin_dir(env: Mapping[str, str]) -> Path:
    """``$SEAWAY_CONTROL_PLANE_BIN`` when set, else the build script's output directory."""
    override = env.get("SEAWAY_CONTROL_PLANE_BIN", "")
    return Path(override) if override else default_bin_dir(env)


def check_cluster_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(
            f"invalid cluster name {name!r}: use lowercase letters, digits and '-' "
            "(at most 40 characters)"
        )
    return name


def cluster_dir(name: str, env: Mapping[str, str]) -> Path:
    """The run directory of a named cluster started by the CLI."""
    return cache_home(env) / "seaway" / "clusters" / check_cluster_name(name)


@dataclass(frozen=True)
class Layout:
    """The files of one plane inside its run directory."""

    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def kwok_config(self) -> Path:
        return self.root / "kwok.yaml"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def ca_cert(self) -> Path:
        return self.pki / "ca.crt"

    def ca_key(self) -> Path:
        return self.pki / "ca.key"

    def serving_cert(self) -> Path:
        return self.pki / "serving.crt"

    def serving_key(self) -> Path:
        return self.pki / "serving.key"

    def admin_cert(self) -> Path:
        return self.pki / "admin.crt"

    def admin_key(self) -> Path:
        return self.pki / "admin.key"

    def node_cert(self) -> Path:
        return self.pki / "node.crt"

    def node_key(self) -> Path:
        return self.pki / "node.key"

    @property
    def node(self) -> Path:
        """The real node's files (real-node mode only); see :mod:`seaway.localplane.nodeconfig`."""
        return self.root / "node"

    def sa_key(self) -> Path:
        return self.pki / "sa.key"

    def sa_pub(self) -> Path:
        return self.pki / "sa.pub"


@dataclass(frozen=True)
class Ports:
    """The loopback ports of one plane; all are picked free at start."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int

    @classmethod
    def from_list(cls, ports: list[int]) -> Ports:
        (etcd_client, etcd_peer, apiserver, controller_manager, scheduler, kwok) = ports
        return cls(etcd_client, etcd_peer, apiserver, controller_manager, scheduler, kwok)

    def as_dict(self) -> dict[str, int]:
        return {
            "etcd_client": self.etcd_client,
            "etcd_peer": self.etcd_peer,
            "apiserver": self.apiserver,
            "controller_manager": self.controller_manager,
            "scheduler": self.scheduler,
            "kwok": self.kwok,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Ports:
        return cls(**{key: int(value) for key, value in data.items()})


PORT_COUNT = 6


def api_server_url(ports: Ports) -> str:
    return f"https://{LOOPBACK}:{ports.apiserver}"


def etcd_args(binary: Path, layout: Layout, ports: Ports) -> list[str]:
    client = f"http://{LOOPBACK}:{ports.etcd_client}"
    peer = f"http://{LOOPBACK}:{ports.etcd_peer}"
    return [
        str(binary),
        "--name=node0",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=node0={peer}",
        "--initial-cluster-state=new",
        # A throw-away store: losing writes on a crash is fine, waiting for the disk is not.
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def apiserver_args(
    binary: Path, layout: Layout, ports: Ports, pod_gateway: str | None = None
) -> list[str]:
    """The API server's command line.

    With ``pod_gateway`` (a real node) Pods must reach it too, as in-cluster clients do (the
    router watches its routes, the chart's operator runs in a Pod): it then listens on every
    address of the host, and the ``kubernetes`` Service's endpoint is the node bridge's gateway
    (which kube-proxy routes ``10.96.0.1:443`` to). Otherwise it listens on loopback only.
    """
    if pod_gateway is not None:
        where = ["--bind-address=0.0.0.0", f"--advertise-address={pod_gateway}"]
    else:
        where = [
            f"--bind-address={LOOPBACK}",
            # Without it the API server looks for a default route and refuses to start without one.
            f"--advertise-address={LOOPBACK}",
            # The "kubernetes" Service would get Endpoints at 127.0.0.1, which the API server
            # refuses.
            "--endpoint-reconciler-type=none",
        ]
    return [
        str(binary),
        f"--etcd-servers=http://{LOOPBACK}:{ports.etcd_client}",
        *where,
        f"--secure-port={ports.apiserver}",
        f"--cert-dir={layout.pki}",
        f"--tls-cert-file={layout.serving_cert()}",
        f"--tls-private-key-file={layout.serving_key()}",
        f"--client-ca-file={layout.ca_cert()}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={layout.sa_pub()}",
        f"--service-account-signing-key-file={layout.sa_key()}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",
        "--allow-privileged=true",
        # Publishes a request-header CA in kube-system/extension-apiserver-authentication; without
        # it the controller manager and the scheduler log an error for it every few seconds.
        f"--requestheader-client-ca-file={layout.ca_cert()}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        # kubectl logs/exec/port-forward dial the node's InternalIP: the node name of a real
        # node does not resolve, and the simulated node's InternalIP is 127.0.0.1.
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        # The API server authenticates to a real kubelet as the admin user (the kubelet checks
        # it against the plane's CA and asks the API server whether it may).
        f"--kubelet-client-certificate={layout.admin_cert()}",
        f"--kubelet-client-key={layout.admin_key()}",
    ]


def _component_common(layout: Layout, port: int) -> list[str]:
    """Flags the controller manager and the scheduler share: admin kubeconfig, loopback TLS."""
    kubeconfig = str(layout.kubeconfig)
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={port}",
        f"--tls-cert-file={layout.serving_cert()}",
        f"--tls-private-key-file={layout.serving_key()}",
        "--authorization-always-allow-paths=/healthz,/readyz,/livez",
        "--leader-elect=false",
    ]


def controller_manager_args(binary: Path, layout: Layout, ports: Ports) -> list[str]:
    return [
        str(binary),
        *_component_common(layout, ports.controller_manager),
        f"--root-ca-file={layout.ca_cert()}",
        f"--service-account-private-key-file={layout.sa_key()}",
        f"--cluster-signing-cert-file={layout.ca_cert()}",
        f"--cluster-signing-key-file={layout.ca_key()}",
        # A local plane has one client to serve; the defaults (20 QPS) would make the controller
        # manager, not the code under test, the bottleneck of any scale test.
        "--kube-api-qps=500",
        "--kube-api-burst=1000",
        "--concurrent-deployment-syncs=20",
        "--concurrent-replicaset-syncs=20",
    ]


def scheduler_args(binary: Path, layout: Layout, ports: Ports) -> list[str]:
    return [
        str(binary),
        *_component_common(layout, ports.scheduler),
        "--kube-api-qps=500",
        "--kube-api-burst=1000",
    ]


def kwok_args(binary: Path, layout: Layout, ports: Ports) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={layout.kubeconfig}",
        f"--config={layout.kwok_config}",
        # Only nodes annotated as simulated: a real kubelet's node must never be raced by kwok
        # over Pod status and the node lease.
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={SIMULATED_NODE_ANNOTATION}=fake",
        "--node-lease-duration-seconds=40",
        f"--cidr={POD_CIDR}",
        # The network rule: the simulated node's address is loopback, and its "kubelet" port is
        # kwok's own server, so nothing is ever dialled outside this machine.
        f"--node-ip={LOOPBACK}",
        f"--node-port={ports.kwok}",
        f"--server-address={LOOPBACK}:{ports.kwok}",
    ]


def kubeconfig_text(
    server: str,
    layout: Layout,
    cluster: str,
    *,
    user: str = "admin",
    cert: Path | None = None,
    key: Path | None = None,
) -> str:
    """A kubeconfig with absolute paths to the run dir's PKI: by default the admin user
    (``system:masters``); ``cert``/``key`` give another identity (the real node's)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {"server": server, "certificate-authority": str(layout.ca_cert())},
            }
        ],
        "users": [
            {
                "name": f"{cluster}-{user}",
                "user": {
                    "client-certificate": str(cert or layout.admin_cert()),
                    "client-key": str(key or layout.admin_key()),
                },
            }
        ],
        "contexts": [
            {"name": cluster, "context": {"cluster": cluster, "user": f"{cluster}-{user}"}}
        ],
        "current-context": cluster,
        "preferences": {},
    }
    return yaml.safe_dump(config, sort_keys=False)


def node_manifest(name: str = NODE_NAME) -> dict[str, Any]:
    """The simulated node. Without taints, so any Pod schedules onto it."""
    # Room for scale benchmarks (thousands of simulated pods), unlike a real node's 110.
    capacity = {"cpu": "1000", "memory": "4Ti", "pods": "10000", "ephemeral-storage": "100Ti"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
            "annotations": {SIMULATED_NODE_ANNOTATION: "fake"},
        },
        "status": {"capacity": dict(capacity), "allocatable": dict(capacity)},
    }


def stages_text() -> str:
    """The kwok Stage set shipped with the package (``kwok-stages.yaml``)."""
    return resources.files("seaway.localplane").joinpath(STAGES_RESOURCE).read_text("utf-8")


def parse_stages(text: str) -> list[dict[str, Any]]:
    """Parse and check a kwok Stage set: only Stages, unique names, a selector on each."""
    stages = [doc for doc in yaml.safe_load_all(text) if doc]
    names: set[str] = set()
    for stage in stages:
        if stage.get("apiVersion") != "kwok.x-k8s.io/v1alpha1" or stage.get("kind") != "Stage":
            raise ValueError(f"not a kwok Stage: {json.dumps(stage)[:80]}")
        name = stage["metadata"]["name"]
        if name in names:
            raise ValueError(f"duplicate kwok Stage name {name!r}")
        names.add(name)
        if not stage.get("spec", {}).get("selector"):
            raise ValueError(f"kwok Stage {name!r} has no selector (it would match everything)")
    kinds = {stage["spec"]["resourceRef"]["kind"] for stage in stages}
    if not {"Node", "Pod"} <= kinds:
        raise ValueError("the kwok Stage set needs stages for both Nodes and Pods")
    return stages


def kwok_config_text(stages: str) -> str:
    """The file passed to ``kwok --config``: the checked stages, one YAML document each."""
    documents = parse_stages(stages)
    return "".join("---\n" + yaml.safe_dump(doc, sort_keys=False) for doc in documents)
