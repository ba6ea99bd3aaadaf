"""Can this host run a real node? One line per missing prerequisite, checked before anything starts.

:func:`gather` reads the facts from the host (cheap: no process is started except ``iptables
-S`` and ``ip addr``); :func:`problems` turns facts into :class:`Problem` lines and is PURE, so
every message is unit-tested without a host that lacks it. ``seaway cluster up`` prints the short
reasons in its one mode line ("not root: pods are simulated"); ``--real-node`` prints every
line and exits non-zero before anything starts.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from seaway.localplane import images, network, nodeconfig


@dataclass(frozen=True)
class Problem:
    """``short`` fits in the mode line; ``line`` says what to do about it."""

    short: str
    line: str


@dataclass(frozen=True)
class Facts:
    is_root: bool
    has_iptables: bool
    has_ip: bool
    cni_dir: Path
    cni_missing: tuple[str, ...]
    node_dir: Path
    binaries_missing: tuple[str, ...]
    image_problems: tuple[str, ...]
    #: "cluster NAME (run dir DIR)" of the live real node holding the host lock, if any.
    other_node: str | None
    pod_range_used: tuple[str, ...]
    #: KUBE-*/CNI-* iptables chains while no Seaway node holds the lock.
    foreign_chains: tuple[str, ...]
    long_sockets: tuple[str, ...]
    #: The kernel mounts overlay file systems (``/proc/filesystems`` lists ``overlay``).
    has_overlay: bool = True
    #: Bridged traffic passes iptables (``/proc/sys/net/bridge`` exists: br_netfilter loaded),
    #: without which a Pod cannot reach a Service whose endpoint is on the same bridge.
    has_bridge_netfilter: bool = True


def problems(facts: Facts) -> list[Problem]:
    found = []
    if not facts.is_root:
        found.append(
            Problem("not root", "not root: a real node runs containers and sets up their network")
        )
    if not facts.has_iptables:
        found.append(
            Problem(
                "no iptables",
                "iptables not found on PATH (install it: apt-get install iptables)",
            )
        )
    if not facts.has_ip:
        found.append(
            Problem("no ip command", "ip not found on PATH (install it: apt-get install iproute2)")
        )
    if facts.cni_missing:
        found.append(
            Problem(
                "no CNI plugins",
                f"CNI plugins missing in {facts.cni_dir}: {', '.join(facts.cni_missing)} "
                "(install them: apt-get install containernetworking-plugins)",
            )
        )
    if facts.binaries_missing:
        found.append(
            Problem(
                "node binaries not built",
                f"node binaries missing in {facts.node_dir / 'bin'}: "
                f"{', '.join(facts.binaries_missing)} (build them with `make node`)",
            )
        )
    if facts.image_problems:
        found += [Problem("images not built", line) for line in facts.image_problems]
    if facts.other_node:
        found.append(
            Problem(
                "another real node runs on this host",
                f"another real node runs on this host: {facts.other_node}; only one can "
                "(stop it with `seaway cluster down`, or use --simulated)",
            )
        )
    if facts.pod_range_used:
        found.append(
            Problem(
                "the Pod network's addresses are taken",
                f"{nodeconfig.POD_CIDR}, the real node's Pod network, is already used here by "
                f"{', '.join(facts.pod_range_used)}",
            )
        )
    if facts.foreign_chains:
        shown = ", ".join(facts.foreign_chains[:3])
        more = f" and {len(facts.foreign_chains) - 3} more" if len(facts.foreign_chains) > 3 else ""
        found.append(
            Problem(
                "another Kubernetes node's iptables chains",
                f"iptables chains of another Kubernetes node are on this host ({shown}{more}); "
                "a real node would remove them when it stops",
            )
        )
    if not facts.has_overlay:
        found.append(
            Problem(
                "no overlay file system",
                "the kernel has no overlay file system, which containerd needs "
                "(load it: modprobe overlay)",
            )
        )
    if not facts.has_bridge_netfilter:
        found.append(
            Problem(
                "no bridge netfilter",
                "bridged traffic does not pass iptables (/proc/sys/net/bridge is missing), so "
                "Pods could not reach Services (load it: modprobe br_netfilter)",
            )
        )
    if facts.long_sockets:
        found.append(
            Problem(
                "run directory path too long",
                f"the run directory's path is too long for a unix socket "
                f"({facts.long_sockets[0]}); use a shorter XDG_CACHE_HOME or --name",
            )
        )
    return found


def reasons(found: list[Problem]) -> str:
    """The mode line's reason: the short forms, each once."""
    shorts = list(dict.fromkeys(problem.short for problem in found))
    return ", ".join(shorts)


def gather(
    env: Mapping[str, str],
    node: nodeconfig.NodeLayout,
    other_node: str | None,
    lock_held: bool,
) -> Facts:
    """The facts about this host. ``other_node`` and ``lock_held`` come from the host lock
    (:func:`seaway.localplane.node.holder`): chains are foreign only when no Seaway node
    (live or crashed) holds it."""
    node_dir = nodeconfig.node_dir(env)
    bins = nodeconfig.binary_paths(node_dir)
    binaries_missing = tuple(
        name for name, path in bins.items() if not (path.is_file() and os.access(path, os.X_OK))
    )
    cni_dir = Path(env.get("SEAWAY_CNI_BIN_DIR") or nodeconfig.CNI_BIN_DIR)
    cni_missing = tuple(p for p in nodeconfig.CNI_PLUGINS if not (cni_dir / p).is_file())
    has_iptables = shutil.which("iptables", path=env.get("PATH")) is not None
    is_root = os.geteuid() == 0
    chains: tuple[str, ...] = ()
    if is_root and has_iptables and not lock_held:
        chains = tuple(network.node_chains())
    return Facts(
        is_root=is_root,
        has_iptables=has_iptables,
        has_ip=shutil.which("ip", path=env.get("PATH")) is not None,
        cni_dir=cni_dir,
        cni_missing=cni_missing,
        node_dir=node_dir,
        binaries_missing=binaries_missing,
        image_problems=tuple(images.problems(nodeconfig.images_dir(node_dir))),
        other_node=other_node,
        pod_range_used=tuple(network.pod_range_conflicts()),
        foreign_chains=chains,
        long_sockets=tuple(str(p) for p in node.too_long()),
        has_overlay=_kernel_has_overlay(),
        has_bridge_netfilter=Path("/proc/sys/net/bridge").is_dir(),
    )


def _kernel_has_overlay() -> bool:
    try:
        listed = Path("/proc/filesystems").read_text()
    except OSError:
        return False
    return any(line.split()[-1:] == ["overlay"] for line in listed.splitlines())
