"""``seaway-train`` end to end: holdout, backtest, the gate against an incumbent, the bundle.

Scores are never taken on trust: each test reloads the published bundle through the server's
verified loader and recomputes the score on the rows the documented split scores, independently
of the trainer's code.
"""

from __future__ import annotations

import decimal
import functools
import http.server
import json
import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score, root_mean_squared_error
from sklearn.model_selection import train_test_split

from seaway_serving import bundle, loader
from seaway_serving.trainer import result as results
from tests.trainer.conftest import (
    FEATURES,
    as_float,
    classification_frame,
    regression_frame,
    write,
)

PIPELINE = {"steps": [
    ["scale", {"importPath": "sklearn.preprocessing.StandardScaler"}],
    ["model", {"importPath": "sklearn.linear_model.LogisticRegression", "params": {"C": 0.5}}],
]}


def verified(bundle_dir: Path, digest: str) -> loader.LoadedModel:
    """Load a published bundle as a model pod would, pinned to the digest the result reports."""
    return loader.load(bundle_dir, loader.Policy(max_bytes=1 << 30, pinned_digest=digest))


def holdout_rows(y: np.ndarray, fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """The documented holdout: stratified, ceil(rows * testFraction) rows, seeded."""
    _, test = train_test_split(np.arange(y.size), test_size=math.ceil(y.size * fraction),
                               random_state=seed, stratify=y)
    return np.sort(test)


def as_score(value: float) -> str:
    return str(decimal.Decimal(repr(value)).quantize(decimal.Decimal("0.000001"),
                                                     rounding=decimal.ROUND_HALF_EVEN))


def test_holdout_pipeline_writes_a_bundle_the_server_verifies(train: Any, tmp_path: Path) -> None:
    frame = classification_frame()
    data = write(frame, tmp_path / "data" / "train.csv")
    result_path = tmp_path / "result" / "result.json"
    run = train({
        "SEAWAY_TRAIN_DATASET_URI": data.as_uri(), "SEAWAY_TRAIN_TARGET": "label",
        "SEAWAY_TRAIN_TIMESTAMP_COLUMN": "event_time",
        "SEAWAY_TRAIN_ESTIMATOR": "sklearn.pipeline.Pipeline",
        "SEAWAY_TRAIN_PARAMS": json.dumps(PIPELINE), "SEAWAY_TRAIN_METRIC": "roc_auc",
        "SEAWAY_TRAIN_MIN_SCORE": "0.80", "SEAWAY_TRAIN_OUTPUT_URI": (tmp_path / "models").as_uri(),
        "SEAWAY_TRAIN_RUN_ID": "7", "SEAWAY_TRAIN_NAME": "churn",
        "SEAWAY_TRAIN_CODE_VERSION": "abc123", "SEAWAY_TRAIN_RESULT_PATH": str(result_path),
    })
    assert run.returncode == 0, run.stderr
    res = run.result
    assert results.parse(result_path.read_text()) == res
    folder = tmp_path / "models" / "7"
    assert results.parse((folder / results.RESULT_FILE).read_text()) == res
    assert res.bundle is not None and res.candidate is not None and res.gate is not None
    assert res.bundle.uri == folder.as_uri() + "/"

    model = verified(folder, res.bundle.digest)
    manifest = model.manifest
    assert model.digest == res.bundle.digest and manifest.format == res.bundle.format
    assert manifest.estimator == "sklearn.pipeline.Pipeline"
    assert manifest.name == "churn" and manifest.code_version == "abc123"
    assert [spec.name for spec in manifest.inputs] == FEATURES  # no target, no timestamp
    y = frame["label"].to_numpy()
    test = holdout_rows(y)
    assert res.rows is not None
    assert (res.rows.read, res.rows.used, res.rows.test, res.rows.train) == (
        600, 600, test.size, 600 - test.size)
    assert manifest.fingerprint is not None and manifest.fingerprint.rows == res.rows.train

    expected = roc_auc_score(y[test], model.estimator.predict_proba(as_float(frame)[test])[:, 1])
    assert res.candidate.score == as_score(expected)
    assert manifest.metrics["roc_auc"] == expected
    assert res.candidate.metrics["accuracy"] == accuracy_score(
        y[test], model.estimator.predict(as_float(frame)[test]))
    assert res.gate.passed is (expected >= 0.80)
    assert res.incumbent is None

    summary = json.loads(run.termination or "")
    assert summary == {"schema": results.SCHEMA, "status": "Succeeded",
                       "bundle": {"uri": res.bundle.uri, "digest": res.bundle.digest,
                                  "format": "sklearn-joblib"},
                       "metric": "roc_auc", "candidate_score": res.candidate.score,
                       "gate_passed": res.gate.passed, "gate_reason": res.gate.reason}
    assert "Fitting Pipeline on 480 rows" in run.stderr


def test_backtest_rolling_windows_on_parquet(train: Any, tmp_path: Path) -> None:
    frame = classification_frame()
    data = write(frame, tmp_path / "data" / "events.parquet")
    run = train({
        "SEAWAY_TRAIN_DATASET_URI": str(data), "SEAWAY_TRAIN_TARGET": "label",
        "SEAWAY_TRAIN_TIMESTAMP_COLUMN": "event_time", "SEAWAY_TRAIN_SPLIT": "Backtest",
        "SEAWAY_TRAIN_CUTOFF": "14d", "SEAWAY_TRAIN_WINDOWS": "2",
        "SEAWAY_TRAIN_ESTIMATOR": "sklearn.ensemble.RandomForestClassifier",
        "SEAWAY_TRAIN_PARAMS": '{"n_estimators": 60, "random_state": 0}',
        "SEAWAY_TRAIN_METRIC": "accuracy", "SEAWAY_TRAIN_OUTPUT_URI": str(tmp_path / "models"),
        "SEAWAY_TRAIN_PROGRESS_INTERVAL_S": "0.01",
    })
    assert run.returncode == 0, run.stderr
    res = run.result
    assert res.split is not None and res.split.kind == "Backtest" and res.split.cutoff == "14d"
    stamps = pd.to_datetime(frame["event_time"], utc=True)
    newest = stamps.max()
    cut = pd.Timedelta(days=14)
    windows = res.split.windows
    assert len(windows) == 2
    for window, k in zip(windows, (2, 1), strict=True):  # oldest first
        start, until = newest - k * cut, newest - (k - 1) * cut
        assert window.train_rows == int((stamps <= start).sum())
        assert window.test_rows == int(((stamps > start) & (stamps <= until)).sum())
        assert window.test_from == start.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert window.test_until == until.strftime("%Y-%m-%dT%H:%M:%SZ")

    # without refit the bundle holds the model of the newest window, trained before its cutoff
    assert res.bundle is not None and res.candidate is not None and res.rows is not None
    assert res.refit is False
    folder = Path(res.bundle.uri.removeprefix("file://"))
    model = verified(folder, res.bundle.digest)
    recent = ((stamps > newest - cut) & (stamps <= newest)).to_numpy()
    expected = accuracy_score(frame["label"][recent],
                              model.estimator.predict(as_float(frame)[recent]))
    assert windows[-1].candidate_score == as_score(expected)
    mean = np.mean([float(w.candidate_score) for w in windows])
    assert abs(float(res.candidate.score) - mean) <= 1e-6
    assert res.rows.train == windows[-1].train_rows == model.manifest.fingerprint.rows  # type: ignore[union-attr]
    assert "Still fitting RandomForestClassifier" in run.stderr  # the heartbeat of long steps


def _incumbent_bundle(tmp_path: Path, estimator: Any, name: str) -> bundle.Manifest:
    return bundle.create_from_estimator(estimator, tmp_path / "live" / name, name=name,
                                        feature_names=list(estimator.feature_names_in_)
                                        if hasattr(estimator, "feature_names_in_") else None)


def test_gate_rejects_a_candidate_worse_than_the_incumbent(train: Any, tmp_path: Path) -> None:
    frame = classification_frame()
    y = frame["label"].to_numpy()
    test = holdout_rows(y)
    train_rows = np.setdiff1d(np.arange(y.size), test)
    # the live model knows only four of the six columns: it is scored on its own columns
    live_cols = FEATURES[:4]
    live = LogisticRegression(max_iter=1000).fit(as_float(frame, live_cols)[train_rows],
                                                 y[train_rows])
    manifest = bundle.create_from_estimator(live, tmp_path / "live", name="churn",
                                            feature_names=live_cols)
    assert manifest.sha256 is not None
    run = train({
        "SEAWAY_TRAIN_DATASET_URI": str(write(frame, tmp_path / "train.csv")),
        "SEAWAY_TRAIN_TARGET": "label", "SEAWAY_TRAIN_FEATURES": json.dumps(FEATURES),
        "SEAWAY_TRAIN_ESTIMATOR": "sklearn.dummy.DummyClassifier",
        "SEAWAY_TRAIN_METRIC": "roc_auc", "SEAWAY_TRAIN_MIN_IMPROVEMENT": "0.01",
        "SEAWAY_TRAIN_INCUMBENT_URI": (tmp_path / "live").as_uri(),
        "SEAWAY_TRAIN_INCUMBENT_DIGEST": manifest.sha256,
        "SEAWAY_TRAIN_OUTPUT_URI": (tmp_path / "models").as_uri(), "SEAWAY_TRAIN_RUN_ID": "8",
    })
    assert run.returncode == 0, run.stderr  # a rejected candidate is a run that succeeded
    res = run.result
    assert res.incumbent is not None and res.candidate is not None and res.gate is not None
    live_score = roc_auc_score(y[test], live.predict_proba(as_float(frame, live_cols)[test])[:, 1])
    assert res.incumbent.score == as_score(live_score)
    assert res.incumbent.digest == manifest.sha256 and res.incumbent.problem is None
    dummy = DummyClassifier().fit(as_float(frame)[train_rows], y[train_rows])
    assert res.candidate.score == as_score(
        roc_auc_score(y[test], dummy.predict_proba(as_float(frame)[test])[:, 1]))
    gain = decimal.Decimal(res.candidate.score) - decimal.Decimal(res.incumbent.score)
    assert decimal.Decimal(res.gate.improvement or "") == gain < 0
    assert res.gate.passed is False
    assert res.gate.reason.startswith(f"Improvement {res.gate.improvement} is below "
                                      "minImprovement 0.01")
    summary = json.loads(run.termination or "")
    assert summary["gate_passed"] is False
    assert summary["incumbent_score"] == res.incumbent.score


def test_lower_is_better_metric_passes_a_better_regressor(train: Any, tmp_path: Path) -> None:
    frame = regression_frame()
    y = frame["price"].to_numpy()
    test = np.sort(train_test_split(np.arange(y.size), test_size=math.ceil(y.size * 0.25),
                                    random_state=3)[1])
    train_rows = np.setdiff1d(np.arange(y.size), test)
    live = DummyRegressor().fit(as_float(frame)[train_rows], y[train_rows])
    manifest = bundle.create_from_estimator(live, tmp_path / "live", name="price",
                                            feature_names=FEATURES)
    assert manifest.sha256 is not None
    live_rmse = root_mean_squared_error(y[test], live.predict(as_float(frame)[test]))
    run = train({
        "SEAWAY_TRAIN_DATASET_URI": str(write(frame, tmp_path / "prices.csv")),
        "SEAWAY_TRAIN_TARGET": "price", "SEAWAY_TRAIN_ESTIMATOR": "sklearn.linear_model.Ridge",
        "SEAWAY_TRAIN_TEST_FRACTION": "0.25", "SEAWAY_TRAIN_SEED": "3",
        "SEAWAY_TRAIN_METRIC": "rmse", "SEAWAY_TRAIN_MIN_SCORE": as_score(live_rmse / 2),
        "SEAWAY_TRAIN_MIN_IMPROVEMENT": "1.5",
        "SEAWAY_TRAIN_INCUMBENT_URI": str(tmp_path / "live" / "manifest.json"),
        "SEAWAY_TRAIN_INCUMBENT_DIGEST": manifest.sha256,
        "SEAWAY_TRAIN_OUTPUT_URI": (tmp_path / "models").as_uri(),
    })
    assert run.returncode == 0, run.stderr
    res = run.result
    assert res.higher_is_better is False and res.metric == "rmse"
    assert res.incumbent is not None and res.candidate is not None and res.gate is not None
    assert res.incumbent.score == as_score(live_rmse)
    assert res.bundle is not None
    model = verified(Path(res.bundle.uri.removeprefix("file://")), res.bundle.digest)
    assert res.candidate.score == as_score(
        root_mean_squared_error(y[test], model.estimator.predict(as_float(frame)[test])))
    # lower is better: the improvement is incumbent - candidate, and minScore is a ceiling
    gain = decimal.Decimal(res.incumbent.score) - decimal.Decimal(res.candidate.score)
    assert decimal.Decimal(res.gate.improvement or "") == gain > decimal.Decimal("1.5")
    assert decimal.Decimal(res.candidate.score) <= decimal.Decimal(res.gate.min_score or "")
    assert res.gate.passed is True, res.gate.reason
    assert set(res.candidate.metrics) == {"r2", "rmse", "mae"}


def test_incumbent_with_another_digest_is_refused_before_loading(train: Any,
                                                                 tmp_path: Path) -> None:
    frame = classification_frame(rows=200)
    live = LogisticRegression(max_iter=1000).fit(as_float(frame), frame["label"])
    bundle.create_from_estimator(live, tmp_path / "live", name="churn", feature_names=FEATURES)
    pinned = bundle.sha256_of(b"another model")
    run = train({
        "SEAWAY_TRAIN_DATASET_URI": str(write(frame, tmp_path / "train.csv")),
        "SEAWAY_TRAIN_TARGET": "label", "SEAWAY_TRAIN_TIMESTAMP_COLUMN": "event_time",
        "SEAWAY_TRAIN_ESTIMATOR": "sklearn.tree.DecisionTreeClassifier",
        "SEAWAY_TRAIN_INCUMBENT_URI": str(tmp_path / "live"),
        "SEAWAY_TRAIN_INCUMBENT_DIGEST": pinned,
        "SEAWAY_TRAIN_OUTPUT_URI": str(tmp_path / "models"),
    })
    message = run.check_one_line_failure(6)
    assert message.startswith(f"incumbent refused: digest mismatch: pinned "
                              f"(SEAWAY_TRAIN_INCUMBENT_DIGEST) {pinned} file sha256:")
    assert not (tmp_path / "models").exists()


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A static file server on 127.0.0.1 for the http:// dataset."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_http_dataset_and_refit_on_every_row(train: Any, web: tuple[Path, str],
                                             tmp_path: Path) -> None:
    root, base = web
    frame = classification_frame(rows=300)
    frame.loc[[4, 9], "label"] = np.nan  # rows without a target are dropped and counted
    write(frame, root / "data" / "churn.csv.gz")
    run = train({
        "SEAWAY_TRAIN_DATASET_URI": f"{base}/data/churn.csv.gz",
        "SEAWAY_TRAIN_TARGET": "label", "SEAWAY_TRAIN_FEATURES": '["f3", "f1"]',
        "SEAWAY_TRAIN_ESTIMATOR": "sklearn.tree.DecisionTreeClassifier",
        "SEAWAY_TRAIN_PARAMS": '{"max_depth": 3, "random_state": 0}',
        "SEAWAY_TRAIN_REFIT": "true", "SEAWAY_TRAIN_METRIC": "f1",
        "SEAWAY_TRAIN_OUTPUT_URI": str(tmp_path / "models"),
    })
    assert run.returncode == 0, run.stderr
    res = run.result
    assert res.dataset is not None and res.rows is not None and res.bundle is not None
    raw = (root / "data" / "churn.csv.gz").read_bytes()
    assert res.dataset.sha256 == bundle.sha256_of(raw) and res.dataset.bytes == len(raw)
    assert res.dataset.features == ["f3", "f1"]
    assert (res.rows.read, res.rows.used, res.rows.dropped_missing_target) == (300, 298, 2)
    assert res.refit is True and res.rows.train == 298  # the shipped model saw every row
    folder = Path(res.bundle.uri.removeprefix("file://"))
    assert folder.name.endswith(res.bundle.digest[7:19])  # default run id: time and digest
    model = verified(folder, res.bundle.digest)
    assert [spec.name for spec in model.manifest.inputs] == ["f3", "f1"]
    assert model.manifest.fingerprint is not None and model.manifest.fingerprint.rows == 298
    assert "Fitting DecisionTreeClassifier on 298 rows (refit on every row)" in run.stderr


