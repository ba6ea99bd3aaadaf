"""ScoringJob on the real API server, with the test playing the kubelet for scoring pods.

The simulated node runs no containers: the Job controller creates the Indexed Job's pods, the
simulated node marks them running, and the test writes each pod's end (exit code and the
scorer's termination message) the way a kubelet would. What is checked is everything around
the pods: the model resolved once and frozen, the Job as rendered, the Job controller's own
handling of indexes and of ``podFailurePolicy``, the status the operator derives, its Events.
The scorer itself runs for real in tests/realnode/test_e2e_scoring.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner
from tests.integration.mdtools import User, digest, md_body

from seaway.cli.main import main as cli
from seaway.planning import scoring
from seaway_serving import contract

OPERATOR = ["seaway.handlers.operator"]


def sj_body(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "seaway.dev/v1alpha1",
        "kind": "ScoringJob",
        "metadata": {"name": name},
        "spec": {
            "model": {"modelDeployment": "churn"},
            "input": {"uri": "s3://data/customers/", "keyColumns": ["id"]},
            "output": {"uri": "s3://scores/churn/"},
            "parallelism": 3,
        },
    }
    body["spec"].update(spec)
    return body


class Scoring:
    """The user's and the kubelet's side of ScoringJobs in one namespace."""

    def __init__(self, kube_api: Any, namespace: str) -> None:
        from kubernetes import client

        self.custom = client.CustomObjectsApi(kube_api)
        self.core = client.CoreV1Api(kube_api)
        self.batch = client.BatchV1Api(kube_api)
        self.namespace = namespace

    def create(self, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(
            "seaway.dev", "v1alpha1", self.namespace, "scoringjobs", body
        )

    def status(self, name: str) -> dict[str, Any]:
        body = self.custom.get_namespaced_custom_object(
            "seaway.dev", "v1alpha1", self.namespace, "scoringjobs", name
        )
        return dict(body.get("status") or {})

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        found = [c for c in self.status(name).get("conditions", []) if c["type"] == type_]
        return dict(found[0]) if found else {}

    def job(self, name: str) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.batch.read_namespaced_job(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def running_pods(self, name: str, count: int) -> dict[int, Any] | bool:
        """The Job's running pods by completion index, once there are ``count`` (else False)."""
        pods = self.core.list_namespaced_pod(
            self.namespace, label_selector=f"{scoring.SCORING_LABEL}={name}"
        ).items
        running = {
            int(p.metadata.annotations[scoring.INDEX_ANNOTATION]): p
            for p in pods
            if p.status.phase == "Running"
        }
        return running if len(running) == count else False

    def finish(self, pod: Any, code: int, message: dict[str, Any]) -> None:
        """End the pod as the kubelet would: terminated state, termination message, phase."""
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                      "message": json.dumps(message), "startedAt": now, "finishedAt": now}
        status = {
            "phase": "Succeeded" if code == 0 else "Failed",
            "containerStatuses": [{
                "name": scoring.CONTAINER, "image": pod.spec.containers[0].image,
                "imageID": "", "ready": False, "restartCount": 0, "started": False,
                "state": {"terminated": terminated},
            }],
        }  # fmt: skip
        self.core.patch_namespaced_pod_status(pod.metadata.name, self.namespace,
                                              {"status": status})  # fmt: skip

    def events(self, name: str) -> list[tuple[str, str]]:
        events = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name},"
                                           "involvedObject.kind=ScoringJob").items  # fmt: skip
        return [(e.reason, e.message) for e in events]


def report(index: int, units: list[int], rows: int, reason: str = "Succeeded",
           message: str = "") -> dict[str, Any]:  # fmt: skip
    return {"index": index, "unitsTotal": 6, "unitsDone": units, "unitsSkipped": [],
            "rows": rows, "seconds": 0.5, "revision": 1, "digest": digest(1),
            "reason": reason, "message": message}  # fmt: skip


@pytest.fixture
def user(kube_api: Any, namespace: str, seaway_crds: Any) -> tuple[User, Scoring]:
    return User(kube_api, namespace), Scoring(kube_api, namespace)


