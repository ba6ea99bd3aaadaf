"""The tree fast path is bitwise equal to scikit-learn's own predict and predict_proba.

Property tests as a seeded loop: each seed draws a random data set (features, scales, ties,
class counts, string or integer labels, missing values, one or more regression outputs) and a
random model of one family, then compares ``np.array_equal`` (and equal dtypes) against the
estimator on batches of 1, a few, the walk/apply boundary and many rows, in float64 and float32,
including rows placed exactly on and one float32 step either side of the models' thresholds.
A failing seed is named in the test id and reproduces alone.

OpenMP is limited to one thread around the estimator's calls in most tests: values do not depend
on the thread count (each row is one thread's work), and on a shared 2-core machine an
oversubscribed OpenMP team makes HistGradientBoosting's own predict seconds slow.
``test_hgb_default_threads`` compares with scikit-learn's default thread count too.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sklearn import ensemble
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from threadpoolctl import threadpool_limits

from seaway_serving import fastpath

FORESTS = [ensemble.RandomForestClassifier, ensemble.RandomForestRegressor,
           ensemble.ExtraTreesClassifier, ensemble.ExtraTreesRegressor]
BOOSTED = [ensemble.GradientBoostingClassifier, ensemble.GradientBoostingRegressor]
HIST = [ensemble.HistGradientBoostingClassifier, ensemble.HistGradientBoostingRegressor]
SEEDS = range(12)
LABELS = [np.array([0, 1, 2, 3, 4]), np.array(["ant", "bee", "cat", "dog", "eel"]),
          np.array([-1, 7, 3, 10, 2]), np.array([-2.0, 0.0, 3.0, 8.0, 9.0])]


@pytest.fixture(autouse=True)
def one_openmp_thread(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.name == "test_hgb_default_threads":
        yield
        return
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def is_classifier(cls: type) -> bool:
    return cls.__name__.endswith("Classifier")


def dataset(rng: np.random.Generator, classify: bool, *, nan: bool,
            outputs: int = 1) -> tuple[np.ndarray, np.ndarray]:
    n = int(rng.integers(30, 160))
    f = int(rng.integers(1, 7))
    x = rng.normal(size=(n, f)) * rng.choice([1.0, 1e3, 1e-3])
    if rng.random() < 0.5:  # a discrete column: ties and thresholds between integers
        x[:, 0] = rng.integers(0, 4, n)
    score = x @ rng.normal(size=f) + rng.normal(scale=0.5, size=n)
    if nan:
        x[rng.random(x.shape) < 0.12] = np.nan
    if classify:
        k = int(rng.integers(2, 6))
        labels = LABELS[int(rng.integers(len(LABELS)))][:k]
        codes = np.digitize(score, np.quantile(score, np.linspace(0, 1, k + 1)[1:-1]))
        codes[:k] = np.arange(k)  # every class present
        return x, labels[codes]
    if outputs == 1:
        return x, score
    return x, np.column_stack([score * (i + 1) + i for i in range(outputs)])


def thresholds(est: Any) -> list[tuple[int, float]]:
    """(feature, threshold) of internal nodes, for rows placed exactly on a split.

    A split of missing values from all others has an infinite threshold: callers drop those.
    """
    out: list[tuple[int, float]] = []
    if hasattr(est, "_predictors"):
        for it in est._predictors:
            for p in it:
                nodes = p.nodes[p.nodes["is_leaf"] == 0]
                out += zip(nodes["feature_idx"].tolist(), nodes["num_threshold"].tolist(),
                           strict=True)
        return out
    trees = np.ravel(est.estimators_)
    for t in trees:
        tree = t.tree_
        inner = tree.children_left >= 0
        out += zip(tree.feature[inner].tolist(), tree.threshold[inner].tolist(), strict=True)
    return out


def probes(rng: np.random.Generator, est: Any, x: np.ndarray, *, nan: bool) -> np.ndarray:
    """Rows that stress the arithmetic: training rows, new rows, rows on the thresholds."""
    f = x.shape[1]
    rows = [x[rng.integers(0, len(x), 20)], rng.normal(size=(10, f)) * np.nanstd(x, axis=0)]
    cuts = [c for c in thresholds(est) if np.isfinite(np.float32(c[1]))]
    if cuts:
        base = np.nan_to_num(x[rng.integers(0, len(x), 24)])
        for i, (feat, thr) in enumerate(cuts[j] for j in rng.integers(0, len(cuts), 24)):
            v = np.float32(thr)
            base[i, feat] = [v, np.nextafter(v, np.float32(np.inf)),
                             np.nextafter(v, np.float32(-np.inf)), thr][i % 4]
        rows.append(base)
    probe = np.concatenate(rows)
    if nan:
        probe[rng.random(probe.shape) < 0.15] = np.nan
    return probe


def assert_equal(fast: fastpath.Predictor, est: Any, x: np.ndarray) -> int:
    proba = hasattr(est, "predict_proba")
    got, got_p = fast.outputs(x, proba)
    want = est.predict(x)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want), (got, want)
    checked = 1
    if proba:
        want_p = est.predict_proba(x)
        assert got_p is not None and got_p.dtype == want_p.dtype
        assert np.array_equal(got_p, want_p), (got_p, want_p)
        checked += 1
    return checked


def check_model(rng: np.random.Generator, est: Any, x: np.ndarray, *, nan: bool) -> int:
    fast = fastpath.compile_model(est)
    assert fast.path == fastpath.FAST
    probe = probes(rng, est, x, nan=nan)
    checked = 0
    sizes = [1, 2, fastpath.WALK_MAX_ROWS, fastpath.WALK_MAX_ROWS + 1, len(probe)]
    for size in sizes:
        for start in range(0, len(probe) - size + 1, max(size, len(probe) // 3)):
            batch = probe[start:start + size]
            for dtype in (np.float64, np.float32):
                checked += assert_equal(fast, est, batch.astype(dtype))
    return checked


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("family", FORESTS, ids=lambda c: c.__name__)
def test_forests(family: type, seed: int) -> None:
    rng = np.random.default_rng(seed)
    classify = is_classifier(family)
    nan = seed % 3 == 0
    outputs = 1 if classify or seed % 4 else int(rng.integers(2, 4))
    x, y = dataset(rng, classify, nan=nan, outputs=outputs)
    params: dict[str, Any] = {
        "n_estimators": int(rng.integers(1, 25)),
        "max_depth": [None, 1, 3, 8][seed % 4],
        "random_state": seed,
        "bootstrap": bool(seed % 2),
    }
    if seed % 5 == 1:
        params["min_samples_leaf"] = 5
    if classify and seed % 6 == 2:
        params["class_weight"] = "balanced"
    est = family(**params).fit(x, y)
    assert check_model(rng, est, x, nan=nan or seed % 2 == 0) > 0


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("family", BOOSTED, ids=lambda c: c.__name__)
def test_gradient_boosting(family: type, seed: int) -> None:
    rng = np.random.default_rng(seed)
    classify = is_classifier(family)
    x, y = dataset(rng, classify, nan=False)
    params: dict[str, Any] = {
        "n_estimators": int(rng.integers(1, 40)),
        "max_depth": [1, 2, 3, 5][seed % 4],
        "learning_rate": float(rng.choice([0.05, 0.1, 0.3, 1.0])),
        "subsample": [1.0, 0.7][seed % 2],
        "random_state": seed,
    }
    if not classify:
        params["loss"] = ["squared_error", "absolute_error", "huber", "quantile"][seed % 4]
    elif seed % 3 == 1:
        params["init"] = "zero"
    if seed % 5 == 4:
        params["n_iter_no_change"] = 3
    est = family(**params).fit(x, y)
    assert check_model(rng, est, x, nan=False) > 0


def test_gradient_boosting_exponential_loss() -> None:
    rng = np.random.default_rng(99)
    x, y = dataset(rng, True, nan=False)
    y = np.where(y == y[0], "yes", "no")
    est = ensemble.GradientBoostingClassifier(loss="exponential", n_estimators=20).fit(x, y)
    assert check_model(rng, est, x, nan=False) > 0


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("family", HIST, ids=lambda c: c.__name__)
def test_hist_gradient_boosting(family: type, seed: int) -> None:
    rng = np.random.default_rng(seed)
    classify = is_classifier(family)
    nan = seed % 2 == 0
    x, y = dataset(rng, classify, nan=nan)
    params: dict[str, Any] = {
        "max_iter": int(rng.integers(1, 30)),
        "max_depth": [None, 2, 4][seed % 3],
        "learning_rate": float(rng.choice([0.05, 0.1, 0.5])),
        "early_stopping": False,
        "random_state": seed,
    }
    if not classify:
        params["loss"] = ["squared_error", "absolute_error", "poisson", "gamma"][seed % 4]
        if params["loss"] in ("poisson", "gamma"):
            y = np.exp(np.clip(y / (np.abs(y).max() + 1e-12), -3, 3))
    est = family(**params).fit(x, y)
    assert check_model(rng, est, x, nan=True) > 0


def test_hgb_default_threads() -> None:
    """Batches above the one-thread size run on scikit-learn's default OpenMP team."""
    rng = np.random.default_rng(5)
    x, y = dataset(rng, True, nan=True)
    est = ensemble.HistGradientBoostingClassifier(max_iter=10).fit(x, y)
    fast = fastpath.compile_model(est)
    probe = probes(rng, est, x, nan=True)
    big = np.tile(probe, (-(-(fastpath.HGB_ONE_THREAD_ROWS + 1) // len(probe)), 1))
    assert assert_equal(fast, est, big) == 2


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
def test_refusals_read_as_the_estimators() -> None:
    """Inputs the estimator rejects go to the estimator: the same exception, word for word."""
    rng = np.random.default_rng(1)
    x, y = dataset(rng, True, nan=False)
    cases = {
        "nan": np.full((1, x.shape[1]), np.nan),
        "inf": np.full((2, x.shape[1]), np.inf),
        "too big for float32": np.full((1, x.shape[1]), 1e39),
        "width": np.zeros((1, x.shape[1] + 1)),
        "no rows": np.zeros((0, x.shape[1])),
    }
    models = [ensemble.GradientBoostingClassifier(n_estimators=3).fit(x, y),
              ensemble.RandomForestClassifier(n_estimators=3).fit(x, y),
              ensemble.HistGradientBoostingClassifier(max_iter=3).fit(x, y)]
    compared = 0
    for est in models:
        fast = fastpath.compile_model(est)
        for bad in cases.values():
            try:
                want: Any = est.predict_proba(bad)
            except ValueError as exc:
                with pytest.raises(ValueError) as got:
                    fast.outputs(bad, True)
                assert str(got.value) == str(exc)
            else:  # accepted (HGB takes NaN and inf): then equal
                got_p = fast.outputs(bad, True)[1]
                assert got_p is not None and np.array_equal(got_p, want)
            compared += 1
    assert compared == len(models) * len(cases)


def test_unsupported_models_keep_the_estimator() -> None:
    rng = np.random.default_rng(2)
    x, y = dataset(rng, True, nan=False)
    cat = np.column_stack([rng.integers(0, 3, len(x)), x[:, :1]])
    unsupported = [
        KNeighborsClassifier().fit(x, y),
        ensemble.GradientBoostingClassifier(
            n_estimators=3, init=LogisticRegression()).fit(x, y),
        ensemble.HistGradientBoostingClassifier(max_iter=3, categorical_features=[0]).fit(
            cat, y),
        ensemble.RandomForestClassifier(n_estimators=3).fit(x, np.column_stack([y, y])),
    ]
    for est in unsupported:
        with pytest.raises(fastpath.Unsupported):
            fastpath.compile_model(est)
        rows = cat[:3] if est.n_features_in_ == 2 and x.shape[1] != 2 else x[:3]
        chosen, reason = fastpath.choose(est, rows, proba=True)
        assert chosen.path == fastpath.ESTIMATOR and reason


def test_choose_proves_equality_and_refuses_a_mismatch() -> None:
    rng = np.random.default_rng(3)
    x, y = dataset(rng, True, nan=False)
    est = ensemble.RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y)
    chosen, reason = fastpath.choose(est, x[:4], proba=True)
    assert chosen.path == fastpath.FAST and "bitwise equal" in reason

    class Off:
        """A fast path one ulp off on predict_proba."""
        path = fastpath.FAST

        def outputs(self, x: np.ndarray, proba: bool) -> fastpath.Outputs:
            return est.predict(x), np.nextafter(est.predict_proba(x), 2.0)

    assert fastpath.mismatch(Off(), est, x[:4], proba=True) is not None


def test_unfitted_or_odd_models_are_unsupported() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for est in (ensemble.RandomForestClassifier(), ensemble.GradientBoostingRegressor(),
                    ensemble.HistGradientBoostingRegressor()):
            with pytest.raises(fastpath.Unsupported):
                fastpath.compile_model(est)


def test_models_too_large_to_copy_walk_tree_by_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above FLAT_MAX_NODES no flat copy is made; one row then takes the per-tree walks."""
    monkeypatch.setattr(fastpath, "FLAT_MAX_NODES", 10)
    rng = np.random.default_rng(4)
    checked = 0
    for family in (ensemble.RandomForestClassifier, ensemble.HistGradientBoostingRegressor):
        x, y = dataset(rng, is_classifier(family), nan=True)
        est = (family(n_estimators=5, random_state=0) if family in FORESTS
               else family(max_iter=5)).fit(x, y)
        fast = fastpath.compile_model(est)
        assert getattr(fast, "flat", "missing") is None
        checked += check_model(rng, est, x, nan=True)
    assert checked > 0
