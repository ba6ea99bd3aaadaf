"""RetrainJob on the real API server, with the test playing the kubelet for training pods.

The simulated node runs no containers, so for each training Job the test runs the pod's exact
container (``seaway-train`` with the Job's environment, paths mapped to this machine) as a
local process, then writes the pod's terminated state and termination message the way a kubelet
would. The Job controller completes the Job, and the operator takes it from there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sklearn.datasets import load_breast_cancer
from tests.integration.mdtools import User

from seaway.cli.main import main as cli
from seaway.k8s.kube import FAULT_ENV

OPERATOR = ["seaway.handlers.operator"]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    frame = load_breast_cancer(as_frame=True).frame.rename(columns=lambda c: c.replace(" ", "_"))
    path = tmp_path / "cancer.csv"
    frame.to_csv(path, index=False)
    return path


class Kubelet:
    """Plays the kubelet for training pods: runs their container locally, reports the end."""

    def __init__(self, kube_api: Any, namespace: str, work: Path) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(kube_api)
        self.batch = client.BatchV1Api(kube_api)
        self.namespace = namespace
        self.work = work

    def pod_of(self, job: str) -> Any:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"job-name={job}").items
        return pods[0] if pods else None

    def run(self, job: str) -> tuple[int, str]:
        """Run the Job's container as a local process; returns (exit code, termination message)."""
        pod = self.pod_of(job)
        if pod is None:
            events = self.core.list_namespaced_event(self.namespace).items
            seen = [(e.involved_object.name, e.reason, e.message) for e in events]
            raise AssertionError(f"no pod for Job {job}; events: {seen}")
        container = pod.spec.containers[0]
        termination = self.work / f"{job}.termination-log"
        env = {e.name: e.value for e in container.env}
        env.update(
            SEAWAY_TRAIN_RESULT_PATH=str(termination),
            SEAWAY_TRAIN_TERMINATION_LOG=str(termination),
            SEAWAY_TRAIN_WORK_DIR=str(self.work / job),
        )
        command = [*(container.command or []), *(container.args or [])]
        executable = shutil.which(command[0], path=str(Path(sys.executable).parent))
        assert executable, f"{command[0]} is not installed"
        process = subprocess.run(
            [executable, *command[1:]],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        message = termination.read_text() if termination.exists() else process.stderr[-4000:]
        return process.returncode, message

    def finish(self, job: str, code: int, message: str) -> None:
        pod = self.pod_of(job)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        terminated = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "message": message[-4096:],
            "startedAt": now,
            "finishedAt": now,
        }
        status = {
            "phase": "Succeeded" if code == 0 else "Failed",
            "containerStatuses": [
                {
                    "name": "trainer",
                    "image": pod.spec.containers[0].image,
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "started": False,
                    "state": {"terminated": terminated},
                }
            ],
        }
        self.core.patch_namespaced_pod_status(pod.metadata.name, self.namespace, {"status": status})

    def complete(self, job: str) -> tuple[int, str]:
        code, message = self.run(job)
        self.finish(job, code, message)
        return code, message


def rj_body(name: str, data: Path, out: Path, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "seaway.dev/v1alpha1",
        "kind": "RetrainJob",
        "metadata": {"name": name},
        "spec": {
            "modelDeployment": "cancer",
            "runNow": "first",
            "dataset": {"uri": f"file://{data}", "target": "target"},
            "estimator": {
                "importPath": "sklearn.linear_model.LogisticRegression",
                "params": {"max_iter": 2000},
            },
            "validation": {"split": "Holdout", "metric": "accuracy", "minScore": "0.80"},
            "promotion": "Auto",
            "output": {"uri": f"file://{out}/"},
            "backoffLimit": 0,
        },
    }
    body["spec"].update(spec)
    return body


def md_following(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "seaway.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "cancer"},
        "spec": {
            "model": {"fromRetrainJob": name},
            "server": {"image": "seaway/server:test", "replicas": 1},
            "rollout": {"strategy": "Immediate"},
        },
    }


