"""Tree ensembles and linear models predicted without scikit-learn's per-call overhead, bitwise
equal to it.

Why: a 100-tree RandomForest spends ~3.4 ms in ``predict_proba`` on one row, of which walking the
trees is ~0.2 ms; the rest is joblib's ``Parallel`` dispatch, a lock and the input validation
repeated for every tree. GradientBoosting validates its input twice and asks its init estimator
(with a third validation) for a constant; HistGradientBoosting rebuilds its category bitsets and
starts an OpenMP team per tree. The server predicts one to a few dozen rows per call, so that
fixed cost is nearly all of its predict time. This module does the same arithmetic without it.

"Bitwise equal" is the contract, so every step repeats what the installed scikit-learn (1.9) does,
read from its sources, in the same order:

* **Forests** (RandomForest, ExtraTrees; classifier and regressor, single or multi-output
  regression): the input is cast to float32 as the forest's validation does; each row walks each
  tree (``x <= threshold`` in float64, NaN goes where ``missing_go_to_left`` says); the trees'
  leaf values are added in tree order onto float64 zeros, then divided by the number of trees;
  ``predict`` is ``classes_.take(argmax(proba))``. With ``n_jobs > 1`` scikit-learn adds the trees
  in whatever order its threads finish, so its own result can vary in the last bit between calls;
  this path always gives the tree-order sum, which is what ``n_jobs=1`` gives.
* **GradientBoosting**: the init estimator's raw prediction is the same for every row (only
  ``"zero"`` and constant DummyClassifier/DummyRegressor strategies are accepted), so it is
  computed once here by the estimator's own code; then scikit-learn's own compiled
  ``predict_stages`` adds ``learning_rate * leaf`` per stage, and its loss turns the raw values
  into probabilities.
* **HistGradientBoosting** (numerical features only): float64 input, the baseline added onto
  zeros, then each iteration's tree in order (``x <= num_threshold``, NaN by
  ``missing_go_to_left``); the loss turns raw values into predictions and probabilities. Larger
  batches call the fitted predictor objects directly; each row is one OpenMP thread's work, so
  the thread count changes speed, never values: up to 64 rows use one thread (no team start-up).

* **Linear models** (LogisticRegression, LinearRegression, Ridge; path ``fast-linear``): ~70 of
  the ~105 µs of ``LogisticRegression.predict`` on one row is input validation. This path checks
  that the input is finite, then ``X @ coef_.T + intercept_`` (``coef_`` itself when 1-D: the
  same expression, so the same BLAS call and bits); a binary classifier ravels its one score,
  predicts ``classes_.take(score > 0)`` and gives ``[1 - expit(s), expit(s)]``; more classes
  predict ``classes_.take(argmax)`` and give the softmax (row max subtracted, ``exp`` in place,
  divided by the row sum). In a Pipeline, StandardScaler steps before the linear model copy the
  input and apply ``X -= mean_; X /= scale_`` with both cast to the input's dtype, as
  ``transform`` does (float32 input stays float32). Scaled rows that are no longer finite go to
  the estimator, whose validation rejects them.

Forests and HistGradientBoosting are walked one of two ways, both exact: for a few rows, all
trees at once as flat arrays (one NumPy step per tree level; a 100-tree forest on one row costs
~50x less than scikit-learn's call); for larger batches, each tree's compiled walk in tree order.
Any input the estimator would treat specially (wrong shape or dtype, no rows, values its
validation rejects) is handed to the estimator itself, so errors read exactly as they would
without this module.

Nothing here does I/O. :func:`choose` compiles a model and proves it equal to the estimator on
sample rows before the server uses it; anything unsupported or unequal keeps the estimator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from scipy.special import expit

FAST = "fast-trees"
FAST_LINEAR = "fast-linear"
ESTIMATOR = "estimator"
FLOATS = (np.float32, np.float64)

#: Forest and HistGradientBoosting batches up to this many rows walk all trees at once; larger
#: ones call each tree's compiled walk (the flat walk's cost grows with rows x trees x depth).
WALK_MAX_ROWS = 8
#: The flat arrays copy every node (~50 bytes each for a binary classifier): a model with more
#: nodes than this (a deep forest on much data) is only walked tree by tree, costing no copy.
FLAT_MAX_NODES = 1_000_000
#: HistGradientBoosting batches up to this many rows run on one thread.
HGB_ONE_THREAD_ROWS = 64

Outputs = tuple[np.ndarray, np.ndarray | None]


class Unsupported(Exception):
    """The model is not one the fast path computes exactly; the reason says why."""


class Predictor(Protocol):
    path: str

    def outputs(self, x: np.ndarray, proba: bool) -> Outputs:
        """``predict(x)`` and, when ``proba``, ``predict_proba(x)`` as float64."""
        ...


class EstimatorPredictor:
    """The estimator's own methods: every model the fast path does not take."""

    path = ESTIMATOR

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def outputs(self, x: np.ndarray, proba: bool) -> Outputs:
        pred = np.asarray(self.estimator.predict(x))
        p = np.asarray(self.estimator.predict_proba(x), dtype=np.float64) if proba else None
        return pred, p


