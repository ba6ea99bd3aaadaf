"""Component processes: start detached, remember by PID, stop without leaving anything behind.

Each component runs in its own session (``start_new_session=True``), so it is the leader of its
own process group, survives the ``seaway cluster up`` command that started it, and is stopped
with one signal to the group. The state file records each PID together with the process start
time read from ``/proc``: a later ``seaway cluster down`` only signals a PID that still belongs to
the process it started, never an unrelated process that reused the number.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)

STATE_VERSION = 1


@dataclass(frozen=True)
class Component:
    """One started process, as recorded in the state file."""

    name: str
    pid: int
    #: Start time of the process in clock ticks since boot (``/proc/<pid>/stat`` field 22), or
    #: None where ``/proc`` does not exist.
    start_ticks: int | None
    argv: tuple[str, ...]
    log: str


def process_start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` (clock ticks since boot), or None if unknown or gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def _process_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()[0]


def is_alive(component: Component) -> bool:
    """True while the recorded process exists, is not a zombie, and is the same process."""
    if Path("/proc/self/stat").exists():
        state = _process_state(component.pid)
        if state is None or state in ("Z", "X"):
            return False
        return process_start_ticks(component.pid) == component.start_ticks
    try:
        os.kill(component.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (all held open together, so none repeats)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Callable[[], None]:
    """A pre-exec hook: the child gets SIGKILL when the thread that started it dies (Linux).

    SIGKILL, not SIGTERM: with everything stopping at once, etcd and the API server wait for
    each other for seconds, and a plane tied to its starter holds throw-away data anyway.
    ctypes is loaded here, in the parent: after fork only the prctl() call itself runs.
    """
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    sigkill = int(signal.SIGKILL)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sigkill)

    return preexec


def spawn(
    name: str,
    argv: Sequence[str],
    log: Path,
    env: dict[str, str] | None = None,
    *,
    die_with_parent: bool = False,
) -> tuple[Component, subprocess.Popen[bytes]]:
    """Start ``argv`` detached, output appended to ``log``; returns its record and its handle.

    ``die_with_parent`` (Linux only) ties the process to the calling thread: if it dies without
    stopping the process (a test run killed with SIGKILL), the kernel kills it too. The CLI
    leaves it off, its processes must outlive it; test sessions turn it on.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    preexec = _die_with_parent() if die_with_parent and sys.platform == "linux" else None
    with log.open("ab") as out:
        out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
            preexec_fn=preexec,  # noqa: PLW1509 - only prctl(), no locks or Python state
        )
    component = Component(
        name=name,
        pid=proc.pid,
        start_ticks=process_start_ticks(proc.pid),
        argv=tuple(argv),
        log=str(log),
    )
    logger.info("Started %s (pid %d)", name, proc.pid)
    return component, proc


def stop(
    components: Sequence[Component],
    handles: dict[int, subprocess.Popen[bytes]] | None = None,
    grace: float = 10.0,
) -> list[Component]:
    """Stop components one by one in reverse start order: SIGTERM, then SIGKILL after ``grace``.

    One by one, because the API server shuts down cleanly only while etcd still answers, and
    the controllers while the API server does. ``handles`` are the Popen objects when this
    process started the components (they are then reaped here, so no zombie stays). Returns the
    components that were running.
    """
    handles = handles or {}
    stopped = []
    for component in reversed(components):
        if not is_alive(component):
            continue
        stopped.append(component)
        began = time.monotonic()
        _signal_group(component, signal.SIGTERM)
        _wait_gone(component, handles.get(component.pid), began + grace)
        if is_alive(component):
            logger.warning(
                "Killed %s (pid %d): it did not stop within %.0fs of SIGTERM",
                component.name,
                component.pid,
                grace,
            )
            _signal_group(component, signal.SIGKILL)
            _wait_gone(component, handles.get(component.pid), time.monotonic() + 5.0)
        else:
            logger.info(
                "Stopped %s (pid %d) in %.1fs",
                component.name,
                component.pid,
                time.monotonic() - began,
            )
    # Reap every handle, including those of processes that had already exited on their own.
    for proc in handles.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1.0)
    return stopped


def _signal_group(component: Component, sig: signal.Signals) -> None:
    try:
        os.killpg(component.pid, sig)
    except ProcessLookupError:
        return
    except PermissionError:
        os.kill(component.pid, sig)


def _wait_gone(component: Component, proc: subprocess.Popen[bytes] | None, deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.05)
        if not is_alive(component):
            return
        time.sleep(0.05)


def tail(path: Path | str, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file ('' when it does not exist)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


# -- state file --------------------------------------------------------------------------------


def write_state(path: Path, data: dict[str, Any], components: Sequence[Component]) -> None:
    """Atomically write the state file (written after every start, so ``down`` finds all)."""
    payload = dict(data, version=STATE_VERSION, components=[asdict(c) for c in components])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)


def read_state(path: Path) -> tuple[dict[str, Any], list[Component]] | None:
    """The state file's data and components, or None when there is no (readable) state file."""
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    components = [
        Component(
            name=c["name"],
            pid=int(c["pid"]),
            start_ticks=c.get("start_ticks"),
            argv=tuple(c.get("argv", ())),
            log=c.get("log", ""),
        )
        for c in payload.pop("components", [])
    ]
    return payload, components


@contextlib.contextmanager
def locked(path: Path) -> Iterator[IO[str]]:
    """Hold an exclusive lock on ``path`` (two ``up``/``down`` at once would fight); yields the
    file, open for reading and appending at its start, for a lock that carries content."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.seek(0)
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
