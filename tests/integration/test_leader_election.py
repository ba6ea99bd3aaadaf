"""Two operator replicas with --leader-elect: one reconciles; when it dies, the other takes over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.integration.mdtools import User, md_body


def start(kubeconfig: Path, namespace: str, log: Path, name: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOSTNAME": name}
    seaway = str(Path(sys.executable).parent / "seaway")
    argv = [
        seaway,
        "operator",
        "run",
        "-n",
        namespace,
        "--leader-elect",
        "--lease-namespace",
        namespace,
    ]
    return subprocess.Popen(argv, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def test_only_the_lease_holder_reconciles_and_a_follower_takes_over(
    kube_api: Any, namespace: str, seaway_crds: Any, control_plane: Any, tmp_path: Path,
    eventually: Any,
) -> None:  # fmt: skip
    user = User(kube_api, namespace)
    logs = {n: tmp_path / f"{n}.log" for n in ("one", "two")}
    procs = {n: start(control_plane.kubeconfig, namespace, logs[n], n) for n in logs}
    try:
        leader = eventually(
            lambda: next((n for n in logs if "Became the leader" in logs[n].read_text()), False),
            timeout=60, what="a leader",
        )  # fmt: skip
        follower = "two" if leader == "one" else "one"
        user.create(md_body("ha", 1, rollout={"strategy": "Immediate"}))
        eventually(lambda: user.status("ha").get("stableRevision") == 1, timeout=30)
        assert "Became the leader" not in logs[follower].read_text()
        assert "Created revision" not in logs[follower].read_text()
        # the leader dies without a word: the follower waits out the Lease, then takes over
        procs[leader].send_signal(signal.SIGKILL)
        procs[leader].wait(timeout=10)
        began = time.monotonic()
        eventually(lambda: "Became the leader" in logs[follower].read_text(), timeout=60)
        print(f"took over after {time.monotonic() - began:.1f}s")
        user.patch_spec("ha", md_body("ha", 2, rollout={"strategy": "Immediate"})["spec"])
        eventually(lambda: user.status("ha").get("stableRevision") == 2, timeout=30)
        assert [r["number"] for r in user.status("ha")["revisions"]] == [1, 2]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
