"""The local Kubernetes control plane: a real API server on 127.0.0.1, no Docker needed.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (which simulates a node
and the kubelet on it) run as plain processes, built from the upstream Go modules by
``hack/build-control-plane.sh``. ``seaway cluster up`` and the test fixtures start it.

- :mod:`~seaway.localplane.config`: PURE flag lists, kubeconfig, run-dir layout, kwok stages
- :mod:`~seaway.localplane.pki`: certificates (openssl)
- :mod:`~seaway.localplane.processes`: detached processes, the state file, clean shutdown
- :mod:`~seaway.localplane.plane`: start order, readiness waits, status, stop
- :mod:`~seaway.localplane.binaries`: finding (and building) the binaries

Nothing here ever connects to a simulated Pod, Service or Node address: every component and the
simulated node listen on 127.0.0.1 (see docs/localplane.md).
"""

from seaway.localplane.plane import Plane, PlaneError, Status, load, start, status, stop

__all__ = ["Plane", "PlaneError", "Status", "load", "start", "status", "stop"]
