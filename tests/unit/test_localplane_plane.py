"""How a start that goes wrong is reported and cleaned up, with stand-in binaries.

The stand-ins are tiny shell scripts in place of etcd: one that exits with an error, one that
never becomes healthy. The real plane is exercised in tests/integration/test_localplane.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from seaway import localplane
from seaway.localplane import config, processes


def fake_bins(directory: Path, etcd_script: str) -> dict[str, Path]:
    directory.mkdir()
    bins = {}
    for name in config.REQUIRED_BINARIES:
        path = directory / name
        path.write_text("#!/bin/sh\nexit 99\n")
        path.chmod(0o755)
        bins[name] = path
    bins["etcd"].write_text("#!/bin/sh\n" + etcd_script)
    return bins


def processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode("utf-8", "replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(cmdline.replace("\0", " "))
    return found


def test_a_component_that_exits_is_reported_with_its_exit_code_and_log(tmp_path: Path) -> None:
    bins = fake_bins(
        tmp_path / "bin",
        "echo 'starting etcd'\necho 'error: unknown flag --unsafe-no-fsync' >&2\nexit 2\n",
    )
    run_dir = tmp_path / "run"
    with pytest.raises(localplane.PlaneError) as caught:
        localplane.start(run_dir, bins=bins, timeout=30)
    error = caught.value
    assert error.summary == "etcd exited with code 2 while waiting for etcd /health"
    assert error.log == str(run_dir / "logs" / "etcd.log")
    assert error.log_tail.splitlines()[-2:] == [
        "starting etcd",
        "error: unknown flag --unsafe-no-fsync",
    ]
    assert "--- last lines of" in str(error)
    assert error.one_line() == (
        "etcd exited with code 2 while waiting for etcd /health; last log line: "
        f"error: unknown flag --unsafe-no-fsync (log: {run_dir / 'logs' / 'etcd.log'})"
    )
    assert not (run_dir / "state.json").exists()


def test_a_component_that_never_becomes_ready_times_out_and_is_stopped(tmp_path: Path) -> None:
    bins = fake_bins(tmp_path / "bin", "echo 'waiting for a quorum forever'\nsleep 60\n")
    run_dir = tmp_path / "run"
    with pytest.raises(localplane.PlaneError) as caught:
        localplane.start(run_dir, bins=bins, timeout=1)
    error = caught.value
    assert error.summary.startswith("timed out after 1s waiting for etcd /health (")
    assert "ConnectionRefusedError" in error.summary
    assert error.log_tail.splitlines()[-1] == "waiting for a quorum forever"
    assert processes_mentioning(str(tmp_path / "bin")) == []
    assert not (run_dir / "state.json").exists()


def test_a_second_start_in_a_running_run_dir_is_refused(tmp_path: Path) -> None:
    bins = fake_bins(tmp_path / "bin", "sleep 60\n")
    run_dir = tmp_path / "run"
    with pytest.raises(localplane.PlaneError):
        localplane.start(run_dir, bins=bins, timeout=0.5)
    # A live process recorded in the state file (as after a successful start) blocks a start.
    component, proc = processes.spawn("etcd", ["sleep", "60"], run_dir / "logs" / "x.log")
    try:
        processes.write_state(run_dir / "state.json", {"name": "x"}, [component])
        with pytest.raises(localplane.PlaneError, match="already running"):
            localplane.start(run_dir, bins=bins, timeout=0.5)
        assert localplane.stop(run_dir) == [component]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_missing_binaries_are_a_plane_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEAWAY_CONTROL_PLANE_BIN", str(tmp_path / "none"))
    with pytest.raises(localplane.PlaneError, match="control-plane binaries missing"):
        localplane.start(tmp_path / "run")
