"""The trainer against a real S3-compatible server on 127.0.0.1: read, verify, publish.

The server is moto in server mode with IAM authentication on, so every request must carry a valid
AWS Signature Version 4 (the same setup as tests/serving/test_sources.py: moto lives in its own
virtualenv, made on first use). The dataset and the incumbent are read from it, the bundle and
the result are written to it, and the published bundle is read back and verified with the
server's own fetcher and loader.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sklearn.linear_model import LogisticRegression

from seaway_serving import bundle, loader, sources
from seaway_serving.trainer import result as results
from tests.serving.moto_store import moto_store
from tests.trainer.conftest import FEATURES, as_float, classification_frame, write


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Bucket ``seaway``: ``data/churn.csv`` and the live bundle in ``models/churn/live/``."""
    work = tmp_path_factory.mktemp("s3")
    frame = classification_frame(rows=300)
    data = write(frame, work / "churn.csv")
    live = LogisticRegression(max_iter=1000).fit(as_float(frame), frame["label"])
    manifest = bundle.create_from_estimator(live, work / "live", name="churn",
                                            feature_names=FEATURES)
    objects = [f"{data}=data/churn.csv",
               f"{work / 'live' / 'manifest.json'}=models/churn/live/manifest.json",
               f"{work / 'live' / 'model.joblib'}=models/churn/live/model.joblib"]
    with moto_store(work, "seaway", objects) as env:
        yield {"env": env, "live_digest": manifest.sha256, "endpoint": env["SEAWAY_S3_ENDPOINT"]}


def test_reads_and_publishes_on_s3(train: Any, store: dict[str, Any], tmp_path: Path) -> None:
    run = train({
        **store["env"],
        "SEAWAY_TRAIN_DATASET_URI": "s3://seaway/data/churn.csv", "SEAWAY_TRAIN_TARGET": "label",
        "SEAWAY_TRAIN_TIMESTAMP_COLUMN": "event_time", "SEAWAY_TRAIN_SPLIT": "Backtest",
        "SEAWAY_TRAIN_CUTOFF": "10d",
        "SEAWAY_TRAIN_ESTIMATOR": "sklearn.ensemble.HistGradientBoostingClassifier",
        "SEAWAY_TRAIN_PARAMS": '{"max_iter": 30}', "SEAWAY_TRAIN_METRIC": "log_loss",
        "SEAWAY_TRAIN_INCUMBENT_URI": "s3://seaway/models/churn/live/",
        "SEAWAY_TRAIN_INCUMBENT_DIGEST": store["live_digest"],
        "SEAWAY_TRAIN_OUTPUT_URI": "s3://seaway/models/churn/retrained", "SEAWAY_TRAIN_RUN_ID": "7",
    })
    assert run.returncode == 0, run.stderr
    res = run.result
    assert res.bundle is not None and res.incumbent is not None and res.dataset is not None
    assert res.bundle.uri == "s3://seaway/models/churn/retrained/7/"
    assert res.incumbent.digest == store["live_digest"] and res.incumbent.score is not None
    assert res.dataset.uri == "s3://seaway/data/churn.csv" and res.dataset.bytes > 0

    # read back with the server's fetcher (signed GETs) and verify with its loader
    limits = sources.Limits(max_bytes=1 << 30)
    fetched = sources.materialize(res.bundle.uri, tmp_path / "fetched", limits, store["env"])
    model = loader.load(fetched, loader.Policy(max_bytes=1 << 30,
                                               pinned_digest=res.bundle.digest))
    assert model.manifest.estimator.endswith("HistGradientBoostingClassifier")
    assert res.candidate is not None
    assert model.manifest.metrics["log_loss"] == pytest.approx(float(res.candidate.score),
                                                               abs=1e-6)
    stored = io.BytesIO()
    sources._S3Getter("seaway", limits, store["env"]).get(
        f"s3://seaway/models/churn/retrained/7/{results.RESULT_FILE}", stored, 1 << 20)
    assert results.parse(stored.getvalue()) == res


def test_missing_dataset_object(train: Any, store: dict[str, Any], tmp_path: Path) -> None:
    run = train({**store["env"], "SEAWAY_TRAIN_DATASET_URI": "s3://seaway/data/missing.parquet",
                 "SEAWAY_TRAIN_TARGET": "label",
                 "SEAWAY_TRAIN_ESTIMATOR": "sklearn.tree.DecisionTreeClassifier",
                 "SEAWAY_TRAIN_OUTPUT_URI": "s3://seaway/models/x"})
    assert run.check_one_line_failure(3) == (
        f"could not fetch {store['endpoint']}/seaway/data/missing.parquet: HTTP 404 NoSuchKey")


def test_output_refused_by_the_store(train: Any, store: dict[str, Any], tmp_path: Path) -> None:
    data = write(classification_frame(rows=100), tmp_path / "train.csv")
    # the shared keys are right; the output's own (as envFrom with a prefix passes them) are not
    run = train({**store["env"], "SEAWAY_TRAIN_OUTPUT_AWS_SECRET_ACCESS_KEY": "wrong",
                 "SEAWAY_TRAIN_DATASET_URI": str(data), "SEAWAY_TRAIN_TARGET": "label",
                 "SEAWAY_TRAIN_TIMESTAMP_COLUMN": "event_time",
                 "SEAWAY_TRAIN_ESTIMATOR": "sklearn.tree.DecisionTreeClassifier",
                 "SEAWAY_TRAIN_OUTPUT_URI": "s3://seaway/models/x", "SEAWAY_TRAIN_RUN_ID": "3"})
    assert run.check_one_line_failure(7) == (
        f"could not write {store['endpoint']}/seaway/models/x/3/model.joblib: HTTP 403 "
        "SignatureDoesNotMatch")