def create(kube_api: Any, namespace: str, body: dict[str, Any]) -> None:
    from kubernetes import client

    plural = {"RetrainJob": "retrainjobs", "ModelDeployment": "modeldeployments"}[body["kind"]]
    client.CustomObjectsApi(kube_api).create_namespaced_custom_object(
        "seaway.dev", "v1alpha1", namespace, plural, body
    )


def rj_status(kube_api: Any, namespace: str, name: str) -> dict[str, Any]:
    from kubernetes import client

    body = client.CustomObjectsApi(kube_api).get_namespaced_custom_object(
        "seaway.dev", "v1alpha1", namespace, "retrainjobs", name
    )
    status: dict[str, Any] = body.get("status", {})
    return status


def run_of(kube_api: Any, namespace: str, name: str, number: int) -> dict[str, Any]:
    for run in rj_status(kube_api, namespace, name).get("runs", []):
        if run["number"] == number:
            return dict(run)
    return {}


@pytest.fixture
def setup(kube_api: Any, namespace: str, seaway_crds: Any, tmp_path: Path) -> tuple[User, Kubelet]:
    return User(kube_api, namespace), Kubelet(kube_api, namespace, tmp_path)


def test_auto_promotion_reaches_the_model_deployment(
    run_operator: Any, setup: Any, kube_api: Any, namespace: str, data: Path, tmp_path: Path,
    eventually: Any,
) -> None:  # fmt: skip
    user, kubelet = setup
    with run_operator(OPERATOR, namespace=namespace):
        create(kube_api, namespace, md_following("weekly"))
        eventually(lambda: user.condition("cancer", "Ready").get("reason") == "RetrainJobNotFound")
        create(kube_api, namespace, rj_body("weekly", data, tmp_path / "models"))
        eventually(lambda: user.condition("cancer", "Ready").get("reason") == "WaitingForModel")
        eventually(
            lambda: kubelet.pod_of("weekly-1") is not None, timeout=30, what="the training pod"
        )
        job = kubelet.batch.read_namespaced_job("weekly-1", namespace)
        env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
        assert env["SEAWAY_TRAIN_ESTIMATOR"] == "sklearn.linear_model.LogisticRegression"
        assert env["SEAWAY_TRAIN_DATASET_URI"] == f"file://{data}"
        assert job.spec.template.spec.containers[0].security_context.run_as_non_root
        code, message = kubelet.complete("weekly-1")
        assert code == 0, message
        eventually(
            lambda: run_of(kube_api, namespace, "weekly", 1).get("decision") == "Promoted",
            timeout=60,
        )
        promoted = rj_status(kube_api, namespace, "weekly")["promoted"]
        result = json.loads(message.strip().splitlines()[-1])
        assert (promoted["uri"], promoted["digest"]) == (
            result["bundle"]["uri"],
            result["bundle"]["digest"],
        )
        # the ModelDeployment that follows the RetrainJob gets a revision of the promoted bundle
        eventually(lambda: user.status("cancer").get("stableRevision") == 1, timeout=30)
        revision = user.status("cancer")["revisions"][0]
        assert revision["modelURI"] == promoted["uri"] and revision["digest"] == promoted["digest"]
        assert revision["createdBy"] == "retrainjob/weekly#1"
        reasons = [e.reason for e in user.core.list_namespaced_event(
            namespace, field_selector="involvedObject.name=weekly").items]  # fmt: skip
        assert "RunStarted" in reasons and "Promoted" in reasons