class _Compiled:
    """Shared input gate: anything unusual goes to the estimator, which validates it."""

    path = FAST

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator
        self.n_features = int(estimator.n_features_in_)
        self.fallback = EstimatorPredictor(estimator)

    def _plain(self, x: np.ndarray) -> bool:
        return (isinstance(x, np.ndarray) and x.ndim == 2 and x.shape[0] > 0
                and x.shape[1] == self.n_features and x.dtype in (np.float32, np.float64))

    def outputs(self, x: np.ndarray, proba: bool) -> Outputs:
        if not self._plain(x):
            return self.fallback.outputs(x, proba)
        got = self._outputs(x, proba)
        return self.fallback.outputs(x, proba) if got is None else got

    def _outputs(self, x: np.ndarray, proba: bool) -> Outputs | None:
        raise NotImplementedError


# ------------------------------------------------------------------------------ flat trees
class _FlatTrees:
    """Many trees as one set of node arrays, walked together: one NumPy step per tree level.

    A node sends a row left when ``x <= threshold`` (the row's dtype against a float64
    threshold, as the compiled walks compare) or, for NaN, when ``nan_left``. A leaf points at
    itself, so after ``depth`` steps every row sits on its leaf in every tree.
    """

    def __init__(self, trees: list[dict[str, np.ndarray]], width: int) -> None:
        roots, feature, threshold, left, right, nan_left, values = [], [], [], [], [], [], []
        offset = 0
        depth = 0
        for t in trees:
            leaf = t["leaf"]
            ids = np.arange(leaf.size)
            roots.append(offset)
            feature.append(np.where(leaf, 0, t["feature"]))
            threshold.append(t["threshold"])
            left.append(np.where(leaf, ids, t["left"]) + offset)
            right.append(np.where(leaf, ids, t["right"]) + offset)
            nan_left.append(np.asarray(t["nan_left"], dtype=bool))
            values.append(np.asarray(t["values"], dtype=np.float64).reshape(leaf.size, width))
            depth = max(depth, int(t["depth"]))
            offset += leaf.size
        self.n_trees = len(trees)
        self.width = width
        self.roots = np.asarray(roots, dtype=np.intp)
        self.feature = np.concatenate(feature).astype(np.intp)
        self.threshold = np.concatenate(threshold).astype(np.float64)
        self.left = np.concatenate(left).astype(np.intp)
        self.right = np.concatenate(right).astype(np.intp)
        self.nan_left = np.concatenate(nan_left)
        self.values = np.concatenate(values)
        self.depth = depth

    def leaves(self, x: np.ndarray, nan: bool) -> np.ndarray:
        """Leaf values of every tree for every row of C-contiguous ``x``: (trees, rows, width)."""
        n, f = x.shape
        node = np.repeat(self.roots, n)  # tree-major: entry t * n + i is row i in tree t
        cell = np.tile(np.arange(0, n * f, f, dtype=np.intp), self.n_trees)
        flat = x.ravel()
        for _ in range(self.depth):
            xv = flat[cell + self.feature[node]]
            go_left = xv <= self.threshold[node]
            if nan:
                go_left |= np.isnan(xv) & self.nan_left[node]
            node = np.where(go_left, self.left[node], self.right[node])
        out: np.ndarray = self.values[node].reshape(self.n_trees, n, self.width)
        return out


