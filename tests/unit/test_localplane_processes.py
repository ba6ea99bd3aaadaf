"""Detached processes: started in their own group, stopped with nothing left behind.

These start real (tiny Python) processes; no control plane is needed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from seaway.localplane import processes

# Markers are printed as concatenations: the log's header line repeats the command line itself.
SLEEPER = [
    sys.executable,
    "-c",
    "import time; print('sleeper ' + 'up', flush=True); time.sleep(120)",
]


def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        time.sleep(0.02)


def pid_exists(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Popen handles a test started; whatever still runs at the end is killed and reaped."""
    handles: list[subprocess.Popen[bytes]] = []
    yield handles
    for proc in handles:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_spawn_detaches_into_a_new_session_and_logs_to_the_file(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    log = tmp_path / "logs" / "sleeper.log"
    component, proc = processes.spawn("sleeper", SLEEPER, log)
    started.append(proc)
    assert component.pid == proc.pid
    assert os.getpgid(proc.pid) == proc.pid
    assert os.getsid(proc.pid) == proc.pid
    assert component.start_ticks == processes.process_start_ticks(proc.pid)
    eventually(lambda: "sleeper up" in log.read_text())
    assert processes.is_alive(component)


def test_stop_terminates_reaps_and_reports_what_ran(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    first, proc1 = processes.spawn("first", SLEEPER, tmp_path / "first.log")
    second, proc2 = processes.spawn("second", SLEEPER, tmp_path / "second.log")
    started += [proc1, proc2]
    stopped = processes.stop([first, second], {proc1.pid: proc1, proc2.pid: proc2}, grace=5)
    assert [c.name for c in stopped] == ["second", "first"]  # reverse start order
    assert proc1.returncode == -signal.SIGTERM
    assert proc2.returncode == -signal.SIGTERM
    assert not processes.is_alive(first)
    assert processes.stop([first, second]) == []


def test_stop_kills_the_whole_group_including_grandchildren(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    pidfile = tmp_path / "grandchild.pid"
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(120)\n"
    )
    parent, proc = processes.spawn("parent", [sys.executable, "-c", code], tmp_path / "p.log")
    started.append(proc)
    eventually(lambda: pidfile.exists() and pidfile.read_text() != "")
    grandchild = int(pidfile.read_text())
    assert pid_exists(grandchild)
    processes.stop([parent], {proc.pid: proc}, grace=5)
    # The grandchild is reparented and reaped by init once the group's SIGTERM kills it.
    eventually(lambda: not pid_exists(grandchild))


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    log = tmp_path / "stubborn.log"
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('SIGTERM ' + 'ignored', flush=True)\n"
        "time.sleep(120)\n"
    )
    component, proc = processes.spawn("stubborn", [sys.executable, "-c", code], log)
    started.append(proc)
    eventually(lambda: "SIGTERM ignored" in log.read_text())
    began = time.monotonic()
    assert processes.stop([component], {proc.pid: proc}, grace=0.5) == [component]
    assert proc.returncode == -signal.SIGKILL
    assert time.monotonic() - began < 5


def test_stop_from_another_process_needs_no_handle(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    # As `seaway cluster down` does: only the state file is known, not the Popen object.
    component, proc = processes.spawn("sleeper", SLEEPER, tmp_path / "s.log")
    started.append(proc)
    assert processes.stop([component], grace=5) == [component]
    assert proc.wait(timeout=5) == -signal.SIGTERM


def test_a_reused_pid_is_never_signalled(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    component, proc = processes.spawn("sleeper", SLEEPER, tmp_path / "s.log")
    started.append(proc)
    assert component.start_ticks is not None
    impostor = processes.Component(
        name="etcd",
        pid=proc.pid,
        start_ticks=component.start_ticks - 1,
        argv=("etcd",),
        log="",
    )
    assert not processes.is_alive(impostor)
    assert processes.stop([impostor], grace=1) == []
    assert proc.poll() is None, "a process that merely has the recorded PID must survive"


def test_state_file_round_trip(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    component = processes.Component("etcd", 123, 456, ("/bin/etcd", "--x"), "/logs/etcd.log")
    processes.write_state(state, {"name": "t", "ports": {"apiserver": 1}}, [component])
    data, components = processes.read_state(state) or ({}, [])
    assert data["name"] == "t"
    assert data["ports"] == {"apiserver": 1}
    assert data["version"] == processes.STATE_VERSION
    assert components == [component]
    assert not state.with_suffix(".tmp").exists()


def test_missing_or_corrupt_state_reads_as_none(tmp_path: Path) -> None:
    assert processes.read_state(tmp_path / "absent.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert processes.read_state(tmp_path / "bad.json") is None


def test_tail_returns_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert processes.tail(log, 3) == "line 97\nline 98\nline 99"
    assert processes.tail(tmp_path / "absent.log") == ""


def test_free_ports_are_distinct_and_bindable_on_loopback() -> None:
    import socket

    ports = processes.free_ports(6)
    assert len(set(ports)) == 6
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_the_lock_is_exclusive(tmp_path: Path) -> None:
    lock = tmp_path / "run" / ".lock"
    code = (
        "import fcntl, sys\n"
        f"f = open({str(lock)!r}, 'a')\n"
        "try:\n"
        "    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError:\n"
        "    sys.exit(7)\n"
    )
    with processes.locked(lock):
        assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 7
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_die_with_parent_stops_the_process_when_its_starter_is_killed(tmp_path: Path) -> None:
    # The starter stands in for a test session killed with SIGKILL: no teardown runs.
    pidfile = tmp_path / "child.pid"
    starter_code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from seaway.localplane import processes\n"
        "argv = [sys.executable, '-c', 'import time; time.sleep(120)']\n"
        f"c, _ = processes.spawn('child', argv, Path({str(tmp_path / 'c.log')!r}),"
        " die_with_parent=True)\n"
        f"Path({str(pidfile)!r}).write_text(str(c.pid))\n"
        "time.sleep(120)\n"
    )
    starter = subprocess.Popen([sys.executable, "-c", starter_code])
    try:
        eventually(lambda: pidfile.exists() and pidfile.read_text() != "")
        child = int(pidfile.read_text())
        assert pid_exists(child)
        starter.kill()
        starter.wait(timeout=10)
        eventually(lambda: not pid_exists(child))
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.wait()


def test_without_die_with_parent_the_process_outlives_its_starter(tmp_path: Path) -> None:
    # What `seaway cluster up` relies on: the plane keeps running after the command exits.
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from seaway.localplane import processes\n"
        "argv = [sys.executable, '-c', 'import time; time.sleep(120)']\n"
        f"c, _ = processes.spawn('child', argv, Path({str(tmp_path / 'c.log')!r}))\n"
        "print(c.pid, c.start_ticks)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()
    child = processes.Component("child", int(out[0]), int(out[1]), (), "")
    try:
        assert processes.is_alive(child)
    finally:
        assert processes.stop([child], grace=5) == [child]
    assert not processes.is_alive(child)