def test_manual_approval_rejection_and_failed_runs(
    run_operator: Any, setup: Any, kube_api: Any, namespace: str, data: Path, tmp_path: Path,
    eventually: Any, control_plane: Any,
) -> None:  # fmt: skip
    user, kubelet = setup
    runner = CliRunner(env={"KUBECONFIG": str(control_plane.kubeconfig)})
    with run_operator(OPERATOR, namespace=namespace):
        create(kube_api, namespace, md_following("monthly"))
        create(kube_api, namespace, rj_body("monthly", data, tmp_path / "m", promotion="Manual"))
        eventually(lambda: kubelet.pod_of("monthly-1") is not None, timeout=30)
        assert kubelet.complete("monthly-1")[0] == 0
        eventually(
            lambda: run_of(kube_api, namespace, "monthly", 1).get("decision") == "AwaitingApproval",
            timeout=60,
        )
        assert user.status("cancer").get("revisions", []) == [], "nothing serves before approval"

        # an approval in someone else's name is refused by the admission policy
        from kubernetes import client

        custom = client.CustomObjectsApi(kube_api)
        forged = {"spec": {"approvals": [{"run": 1, "decision": "Approve", "approver": "mallory"}]}}
        with pytest.raises(client.ApiException) as refused:
            custom.patch_namespaced_custom_object(
                "seaway.dev", "v1alpha1", namespace, "retrainjobs", "monthly", forged
            )
        assert "approver must be" in refused.value.body

        approved = runner.invoke(cli, ["approve", "monthly", "-n", namespace])
        assert approved.exit_code == 0, approved.output
        eventually(
            lambda: run_of(kube_api, namespace, "monthly", 1).get("decision") == "Promoted",
            timeout=30,
        )
        run = run_of(kube_api, namespace, "monthly", 1)
        assert run["decidedBy"] and run["decidedBy"] in approved.output
        eventually(lambda: user.status("cancer").get("stableRevision") == 1, timeout=30)

        # run 2: demands an impossible improvement over the model now serving -> rejected
        strict = {
            "validation": {"split": "Holdout", "metric": "accuracy", "minImprovement": "0.5"},
            "runNow": "second",
        }
        user.custom.patch_namespaced_custom_object(
            "seaway.dev", "v1alpha1", namespace, "retrainjobs", "monthly", {"spec": strict}
        )
        eventually(lambda: kubelet.pod_of("monthly-2") is not None, timeout=30)
        code, message = kubelet.complete("monthly-2")
        assert code == 0, message
        eventually(
            lambda: run_of(kube_api, namespace, "monthly", 2).get("decision") == "Rejected",
            timeout=60,
        )
        assert "minImprovement 0.5" in run_of(kube_api, namespace, "monthly", 2)["decisionReason"]
        assert rj_status(kube_api, namespace, "monthly")["promoted"]["run"] == 1

        # run 3: bad data (a target column that does not exist) -> the run fails with the reason
        broken = {"dataset": {"uri": f"file://{data}", "target": "churned"}, "runNow": "third"}
        user.custom.patch_namespaced_custom_object(
            "seaway.dev", "v1alpha1", namespace, "retrainjobs", "monthly", {"spec": broken}
        )
        eventually(lambda: kubelet.pod_of("monthly-3") is not None, timeout=30)
        code, message = kubelet.complete("monthly-3")
        assert code != 0
        eventually(
            lambda: run_of(kube_api, namespace, "monthly", 3).get("result") == "Failed", timeout=60
        )
        failed = run_of(kube_api, namespace, "monthly", 3)
        assert "churned" in failed["message"], failed
        assert rj_status(kube_api, namespace, "monthly")["promoted"]["run"] == 1
        assert [r["number"] for r in user.status("cancer")["revisions"]] == [1]


