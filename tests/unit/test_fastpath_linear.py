"""The linear fast path is bitwise equal to scikit-learn's own predict and predict_proba.

Property tests as a seeded loop, like tests/unit/test_fastpath.py for the trees: each seed draws
a data set (feature scales from 1e-3 to 1e3, 2 to 6 classes, string or numeric labels, one or
more regression outputs), fits a random model (solver, regularization, intercept or not,
float64 or float32 training data, so float32 ``coef_`` too), and compares ``np.array_equal`` and
dtypes against the estimator on batches of 1, 2, a few and many rows, in float64 and float32,
C-ordered, Fortran-ordered and strided. A failing seed is named in the test id and reproduces
alone.

The installed scikit-learn (1.9) has no ``multi_class`` parameter: a LogisticRegression with
more than two classes is always multinomial (softmax), with two it is the logistic of one score.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import numpy as np
import pytest
from scipy import sparse
from scipy.linalg import LinAlgWarning
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import (
    LinearRegression,
    LogisticRegression,
    LogisticRegressionCV,
    Ridge,
    SGDClassifier,
)
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from seaway_serving import fastpath

SEEDS = range(30)
LABELS = [np.array([0, 1, 2, 3, 4, 5]), np.array(["ant", "bee", "cat", "dog", "eel", "fox"]),
          np.array([-1, 7, 3, 10, 2, 5]), np.array([-2.0, 0.0, 3.0, 8.0, 9.0, 12.0])]


def dataset(rng: np.random.Generator, k: int | None, outputs: int = 1,
            ) -> tuple[np.ndarray, np.ndarray]:
    """Rows and labels (``k`` classes) or targets (``outputs`` columns; 0 means a 1-D y)."""
    n = int(rng.integers(40, 200))
    f = int(rng.integers(1, 9))
    x = rng.normal(size=(n, f)) * rng.choice([1e-3, 1.0, 1e3], size=f) + rng.normal(size=f)
    score = x @ rng.normal(size=f) / (np.abs(x).max(axis=0).sum() + 1e-12)
    score += rng.normal(scale=0.3 * (score.std() + 1e-12), size=n)
    if k is not None:
        labels = LABELS[int(rng.integers(len(LABELS)))][:k]
        codes = np.digitize(score, np.quantile(score, np.linspace(0, 1, k + 1)[1:-1]))
        codes[:k] = np.arange(k)  # every class present
        return x, labels[codes]
    if outputs == 0:
        return x, score
    return x, np.column_stack([score * (i + 1) + i for i in range(outputs)])


def probes(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """Training rows, new rows in the data's range and rows far outside it."""
    f = x.shape[1]
    spread = x.std(axis=0) + 1e-12
    return np.concatenate([x[rng.integers(0, len(x), 25)],
                           x.mean(axis=0) + rng.normal(size=(12, f)) * spread,
                           rng.normal(size=(6, f)) * spread * 1e3,
                           np.zeros((1, f))])


def layouts(batch: np.ndarray) -> list[np.ndarray]:
    """The batch C-ordered, Fortran-ordered and as a strided view."""
    wide = np.repeat(batch, 2, axis=1)
    return [np.ascontiguousarray(batch), np.asfortranarray(batch), wide[:, ::2]]


def assert_equal(fast: fastpath.Predictor, est: Any, x: np.ndarray) -> int:
    proba = hasattr(est, "predict_proba")
    got, got_p = fast.outputs(x, proba)
    want = est.predict(x)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want), (got, want)
    if not proba:
        assert got_p is None
        return 1
    want_p = est.predict_proba(x)
    # the server's predictors give float64 (a float32 model's float32 proba widens exactly)
    assert got_p is not None and got_p.dtype == np.float64 and got_p.shape == want_p.shape
    if want_p.dtype == np.float64:
        assert np.array_equal(got_p, want_p), (got_p, want_p)
    else:
        assert want_p.dtype == np.float32
        assert np.array_equal(got_p, want_p.astype(np.float64)), (got_p, want_p)
    return 2


