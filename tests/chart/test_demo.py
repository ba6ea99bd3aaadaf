"""``make demo`` runs to completion, non-interactively, as the README tells a user to run it.

It starts a cluster of its own (a unique ``--name``, so a user's ``seaway`` cluster is never
touched) with its operator, and the test stops it afterwards; the session's plane only stands for
"the control-plane binaries exist" (and so fails, not skips, in CI when they do not).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys

from seaway import localplane
from seaway.localplane import config
from tests.chart.conftest import ROOT


def test_make_demo_runs_to_completion(control_plane: localplane.Plane) -> None:
    name = f"demo-test-{secrets.token_hex(3)}"
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "MAKEFLAGS")}
    env["CI"] = "1"
    run_dir = config.cluster_dir(name, env)
    try:
        result = subprocess.run(
            ["make", "--no-print-directory", "demo", f"DEMO_ARGS=--name {name}"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=360, check=False,
        )  # fmt: skip
        out = result.stdout
        assert result.returncode == 0, f"{out[-3000:]}\n{result.stderr[-3000:]}"
        for step in range(1, 6):
            assert f"[{step}/5]" in out
        rows = re.findall(r"(?m)^  churn +(.*)$", out)
        stable_canary_weight = [tuple(r.split()[:3]) for r in rows]
        assert ("1", "2", "20") in stable_canary_weight, rows  # the canary steps, as printed
        assert ("1", "2", "50") in stable_canary_weight, rows
        assert ("2", "3", "0") in stable_canary_weight, rows  # the broken revision, no traffic
        if "Pods run in containers on a real node" in out:
            # live predictions all along: every one answered, each equal to scikit-learn's
            summary = re.search(r"r1 -> r2 promoted, r3 reverted, ([\d,]+) requests, "
                                r"(\d+) failed, (\d+) answers different", out)
            assert summary, out[-3000:]
            requests, failed, wrong = summary.groups()
            assert int(requests.replace(",", "")) > 500 and (failed, wrong) == ("0", "0")
            assert re.search(r"answers: r1 \d+% r2 \d+% of \d+, 0 failed", out), out[-3000:]
            assert "digest mismatch" in out  # revision 3's own refusal, in its status
        else:
            assert "Pods run on the simulated node" in out
            assert "Warning  RolledBack" in out and "Reverted to revision 2" in out
            assert "r3    Failed      (ProgressDeadlineExceeded)" in out
        assert f"Stop it with: seaway cluster down --name {name}" in out
        status = subprocess.run(
            [sys.executable, "-m", "seaway.cli.main", "cluster", "status", "--name", name],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert status.returncode == 0, "the demo leaves its cluster up"
        assert "seaway-operator" in status.stderr
        # the broken revision 3 never touched the stable revision's pods: revision 2 has the one
        # ReplicaSet it was created with (a changed template would have made a second one)
        kubeconfig = str(run_dir / "kubeconfig")
        sets = subprocess.run(
            [str(control_plane.bins["kubectl"]), f"--kubeconfig={kubeconfig}", "get", "rs",
             "-n", "ml", "-l", "seaway.dev/model-deployment=churn,seaway.dev/revision=2",
             "-o", "name"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert sets.returncode == 0, sets.stderr
        assert len(sets.stdout.split()) == 1, sets.stdout
    finally:
        localplane.stop(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)


def test_crds_of_cluster_up_show_no_difference(
    control_plane: localplane.Plane, seaway_crds: list[str]
) -> None:
    """What the demo's step 2 relies on: after the CRDs are installed, `kubectl diff` of the
    chart's copies finds nothing, so the demo installs nothing a second time."""
    from seaway.cli import demo

    for path in sorted(demo.CRDS.glob("*.yaml")):
        result = control_plane.kubectl(
            "diff", "--server-side", "--force-conflicts", "--field-manager=seaway-localplane",
            "-f", str(path), check=False,
        )  # fmt: skip
        assert not demo.crds_outdated(result.returncode, result.stderr), result.stdout