def test_killed_after_the_job_finished_promotes_exactly_once(
    run_operator: Any, setup: Any, kube_api: Any, namespace: str, data: Path, tmp_path: Path,
    eventually: Any, control_plane: Any,
) -> None:  # fmt: skip
    user, kubelet = setup
    with run_operator(OPERATOR, namespace=namespace):
        create(kube_api, namespace, md_following("daily"))
        create(kube_api, namespace, rj_body("daily", data, tmp_path / "d"))
        eventually(lambda: kubelet.pod_of("daily-1") is not None, timeout=30)
    # the operator is down while the Job finishes
    assert kubelet.complete("daily-1")[0] == 0

    def job_complete() -> bool:
        job = kubelet.batch.read_namespaced_job("daily-1", namespace)
        return any(c.type == "Complete" and c.status == "True" for c in job.status.conditions or [])

    eventually(job_complete, timeout=30, what="Job complete")
    seaway = shutil.which("seaway", path=str(Path(sys.executable).parent))
    env = {**os.environ, "KUBECONFIG": str(control_plane.kubeconfig), FAULT_ENV: "1"}
    lives = 0
    deadline = time.monotonic() + 120
    while run_of(kube_api, namespace, "daily", 1).get("decision") != "Promoted":
        assert time.monotonic() < deadline and lives < 20
        lives += 1
        proc = subprocess.Popen([seaway, "operator", "run", "-n", namespace], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(timeout=30)
    with run_operator(OPERATOR, namespace=namespace):
        eventually(lambda: user.status("cancer").get("stableRevision") == 1, timeout=30)
    status = rj_status(kube_api, namespace, "daily")
    assert [r["decision"] for r in status["runs"]] == ["Promoted"]
    assert status["promoted"]["run"] == 1
    assert [r["number"] for r in user.status("cancer")["revisions"]] == [1]
    events = user.core.list_namespaced_event(namespace, field_selector="involvedObject.name=daily")
    promotions = [e for e in events.items if e.reason == "Promoted"]
    assert len(promotions) <= 1, "promoted exactly once"


def test_schedule_and_concurrency_policy_with_a_controllable_clock(
    run_operator: Any, setup: Any, kube_api: Any, namespace: str, data: Path, tmp_path: Path,
    eventually: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from seaway.handlers.operator import CLOCK_OFFSET_ENV

    user, kubelet = setup
    monkeypatch.setenv(CLOCK_OFFSET_ENV, "0")
    body = rj_body("hourly", data, tmp_path / "h", schedule="0 * * * *")
    del body["spec"]["runNow"]

    def jump(hours: int) -> None:
        """Move the operator's clock, then nudge the object so a pass runs now."""
        monkeypatch.setenv(CLOCK_OFFSET_ENV, str(hours * 3600))
        user.custom.patch_namespaced_custom_object(
            "seaway.dev", "v1alpha1", namespace, "retrainjobs", "hourly",
            {"metadata": {"annotations": {"test/nudge": str(hours)}}},
        )  # fmt: skip

    def runs() -> list[tuple[int, str, str | None]]:
        found = rj_status(kube_api, namespace, "hourly").get("runs", [])
        return [(r["number"], r["result"], r.get("reason")) for r in found]

    with run_operator(OPERATOR, namespace=namespace):
        create(kube_api, namespace, md_following("hourly"))
        create(kube_api, namespace, body)
        eventually(lambda: "nextScheduleTime" in rj_status(kube_api, namespace, "hourly"))
        assert runs() == []
        jump(1)
        eventually(lambda: runs() == [(1, "Running", None)], timeout=30, what="scheduled run 1")
        assert rj_status(kube_api, namespace, "hourly")["runs"][0]["trigger"] == "schedule"
        # concurrencyPolicy Forbid (the default): the next hour finds run 1 still running
        jump(2)
        eventually(lambda: "RunSkipped" in user.event_reasons_of("hourly"), timeout=30)
        assert runs() == [(1, "Running", None)]
        # Replace: the running Job gives way to a new run
        user.custom.patch_namespaced_custom_object(
            "seaway.dev", "v1alpha1", namespace, "retrainjobs", "hourly",
            {"spec": {"concurrencyPolicy": "Replace"}},
        )  # fmt: skip
        jump(3)
        eventually(lambda: runs() == [(1, "Failed", "Replaced"), (2, "Running", None)], timeout=30)
        eventually(lambda: kubelet.pod_of("hourly-1") is None, timeout=60, what="run 1's Job gone")
