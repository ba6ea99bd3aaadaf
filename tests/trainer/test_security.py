"""The trainer's import allowlist holds against paths that only look allowed (issue 15, item 5).

An import path is a chain of attributes: ``sklearn.datasets._base.gzip.GzipFile`` starts with
``sklearn.`` but names the standard library's file class, whose constructor, given a RetrainJob's
``params``, truncates any file the trainer pod may write. The attacker's inputs run through a
real ``seaway-train`` process; the victim file must keep its bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from seaway_serving.trainer import estimators
from seaway_serving.trainer.errors import InvalidSettings
from tests.trainer.conftest import classification_frame, write


def env_for(tmp: Path, estimator: str, params: dict[str, Any]) -> dict[str, str]:
    path = write(classification_frame(rows=100), tmp / "data.csv")
    return {"SEAWAY_TRAIN_DATASET_URI": str(path), "SEAWAY_TRAIN_TARGET": "label",
            "SEAWAY_TRAIN_ESTIMATOR": estimator, "SEAWAY_TRAIN_PARAMS": json.dumps(params),
            "SEAWAY_TRAIN_OUTPUT_URI": str(tmp / "models")}


@pytest.mark.parametrize("nested", [False, True], ids=["top", "pipeline-step"])
def test_a_file_class_reached_through_sklearn_never_runs(
    train: Any, tmp_path: Path, nested: bool
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    attack = {"filename": str(victim), "mode": "wb"}
    path = "sklearn.datasets._base.gzip.GzipFile"
    if nested:
        env = env_for(tmp_path, "sklearn.pipeline.Pipeline",
                      {"steps": [["x", {"importPath": path, "params": attack}]]})
    else:
        env = env_for(tmp_path, path, attack)
    run = train(env)
    message = run.check_one_line_failure(2)
    assert victim.read_text() == "precious\n"
    assert message == (f"estimator import path '{path}' resolves to gzip.GzipFile, which is not "
                       "defined under sklearn. (SEAWAY_TRAIN_ALLOWED_IMPORT_PREFIXES)")


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("sklearn.datasets._base.Path", "resolves to pathlib"),
        ("sklearn.datasets._base.NamedTemporaryFile", "not a class"),
        ("sklearn.utils.Bunch", "not a scikit-learn estimator"),
        ("sklearn.base.BaseEstimator.__class__", "not a dotted Python path"),
    ],
)
def test_only_scikit_learn_estimators_defined_under_a_prefix_resolve(path: str, why: str) -> None:
    with pytest.raises(InvalidSettings, match=why):
        estimators.resolve(path, ["sklearn."])


def test_estimators_and_pipelines_still_resolve() -> None:
    assert estimators.resolve("sklearn.ensemble.RandomForestClassifier", ["sklearn."]).__name__ \
        == "RandomForestClassifier"
    built = estimators.build(
        "sklearn.pipeline.Pipeline",
        {"steps": [["s", {"importPath": "sklearn.preprocessing.StandardScaler"}],
                   ["m", {"importPath": "sklearn.linear_model.LogisticRegression"}]]},
        ["sklearn"],
    )
    assert [name for name, _ in built.steps] == ["s", "m"]
