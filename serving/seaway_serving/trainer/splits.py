"""Which rows train and which rows score: a random holdout, or a backtest on time.

Backtest windows count back from the newest timestamp ``T`` in steps of ``cutoff`` (``c``).
Window 1 scores the rows in ``(T - c, T]`` and trains on every row at or before ``T - c``;
window 2 scores ``(T - 2c, T - c]`` and trains on rows at or before ``T - 2c``; and so on. The
windows are returned oldest first, so the last one is the most recent.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from seaway_serving.trainer.errors import BadData, InvalidSettings


@dataclass(frozen=True)
class Fold:
    train: np.ndarray
    test: np.ndarray
    train_until: np.datetime64 | None = None
    test_from: np.datetime64 | None = None
    test_until: np.datetime64 | None = None


def _iso(moment: np.datetime64 | None) -> str | None:
    if moment is None:
        return None
    return np.datetime_as_string(moment, unit="s") + "Z"


def describe(fold: Fold) -> dict[str, str | None]:
    return {"train_until": _iso(fold.train_until), "test_from": _iso(fold.test_from),
            "test_until": _iso(fold.test_until)}


def _check_classes(y: np.ndarray, fold: Fold, where: str) -> None:
    present = np.unique(y[fold.train])
    if present.size < 2:
        raise BadData(f"the training rows{where} hold only one class ({present.tolist()[0]!r}); "
                      "a classifier needs at least two")


def holdout(y: np.ndarray, fraction: decimal.Decimal, *, seed: int, classification: bool,
            min_train: int, min_test: int) -> Fold:
    n = int(y.shape[0])
    if fraction <= 0:
        raise InvalidSettings("testFraction 0 leaves no rows to score the candidate on "
                              "(SEAWAY_TRAIN_TEST_FRACTION)")
    n_test = math.ceil(n * fraction)
    n_train = n - n_test
    if n_test < min_test or n_train < min_train:
        raise BadData(f"too few rows for the split: {n} rows with testFraction {fraction} give "
                      f"{n_train} training and {n_test} scoring rows; at least {min_train} and "
                      f"{min_test} are needed")
    stratify = None
    if classification:
        _, counts = np.unique(y, return_counts=True)
        if counts.min() >= 2 and n_test >= counts.size and n_train >= counts.size:
            stratify = y
    train, test = train_test_split(np.arange(n), test_size=n_test, random_state=seed,
                                   stratify=stratify)
    fold = Fold(np.sort(train), np.sort(test))
    if classification:
        _check_classes(y, fold, "")
    return fold


def backtest(timestamps: np.ndarray, y: np.ndarray, cutoff: dt.timedelta, windows: int, *,
             classification: bool, min_train: int, min_test: int) -> list[Fold]:
    step = np.timedelta64(int(cutoff.total_seconds() * 1_000_000), "us")
    newest = timestamps.max()
    folds: list[Fold] = []
    for j in range(windows, 0, -1):
        until = newest - (j - 1) * step
        start = newest - j * step
        test = np.flatnonzero((timestamps > start) & (timestamps <= until))
        train = np.flatnonzero(timestamps <= start)
        span = f"(scoring {_iso(start)} to {_iso(until)})"
        if windows > 1:
            place = f" in backtest window {windows - j + 1} of {windows} {span}"
            where = f" of backtest window {windows - j + 1} of {windows} {span}"
        else:
            place = where = f" before the cutoff {_iso(start)}"
        if train.size < min_train or test.size < min_test:
            raise BadData(f"too few rows for the backtest: {train.size} training and {test.size} "
                          f"scoring rows{place}; at least {min_train} and {min_test} are needed")
        fold = Fold(train, test, train_until=start, test_from=start, test_until=until)
        if classification:
            _check_classes(y, fold, where)
        folds.append(fold)
    return folds
