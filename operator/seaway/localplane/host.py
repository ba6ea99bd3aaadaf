"""What a real node changes outside its run directory, recorded before it starts and undone by
``down``.

The kubelet, the container runtime and the CNI plugins write to fixed places of the host that
no flag moves: ``/var/lib/kubelet/device-plugins``, ``/var/log/containers``, ``/var/lib/cni``,
the shims' ``/run/containerd``, network namespaces in ``/run/netns``, ``kubepods`` cgroups,
iptables chains, a few sysctls, mounts. :func:`snapshot` records what exists before the node
starts; :func:`clean` (run after every process of the plane stopped) kills what still runs in
the node's cgroups, unmounts, removes the chains, the bridge and the cgroups, deletes the
directories the node created and writes back every sysctl it changed. Each step is best effort
and reported, so one failure never leaves the rest undone; running it twice is harmless.

One real node per host (a lock file, see :mod:`seaway.localplane.node`) is what makes removing
every ``KUBE-*``/``CNI-*`` chain and ``kubepods`` cgroup safe: on such a host they are ours.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seaway.localplane import network, nodeconfig

logger = logging.getLogger(__name__)

#: Places outside the run dir that the node's components create when missing.
HOST_PATHS = (
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/log/pods",
    "/var/lib/cni",
    "/var/lib/containerd",
    "/run/containerd",
    "/run/netns",
    "/run/nri",
    "/opt/containerd",
    "/opt/cni",
    "/etc/kubernetes",
    "/usr/libexec/kubernetes",
    "/run/xtables.lock",
)
#: Of those, the ones the node may mount things under (unmounted by ``down`` when it made them).
_MOUNTED_DIRS = ("/var/lib/kubelet", "/run/containerd", "/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBEPODS = "kubepods"
_MNT_DETACH = 2


@dataclass(frozen=True)
class Record:
    """What the host looked like before the node started (kept in the plane's state file)."""

    sysctls: dict[str, str] = field(default_factory=dict)
    existed: dict[str, bool] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"sysctls": dict(self.sysctls), "existed": dict(self.existed)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        return cls(
            sysctls={str(k): str(v) for k, v in data.get("sysctls", {}).items()},
            existed={str(k): bool(v) for k, v in data.get("existed", {}).items()},
        )


def snapshot(paths: Iterable[str] = HOST_PATHS) -> Record:
    return Record(
        sysctls=network.read_sysctls(),
        existed={path: os.path.lexists(path) for path in paths},
    )


# -- pure helpers -------------------------------------------------------------------------------


def unescape_mount_path(text: str) -> str:
    """A mount point as ``/proc/self/mountinfo`` writes it (``\\040`` for a space) (PURE)."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 3 < len(text) and text[i + 1 : i + 4].isdigit():
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def mounts_under(mountinfo: str, prefixes: Sequence[str]) -> list[str]:
    """Mount points at or below any of ``prefixes``, deepest first (PURE)."""
    found = []
    for line in mountinfo.splitlines():
        words = line.split()
        if len(words) < 5:
            continue
        point = unescape_mount_path(words[4])
        for prefix in prefixes:
            base = prefix.rstrip("/")
            if point == base or point.startswith(base + "/"):
                found.append(point)
                break
    # Deepest first; the same point mounted twice is unmounted twice.
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def to_remove(record: Record) -> list[str]:
    """Host paths the node created: absent before it started (PURE)."""
    return [path for path, existed in record.existed.items() if not existed]


def changed_sysctls(record: Record, now: Mapping[str, str]) -> dict[str, str]:
    """The recorded value of every sysctl whose value differs now (PURE)."""
    return {
        name: value
        for name, value in record.sysctls.items()
        if name in now and now[name].split() != value.split()
    }


# -- acting -------------------------------------------------------------------------------------


def _umount(path: str) -> str | None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(os.fsencode(path), _MNT_DETACH) != 0:
        errno = ctypes.get_errno()
        if errno in (22, 2):  # EINVAL: not a mount point (any more); ENOENT: gone
            return None
        return f"cannot unmount {path}: {os.strerror(errno)}"
    return None


def mount_tmpfs(path: Path) -> None:
    """Mount a fresh tmpfs on ``path`` (made if missing); raises OSError."""
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "mode=0711", "seaway-node", str(path)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise OSError(result.stderr.strip() or f"mount exited with {result.returncode}")


def unmount_all(prefixes: Sequence[str]) -> list[str]:
    errors: list[str] = []
    for _ in range(3):  # stacked mounts show up again after the top one goes
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return []
        points = mounts_under(mountinfo, prefixes)
        if not points:
            return errors
        errors = [e for e in (_umount(p) for p in points) if e]
    return errors


def kubepods_dirs(root: Path = CGROUP_ROOT) -> list[Path]:
    """Every ``kubepods`` cgroup directory, in each hierarchy (v1 controllers and v2)."""
    found = []
    candidates = [root, *(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []
    for hierarchy in candidates:
        top = hierarchy / KUBEPODS
        if top.is_dir():
            found.append(top)
    return found


def _cgroup_pids(top: Path) -> set[int]:
    pids: set[int] = set()
    for procs in top.rglob("cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            pids |= {int(x) for x in procs.read_text().split()}
    return pids


def _pids_with_arg(needle: str) -> set[int]:
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if needle in (proc / "cmdline").read_bytes().decode("utf-8", "replace"):
                found.add(int(proc.name))
    return found


def kill_leftovers(node: nodeconfig.NodeLayout, timeout: float = 10.0) -> list[str]:
    """SIGKILL every process in a ``kubepods`` cgroup and every containerd shim of this node."""
    deadline = time.monotonic() + timeout
    me = os.getpid()
    while True:
        pids = {p for top in kubepods_dirs() for p in _cgroup_pids(top)}
        pids |= _pids_with_arg(str(node.containerd_socket))
        pids.discard(me)
        if not pids:
            return []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() >= deadline:
            return [f"processes still running in the node's cgroups: {sorted(pids)}"]
        time.sleep(0.1)


def remove_cgroups(timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for top in kubepods_dirs():
            dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
            for directory in [*dirs, top]:
                try:
                    directory.rmdir()
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    left.append(f"{directory}: {exc.strerror}")
        if not left:
            return []
        if time.monotonic() >= deadline:
            return [f"cannot remove cgroup {left[0]}" + (f" (+{len(left) - 1})" if left else "")]
        time.sleep(0.2)


def remove_netns_files() -> list[str]:
    errors = []
    netns = Path("/run/netns")
    if netns.is_dir():
        for entry in netns.glob("cni-*"):
            try:
                entry.unlink()
            except OSError as exc:
                errors.append(f"cannot remove {entry}: {exc.strerror}")
    return errors


def remove_paths(paths: Iterable[str]) -> list[str]:
    """Delete each path, but never one with something still mounted below it: removing files
    through a mount (a hostPath volume) would delete the host's own files."""
    errors = []
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError:
        mountinfo = ""
    for path in paths:
        target = Path(path)
        mounted = mounts_under(mountinfo, [path])
        if mounted:
            errors.append(f"not removing {path}: {mounted[0]} is still mounted")
            continue
        try:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif os.path.lexists(target):
                target.unlink()
        except OSError as exc:
            errors.append(f"cannot remove {path}: {exc.strerror}")
    return errors


def clean(
    record: Record, node: nodeconfig.NodeLayout, proxy_binary: Path | None = None
) -> list[str]:
    """Undo everything the node did to the host; returns what could not be undone."""
    errors: list[str] = []
    errors += kill_leftovers(node)
    if proxy_binary is not None and proxy_binary.is_file():
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(
                [str(proxy_binary), "--cleanup"], capture_output=True, timeout=60, check=False
            )
    errors += network.remove_chains()
    # Only what the node owns: its network namespaces (cni-*), and the directories it created.
    prefixes = [str(node.root), *(str(p) for p in Path("/run/netns").glob("cni-*"))]
    prefixes += [p for p in _MOUNTED_DIRS if not record.existed.get(p, True)]
    errors += unmount_all(prefixes)
    errors += remove_netns_files()
    network.delete_bridge()
    errors += remove_cgroups()
    errors += remove_paths(to_remove(record))
    errors += network.write_sysctls(changed_sysctls(record, network.read_sysctls()))
    for error in errors:
        logger.warning("Could not undo: %s", error)
    return errors
