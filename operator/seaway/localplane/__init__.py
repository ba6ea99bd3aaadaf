"""The local Kubernetes control plane: a real API server on 127.0.0.1, no Docker needed.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler run as plain processes, built
from the upstream Go modules by ``hack/build-control-plane.sh``. Pods run either on kwok's
simulated node, or on a real node (containerd, kubelet, kube-proxy, CoreDNS) when the host allows
it. ``seaway cluster up`` and the test fixtures start it.

- :mod:`~seaway.localplane.config`: PURE flag lists, kubeconfig, run-dir layout, kwok stages
- :mod:`~seaway.localplane.pki`: certificates (openssl)
- :mod:`~seaway.localplane.processes`: detached processes, the state file, clean shutdown
- :mod:`~seaway.localplane.plane`: start order, readiness waits, status, stop
- :mod:`~seaway.localplane.binaries`: finding (and building) the binaries
- the real node: :mod:`~seaway.localplane.nodeconfig` (PURE layout, addresses, ports),
  :mod:`~seaway.localplane.runtime`, :mod:`~seaway.localplane.kubelet`,
  :mod:`~seaway.localplane.proxy`, :mod:`~seaway.localplane.dns` (PURE configs per component),
  :mod:`~seaway.localplane.network` (bridge, CNI, iptables, sysctls),
  :mod:`~seaway.localplane.images` (the image catalog), :mod:`~seaway.localplane.preflight`
  (what is missing), :mod:`~seaway.localplane.host` (what the node changes on the host, undone by
  ``down``) and :mod:`~seaway.localplane.node` (start order, the host lock)

Nothing here ever connects to a simulated Pod, Service or Node address: every component and the
simulated node listen on 127.0.0.1. A real node's own addresses (its bridge ``10.88.0.0/16``)
exist on this machine (see docs/localplane.md).
"""

from seaway.localplane.plane import (
    NodeUnavailable,
    Plane,
    PlaneError,
    Status,
    load,
    start,
    status,
    stop,
)

__all__ = ["NodeUnavailable", "Plane", "PlaneError", "Status", "load", "start", "status", "stop"]
