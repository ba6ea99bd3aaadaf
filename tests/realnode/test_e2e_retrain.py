"""A RetrainJob for real: the training Job's Pod runs ``seaway-train`` in the server image.

Nothing stands in for the kubelet: the operator (``seaway operator run`` on the host, from
:func:`tests.realnode.e2e.e2e`) creates the Job, the real node runs its Pod, and the trainer reads
the dataset from and writes its bundle to an S3-compatible store (moto in server mode, with
Signature Version 4 required) bound to the bridge gateway, the host address Pods reach. The
credentials and the endpoint are one Secret, named by ``dataset.secretRef``, ``output.secretRef``
and the ModelDeployment's ``model.secretRef`` (the second run's incumbent is read with it). The
namespace enforces Pod Security "restricted", as the chart's test's do.

The outcome comes back through the termination message; the operator promotes the candidate, the
ModelDeployment that follows the RetrainJob rolls it out, and every answer through the router is
the prediction of the bundle the trainer wrote (fetched from the store, digest checked, loaded
here). The second run is rolled out as a canary under live traffic with zero failed requests.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from seaway.localplane import nodeconfig
from seaway_serving import sources
from tests.realnode.e2e import E2E, Models, e2e, models
from tests.serving.moto_store import moto_store

BUCKET = "seaway"
RJ = "weekly"
MD = "cancer"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, e2e: E2E) -> Iterator[dict[str, str]]:
    """moto on the gateway with the dataset as ``s3://seaway/data/cancer.csv``; its client env."""
    work = tmp_path_factory.mktemp("s3")
    x, y = load_breast_cancer(return_X_y=True)
    header = ",".join([f"f{i}" for i in range(x.shape[1])] + ["target"])
    rows = [",".join(repr(float(v)) for v in row) + f",{int(t)}" for row, t in zip(x, y,
                                                                                  strict=True)]
    data = work / "cancer.csv"
    data.write_text(header + "\n" + "\n".join(rows) + "\n")
    with moto_store(work, BUCKET, [f"{data}=data/cancer.csv"], host=nodeconfig.GATEWAY) as env:
        yield env


def retrainjob(run_now: str, estimator: dict[str, Any], **validation: str) -> dict[str, Any]:
    return {
        "apiVersion": "seaway.dev/v1alpha1",
        "kind": "RetrainJob",
        "metadata": {"name": RJ},
        "spec": {
            "modelDeployment": MD,
            "runNow": run_now,
            "dataset": {"uri": f"s3://{BUCKET}/data/cancer.csv", "target": "target",
                        "secretRef": {"name": "store"}},
            "estimator": estimator,
            "validation": {"split": "Holdout", "metric": "accuracy", "minScore": "0.80",
                           **validation},
            "promotion": "Auto",
            "output": {"uri": f"s3://{BUCKET}/models/{MD}/", "secretRef": {"name": "store"}},
            "backoffLimit": 0,
        },
    }


def follower() -> dict[str, Any]:
    return {
        "apiVersion": "seaway.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": MD},
        "spec": {
            "model": {"fromRetrainJob": RJ, "secretRef": {"name": "store"}},
            "server": {"image": E2E.SERVER_IMAGE, "replicas": 1},
            "rollout": {"strategy": "Canary", "progressDeadlineSeconds": 120,
                        "steps": [{"setWeight": 50}, {"pause": {"duration": "6s"}}]},
        },
    }


def rj_status(e2e: E2E, ns: str) -> dict[str, Any]:
    body = e2e.custom.get_namespaced_custom_object("seaway.dev", "v1alpha1", ns, "retrainjobs", RJ)
    return dict(body.get("status") or {})


