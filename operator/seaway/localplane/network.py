"""The real node's Pod network: the bridge, the CNI configuration, iptables and sysctls.

Pods get a veth on the bridge ``seaway0`` (made here before anything starts, so its gateway
address exists for the kubelet and CoreDNS; the CNI ``bridge`` plugin then reuses it) and an
address from ``10.88.0.0/16`` (``host-local`` IPAM, its state in the run dir). The pure parts
(the conflist, the reading of ``iptables -S``, ``ip`` output and sysctl names) are separate
functions; the rest runs ``ip`` and ``iptables`` as root.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from seaway.localplane import nodeconfig

logger = logging.getLogger(__name__)

#: Chain prefixes the kubelet, kube-proxy, the CNI plugins and the node itself create.
CHAIN_PREFIXES = ("KUBE-", "CNI-", "SEAWAY-")
#: The node's own chain: a ClusterIP that kube-proxy has not translated (a Service created a
#: moment ago, before kube-proxy's next sync) is refused here. Without it the packet follows the
#: default route off this machine, where an address that exists nowhere may still answer (seen:
#: a router's connection to a new revision's Service answered 404 by the default gateway, and
#: kept alive, for the whole canary). A refused connection is what a client retries.
GUARD_CHAIN = "SEAWAY-SERVICES"
TABLES = ("filter", "nat", "mangle", "raw")
IPTABLES = ("iptables", "ip6tables")
_BUILTIN = {"INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"}

#: Sysctls the node (or the kubelet and kube-proxy it starts) may change, restored by ``down``.
#: The kubelet sets the ``vm``/``kernel`` ones (its ``protectKernelDefaults`` is off); the CNI
#: bridge plugin and the node set ``ip_forward``.
SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/route_localnet",
    "net/ipv4/conf/all/forwarding",
    "net/ipv6/conf/all/forwarding",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
    "net/netfilter/nf_conntrack_tcp_be_liberal",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
#: What the node needs set before Pods can reach each other and Services.
REQUIRED_SYSCTLS = {"net/ipv4/ip_forward": "1", "net/bridge/bridge-nf-call-iptables": "1"}


class NetworkError(RuntimeError):
    """A network command failed (its stderr is in the message)."""


def conflist(node: nodeconfig.NodeLayout) -> dict[str, object]:
    """The CNI network: bridge + host-local IPAM, port mappings, loopback (PURE)."""
    return {
        "cniVersion": "1.0.0",
        "name": "seaway",
        "plugins": [
            {
                "type": "bridge",
                "bridge": nodeconfig.BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": nodeconfig.POD_CIDR, "gateway": nodeconfig.GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(node.ipam_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "loopback"},
        ],
    }


def conflist_text(node: nodeconfig.NodeLayout) -> str:
    return json.dumps(conflist(node), indent=2) + "\n"


# -- iptables -----------------------------------------------------------------------------------


def is_node_chain(name: str) -> bool:
    return name.startswith(CHAIN_PREFIXES)


def chains(rules: str) -> list[str]:
    """User-defined chains that ``iptables -S`` output declares (``-N NAME``) (PURE)."""
    return [line.split()[1] for line in rules.splitlines() if line.startswith("-N ")]


def cleanup_commands(table: str, rules: str) -> list[list[str]]:
    """The iptables arguments that remove every node chain from one table (PURE).

    First the rules in other chains that jump to a node chain (``-D``, the rule as listed), then
    each node chain is flushed (``-F``) and deleted (``-X``): a chain can only go once nothing
    refers to it.
    """
    node_chains = [name for name in chains(rules) if is_node_chain(name)]
    commands: list[list[str]] = []
    for line in rules.splitlines():
        words = line.split()
        if len(words) < 2 or words[0] != "-A" or is_node_chain(words[1]):
            continue
        if any(is_node_chain(word) for word in _targets(words)):
            commands.append(["-t", table, "-D", *_unquote(line[3:])])
    commands += [["-t", table, "-F", name] for name in node_chains]
    commands += [["-t", table, "-X", name] for name in node_chains]
    return commands


def _targets(words: list[str]) -> list[str]:
    return [words[i + 1] for i, word in enumerate(words[:-1]) if word in ("-j", "-g")]


def _unquote(rule: str) -> list[str]:
    """Split an ``iptables -S`` rule as a shell would (comments are double-quoted)."""
    import shlex

    return shlex.split(rule)


def _binary(name: str) -> str | None:
    return shutil.which(name)


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise NetworkError(f"{' '.join(argv)} failed: {detail}")
    return result


def list_rules(tool: str, table: str) -> str:
    """``iptables -t TABLE -S`` (empty when the tool or the table is not there)."""
    binary = _binary(tool)
    if binary is None:
        return ""
    result = _run([binary, "-w", "5", "-t", table, "-S"], check=False)
    return result.stdout if result.returncode == 0 else ""


def node_chains() -> list[str]:
    """``tool/table/chain`` of every node chain on this host."""
    found = []
    for tool in IPTABLES:
        for table in TABLES:
            found += [
                f"{tool}/{table}/{name}"
                for name in chains(list_rules(tool, table))
                if is_node_chain(name)
            ]
    return found


def remove_chains() -> list[str]:
    """Remove every KUBE-*/CNI-* chain and the rules that jump to them; returns errors."""
    errors = []
    for tool in IPTABLES:
        binary = _binary(tool)
        if binary is None:
            continue
        for table in TABLES:
            for command in cleanup_commands(table, list_rules(tool, table)):
                result = _run([binary, "-w", "5", *command], check=False)
                if result.returncode != 0:
                    errors.append(f"{tool} {' '.join(command)}: {result.stderr.strip()}")
    return errors


def guard_commands(service_cidr: str) -> list[list[str]]:
    """The ``iptables`` arguments that make :data:`GUARD_CHAIN` and hook it first into FORWARD
    (Pods) and OUTPUT (this host) (PURE). The filter table sees packets after kube-proxy's DNAT,
    so only a ClusterIP left untranslated still has an address in ``service_cidr`` there."""
    return [
        ["-t", "filter", "-N", GUARD_CHAIN],
        ["-t", "filter", "-A", GUARD_CHAIN, "-d", service_cidr, "-p", "tcp",
         "-m", "comment", "--comment", "ClusterIP without a kube-proxy rule yet",
         "-j", "REJECT", "--reject-with", "tcp-reset"],
        ["-t", "filter", "-A", GUARD_CHAIN, "-d", service_cidr,
         "-m", "comment", "--comment", "ClusterIP without a kube-proxy rule yet",
         "-j", "REJECT", "--reject-with", "icmp-port-unreachable"],
        ["-t", "filter", "-I", "FORWARD", "1", "-j", GUARD_CHAIN],
        ["-t", "filter", "-I", "OUTPUT", "1", "-j", GUARD_CHAIN],
    ]


def install_guard(service_cidr: str) -> None:
    """Create :data:`GUARD_CHAIN` unless it is there (``down`` removes it with the other node
    chains)."""
    binary = _binary("iptables")
    if binary is None:
        raise NetworkError("iptables not found on PATH")
    if GUARD_CHAIN in chains(list_rules("iptables", "filter")):
        return
    for command in guard_commands(service_cidr):
        _run([binary, "-w", "5", *command])


# -- the bridge ---------------------------------------------------------------------------------


def _ip() -> str:
    return _binary("ip") or "ip"


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def create_bridge() -> None:
    """``seaway0`` with the gateway address, up (idempotent)."""
    if not link_exists(nodeconfig.BRIDGE):
        _run([_ip(), "link", "add", nodeconfig.BRIDGE, "type", "bridge"])
    prefix = nodeconfig.POD_CIDR.split("/")[1]
    shown = _run([_ip(), "-4", "-o", "addr", "show", "dev", nodeconfig.BRIDGE]).stdout
    if f" {nodeconfig.GATEWAY}/" not in shown:
        _run([_ip(), "addr", "add", f"{nodeconfig.GATEWAY}/{prefix}", "dev", nodeconfig.BRIDGE])
    _run([_ip(), "link", "set", nodeconfig.BRIDGE, "up"])


def delete_bridge() -> None:
    if link_exists(nodeconfig.BRIDGE):
        _run([_ip(), "link", "delete", nodeconfig.BRIDGE], check=False)


def addresses_in_pod_range(ip_output: str) -> list[str]:
    """Interfaces (other than the node's bridge) with an IPv4 address in 10.88.0.0/16, from
    ``ip -4 -o addr show`` output (PURE)."""
    import ipaddress

    network = ipaddress.ip_network(nodeconfig.POD_CIDR)
    found = []
    for line in ip_output.splitlines():
        words = line.split()
        if len(words) < 4 or words[2] != "inet":
            continue
        device, address = words[1], words[3]
        if device == nodeconfig.BRIDGE:
            continue
        if ipaddress.ip_interface(address).network.overlaps(network):
            found.append(f"{device} ({address})")
    return found


def pod_range_conflicts() -> list[str]:
    if _binary("ip") is None:
        return []
    return addresses_in_pod_range(_run([_ip(), "-4", "-o", "addr", "show"], check=False).stdout)


# -- sysctls ------------------------------------------------------------------------------------


def read_sysctls(names: Iterable[str] = SYSCTLS, root: Path = Path("/proc/sys")) -> dict[str, str]:
    """The current value of each sysctl that exists on this kernel."""
    values = {}
    for name in names:
        try:
            values[name] = (root / name).read_text().strip()
        except OSError:
            continue
    return values


def write_sysctls(values: Mapping[str, str], root: Path = Path("/proc/sys")) -> list[str]:
    """Write each value that differs; returns errors (one line each)."""
    current = read_sysctls(values.keys(), root)
    errors = []
    for name, value in values.items():
        if name not in current or current[name].split() == value.split():
            continue
        try:
            (root / name).write_text(value + "\n")
        except OSError as exc:
            errors.append(f"cannot set {name.replace('/', '.')}={value}: {exc.strerror}")
    return errors