def _in_order(start: np.ndarray, leaves: np.ndarray) -> np.ndarray:
    """``((start + leaves[0]) + leaves[1]) + ...``: exactly the order of a loop of ``+=``.

    ``np.add.accumulate`` adds strictly in order along the axis (a plain ``sum`` would pair
    terms up and round differently).
    """
    terms = np.concatenate([start[np.newaxis], leaves])
    total: np.ndarray = np.add.accumulate(terms, axis=0)[-1]
    return total


# ---------------------------------------------------------------------------------- forests
class _Forest(_Compiled):
    def __init__(self, estimator: Any) -> None:
        super().__init__(estimator)
        from sklearn.base import is_classifier
        from sklearn.utils import get_tags

        self.classifier = is_classifier(estimator)
        if self.classifier and estimator.n_outputs_ != 1:
            raise Unsupported("multi-output classification")
        self.classes = estimator.classes_ if self.classifier else None
        self.allow_nan = bool(get_tags(estimator.estimators_[0]).input_tags.allow_nan)
        self.trees = [e.tree_ for e in estimator.estimators_]
        if not self.trees:
            raise Unsupported("no trees")
        self.width = (int(estimator.n_classes_) if self.classifier
                      else int(estimator.n_outputs_))
        flat = []
        for t in self.trees:
            v = np.asarray(t.value)
            # a classifier's tree holds (nodes, 1, n_classes), a regressor's (nodes, outputs, 1)
            want = (t.node_count, 1, self.width) if self.classifier else (
                t.node_count, self.width, 1)
            if v.shape != want:
                raise Unsupported(f"tree values of shape {v.shape}, expected {want}")
            flat.append({"leaf": t.children_left < 0, "feature": t.feature,
                         "threshold": t.threshold, "left": t.children_left,
                         "right": t.children_right, "nan_left": t.missing_go_to_left,
                         "values": v, "depth": t.max_depth})
        nodes = sum(t.node_count for t in self.trees)
        self.flat = _FlatTrees(flat, self.width) if nodes <= FLAT_MAX_NODES else None
        self.values = [np.ascontiguousarray(v.reshape(t.node_count, self.width),
                                            dtype=np.float64)
                       for v, t in ((np.asarray(t.value), t) for t in self.trees)]

    def _outputs(self, x: np.ndarray, proba: bool) -> Outputs | None:
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        if self.allow_nan:
            if np.isinf(x32).any():
                return None
        elif not np.isfinite(x32).all():
            return None
        small = x32.shape[0] <= WALK_MAX_ROWS and self.flat is not None
        acc = self.walk(x32) if small else self.apply(x32)
        acc /= len(self.trees)
        if self.classifier:
            assert self.classes is not None
            return self.classes.take(np.argmax(acc, axis=1), axis=0), acc if proba else None
        pred = acc.reshape(acc.shape[0]) if self.width == 1 else acc
        return pred, None

    def apply(self, x32: np.ndarray) -> np.ndarray:
        """Sum of leaf values, tree by tree with each tree's compiled walk."""
        acc = np.zeros((x32.shape[0], self.width), dtype=np.float64)
        for tree, values in zip(self.trees, self.values, strict=True):
            acc += values[tree.apply(x32)]
        return acc

    def walk(self, x32: np.ndarray) -> np.ndarray:
        """Sum of leaf values, all trees walked together; onto zeros as scikit-learn does."""
        assert self.flat is not None
        nan = self.allow_nan and bool(np.isnan(x32).any())
        leaves = self.flat.leaves(x32, nan)
        return _in_order(np.zeros(leaves.shape[1:]), leaves)


