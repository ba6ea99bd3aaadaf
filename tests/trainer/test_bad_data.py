"""Every way a run can be refused ends the process with its code and ONE line saying why.

The line is the last line on stderr, the whole termination message, and the result's
``message``; no traceback appears anywhere, and no bundle is published.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.trainer.conftest import classification_frame, write

Case = Callable[[Path], tuple[dict[str, str], int, str]]


def _base(path: Path, **env: str) -> dict[str, str]:
    out = {"SEAWAY_TRAIN_DATASET_URI": str(path), "SEAWAY_TRAIN_TARGET": "label",
           "SEAWAY_TRAIN_TIMESTAMP_COLUMN": "event_time",
           "SEAWAY_TRAIN_ESTIMATOR": "sklearn.tree.DecisionTreeClassifier",
           "SEAWAY_TRAIN_OUTPUT_URI": str(path.parent / "models")}
    out.update(env)
    return out


def missing_target(tmp: Path) -> tuple[dict[str, str], int, str]:
    frame = classification_frame(rows=100).drop(columns=["label"])
    path = write(frame, tmp / "no-target.csv")
    return (_base(path), 4, "target column 'label' is not in the dataset (columns: f0, f1, f2, "
            "f3, f4, f5, event_time)")


def empty_file(tmp: Path) -> tuple[dict[str, str], int, str]:
    path = tmp / "empty.csv"
    path.write_bytes(b"")
    return _base(path), 4, f"dataset {path} is empty (0 bytes)"


def header_only(tmp: Path) -> tuple[dict[str, str], int, str]:
    path = write(classification_frame(rows=100).head(0), tmp / "header.parquet")
    return _base(path), 4, f"dataset {path} has no rows"


def text_feature(tmp: Path) -> tuple[dict[str, str], int, str]:
    frame = classification_frame(rows=100)
    frame["plan"] = np.where(frame["f0"] > 0, "gold", "basic")
    path = write(frame, tmp / "plans.csv")
    return (_base(path), 4, f"feature column 'plan' is not numeric (e.g. "
            f"{frame['plan'][0]!r}); the model server takes numbers only: encode it as "
            "numbers or leave it out of the features")


def mostly_numbers_feature(tmp: Path) -> tuple[dict[str, str], int, str]:
    # One word among numbers makes the whole column text: its first value reads '1.5'
    frame = classification_frame(rows=100)
    frame["tenure"] = 1.5
    frame["tenure"] = frame["tenure"].astype(object)
    frame.loc[7, "tenure"] = "unknown"
    path = write(frame, tmp / "tenure.csv")
    return (_base(path), 4, "feature column 'tenure' is not numeric (e.g. 'unknown'); the model "
            "server takes numbers only: encode it as numbers or leave it out of the features")


def unreachable(tmp: Path) -> tuple[dict[str, str], int, str]:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}/data/train.csv"
    env = _base(tmp / "unused.csv", SEAWAY_TRAIN_DATASET_URI=uri + "?token=secret")
    return env, 3, f"could not fetch {uri}: [Errno 111] Connection refused"


def too_few_rows(tmp: Path) -> tuple[dict[str, str], int, str]:
    path = write(classification_frame(rows=30), tmp / "small.csv")
    return (_base(path), 4, "too few rows for the split: 30 rows with testFraction 0.2 give 24 "
            "training and 6 scoring rows; at least 20 and 10 are needed")


def too_few_before_cutoff(tmp: Path) -> tuple[dict[str, str], int, str]:
    path = write(classification_frame(rows=300), tmp / "events.csv")
    env = _base(path, SEAWAY_TRAIN_SPLIT="Backtest", SEAWAY_TRAIN_CUTOFF="58d")
    # a row every 4.8 hours, the newest at 2026-03-01T19:12Z: 58 days back leaves 10 rows
    return (env, 4, "too few rows for the backtest: 10 training and 290 scoring rows before "
            "the cutoff 2026-01-02T19:12:00Z; at least 20 and 10 are needed")


def bad_timestamps(tmp: Path) -> tuple[dict[str, str], int, str]:
    frame = classification_frame(rows=100)
    frame.loc[5, "event_time"] = "last tuesday"
    path = write(frame, tmp / "times.csv")
    env = _base(path, SEAWAY_TRAIN_SPLIT="Backtest", SEAWAY_TRAIN_CUTOFF="7d")
    return (env, 4, "timestamp column 'event_time' has 1 empty or unparseable values (first: "
            "'last tuesday'); use ISO 8601 times or Unix seconds")


def one_class(tmp: Path) -> tuple[dict[str, str], int, str]:
    frame = classification_frame(rows=100)
    frame["label"] = 1
    path = write(frame, tmp / "one.csv")
    return (_base(path), 4,
            "the training rows hold only one class (1); a classifier needs at least two")


def nan_unsupported(tmp: Path) -> tuple[dict[str, str], int, str]:
    frame = classification_frame(rows=100)
    frame.loc[3, "f2"] = np.nan
    path = write(frame, tmp / "gaps.csv")
    env = _base(path, SEAWAY_TRAIN_ESTIMATOR="sklearn.linear_model.LogisticRegression")
    # scikit-learn's advice follows, on the same line (the test checks the start)
    return env, 5, "LogisticRegression could not be fitted: ValueError: Input X contains NaN."


def import_refused(tmp: Path) -> tuple[dict[str, str], int, str]:
    env = _base(tmp / "never-read.csv", SEAWAY_TRAIN_ESTIMATOR="os.system")
    return (env, 2, "estimator import path 'os.system' is not allowed: it must start with "
            "sklearn. (SEAWAY_TRAIN_ALLOWED_IMPORT_PREFIXES)")


def nested_import_refused(tmp: Path) -> tuple[dict[str, str], int, str]:
    env = _base(tmp / "never-read.csv", SEAWAY_TRAIN_ESTIMATOR="sklearn.pipeline.Pipeline",
                SEAWAY_TRAIN_PARAMS='{"steps": [["x", {"importPath": "subprocess.Popen"}]]}')
    return (env, 2, "estimator import path 'subprocess.Popen' is not allowed: it must start "
            "with sklearn. (SEAWAY_TRAIN_ALLOWED_IMPORT_PREFIXES)")


def metric_for_regressors(tmp: Path) -> tuple[dict[str, str], int, str]:
    env = _base(tmp / "never-read.csv", SEAWAY_TRAIN_METRIC="r2")
    return (env, 2, "metric r2 is for regressors; sklearn.tree.DecisionTreeClassifier is a "
            "classifier (use one of accuracy, f1, precision, recall, roc_auc, log_loss)")


def missing_setting(tmp: Path) -> tuple[dict[str, str], int, str]:
    env = _base(tmp / "never-read.csv")
    del env["SEAWAY_TRAIN_TARGET"]
    return env, 2, "invalid setting target (SEAWAY_TRAIN_TARGET): Field required"


def bad_decimal(tmp: Path) -> tuple[dict[str, str], int, str]:
    env = _base(tmp / "never-read.csv", SEAWAY_TRAIN_MIN_SCORE="high")
    return (env, 2, "invalid setting min_score (SEAWAY_TRAIN_MIN_SCORE): invalid decimal high: "
            "write a number as a string, e.g. 0.80")


CASES: list[Case] = [missing_target, empty_file, header_only, text_feature,
                     mostly_numbers_feature, unreachable,
                     too_few_rows, too_few_before_cutoff, bad_timestamps, one_class,
                     nan_unsupported, import_refused, nested_import_refused,
                     metric_for_regressors, missing_setting, bad_decimal]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_refused_with_one_line(case: Case, train: Any, tmp_path: Path) -> None:
    env, code, expected = case(tmp_path)
    result_path = tmp_path / "result.json"
    run = train({**env, "SEAWAY_TRAIN_RESULT_PATH": str(result_path)})
    message = run.check_one_line_failure(code)
    if case is nan_unsupported:
        assert message.startswith(expected) and len(message) <= 1024
    else:
        assert message == expected
    assert result_path.exists() and run.result.message == message
    assert not (tmp_path / "models").exists()


def test_a_list_variable_that_is_not_json(train: Any, tmp_path: Path) -> None:
    run = train({**_base(tmp_path / "never-read.csv"), "SEAWAY_TRAIN_FEATURES": "f0,f1"})
    assert run.check_one_line_failure(2) == (
        'invalid setting features (SEAWAY_TRAIN_FEATURES): Input should be a valid list '
        'written as JSON, e.g. ["a", "b"]')
