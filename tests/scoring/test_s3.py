"""``seaway-score`` against a real S3-compatible store (moto in server mode, SigV4 required).

A dataset of several files under a prefix (CSV in one test, Parquet in the other, beside a
``_SUCCESS`` marker) is scored by three indexes run one after the other, with the bundle read
from the same store; the output is read back with boto3 (not with the scorer's own client).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.scoring.conftest import KEYS, Model, ScoreAll, check_scores, frame, read_output
from tests.serving.conftest import side_venv
from tests.serving.moto_store import moto_store

HERE = Path(__file__).resolve().parent
FILES = 5
ROWS = 900


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, model: Model) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("scoring-s3")
    frames = [frame(ROWS + 37 * i, seed=10 + i, start=10_000 * i) for i in range(FILES)]
    objects = []
    for i, df in enumerate(frames):
        df.to_csv(work / f"{i}.csv", index=False)
        df.to_parquet(work / f"{i}.parquet", row_group_size=300)
        objects += [f"{work / f'{i}.csv'}=data/csv/day={i:02d}/part-{i}.csv",
                    f"{work / f'{i}.parquet'}=data/parquet/part-{i:03d}.parquet"]
    (work / "_SUCCESS").write_bytes(b"")
    objects += [f"{work / '_SUCCESS'}=data/csv/_SUCCESS",
                f"{work / '_SUCCESS'}=data/parquet/_SUCCESS",
                f"{model.bundle / 'manifest.json'}=models/churn/manifest.json",
                f"{model.bundle / 'model.joblib'}=models/churn/model.joblib"]
    with moto_store(work, "seaway", objects) as env:
        yield {"env": env, "frame": pd.concat(frames, ignore_index=True)}


def download(env: dict[str, str], prefix: str, dest: Path) -> list[str]:
    venv = side_venv("moto", ["moto[server]>=5", "boto3"])
    out = subprocess.run([str(venv / "bin" / "python"), str(HERE / "s3_fetch.py"),
                          env["SEAWAY_S3_ENDPOINT"], env["AWS_ACCESS_KEY_ID"],
                          env["AWS_SECRET_ACCESS_KEY"], "seaway", prefix, str(dest)],
                         check=True, capture_output=True, text=True, timeout=120)
    return sorted(out.stdout.split())


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_folder_of_files_on_s3(store: dict[str, Any], model: Model, score_all: ScoreAll,
                                 tmp_path: Path, fmt: str) -> None:
    runs = score_all(f"s3://seaway/data/{fmt}/", f"s3://seaway/scores/{fmt}/", shards=3,
                     key_columns=KEYS, methods=("predict", "predict_proba"), batch_rows=256,
                     bundle="s3://seaway/models/churn/", store_env=store["env"])
    results = [r.result() for r in runs]
    assert [r["unitsDone"] for r in results] == [[0, 3], [1, 4], [2]]
    assert all(r["unitsTotal"] == FILES and r["unitsSkipped"] == [] for r in results)
    assert sum(r["rows"] for r in results) == len(store["frame"])
    assert {(r["revision"], r["digest"]) for r in results} == {(3, model.digest)}

    keys = download(store["env"], f"scores/{fmt}/", tmp_path)
    assert keys == sorted([f"scores/{fmt}/_manifest.json",
                           *(f"scores/{fmt}/_units/{u:05d}.json" for u in range(FILES)),
                           *(f"scores/{fmt}/part-{u:05d}.parquet" for u in range(FILES))])
    out, manifest = read_output(tmp_path)
    check_scores(out, store["frame"], model)
    assert (manifest["runId"], manifest["model"], manifest["revision"], manifest["digest"]) == (
        "job-uid-1", "churn", 3, model.digest)
    assert manifest["input"] == f"s3://seaway/data/{fmt}/"
    assert manifest["totals"]["rows"] == len(store["frame"])
    # units follow the files' names, whatever folder they sit in
    assert [u["source"]["uri"].rsplit("/", 1)[-1] for u in manifest["units"]] == (
        [f"part-{i}.csv" for i in range(FILES)] if fmt == "csv"
        else [f"part-{i:03d}.parquet" for i in range(FILES)])
