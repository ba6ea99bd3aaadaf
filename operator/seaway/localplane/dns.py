"""Cluster DNS for the real node: CoreDNS as a host process on the bridge's gateway (PURE).

The router reaches model servers at ``http://<revision>.<namespace>.svc:8080``, so Pods need
cluster DNS. CoreDNS answers ``cluster.local`` from the API server (admin kubeconfig) and hands
other names to the host's resolvers. It binds the gateway only: the kubelet writes that address
into every Pod's ``resolv.conf``, and nothing else on the machine sees a new port 53. Health and
readiness answer on free loopback ports.
"""

from __future__ import annotations

from pathlib import Path

from seaway.localplane import config, nodeconfig


def corefile(layout: config.Layout, ports: nodeconfig.NodePorts) -> str:
    bind = nodeconfig.GATEWAY
    domain = nodeconfig.CLUSTER_DOMAIN
    return (
        f"{domain}:{nodeconfig.DNS_PORT} {{\n"
        f"    bind {bind}\n"
        f"    health {config.LOOPBACK}:{ports.dns_health}\n"
        f"    ready {config.LOOPBACK}:{ports.dns_ready}\n"
        f"    kubernetes {domain} {{\n"
        f"        kubeconfig {layout.kubeconfig}\n"
        "        pods insecure\n"
        "    }\n"
        "    cache 5\n"
        "    errors\n"
        "}\n"
        f".:{nodeconfig.DNS_PORT} {{\n"
        f"    bind {bind}\n"
        "    forward . /etc/resolv.conf\n"
        "    cache 30\n"
        "    errors\n"
        "}\n"
    )


def args(binary: Path, node: nodeconfig.NodeLayout) -> list[str]:
    return [str(binary), "-conf", str(node.corefile)]