def check_model(rng: np.random.Generator, est: Any, x: np.ndarray) -> int:
    fast = fastpath.compile_model(est)
    assert fast.path == fastpath.FAST_LINEAR
    probe = probes(rng, x)
    checked = 0
    for size in (1, 2, 7, len(probe)):
        for start in range(0, len(probe) - size + 1, max(size, len(probe) // 3)):
            for dtype in (np.float64, np.float32):
                for batch in layouts(probe[start:start + size].astype(dtype)):
                    checked += assert_equal(fast, est, batch)
    return checked


def logistic(rng: np.random.Generator, seed: int, k: int) -> LogisticRegression:
    solvers = ["lbfgs", "newton-cg", "newton-cholesky", "sag", "saga"]
    if k == 2:
        solvers.append("liblinear")
    params: dict[str, Any] = {
        "solver": solvers[seed % len(solvers)],
        "C": float(rng.choice([1e-2, 1.0, 1e2])),
        "fit_intercept": seed % 4 != 1,
        "max_iter": 300,
        "random_state": seed,
    }
    if seed % 5 == 3:
        params["class_weight"] = "balanced"
    if "multi_class" in inspect.signature(LogisticRegression).parameters:  # older versions
        params["multi_class"] = ["multinomial", "ovr"][seed % 2]
    return LogisticRegression(**params)


def fit(est: Any, x: np.ndarray, y: np.ndarray) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", LinAlgWarning)
        return est.fit(x, y)


def train_dtype(seed: int) -> type:
    return np.float32 if seed % 3 == 2 else np.float64


@pytest.mark.parametrize("seed", SEEDS)
def test_logistic_regression(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = 2 + seed % 5
    x, y = dataset(rng, k)
    est = fit(logistic(rng, seed, k), x.astype(train_dtype(seed)), y)
    assert est.coef_.shape == ((1 if k == 2 else k), x.shape[1])
    assert check_model(rng, est, x) > 0


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("family", [LinearRegression, Ridge], ids=lambda c: c.__name__)
def test_linear_regression_and_ridge(family: type, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, y = dataset(rng, None, outputs=seed % 4)  # 1-D y, or 1 to 3 columns
    params: dict[str, Any] = {"fit_intercept": seed % 3 != 1}
    if family is Ridge:
        params["alpha"] = float(rng.choice([1e-3, 1.0, 1e2]))
        params["solver"] = ["auto", "svd", "cholesky", "lsqr", "sparse_cg"][seed % 5]
    elif seed % 5 == 4:
        params["positive"] = True
    est = fit(family(**params), x.astype(train_dtype(seed)), y)
    assert check_model(rng, est, x) > 0


@pytest.mark.parametrize("seed", SEEDS)
def test_standard_scaler_pipelines(seed: int) -> None:
    rng = np.random.default_rng(seed)
    final = [LogisticRegression, LinearRegression, Ridge][seed % 3]
    k = 2 + seed % 5 if final is LogisticRegression else None
    x, y = dataset(rng, k, outputs=seed % 3)
    scalers = [StandardScaler(with_mean=bool(seed % 2), with_std=seed % 4 != 3)]
    if seed % 7 == 5:
        scalers.append(StandardScaler())
    model = logistic(rng, seed, 2 + seed % 5) if k else final()
    est = fit(make_pipeline(*scalers, model), x.astype(train_dtype(seed)), y)
    assert check_model(rng, est, x) > 0


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_refusals_read_as_the_estimators() -> None:
    """Inputs the estimator rejects go to the estimator: the same exception, word for word.

    For a pipeline that includes rows the scaler accepts and the linear model then rejects:
    NaN (the scaler lets it through) and values the scaling takes past the float range.
    """
    rng = np.random.default_rng(1)
    x, y = dataset(rng, 3)
    f = x.shape[1]
    cases = {
        "nan": np.full((1, f), np.nan),
        "inf": np.full((2, f), np.inf),
        "scaled past the float64 range": np.full((1, f), 1.7e308),
        "scaled past the float32 range": np.full((1, f), 3.4e38, dtype=np.float32),
        "width": np.zeros((1, f + 1)),
        "no rows": np.zeros((0, f)),
    }
    big = x * 1e-3  # scale_ < 1: scaling multiplies
    models = [fit(LogisticRegression(), x, y), fit(LinearRegression(), x, x[:, 0]),
              fit(make_pipeline(StandardScaler(), LogisticRegression()), big, y),
              fit(make_pipeline(StandardScaler(with_mean=False), Ridge()), big, big[:, 0])]
    compared = 0
    for est in models:
        fast = fastpath.compile_model(est)
        proba = hasattr(est, "predict_proba")
        for bad in cases.values():
            try:
                want: Any = est.predict_proba(bad) if proba else est.predict(bad)
            except ValueError as exc:
                with pytest.raises(ValueError) as got:
                    fast.outputs(bad, proba)
                assert str(got.value) == str(exc)
            else:  # accepted (no scaler to overflow): then equal
                got_pred, got_p = fast.outputs(bad, proba)
                assert np.array_equal(got_pred if got_p is None else got_p, want)
            compared += 1
    assert compared == len(models) * len(cases)


def test_sparse_and_integer_input_go_to_the_estimator() -> None:
    rng = np.random.default_rng(2)
    x, y = dataset(rng, 2)
    est = fit(LogisticRegression(), x, y)
    fast = fastpath.compile_model(est)
    for rows in (sparse.csr_matrix(x[:5]), np.round(x[:5]).astype(np.int64)):
        got, got_p = fast.outputs(rows, True)
        assert np.array_equal(got, est.predict(rows))
        assert got_p is not None and np.array_equal(got_p, est.predict_proba(rows))


def test_unsupported_linear_models_keep_the_estimator() -> None:
    rng = np.random.default_rng(3)
    x, y = dataset(rng, 3)
    sparsified = fit(LogisticRegression(), x, y)
    sparsified.coef_ = sparse.csr_matrix(sparsified.coef_)
    unsupported = [
        fit(make_pipeline(MinMaxScaler(), LogisticRegression()), x, y),
        fit(make_pipeline(StandardScaler(copy=False), LogisticRegression()), x.copy(), y),
        fit(Pipeline([("skip", "passthrough"), ("lr", LogisticRegression())]), x, y),
        fit(make_pipeline(StandardScaler(), SGDClassifier(random_state=0)), x, y),
        fit(LogisticRegressionCV(Cs=2, cv=2), x, y),  # a subclass: its own predict may differ
        sparsified,
    ]
    for est in unsupported:
        with pytest.raises(fastpath.Unsupported):
            fastpath.compile_model(est)
        chosen, reason = fastpath.choose(est, x[:3], proba=True)
        assert chosen.path == fastpath.ESTIMATOR and reason
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for unfitted in (LogisticRegression(), make_pipeline(StandardScaler(), Ridge())):
            with pytest.raises(fastpath.Unsupported):
                fastpath.compile_model(unfitted)


def test_choose_takes_the_linear_path() -> None:
    rng = np.random.default_rng(4)
    x, y = dataset(rng, 4)
    est = fit(make_pipeline(StandardScaler(), LogisticRegression()), x, y)
    chosen, reason = fastpath.choose(est, x[:4], proba=True)
    assert chosen.path == fastpath.FAST_LINEAR and "bitwise equal" in reason