def wait_promoted(e2e: E2E, ns: str, run: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = rj_status(e2e, ns)
        runs = {r["number"]: r for r in status.get("runs", [])}
        if run in runs and runs[run].get("result") not in (None, "Running"):
            assert runs[run].get("decision") == "Promoted", json.dumps(runs[run])
            assert (status.get("promoted") or {}).get("run") == run, json.dumps(status)
            return status
        time.sleep(0.5)
    pods = e2e.kubectl("get", "pods,jobs", "-n", ns, "-o", "wide")
    raise AssertionError(f"run {run} not finished in {timeout:.0f}s: {json.dumps(status)}\n{pods}")


def termination_message(e2e: E2E, ns: str, job: str) -> str:
    """The training container's termination message, read from the Pod's status."""
    for pod in e2e.core.list_namespaced_pod(ns, label_selector=f"job-name={job}").items:
        for cs in pod.status.container_statuses or []:
            if cs.state.terminated is not None:
                return str(cs.state.terminated.message or "")
    raise AssertionError(f"no terminated training container of Job {job}")


def bundle_predictions(uri: str, digest: str, env: dict[str, str], rows: np.ndarray,
                       work: Path) -> list[Any]:
    """Fetch the bundle the trainer wrote, check its digest, and predict ``rows`` with it."""
    folder = sources.materialize(uri, work, sources.Limits(max_bytes=64 << 20), env=env)
    manifest = json.loads((folder / "manifest.json").read_text())
    model = folder / manifest["model_file"]
    assert "sha256:" + hashlib.sha256(model.read_bytes()).hexdigest() == digest
    return list(joblib.load(model).predict(rows).tolist())


def test_retrainjob_trains_in_a_pod_and_its_bundle_answers(
    e2e: E2E, models: Models, store: dict[str, str], tmp_path: Path, real_cluster: Any
) -> None:
    from tests.realnode.test_e2e_chart import restricted_namespace
    from tests.realnode.traffic import Traffic

    # the training Pod, the model servers and the router all meet Pod Security "restricted"
    ns = restricted_namespace(e2e, real_cluster, "retrain")
    e2e.kubectl("create", "secret", "generic", "store", "-n", ns,
                *(f"--from-literal={k}={v}" for k, v in store.items()))
    t0 = time.monotonic()
    e2e.apply(ns, follower())
    e2e.apply(ns, retrainjob("first", {"importPath": "sklearn.linear_model.LogisticRegression",
                                       "params": {"max_iter": 10000}}))
    status = wait_promoted(e2e, ns, 1, timeout=300)
    t_trained = time.monotonic() - t0
    run1 = next(r for r in status["runs"] if r["number"] == 1)
    message = json.loads(termination_message(e2e, ns, run1["jobName"]))
    promoted = status["promoted"]
    assert message["status"] == "Succeeded" and message["gate_passed"] is True, message
    assert (message["bundle"]["uri"], message["bundle"]["digest"]) == (promoted["uri"],
                                                                     promoted["digest"])
    assert promoted["uri"].startswith(f"s3://{BUCKET}/models/{MD}/")
    print(f"\n[retrain] run 1 (LogisticRegression) trained in a Pod and promoted "
          f"{t_trained:.1f}s after apply; score {run1.get('candidateScore')}; "
          f"{promoted['uri']}")

    e2e.wait(ns, MD, lambda s: s.get("stableRevision") == 1
             and e2e.condition(s, "Ready") == "True", timeout=180, what="r1 serving")
    revision = e2e.status(ns, MD)["revisions"][0]
    assert revision["createdBy"] == f"retrainjob/{RJ}#1"
    assert (revision["modelURI"], revision["digest"]) == (promoted["uri"], promoted["digest"])
    want = {1: bundle_predictions(promoted["uri"], promoted["digest"], store, models.rows,
                                  tmp_path / "r1")}
    traffic = Traffic(*e2e.router_address(ns, MD), model=MD, rows=models.rows,
                      rate=40.0).start()
    try:
        first = traffic.wait_for(1, timeout=60)
        print(f"[retrain] apply to first answer of the trained model: {first[0].at - t0:.1f}s")
        # run 2: another estimator; the incumbent (r1, read with the ModelDeployment's Secret)
        # is scored beside it, and any candidate at least 0.8 accurate passes
        t1 = time.monotonic()
        e2e.apply(ns, retrainjob("second", {
            "importPath": "sklearn.tree.DecisionTreeClassifier",
            "params": {"max_depth": 3, "random_state": 0}}, minImprovement="-1"))
        status = wait_promoted(e2e, ns, 2, timeout=300)
        run2 = next(r for r in status["runs"] if r["number"] == 2)
        print(f"[retrain] run 2 (DecisionTree) promoted {time.monotonic() - t1:.1f}s after the "
              f"edit; candidate {run2.get('candidateScore')}, incumbent "
              f"{run2.get('incumbentScore')}")
        assert run2.get("incumbentScore"), run2  # the incumbent was fetched and scored
        e2e.follow(ns, MD, until=lambda s: s.get("stableRevision") == 2
                   and not s.get("canaryRevision"), timeout=240)
        rolled = time.monotonic()
        print(f"[retrain] r2 rolled out (canary 50%) {rolled - t1:.1f}s after the edit")
        time.sleep(2.0)
    finally:
        traffic.stop()
    promoted = status["promoted"]
    want[2] = bundle_predictions(promoted["uri"], promoted["digest"], store, models.rows,
                                 tmp_path / "r2")
    answers = [a for a in traffic.snapshot() if a.status == 200]
    for a in answers:
        assert a.revision in want, a
        assert a.prediction == want[a.revision][a.row], (a, want[a.revision][a.row])
    failed = traffic.failures()
    shares = Traffic.shares(answers)
    split = ", ".join(f"r{rev} {share:.0f}%" for rev, share in shares.items())
    print(f"[retrain] {len(answers)} answers ({split}), {len(failed)} failed; every answer "
          f"equals the prediction of its revision's bundle")
    assert not failed, failed[:5]
    assert set(shares) == {1, 2}
    assert want[1] != want[2]  # the two models disagree somewhere, so the check has teeth


__all__ = ["e2e", "models"]