# ------------------------------------------------------------------------ gradient boosting
class _GradientBoosting(_Compiled):
    def __init__(self, estimator: Any) -> None:
        super().__init__(estimator)
        from sklearn.base import is_classifier
        from sklearn.dummy import DummyClassifier, DummyRegressor
        from sklearn.ensemble._gradient_boosting import predict_stages

        self.predict_stages = predict_stages
        self.classifier = is_classifier(estimator)
        init = estimator.init_
        constant = (isinstance(init, str) and init == "zero") or (
            type(init) is DummyRegressor) or (
            type(init) is DummyClassifier
            and init.strategy in ("prior", "most_frequent", "constant"))
        if not constant:
            raise Unsupported(f"init estimator {type(init).__name__} may vary by row")
        probe = np.zeros((3, self.n_features), dtype=np.float32)
        rows = np.asarray(estimator._raw_predict_init(probe), dtype=np.float64)
        if rows.ndim != 2 or not (rows == rows[:1]).all():
            raise Unsupported("init estimator's raw prediction varies by row")
        self.init_row = rows[0].copy()
        self.k = rows.shape[1]

    def _outputs(self, x: np.ndarray, proba: bool) -> Outputs | None:
        est = self.estimator
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x32).all():
            return None
        raw = np.empty((x32.shape[0], self.k), dtype=np.float64)
        raw[:] = self.init_row
        self.predict_stages(est.estimators_, x32, est.learning_rate, raw)
        decision = raw.ravel() if self.k == 1 else raw
        if not self.classifier:
            return decision, None
        encoded = (decision >= 0).astype(int) if decision.ndim == 1 else np.argmax(decision,
                                                                                  axis=1)
        p = np.asarray(est._loss.predict_proba(decision), dtype=np.float64) if proba else None
        return est.classes_[encoded], p


# -------------------------------------------------------------------- hist gradient boosting
class _HistGradientBoosting(_Compiled):
    def __init__(self, estimator: Any) -> None:
        super().__init__(estimator)
        from sklearn.base import is_classifier
        from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

        if estimator._preprocessor is not None:
            raise Unsupported("categorical features")
        self.classifier = is_classifier(estimator)
        self.bitsets, self.f_idx_map = estimator._bin_mapper.make_known_categories_bitsets()
        self.baseline = estimator._baseline_prediction
        self.k = int(estimator.n_trees_per_iteration_)
        self.predictors = [list(it) for it in estimator._predictors]
        self.n_threads = int(_openmp_effective_n_threads())
        flat = []
        for iteration in self.predictors:
            for predictor in iteration:
                nodes = predictor.nodes
                if nodes["is_categorical"].any():
                    raise Unsupported("categorical splits")
                flat.append({"leaf": nodes["is_leaf"] != 0, "feature": nodes["feature_idx"],
                             "threshold": nodes["num_threshold"], "left": nodes["left"],
                             "right": nodes["right"], "nan_left": nodes["missing_go_to_left"],
                             "values": nodes["value"], "depth": nodes["depth"].max()})
        nodes = sum(len(t["leaf"]) for t in flat)
        self.flat = _FlatTrees(flat, 1) if flat and nodes <= FLAT_MAX_NODES else None

    def _outputs(self, x: np.ndarray, proba: bool) -> Outputs | None:
        est = self.estimator
        x64 = x if x.dtype == np.float64 else x.astype(np.float64)
        n = x64.shape[0]
        raw = np.zeros((n, self.k), dtype=self.baseline.dtype, order="F")
        raw += self.baseline
        if n <= WALK_MAX_ROWS and self.flat is not None:
            x64 = np.ascontiguousarray(x64)
            # (iterations * k, n, 1) in predictor order -> (iterations, k, n)
            leaves = self.flat.leaves(x64, bool(np.isnan(x64).any()))
            leaves = leaves.reshape(len(self.predictors), self.k, n)
            raw[:] = _in_order(raw.T.copy(), leaves).T
        else:
            threads = 1 if n <= HGB_ONE_THREAD_ROWS else self.n_threads
            for iteration in self.predictors:
                for k, predictor in enumerate(iteration):
                    raw[:, k] += predictor.predict(x64, self.bitsets, self.f_idx_map, threads)
        if not self.classifier:
            return est._loss.link.inverse(raw.ravel()), None
        # binary: "> 0" here, where GradientBoosting has ">= 0" (scikit-learn's own choices)
        encoded = (raw.ravel() > 0).astype(int) if raw.shape[1] == 1 else np.argmax(raw, axis=1)
        p = np.asarray(est._loss.predict_proba(raw), dtype=np.float64) if proba else None
        return est.classes_[encoded], p


