"""The pure half of the real node: where its files live, its addresses, ports and binaries.

A real node is a kubelet, containerd (with runc), kube-proxy and CoreDNS running beside the
plane on this machine, so Pods run in real containers. Everything it creates sits in the
cluster's run directory (``<run dir>/node``) except what the kernel and the kubelet keep in fixed
places (network, cgroups, a few directories); :mod:`seaway.localplane.host` records and undoes
those.

Addresses. Pods get addresses on a bridge this module names (``seaway0``, ``10.88.0.0/16``),
outside kwok's fake Pod range and the Service range. The bridge's gateway ``10.88.0.1`` is also
the node's address: the kubelet serves on it, CoreDNS answers on it, and the API server dials it
for ``kubectl logs``/``exec``. So nothing depends on this machine's other interfaces or its
default route, and nothing the node does leaves the machine (docs/localplane.md, network rule).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seaway.localplane import config

#: The real node's name (its kubelet registers it, its client certificate names it).
NODE_NAME = "seaway-node-0"
BRIDGE = "seaway0"
POD_CIDR = "10.88.0.0/16"
GATEWAY = "10.88.0.1"
CLUSTER_DOMAIN = "cluster.local"
#: The kubelet's API port on the gateway address (the API server dials it).
KUBELET_PORT = 10250
DNS_PORT = 53
#: Host-wide marker of the one real node this machine can run (see :mod:`seaway.localplane.node`).
LOCK_FILE = Path("/run/seaway-real-node.lock")
#: Where Debian's ``containernetworking-plugins`` installs the CNI plugins.
CNI_BIN_DIR = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
#: Binaries ``hack/build-node.sh`` builds, in ``<node dir>/bin``.
NODE_BINARIES = (
    "kubelet",
    "kube-proxy",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "runc",
    "coredns",
)
#: The image the sandbox of every Pod runs (``images/pause.oci.tar``).
PAUSE_IMAGE = "localhost/pause:3.10"
#: The longest path a unix socket may have on Linux (``sun_path`` is 108 bytes with its NUL).
MAX_SOCKET_PATH = 107


def node_dir(env: Mapping[str, str]) -> Path:
    """``$SEAWAY_NODE_DIR``, else where ``hack/build-node.sh`` writes (``bin/`` and ``images/``)."""
    override = env.get("SEAWAY_NODE_DIR", "")
    if override:
        return Path(override)
    return config.cache_home(env) / "seaway" / "node" / config.k8s_version(env)


@dataclass(frozen=True)
class NodeLayout:
    """The real node's files inside a plane's run directory."""

    root: Path

    @classmethod
    def of(cls, layout: config.Layout) -> NodeLayout:
        return cls(layout.node)

    # containerd
    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd.toml"

    @property
    def containerd_dir(self) -> Path:
        """A tmpfs holding containerd's root and state (see :mod:`seaway.localplane.runtime`)."""
        return self.root / "containerd"

    @property
    def containerd_root(self) -> Path:
        return self.containerd_dir / "root"

    @property
    def containerd_state(self) -> Path:
        return self.containerd_dir / "state"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd.sock"

    @property
    def runc_root(self) -> Path:
        return self.root / "runc"

    # kubelet
    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet.yaml"

    @property
    def kubelet_kubeconfig(self) -> Path:
        return self.root / "kubelet.kubeconfig"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_certs(self) -> Path:
        """The kubelet's self-signed serving certificate."""
        return self.root / "kubelet-pki"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def volume_plugins(self) -> Path:
        return self.root / "volume-plugins"

    # network
    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_conflist(self) -> Path:
        return self.cni_conf_dir / "10-seaway.conflist"

    @property
    def ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def proxy_config(self) -> Path:
        return self.root / "kube-proxy.yaml"

    @property
    def corefile(self) -> Path:
        return self.root / "Corefile"

    def sockets(self) -> list[Path]:
        """Unix sockets under the run dir whose path length the kernel limits."""
        return [self.containerd_socket, Path(f"{self.containerd_socket}.ttrpc")]

    def too_long(self) -> list[Path]:
        return [path for path in self.sockets() if len(os.fsencode(path)) > MAX_SOCKET_PATH]


@dataclass(frozen=True)
class NodePorts:
    """Loopback ports of the node's health and metrics endpoints (picked free at start)."""

    kubelet_healthz: int
    proxy_healthz: int
    proxy_metrics: int
    dns_health: int
    dns_ready: int

    COUNT = 5

    @classmethod
    def from_list(cls, ports: list[int]) -> NodePorts:
        return cls(*ports)

    def as_dict(self) -> dict[str, int]:
        return {
            "kubelet_healthz": self.kubelet_healthz,
            "proxy_healthz": self.proxy_healthz,
            "proxy_metrics": self.proxy_metrics,
            "dns_health": self.dns_health,
            "dns_ready": self.dns_ready,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodePorts:
        return cls(**{key: int(value) for key, value in data.items()})


def binary_paths(node_root: Path) -> dict[str, Path]:
    """Where each node binary is expected (present or not)."""
    return {name: node_root / "bin" / name for name in NODE_BINARIES}


def images_dir(node_root: Path) -> Path:
    return node_root / "images"


def search_path(node_root: Path, inherited: str) -> str:
    """PATH for containerd: its own shim and runc first, never a distribution's older ones."""
    own = str(node_root / "bin")
    return f"{own}:{inherited}" if inherited else own
