"""The operator's training Job and the real trainer, run together.

The container the RetrainJob reconciler renders (``retrain.training_job``) is started as a real
``seaway-train`` with exactly its environment; only the termination-message and work paths are
moved from the pod's ``/dev`` and ``/tmp`` into the test's directory. The incumbent is a bundle
the model server would load; its pinned digest must travel to the trainer as well.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sklearn.linear_model import LogisticRegression

from seaway.api.retrainjob import RetrainJobSpec, RunStatus
from seaway.planning import retrain
from seaway_serving import bundle, contract
from seaway_serving.trainer import result as results
from seaway_serving.trainer.settings import TrainSettings
from tests.trainer.conftest import FEATURES, REPO, as_float, classification_frame, write


def rendered(spec: dict[str, Any], incumbent: retrain.Incumbent | None) -> dict[str, str]:
    job = retrain.training_job(
        rj_name="churn-nightly", rj_uid="uid", namespace="ml",
        spec=RetrainJobSpec.model_validate(spec),
        run=RunStatus(number=7, job_name="churn-nightly-7", trigger="cli",
                      started_at="2026-11-30T00:00:00Z"),
        incumbent=incumbent, default_image="ghcr.io/seaway-dev/seaway-server:0.1.0")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["seaway-train"]
    return {e["name"]: e["value"] for e in container["env"]}


def run_as_operator(env: dict[str, str], tmp_path: Path) -> tuple[int, str, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SEAWAY_", "AWS_"))}
    full.update(env)
    term = tmp_path / "termination-log"
    moved = {"termination_log": str(term), "result_path": str(term),
             "work_dir": str(tmp_path / "work")}
    for field, value in moved.items():
        assert contract.train_variable(field) in env
        full[contract.train_variable(field)] = value
    proc = subprocess.run([sys.executable, "-m", "seaway_serving.trainer"], env=full, cwd=REPO,
                          capture_output=True, text=True, timeout=180, check=False)
    return proc.returncode, proc.stdout, term.read_text() if term.exists() else ""


@pytest.fixture
def incumbent(tmp_path: Path) -> Path:
    frame = classification_frame(seed=1)
    model = LogisticRegression(max_iter=1000).fit(as_float(frame), frame["label"])
    out = tmp_path / "incumbent"
    bundle.create_from_estimator(model, out, name="churn", data=as_float(frame),
                                 feature_names=FEATURES)
    return out


def spec_for(tmp_path: Path) -> dict[str, Any]:
    data = write(classification_frame(), tmp_path / "data" / "churn.csv")
    return {
        "modelDeployment": "churn",
        "dataset": {"uri": f"file://{data}", "target": "label", "features": FEATURES},
        "estimator": {"importPath": "sklearn.linear_model.LogisticRegression",
                      "params": {"max_iter": 1000}},
        "validation": {"metric": "accuracy", "minScore": "0.5"},
        "promotion": "Auto",
        "output": {"uri": f"file://{tmp_path / 'out'}"},
    }


def test_every_variable_the_operator_sets_is_one_the_trainer_reads(tmp_path: Path) -> None:
    env = rendered(spec_for(tmp_path), retrain.Incumbent(uri="s3://m/r1/", digest=None,
                                                          allow_unverified=True))
    known = {contract.train_variable(name) for name in TrainSettings.model_fields}
    assert set(env) <= known
    assert env[contract.train_variable("incumbent_allow_unverified")] == "true"
    unverified = rendered(spec_for(tmp_path), retrain.Incumbent(uri="s3://m/r1/", digest=None))
    assert contract.train_variable("incumbent_allow_unverified") not in unverified


def test_the_rendered_job_trains_scores_the_incumbent_and_publishes(
    tmp_path: Path, incumbent: Path
) -> None:
    digest = "sha256:" + hashlib.sha256((incumbent / "model.joblib").read_bytes()).hexdigest()
    env = rendered(spec_for(tmp_path), retrain.Incumbent(uri=str(incumbent), digest=digest))
    code, stdout, termination = run_as_operator(env, tmp_path)
    assert code == 0, stdout
    # what the reconciler reads back from the termination message (the compact summary)
    result = retrain.parse_result(termination)
    assert not isinstance(result, str), result
    assert result.incumbent_score is not None, "the pinned incumbent was not scored"
    assert result.uri.endswith("/run-7/") and result.digest.startswith("sha256:")
    assert results.parse(stdout.strip().splitlines()[-1]).status == "Succeeded"


def test_a_swapped_incumbent_is_refused(tmp_path: Path, incumbent: Path) -> None:
    env = rendered(spec_for(tmp_path),
                   retrain.Incumbent(uri=str(incumbent), digest="sha256:" + "0" * 64))
    code, _, termination = run_as_operator(env, tmp_path)
    assert code != 0
    assert "digest mismatch" in termination


@pytest.mark.parametrize("argv", [
    [],  # no settings at all: refused before they parse
    ["--dataset-uri", "file:///nonexistent/d.csv", "--target", "y", "--output-uri",
     "file:///nonexistent/out/"],  # parsed settings, a failed run
])
def test_run_by_hand_writes_no_termination_log(argv: list[str], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the operator's Job says where the termination message goes; a local run (as root,
    where /dev is writable) leaves /dev/termination-log alone."""
    from click.testing import CliRunner

    from seaway_serving.trainer import main as trainer_main

    written: list[str] = []
    real = Path.write_text

    def spy(self: Path, *args: Any, **kwargs: Any) -> int:
        written.append(str(self))
        return 0 if str(self).startswith("/dev/") else real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", spy)
    env = {k: None for k in os.environ if k.startswith("SEAWAY_")}
    env["SEAWAY_TRAIN_WORK_DIR"] = str(tmp_path / "work")
    result = CliRunner().invoke(trainer_main.main, argv, env=env)
    assert result.exit_code in (2, 3), result.output
    assert not [p for p in written if "termination" in p], written
    assert TrainSettings.model_fields["termination_log"].default is None