# ---------------------------------------------------------------------------- linear models
class _Scaler:
    """A fitted StandardScaler's ``transform`` on a float array, as scikit-learn computes it."""

    def __init__(self, scaler: Any) -> None:
        if scaler.copy is not True:
            raise Unsupported("a StandardScaler with copy=False (it scales its input in place)")
        if getattr(scaler, "_sklearn_output_config", {}).get("transform", "default") != "default":
            raise Unsupported("a StandardScaler with set_output")
        # the fitted values cast to the input's dtype, as transform casts them on every call
        self.mean = ({d: _float_vector(scaler.mean_, "mean_").astype(d) for d in FLOATS}
                     if scaler.with_mean else None)
        self.scale = ({d: _float_vector(scaler.scale_, "scale_").astype(d) for d in FLOATS}
                      if scaler.with_std else None)

    def transform(self, x: np.ndarray) -> np.ndarray:
        # the copy check_array makes (order and dtype kept), then ``X -= mean_; X /= scale_``
        out = np.array(x, order=None, dtype=None, copy=True)
        if self.mean is not None:
            out -= self.mean[out.dtype.type]
        if self.scale is not None:
            out /= self.scale[out.dtype.type]
        return out


def _float_vector(v: Any, name: str) -> np.ndarray:
    if not isinstance(v, np.ndarray) or v.ndim != 1 or v.dtype not in FLOATS:
        raise Unsupported(f"{name} is not a float vector")
    return v


class _Linear(_Compiled):
    """LogisticRegression, LinearRegression or Ridge, alone or after StandardScaler steps."""

    path = FAST_LINEAR

    def __init__(self, estimator: Any) -> None:
        super().__init__(estimator)
        import sklearn
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        final = estimator
        self.scalers: list[_Scaler] = []
        if type(estimator) is Pipeline:
            if sklearn.get_config()["transform_output"] != "default":
                raise Unsupported("transform_output is not the default")
            *steps, final = [step for _, step in estimator.steps]
            for step in steps:
                if type(step) is not StandardScaler:
                    raise Unsupported(f"a {type(step).__name__} step (only StandardScaler "
                                      "steps before a linear model)")
                self.scalers.append(_Scaler(step))
        kinds = _linear_kinds()
        if type(final) not in kinds:
            raise Unsupported(f"{type(final).__name__} is not a supported linear model")
        coef, intercept = final.coef_, final.intercept_
        if not isinstance(coef, np.ndarray) or coef.ndim not in (1, 2) or coef.dtype not in FLOATS:
            raise Unsupported("coef_ is not a dense float array")  # e.g. sparsify()'d
        if coef.shape[-1] != self.n_features or int(final.n_features_in_) != self.n_features:
            raise Unsupported("coef_ does not match the number of features")
        if not (isinstance(intercept, (float, np.floating)) or (isinstance(intercept, np.ndarray)
                                                 and intercept.dtype in FLOATS)):
            raise Unsupported("intercept_ is neither a float nor a float array")
        # the very view scikit-learn multiplies by: ``coef_.T`` for a 2-D coef_
        self.coef = coef.T if coef.ndim == 2 else coef
        self.intercept = intercept
        self.classes = final.classes_ if kinds[type(final)] else None
        if self.classes is not None and (coef.ndim != 2 or coef.shape[0] != (
                1 if self.classes.size <= 2 else self.classes.size)):
            raise Unsupported("coef_ does not match the classes")

    def _outputs(self, x: np.ndarray, proba: bool) -> Outputs | None:
        if not np.isfinite(x).all():
            return None  # the estimator's validation rejects it (or the scaler lets NaN on)
        for scaler in self.scalers:
            x = scaler.transform(x)
        if self.scalers and not np.isfinite(x).all():
            return None  # scaled out of range: the linear model's validation rejects it
        scores = x @ self.coef + self.intercept
        if self.classes is None:
            return scores, None
        if scores.ndim == 2 and scores.shape[1] == 1:  # binary: one column, raveled
            scores = scores.reshape(-1)
            pred = self.classes.take((scores > 0).astype(np.intp), axis=0)
            if not proba:
                return pred, None
            prob = expit(scores, out=scores)
            return pred, np.asarray(np.stack([1 - prob, prob], axis=1), dtype=np.float64)
        pred = self.classes.take(np.argmax(scores, axis=1), axis=0)
        if not proba:
            return pred, None
        # softmax in place: subtract each row's max, exp, divide by the row's sum
        scores -= np.max(scores, axis=1).reshape((-1, 1))
        np.exp(scores, out=scores)
        scores /= np.sum(scores, axis=1).reshape((-1, 1))
        return pred, np.asarray(scores, dtype=np.float64)


