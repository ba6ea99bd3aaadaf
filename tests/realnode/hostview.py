"""What a real node could leave on this host, read from the host itself: compared before ``up``
and after ``down``, one item at a time, so a failure names what was left behind."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

from seaway.localplane import host, network, nodeconfig

#: Sysctl trees the node's programs are known to touch, read whole (a new change shows up even if
#: no one thought of it), minus counters that move by themselves.
SYSCTL_TREES = (
    "net/ipv4/conf/all",
    "net/ipv4/conf/default",
    "net/ipv6/conf/all",
    "net/ipv6/conf/default",
    "net/bridge",
    "net/netfilter",
    "kernel/keys",
)
VOLATILE = ("nf_conntrack_count", "stable_secret", "nf_conntrack_events_retry_timeout")


def sysctls() -> dict[str, str]:
    values = network.read_sysctls()
    root = Path("/proc/sys")
    for tree in SYSCTL_TREES:
        base = root / tree
        if not base.is_dir():
            continue
        for path in base.rglob("*"):
            if not path.is_file() or path.name in VOLATILE:
                continue
            try:
                values[str(path.relative_to(root))] = path.read_text().strip()
            except OSError:
                continue
    return values


def iptables_listing() -> dict[str, list[str]]:
    return {
        f"{tool} -t {table}": network.list_rules(tool, table).splitlines()
        for tool in network.IPTABLES
        for table in network.TABLES
    }


def node_mounts(run_dir: Path) -> list[str]:
    """Mount points the node could have made: in its run dir (containers' root file systems,
    volumes), Pods' network namespaces, and the kubelet's and the shims' fixed directories."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = host.unescape_mount_path(line.split()[4])
        if str(run_dir) in point or point.startswith(
            ("/run/netns", "/var/lib/kubelet", "/run/containerd")
        ):
            found.append(point)
    return sorted(found)


def node_processes(run_dir: Path) -> list[str]:
    """Live processes naming the run dir: every component, containerd's shims and the image
    imports do (``--config``, ``-address``). Not "started from the node's binaries": other tests
    on the machine run throwaway containerds of their own from them."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode("utf-8", "replace").split("\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z":
            continue
        text = " ".join(argv)
        if str(run_dir) in text:
            found.append(f"{proc.name}: {text[:200]}")
    return found


@dataclass(frozen=True)
class HostView:
    processes: list[str]
    mounts: list[str]
    netns: list[str]
    iptables: dict[str, list[str]]
    links: list[str]
    cgroups: list[str]
    paths: dict[str, bool]
    sysctls: dict[str, str]
    lock_file: bool

    @classmethod
    def capture(cls, run_dir: Path, node_dir: Path) -> HostView:
        netns = Path("/run/netns")
        return cls(
            processes=node_processes(run_dir),
            mounts=node_mounts(run_dir),
            netns=sorted(p.name for p in netns.iterdir()) if netns.is_dir() else [],
            iptables=iptables_listing(),
            links=sorted(p.name for p in Path("/sys/class/net").iterdir()),
            cgroups=sorted(str(p) for p in host.kubepods_dirs()),
            paths={p: os.path.lexists(p) for p in host.HOST_PATHS},
            sysctls=sysctls(),
            lock_file=nodeconfig.LOCK_FILE.exists(),
        )

    def differences(self, other: HostView) -> dict[str, str]:
        """Each item that differs, with what changed (empty when the host is as it was)."""
        out = {}
        for item in fields(self):
            before, after = getattr(self, item.name), getattr(other, item.name)
            if before == after:
                continue
            if isinstance(before, dict):
                keys = sorted(set(before) | set(after))
                changes = [f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in keys
                           if before.get(k) != after.get(k)]  # fmt: skip
                out[item.name] = "; ".join(changes)[:2000]
            else:
                out[item.name] = f"{before!r} -> {after!r}"[:2000]
        return out

