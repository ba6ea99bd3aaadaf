"""``seaway cluster``: what a user sees when there is nothing to run or nothing running.

The round trip with a real plane is in tests/integration/test_localplane.py.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from click.testing import CliRunner

from seaway.cli.main import main
from seaway.localplane import processes


def invoke(tmp_path: Path, *args: str, bin_dir: Path | None = None) -> tuple[int, str, str]:
    env = {
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "SEAWAY_CONTROL_PLANE_BIN": str(bin_dir or tmp_path / "no-binaries"),
        "KUBECONFIG": "",
    }
    result = CliRunner().invoke(main, ["cluster", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_up_without_binaries_fails_in_one_line_naming_what_is_missing(tmp_path: Path) -> None:
    code, out, err = invoke(tmp_path, "up")
    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        f"Error: control-plane binaries missing in {tmp_path / 'no-binaries'} "
        "(set by SEAWAY_CONTROL_PLANE_BIN): etcd, kube-apiserver, kube-controller-manager, "
        "kube-scheduler, kwok, kubectl"
    ]


def test_a_bad_cluster_name_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = invoke(tmp_path, "up", "--name", "../x")
    assert code == 2
    assert "Invalid value for --name: invalid cluster name '../x'" in err
    assert not (tmp_path / "cache").exists()


def test_status_of_a_cluster_that_never_ran_says_stopped_and_fails(tmp_path: Path) -> None:
    code, out, err = invoke(tmp_path, "status")
    assert code == 1
    assert out == ""
    assert err == "Cluster seaway: stopped\n"


def test_down_of_a_cluster_that_never_ran_succeeds(tmp_path: Path) -> None:
    code, _, err = invoke(tmp_path, "down", "--name", "other")
    assert code == 0
    assert err == "Cluster other was not running.\n"


def test_status_reports_a_cluster_whose_processes_are_gone(tmp_path: Path) -> None:
    run_dir = tmp_path / "cache" / "seaway" / "clusters" / "seaway"
    run_dir.mkdir(parents=True)
    (run_dir / "state.json").write_text(
        '{"name": "seaway", "ports": {"etcd_client": 1, "etcd_peer": 2, "apiserver": 3,'
        ' "controller_manager": 4, "scheduler": 5, "kwok": 6}, "components": ['
        '{"name": "etcd", "pid": 999999999, "start_ticks": 1, "argv": [], "log": ""}]}'
    )
    code, _, err = invoke(tmp_path, "status")
    assert code == 1
    assert "Cluster seaway: stopped (its processes are gone)" in err
    assert "etcd                     stopped  pid 999999999" in err
    code, _, err = invoke(tmp_path, "down")
    assert code == 0
    assert err == "Cluster seaway was not running.\n"


def test_down_stops_a_partly_running_cluster_by_its_recorded_pids(tmp_path: Path) -> None:
    run_dir = tmp_path / "cache" / "seaway" / "clusters" / "seaway"
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    component, proc = processes.spawn("etcd", sleeper, run_dir / "logs" / "etcd.log")
    try:
        processes.write_state(
            run_dir / "state.json",
            {"name": "seaway", "ports": dict.fromkeys(("etcd_client", "apiserver"), 0)},
            [component],
        )
        code, _, err = invoke(tmp_path, "status")
        assert code == 1
        assert "Cluster seaway: partly running" in err
        assert f"etcd                     running  pid {proc.pid}" in err
        code, _, err = invoke(tmp_path, "down")
        assert code == 0
        assert "Cluster seaway is down (1 process stopped)." in err
        assert proc.wait(timeout=10) == -signal.SIGTERM
        assert not (run_dir / "state.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