def _linear_kinds() -> dict[type, bool]:
    """Supported final estimators, and whether each is a classifier."""
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge

    return {LogisticRegression: True, LinearRegression: False, Ridge: False}


# ------------------------------------------------------------------------------- choosing
def _families() -> dict[type, Callable[[Any], _Compiled]]:
    from sklearn import ensemble as e
    from sklearn.pipeline import Pipeline

    linear: dict[type, Callable[[Any], _Compiled]] = dict.fromkeys(
        [*_linear_kinds(), Pipeline], _Linear)
    return {
        **linear,
        e.RandomForestClassifier: _Forest, e.RandomForestRegressor: _Forest,
        e.ExtraTreesClassifier: _Forest, e.ExtraTreesRegressor: _Forest,
        e.GradientBoostingClassifier: _GradientBoosting,
        e.GradientBoostingRegressor: _GradientBoosting,
        e.HistGradientBoostingClassifier: _HistGradientBoosting,
        e.HistGradientBoostingRegressor: _HistGradientBoosting,
    }


def compile_model(estimator: Any) -> Predictor:
    """The fast path for ``estimator``; raises Unsupported. Exact classes only: a subclass may
    override ``predict``."""
    make = _families().get(type(estimator))
    if make is None:
        raise Unsupported(f"{type(estimator).__name__} is not a model the fast path supports "
                          "(tree ensembles, linear models, StandardScaler + linear Pipelines)")
    try:
        return make(estimator)
    except Unsupported:
        raise
    except (AttributeError, TypeError, ValueError) as exc:  # unfitted or an unexpected layout
        raise Unsupported(f"{type(exc).__name__}: {exc}") from None


def mismatch(fast: Predictor, estimator: Any, rows: np.ndarray, proba: bool) -> str | None:
    """Where ``fast`` differs from the estimator on ``rows``, or None when bitwise equal.

    Each row alone, and the rows repeated to a batch large enough for the per-tree walk, in
    float64 and float32: both of the forest's walks and both input dtypes are exercised.
    """
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[0] == 0:
        return "no sample rows to compare on"
    batch = np.tile(rows, (-(-(WALK_MAX_ROWS * 4) // rows.shape[0]), 1))
    cases = [rows[i:i + 1] for i in range(rows.shape[0])] + [batch, batch.astype(np.float32)]
    for x in cases:
        want = np.asarray(estimator.predict(x))
        want_p = np.asarray(estimator.predict_proba(x), dtype=np.float64) if proba else None
        got, got_p = fast.outputs(x, proba)
        if got.dtype != want.dtype or not np.array_equal(got, want):
            return f"predict differs on {x.shape[0]} {x.dtype} row(s)"
        if want_p is not None and (got_p is None or not np.array_equal(got_p, want_p)):
            return f"predict_proba differs on {x.shape[0]} {x.dtype} row(s)"
    return None


def choose(estimator: Any, rows: np.ndarray, proba: bool) -> tuple[Predictor, str]:
    """The predictor to serve ``estimator`` with, and why (for the load log line).

    The fast path is used only if it compiles and is bitwise equal to the estimator on ``rows``.
    """
    try:
        fast = compile_model(estimator)
    except Unsupported as exc:
        return EstimatorPredictor(estimator), str(exc)
    try:
        differs = mismatch(fast, estimator, rows, proba)
    except Exception as exc:  # the estimator itself failing is for the self-check to report
        return EstimatorPredictor(estimator), f"check failed: {type(exc).__name__}: {exc}"
    if differs is not None:
        return EstimatorPredictor(estimator), f"fast path not equal to the estimator: {differs}"
    return fast, f"bitwise equal to the estimator on {rows.shape[0]} sample row(s)"
