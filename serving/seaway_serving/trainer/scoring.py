"""The validation metrics, and which way is better for each.

Classification metrics take the estimator's own ``classes_`` as the label set, so a candidate and
an incumbent are scored on the same labels even when one holdout lacks a class. Binary ``f1``,
``precision`` and ``recall`` score the positive class, which is the second of the sorted labels
(``classes_[1]``, scikit-learn's convention: ``1`` of 0/1, ``"yes"`` of no/yes); with more
classes they are macro averages. ``roc_auc`` uses ``predict_proba`` (or ``decision_function``);
with more than two classes it is the one-vs-rest macro average. ``log_loss``, ``rmse`` and
``mae`` are lower-is-better; every other metric is higher-is-better.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
from sklearn import metrics as skm
from sklearn.base import is_classifier, is_regressor

from seaway_serving.trainer.gate import HIGHER_IS_BETTER

Task = Literal["classification", "regression"]

__all__ = ["FOR_TASK", "HIGHER_IS_BETTER", "ScoreError", "all_metrics", "score", "task_of"]

FOR_TASK: dict[Task, tuple[str, ...]] = {
    "classification": ("accuracy", "f1", "precision", "recall", "roc_auc", "log_loss"),
    "regression": ("r2", "rmse", "mae"),
}


class ScoreError(ValueError):
    """The metric cannot be computed for this model on these rows; the message says why."""


def task_of(estimator: Any) -> Task | None:
    if is_classifier(estimator):
        return "classification"
    if is_regressor(estimator):
        return "regression"
    return None


def _scores(estimator: Any, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    if hasattr(estimator, "predict_proba"):
        return np.asarray(estimator.predict_proba(x))
    if hasattr(estimator, "decision_function"):
        raw = np.asarray(estimator.decision_function(x))
        return raw if raw.ndim == 1 or len(classes) > 2 else raw[:, -1]
    raise ScoreError(f"{type(estimator).__name__} has neither predict_proba nor "
                     "decision_function")


def score(estimator: Any, x: np.ndarray, y: np.ndarray, metric: str) -> float:
    """``metric`` of ``estimator`` on rows ``x`` with true values ``y``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            value = _score(estimator, x, y, metric)
    except ScoreError:
        raise
    except (ValueError, TypeError, IndexError) as exc:
        raise ScoreError(" ".join(f"{type(exc).__name__}: {exc}".split())) from None
    if not np.isfinite(value):
        raise ScoreError(f"{metric} is not finite ({value})")
    return value


def _score(estimator: Any, x: np.ndarray, y: np.ndarray, metric: str) -> float:
    if metric in FOR_TASK["regression"]:
        pred = np.asarray(estimator.predict(x), dtype=np.float64)
        truth = np.asarray(y, dtype=np.float64)
        if metric == "r2":
            return float(skm.r2_score(truth, pred))
        if metric == "rmse":
            return float(skm.root_mean_squared_error(truth, pred))
        return float(skm.mean_absolute_error(truth, pred))
    classes = np.asarray(getattr(estimator, "classes_", np.unique(y)))
    unknown = np.setdiff1d(np.unique(y), classes)
    if unknown.size and metric in ("roc_auc", "log_loss"):
        raise ScoreError(f"the scoring rows hold labels the model does not know: "
                         f"{', '.join(map(repr, unknown.tolist()[:5]))}")
    if metric == "accuracy":
        return float(skm.accuracy_score(y, estimator.predict(x)))
    if metric in ("f1", "precision", "recall"):
        fn = {"f1": skm.f1_score, "precision": skm.precision_score,
              "recall": skm.recall_score}[metric]
        pred = estimator.predict(x)
        if len(classes) == 2:
            return float(fn(y, pred, labels=classes, pos_label=classes[1], average="binary",
                            zero_division=0))
        return float(fn(y, pred, labels=classes, average="macro", zero_division=0))
    if metric == "roc_auc":
        present = np.unique(y)
        if present.size < 2:
            raise ScoreError(f"roc_auc needs both classes among the scoring rows, which hold "
                             f"only {present.tolist()[0]!r}")
        scores = _scores(estimator, x, classes)
        if len(classes) == 2:
            column = scores[:, 1] if scores.ndim == 2 else scores
            return float(skm.roc_auc_score(y == classes[1], column))
        return float(skm.roc_auc_score(y, scores, multi_class="ovr", average="macro",
                                       labels=classes))
    if metric == "log_loss":
        if not hasattr(estimator, "predict_proba"):
            raise ScoreError(f"log_loss needs predict_proba, which "
                             f"{type(estimator).__name__} does not have")
        return float(skm.log_loss(y, estimator.predict_proba(x), labels=classes))
    raise ScoreError(f"unknown metric {metric!r}")


def all_metrics(estimator: Any, x: np.ndarray, y: np.ndarray, task: Task) -> dict[str, float]:
    """Every metric of the task that can be computed (for the record, not for the gate)."""
    out: dict[str, float] = {}
    for metric in FOR_TASK[task]:
        try:
            out[metric] = score(estimator, x, y, metric)
        except ScoreError:
            continue
    return out
