"""The real node's kubelet: its configuration file and command line (PURE).

Choices a production kubelet would not make, and why they are right for one local node:

- ``cgroupDriver: cgroupfs`` and ``failCgroupV1: false``: the hosts Seaway runs on have no
  systemd and may mount cgroups v1 (kubelet 1.35 refuses v1 unless told otherwise).
- the node's address is the pod bridge's gateway (:data:`nodeconfig.GATEWAY`), where the API
  server dials it for logs and exec; health on a free loopback port.
- authentication by the plane's CA (the API server presents the admin certificate) and
  authorization by asking the API server, so a Pod on the bridge cannot exec into another Pod
  through the kubelet's port.
- ``imageGCHighThresholdPercent: 100``: the images were imported without a registry; a garbage
  collected image could not be pulled again.
- every directory the kubelet lets us choose (root, Pod logs, volume plugins, certificates) is in
  the run dir; the few it does not (``/var/lib/kubelet/device-plugins``,
  ``/var/log/containers``) are removed by :mod:`seaway.localplane.host`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from seaway.localplane import config, nodeconfig


def config_document(
    layout: config.Layout, node: nodeconfig.NodeLayout, ports: nodeconfig.NodePorts
) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
        "address": nodeconfig.GATEWAY,
        "port": nodeconfig.KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": config.LOOPBACK,
        "healthzPort": ports.kubelet_healthz,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(layout.ca_cert())},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDomain": nodeconfig.CLUSTER_DOMAIN,
        "clusterDNS": [nodeconfig.GATEWAY],
        "resolvConf": "/etc/resolv.conf",
        "podLogsDir": str(node.pod_logs),
        "volumePluginDir": str(node.volume_plugins),
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "maxPods": 30,
        "serializeImagePulls": False,
        # Pods find their node's status quickly (the default reports every 5 minutes when
        # nothing changes); a readiness change is reported at once either way.
        "nodeStatusReportFrequency": "10s",
        "registerNode": True,
    }


def config_text(
    layout: config.Layout, node: nodeconfig.NodeLayout, ports: nodeconfig.NodePorts
) -> str:
    return yaml.safe_dump(config_document(layout, node, ports), sort_keys=False)


def args(binary: Path, node: nodeconfig.NodeLayout) -> list[str]:
    return [
        str(binary),
        f"--config={node.kubelet_config}",
        f"--kubeconfig={node.kubelet_kubeconfig}",
        f"--hostname-override={nodeconfig.NODE_NAME}",
        f"--node-ip={nodeconfig.GATEWAY}",
        f"--root-dir={node.kubelet_root}",
        f"--cert-dir={node.kubelet_certs}",
        "--v=1",
    ]
