"""An operator killed at any point resumes from status and ends where an uninterrupted one ends.

The crash run starts ``seaway operator run`` as a separate process that SIGKILLs itself right
after its first API write (``SEAWAY_FAULT_KILL_AFTER_WRITES=1``), restarts it, and repeats until
the rollout is over: every write of the rollout is, in turn, the last thing a process did.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.integration.mdtools import User, md_body
from tests.integration.test_modeldeployment import OPERATOR, ready_revision

from seaway.k8s.kube import FAULT_ENV

STEPS = [
    {"setWeight": 10},
    {"pause": {"duration": "1s"}},
    {"setWeight": 30},
    {"pause": {"duration": "1s"}},
    {"setWeight": 60},
]
MAX_LIVES = 150
DEADLINE = 300.0


def seaway_command() -> list[str]:
    found = shutil.which("seaway", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "seaway.cli.main"]


def body(version: int) -> dict[str, Any]:
    result = md_body("crashy", version)
    result["spec"]["rollout"]["steps"] = STEPS
    return result


def end_state(user: User) -> dict[str, Any]:
    status = user.status("crashy")
    return {
        "revisions": [(r["number"], r["templateHash"], r["fate"]) for r in status["revisions"]],
        "stable": status.get("stableRevision"),
        "canary": status.get("canaryRevision"),
        "weights": user.weights("crashy"),
        "deployments": {n: d.spec.replicas for n, d in user.deployments("crashy").items()},
        "services": sorted(
            s.metadata.name
            for s in user.core.list_namespaced_service(
                user.namespace, label_selector="seaway.dev/model-deployment=crashy"
            ).items
        ),
        "ready": user.condition("crashy", "Ready").get("status"),
    }


def run_lives(kubeconfig: Path, namespace: str, done: Any, log: Path) -> int:
    """Start, let die, restart until ``done()``; returns the number of process lives."""
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), FAULT_ENV: "1"}
    lives = 0
    deadline = time.monotonic() + DEADLINE
    with log.open("a") as out:
        while not done():
            assert lives < MAX_LIVES, f"no convergence after {lives} restarts"
            assert time.monotonic() < deadline, f"no convergence within {DEADLINE}s"
            lives += 1
            proc = subprocess.Popen(
                [*seaway_command(), "operator", "run", "-n", namespace],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                code = proc.wait(timeout=20)
            except subprocess.TimeoutExpired:  # idle (waiting out a pause, or done): stop it
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(timeout=30)
            assert code in (-signal.SIGKILL, -signal.SIGTERM, 0), f"operator exited with {code}"
    return lives


def test_killed_after_every_write_ends_like_an_uninterrupted_run(
    run_operator: Any, kube_api: Any, control_plane: Any, seaway_crds: Any, tmp_path: Path,
    eventually: Any, request: Any,
) -> None:  # fmt: skip
    from kubernetes import client

    core = client.CoreV1Api(kube_api)
    spaces = []
    for suffix in ("calm", "crash"):
        name = f"restart-{suffix}-{os.getpid()}"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        control_plane.wait_for_service_account(name)
        spaces.append(name)
        request.addfinalizer(lambda n=name: core.delete_namespace(n))
    calm, crash = (User(kube_api, ns) for ns in spaces)

    # the uninterrupted reference run
    with run_operator(OPERATOR, namespace=calm.namespace):
        calm.create(body(1))
        eventually(lambda: ready_revision(calm, "crashy", 1), timeout=30)
        calm.patch_spec("crashy", body(2)["spec"])
        eventually(lambda: ready_revision(calm, "crashy", 2), timeout=60)
        eventually(lambda: end_state(calm)["deployments"] == {1: 0, 2: 2}, timeout=30)
    reference = end_state(calm)

    log = tmp_path / "operator.log"
    crash.create(body(1))
    lives = run_lives(
        control_plane.kubeconfig, crash.namespace, lambda: ready_revision(crash, "crashy", 1), log
    )
    crash.patch_spec("crashy", body(2)["spec"])
    lives += run_lives(
        control_plane.kubeconfig,
        crash.namespace,
        lambda: (
            ready_revision(crash, "crashy", 2) and end_state(crash)["deployments"] == {1: 0, 2: 2}
        ),
        log,
    )
    print(f"converged after {lives} operator lives")
    assert lives > 10, "the fault hook did not fire: the crash run was not interrupted"
    assert "Traceback" not in log.read_text()
    assert end_state(crash) == reference
    assert reference["revisions"][1][0] == 2 and len(reference["revisions"]) == 2


def test_edits_while_the_operator_is_down_roll_out_only_the_latest(
    run_operator: Any, kube_api: Any, namespace: str, seaway_crds: Any, eventually: Any
) -> None:
    user = User(kube_api, namespace)
    with run_operator(OPERATOR, namespace=namespace):
        user.create(md_body("edits", 1, rollout={"strategy": "Immediate"}))
        eventually(lambda: ready_revision(user, "edits", 1), timeout=30)
    for version in (2, 3, 4):  # three edits while nobody watches
        user.patch_spec(
            "edits", md_body("edits", version, rollout={"strategy": "Immediate"})["spec"]
        )
    with run_operator(OPERATOR, namespace=namespace):
        eventually(lambda: ready_revision(user, "edits", 2), timeout=30)
    revisions = user.status("edits")["revisions"]
    assert [(r["number"], r["modelURI"]) for r in revisions] == [
        (1, "s3://models/edits/v1/model.joblib"),
        (2, "s3://models/edits/v4/model.joblib"),
    ]
    assert sorted(user.deployments("edits")) == [1, 2]
