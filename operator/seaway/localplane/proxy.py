"""The real node's kube-proxy (iptables mode): its configuration (PURE).

Service ClusterIPs work through kube-proxy's iptables rules, from the host and from Pods (the
router keeps calling Services). The settings that would change the host beyond those rules are
turned off: no conntrack table resizing or timeouts (``maxPerCore: 0`` and zero timeouts leave
the kernel's values), no ``route_localnet`` for NodePorts on 127.0.0.1. Health and metrics bind
free loopback ports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from seaway.localplane import config, nodeconfig


def config_document(layout: config.Layout, ports: nodeconfig.NodePorts) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(layout.kubeconfig)},
        "hostnameOverride": nodeconfig.NODE_NAME,
        "bindAddress": nodeconfig.GATEWAY,
        "clusterCIDR": nodeconfig.POD_CIDR,
        "healthzBindAddress": f"{config.LOOPBACK}:{ports.proxy_healthz}",
        "metricsBindAddress": f"{config.LOOPBACK}:{ports.proxy_metrics}",
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        # A failed rules sync is retried, and chains removed behind kube-proxy's back are
        # noticed, after syncPeriod (30 s by default): on a busy node that left a new Service
        # unreachable for half a minute. 2 s bounds it.
        "iptables": {"localhostNodePorts": False, "syncPeriod": "2s", "minSyncPeriod": "0s"},
    }


def config_text(layout: config.Layout, ports: nodeconfig.NodePorts) -> str:
    return yaml.safe_dump(config_document(layout, ports), sort_keys=False)


def args(binary: Path, node: nodeconfig.NodeLayout) -> list[str]:
    return [str(binary), f"--config={node.proxy_config}"]


def cleanup_args(binary: Path) -> list[str]:
    """Removes kube-proxy's iptables rules and chains (run after it stopped)."""
    return [str(binary), "--cleanup"]