def test_a_scoringjob_waits_for_its_model_freezes_it_and_completes_by_its_indexes(
    run_operator: Any, user: tuple[User, Scoring], namespace: str, control_plane: Any,
    eventually: Any,
) -> None:  # fmt: skip
    md, sj = user
    with run_operator(OPERATOR, namespace=namespace):
        # applied before its ModelDeployment (a GitOps repository applies in any order)
        sj.create(sj_body("nightly"))
        eventually(lambda: sj.condition("nightly", "Complete").get("reason")
                   == "ModelDeploymentNotFound", what="the wait for the ModelDeployment")
        md.create(md_body("churn", 1, rollout={"strategy": "Immediate"}))
        eventually(lambda: sj.job("nightly") is not None, timeout=60, what="the Indexed Job")
        job = sj.job("nightly")
        assert (job.spec.completion_mode, job.spec.completions, job.spec.parallelism) == (
            "Indexed", 3, 3)
        assert job.spec.backoff_limit_per_index == 3
        assert job.spec.pod_failure_policy.rules[0].action == "FailJob"
        container = job.spec.template.spec.containers[0]
        env = {e.name: e.value for e in container.env}
        assert env[contract.BUNDLE] == "s3://models/churn/v1/model.joblib"
        assert env[contract.MODEL_DIGEST] == digest(1)
        assert (env[contract.REVISION], env[contract.SCORE_SHARDS]) == ("1", "3")
        assert container.image == "seaway/server:test"
        status = sj.status("nightly")
        assert status["model"]["revision"] == 1 and status["shards"] == "0/3"

        # a new revision of the ModelDeployment does not reach the running job
        md.patch_spec("churn", {"model": {"uri": "s3://models/churn/v2/model.joblib",
                                          "digest": digest(2)}})  # fmt: skip
        eventually(lambda: md.status("churn").get("stableRevision") == 2, timeout=60)
        assert sj.status("nightly")["model"]["revision"] == 1
        frozen = {e.name: e.value for e in sj.job("nightly").spec.template.spec.containers[0].env}
        assert frozen[contract.MODEL_DIGEST] == digest(1)

        pods = eventually(lambda: sj.running_pods("nightly", 3), timeout=60,
                          what="three running scoring pods")
        for index, pod in sorted(pods.items()):
            sj.finish(pod, 0, report(index, [index, index + 3], 100 * (index + 1)))
        eventually(lambda: sj.condition("nightly", "Complete").get("status") == "True",
                   timeout=60, what="the ScoringJob to complete")  # fmt: skip
        status = sj.status("nightly")
        assert (status["shards"], status["rowsScored"]) == ("3/3", 600)
        assert (status["unitsDone"], status["unitsTotal"]) == (6, 6)
        assert status["completedAt"] and status["observedGeneration"] == 1
        assert "Succeeded" in [r for r, _ in sj.events("nightly")]
        table = control_plane.kubectl("get", "sj", "nightly", "-n", namespace).stdout
        header, row = table.splitlines()[:2]
        assert header.split() == ["NAME", "MODEL", "REVISION", "SHARDS", "ROWS", "COMPLETE",
                                  "REASON", "AGE"]  # fmt: skip
        assert row.split()[:7] == ["nightly", "churn", "1", "3/3", "600", "True", "Succeeded"]


def test_a_refused_model_fails_the_job_at_once_with_the_scorers_reason(
    run_operator: Any, user: tuple[User, Scoring], eventually: Any,
) -> None:  # fmt: skip
    md, sj = user
    with run_operator(OPERATOR, namespace=sj.namespace):
        md.create(md_body("churn", 1, rollout={"strategy": "Immediate"}))
        eventually(lambda: md.status("churn").get("stableRevision") == 1, timeout=60)
        sj.create(sj_body("refused", model={"modelDeployment": "churn", "revision": 1}))
        pods = eventually(lambda: sj.running_pods("refused", 3), timeout=60, what="scoring pods")
        why = "the model file's sha256 does not match the pinned digest"
        sj.finish(pods[min(pods)], contract.SCORE_EXIT_MODEL_REFUSED,
                  report(min(pods), [], 0, "ModelRefused", why))  # fmt: skip
        # podFailurePolicy fails the whole Job on the permanent exit code: no retry, no wait
        eventually(lambda: sj.condition("refused", "Failed").get("status") == "True",
                   timeout=60, what="the ScoringJob to fail")  # fmt: skip
        failed = sj.condition("refused", "Failed")
        assert (failed["reason"], failed["message"]) == ("ModelRefused", why)
        assert ("ModelRefused", why) in sj.events("refused")
        conditions = sj.job("refused").status.conditions
        assert any(c.type == "Failed" and c.reason == "PodFailurePolicy" for c in conditions)


def test_a_revision_not_in_history_fails_without_a_job(
    run_operator: Any, user: tuple[User, Scoring], eventually: Any,
) -> None:  # fmt: skip
    md, sj = user
    with run_operator(OPERATOR, namespace=sj.namespace):
        md.create(md_body("churn", 1, rollout={"strategy": "Immediate"}))
        eventually(lambda: md.status("churn").get("stableRevision") == 1, timeout=60)
        sj.create(sj_body("missing", model={"modelDeployment": "churn", "revision": 9}))
        eventually(lambda: sj.condition("missing", "Failed").get("reason") == "RevisionNotFound")
        assert "no revision 9" in sj.condition("missing", "Failed")["message"]
        assert sj.job("missing") is None


def test_seaway_score_starts_one_from_the_command_line(
    run_operator: Any, user: tuple[User, Scoring], eventually: Any,
) -> None:  # fmt: skip
    md, sj = user
    ns = sj.namespace
    runner = CliRunner()
    missing = runner.invoke(cli, ["score", "churn", "--input", "s3://d/", "--output", "s3://o/",
                                  "-n", ns])  # fmt: skip
    assert missing.exit_code == 1 and "Traceback" not in missing.output
    assert f"ModelDeployment churn not found in namespace {ns}" in missing.output
    with run_operator(OPERATOR, namespace=ns):
        md.create(md_body("churn", 1, rollout={"strategy": "Immediate"}))
        eventually(lambda: md.status("churn").get("stableRevision") == 1, timeout=60)
        wrong = runner.invoke(cli, ["score", "churn", "--input", "s3://d/", "--output", "s3://o/",
                                    "--revision", "4", "-n", ns])  # fmt: skip
        assert wrong.exit_code == 1 and "churn has no revision 4 (revisions: 1)" in wrong.output
        result = runner.invoke(cli, ["score", "churn", "--input", "s3://data/customers/",
                                     "--output", "s3://scores/", "--parallelism", "2",
                                     "--key-columns", "id", "--name", "from-cli", "-n", ns])
        assert result.exit_code == 0, result.output
        assert "Created ScoringJob from-cli" in result.output
        eventually(lambda: sj.job("from-cli") is not None, timeout=60, what="the Job")
        assert sj.job("from-cli").spec.completions == 2
