"""Fixtures for the batch scorer: a model bundle, datasets, and the real ``seaway-score`` process.

Every run is the installed ``seaway-score`` console script in a subprocess, started with exactly
the environment the operator renders (``contract.server_env``'s model variables without HOST
and PORT, plus ``contract.score_env``) and ``JOB_COMPLETION_INDEX``, as the Indexed Job's pods
get it; only the termination-message file and the work directory point into the test's
temporary folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from seaway_serving import bundle, contract

FEATURES = [f"f{i}" for i in range(6)]
KEYS = ("id", "region")
SCORER = Path(sys.executable).parent / "seaway-score"


def frame(rows: int, seed: int = 0, start: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))), columns=FEATURES)
    df.insert(0, "id", np.arange(start, start + rows, dtype=np.int64))
    df.insert(1, "region", np.array(["north", "south", "east"])[np.arange(rows) % 3])
    df["unused"] = rng.integers(0, 5, size=rows)
    return df


@dataclass(frozen=True)
class Model:
    estimator: LogisticRegression
    bundle: Path
    digest: str

    def expected(self, df: pd.DataFrame) -> pd.DataFrame:
        """scikit-learn's own answers for ``df``'s rows, keyed by id."""
        x = df[FEATURES].to_numpy(dtype=np.float64)
        out = pd.DataFrame({"id": df["id"].to_numpy(),
                            "prediction": self.estimator.predict(x)})
        proba = self.estimator.predict_proba(x)
        for i, c in enumerate(self.estimator.classes_):
            out[f"proba_{c}"] = proba[:, i]
        return out.set_index("id").sort_index()


@pytest.fixture(scope="session")
def model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    train = frame(2000, seed=1)
    y = np.where(train["f0"] + 0.5 * train["f1"] - train["f2"] > 0, "churn", "stay")
    est = LogisticRegression(max_iter=1000).fit(train[FEATURES].to_numpy(), y)
    out = tmp_path_factory.mktemp("scoring-bundle") / "churn"
    manifest = bundle.create_from_estimator(est, out, name="churn",
                                            data=train[FEATURES].to_numpy(),
                                            feature_names=FEATURES)
    assert manifest.sha256 is not None
    return Model(est, out, manifest.sha256)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    termination: dict[str, Any] | None

    def result(self) -> dict[str, Any]:
        """The termination message, which is also stdout's last line."""
        assert self.termination is not None, self.stderr
        assert json.loads(self.stdout.strip().splitlines()[-1]) == self.termination
        return self.termination


def scorer_env(*, model: Model, input_uri: str, output_uri: str, shards: int, index: int,
               run_id: str, work: Path, digest: str | None = None,
               store_env: dict[str, str] | None = None, **score: Any) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("SEAWAY_", "AWS_")) and k != "JOB_COMPLETION_INDEX"}
    model_env = contract.server_env(bundle=str(score.pop("bundle", model.bundle)),
                                    model_format="sklearn-joblib",
                                    digest=digest or model.digest, allow_unverified=False,
                                    model_name="churn", revision=3, port=8080)
    env = dict(base)
    env.update((k, v) for k, v in model_env if k not in (contract.HOST, contract.PORT))
    env.update(contract.score_env(input_uri=input_uri, output_uri=output_uri, shards=shards,
                                  run_id=run_id, **score))
    env[contract.JOB_COMPLETION_INDEX] = str(index)
    # never the host's /dev/termination-log; a work dir of the test's own
    env[contract.TERMINATION_LOG] = str(work / f"termination-{run_id}-{index}")
    env["SEAWAY_WORK_DIR"] = str(work / "scratch")
    env.update(store_env or {})
    return env


def run_scorer(env: dict[str, str], timeout: float = 120) -> Run:
    assert SCORER.exists(), f"{SCORER} is missing: pip install -e . refreshes the entry points"
    proc = subprocess.run([str(SCORER)], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    path = Path(env[contract.TERMINATION_LOG])
    termination = json.loads(path.read_text()) if path.exists() else None
    return Run(proc.returncode, proc.stdout, proc.stderr, termination)


ScoreAll = Callable[..., list[Run]]


@pytest.fixture
def score_all(model: Model, tmp_path: Path) -> ScoreAll:
    """Run every index of a job one after the other; each must succeed."""

    def go(input_uri: str, output_uri: str, shards: int, run_id: str = "job-uid-1",
           **score: Any) -> list[Run]:
        runs = []
        for index in range(shards):
            run = run_scorer(scorer_env(model=model, input_uri=input_uri,
                                        output_uri=output_uri, shards=shards, index=index,
                                        run_id=run_id, work=tmp_path, **score))
            assert run.returncode == 0, run.stderr
            assert run.result()["reason"] == "Succeeded"
            runs.append(run)
        return runs

    return go


def read_output(folder: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every part of an output folder, and its manifest (whose part hashes are checked)."""
    import hashlib

    manifest = json.loads((folder / "_manifest.json").read_text())
    parts = []
    for unit in manifest["units"]:
        if unit["part"] is None:
            assert unit["rows"] == 0
            continue
        data = (folder / unit["part"]).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == unit["sha256"]
        part = (pd.read_parquet(folder / unit["part"]) if unit["part"].endswith(".parquet")
                else pd.read_csv(folder / unit["part"]))
        assert len(part) == unit["rows"]
        parts.append(part)
    listed = {u["part"] for u in manifest["units"] if u["part"]}
    on_disk = {p.name for p in folder.iterdir() if p.name.startswith("part-")}
    assert on_disk == listed, "a part the manifest does not list"
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]
    return pd.concat(parts, ignore_index=True), manifest


def check_scores(out: pd.DataFrame, source: pd.DataFrame, model: Model, *,
                 proba: bool = True) -> None:
    """Every input row exactly once, keys kept, scikit-learn's own answers, revision, digest."""
    assert len(out) == len(source)
    assert out["id"].is_unique
    assert sorted(out["id"]) == sorted(source["id"])
    got = out.set_index("id").sort_index()
    want = model.expected(source)
    assert got["region"].tolist() == source.set_index("id").sort_index()["region"].tolist()
    assert got["prediction"].tolist() == want["prediction"].tolist()
    if proba:
        for c in model.estimator.classes_:
            np.testing.assert_allclose(got[f"proba_{c}"], want[f"proba_{c}"], rtol=1e-12,
                                       atol=1e-15)
    assert set(got["seaway_revision"]) == {3}
    assert set(got["seaway_digest"]) == {model.digest}
    expected_columns = ["id", "region", "prediction"]
    if proba:
        expected_columns += [f"proba_{c}" for c in model.estimator.classes_]
    assert list(out.columns) == [*expected_columns, "seaway_revision", "seaway_digest"]
