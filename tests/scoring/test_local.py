"""``seaway-score`` on local files: one large file over three indexes, a killed pod, refusals.

The real console script in a subprocess per index, with the operator's environment (see
conftest.py). A killed scorer is observed, not timed: the test waits until the first unit's
record exists, kills the process with SIGKILL, and runs the index again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from seaway_serving import contract
from tests.scoring.conftest import (
    FEATURES,
    KEYS,
    SCORER,
    Model,
    ScoreAll,
    check_scores,
    frame,
    read_output,
    run_scorer,
    scorer_env,
)

ROWS = 20_000


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, pd.DataFrame]:
    work = tmp_path_factory.mktemp("scoring-local")
    df = frame(ROWS, seed=3)
    df.to_csv(work / "big.csv", index=False)
    df.to_parquet(work / "big.parquet", row_group_size=1_500)  # 14 row groups
    return work / "big.csv", work / "big.parquet", df


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_one_large_file_over_three_indexes(big: tuple[Path, Path, pd.DataFrame], model: Model,
                                           score_all: ScoreAll, tmp_path: Path,
                                           fmt: str) -> None:
    source = big[0] if fmt == "csv" else big[1]
    out_dir = tmp_path / "out"
    runs = score_all(str(source), out_dir.as_uri(), shards=3, key_columns=KEYS,
                     methods=("predict", "predict_proba"), batch_rows=1_000,
                     output_format="parquet")
    results = [r.result() for r in runs]
    assert [r["unitsDone"] for r in results] == [[0], [1], [2]]
    # each index scored a real share of the file
    assert all(r["rows"] > ROWS // 5 for r in results)
    out, manifest = read_output(out_dir)
    check_scores(out, big[2], model)
    kinds = {u["source"]["kind"] for u in manifest["units"]}
    assert kinds == ({"bytes"} if fmt == "csv" else {"rowGroups"})
    if fmt == "parquet":
        assert [(u["source"]["start"], u["source"]["end"]) for u in manifest["units"]] == [
            (0, 4), (4, 9), (9, 14)]
    # the progress lines a person watches with kubectl logs
    assert "units done" in runs[0].stderr and "rows/s" in runs[0].stderr


def test_csv_output_and_predict_only(big: tuple[Path, Path, pd.DataFrame], model: Model,
                                     score_all: ScoreAll, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    score_all(str(big[1]), str(out_dir), shards=2, key_columns=KEYS, output_format="csv")
    out, manifest = read_output(out_dir)
    assert manifest["outputFormat"] == "csv"
    assert sorted(p.name for p in out_dir.glob("part-*")) == ["part-00000.csv", "part-00001.csv"]
    check_scores(out, big[2], model, proba=False)


def test_a_killed_scorer_resumes_without_scoring_a_unit_twice(model: Model,
                                                              tmp_path: Path) -> None:
    data = tmp_path / "in"
    data.mkdir()
    frames = [frame(40_000, seed=20 + i, start=100_000 * i) for i in range(6)]
    for i, df in enumerate(frames):
        df.to_csv(data / f"day-{i}.csv", index=False)
    out_dir = tmp_path / "out"
    env = scorer_env(model=model, input_uri=str(data), output_uri=str(out_dir), shards=1,
                     index=0, run_id="resume", work=tmp_path, key_columns=KEYS, batch_rows=500)
    first = subprocess.Popen([str(SCORER)], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out_dir / "_units" / "00000.json").exists():
            assert first.poll() is None, "the scorer ended before its first unit was recorded"
            assert time.monotonic() < deadline, "no unit recorded in time"
            time.sleep(0.005)
        os.kill(first.pid, signal.SIGKILL)
    finally:
        first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    recorded = sorted(int(p.stem) for p in (out_dir / "_units").glob("*.json"))
    assert recorded[0] == 0 and len(recorded) < len(frames), "killed too late to tell"
    assert not (out_dir / "_manifest.json").exists()
    # every part on disk is whole (a killed part stays under its temporary name)
    for part in out_dir.glob("part-*.parquet"):
        pd.read_parquet(part)

    again = run_scorer(env)
    assert again.returncode == 0, again.stderr
    result = again.result()
    assert result["unitsSkipped"] == recorded
    assert result["unitsDone"] == list(range(len(frames)))
    source = pd.concat(frames, ignore_index=True)
    skipped_rows = sum(len(frames[u]) for u in recorded)
    assert result["rows"] == len(source) - skipped_rows
    assert result["rowsSkipped"] == skipped_rows  # so the operator still counts every row
    out, manifest = read_output(out_dir)
    check_scores(out, source, model, proba=False)
    assert {u["index"] for u in manifest["units"]} == {0}


def test_wrong_digest_is_refused_before_anything_is_written(big: tuple[Path, Path, pd.DataFrame],
                                                            model: Model, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    wrong = "sha256:" + "0" * 64
    run = run_scorer(scorer_env(model=model, input_uri=str(big[0]), output_uri=str(out_dir),
                                shards=3, index=1, run_id="r", work=tmp_path, digest=wrong))
    assert run.returncode == contract.SCORE_EXIT_MODEL_REFUSED
    result = run.result()
    assert result["reason"] == "ModelRefused"
    assert result["message"] == (f"digest mismatch: pinned (SEAWAY_MODEL_DIGEST) {wrong} file "
                                 f"{model.digest}")
    assert result["unitsDone"] == [] and result["rows"] == 0
    assert not out_dir.exists() or not list(out_dir.rglob("*"))
    assert "Traceback" not in run.stderr


def test_a_missing_feature_column_is_bad_input(model: Model, tmp_path: Path) -> None:
    df = frame(100).drop(columns=["f2", "f4"])
    df.to_parquet(tmp_path / "in.parquet")
    out_dir = tmp_path / "out"
    run = run_scorer(scorer_env(model=model, input_uri=str(tmp_path / "in.parquet"),
                                output_uri=str(out_dir), shards=1, index=0, run_id="r",
                                work=tmp_path))
    assert run.returncode == contract.SCORE_EXIT_BAD_INPUT
    result = run.result()
    assert result["reason"] == "BadInput"
    assert result["message"].startswith(f"{tmp_path / 'in.parquet'} lacks the feature columns "
                                        "f2, f4 the model was trained with (its columns: id, ")
    assert not list(out_dir.glob("part-*"))
    assert "Traceback" not in run.stderr
    assert FEATURES[2] in run.stderr


def test_another_runs_output_is_refused(big: tuple[Path, Path, pd.DataFrame], model: Model,
                                        score_all: ScoreAll, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    score_all(str(big[1]), str(out_dir), shards=1, run_id="first-run")
    before = {p: p.stat().st_mtime_ns for p in out_dir.rglob("*")}
    run = run_scorer(scorer_env(model=model, input_uri=str(big[1]), output_uri=str(out_dir),
                                shards=1, index=0, run_id="second-run", work=tmp_path))
    assert run.returncode == contract.SCORE_EXIT_OUTPUT_REFUSED
    result = run.result()
    assert result["reason"] == "OutputRefused"
    assert result["message"] == (f"the output {out_dir} holds the results of another run "
                                 "(first-run; this run is second-run): write each run to its "
                                 "own output, or empty it first")
    assert {p: p.stat().st_mtime_ns for p in out_dir.rglob("*")} == before