def test_an_incumbent_that_cannot_be_scored_fails_the_gate(train: Any, tmp_path: Path) -> None:
    frame = classification_frame(rows=200)
    live = LogisticRegression(max_iter=1000).fit(as_float(frame, FEATURES[:2]), frame["label"])
    manifest = bundle.create_from_estimator(live, tmp_path / "live", name="churn",
                                            feature_names=["tenure", "f1"])
    run = train({
        "SEAWAY_TRAIN_DATASET_URI": str(write(frame, tmp_path / "train.csv")),
        "SEAWAY_TRAIN_TARGET": "label", "SEAWAY_TRAIN_TIMESTAMP_COLUMN": "event_time",
        "SEAWAY_TRAIN_ESTIMATOR": "sklearn.naive_bayes.GaussianNB",
        "SEAWAY_TRAIN_INCUMBENT_URI": (tmp_path / "live").as_uri(),
        "SEAWAY_TRAIN_INCUMBENT_DIGEST": manifest.sha256 or "",
        "SEAWAY_TRAIN_OUTPUT_URI": str(tmp_path / "models"),
    })
    assert run.returncode == 0, run.stderr
    res = run.result
    assert res.incumbent is not None and res.gate is not None
    assert res.incumbent.score is None
    assert res.incumbent.problem == "its input column 'tenure' not in the dataset"
    assert res.gate.passed is False
    assert res.gate.reason == ("The incumbent could not be scored: its input column 'tenure' not "
                               "in the dataset; without its score the candidate cannot be shown "
                               "to be no worse.")
