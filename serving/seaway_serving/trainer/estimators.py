"""Build the estimator named by an import path, only from packages the cluster admin allows.

Importing a module runs its code, so the import path (and every nested one in ``params``) must
start with an allowed prefix (``sklearn.`` unless configured) before anything is imported. A
nested estimator is written the way the RetrainJob writes the top one, which makes a Pipeline
expressible in JSON::

    {"steps": [["scale", {"importPath": "sklearn.preprocessing.StandardScaler"}],
               ["model", {"importPath": "sklearn.linear_model.LogisticRegression",
                          "params": {"C": 0.5}}]]}

Any JSON object whose keys are ``importPath`` and optionally ``params`` is such an estimator; any
other value is passed to the constructor as it is.

The prefix of the path is not enough: a path is a chain of attributes, and
``sklearn.datasets._base.gzip.GzipFile`` starts with ``sklearn.`` yet names the standard
library's file class, whose constructor truncates any file the pod may write. So the class the
path resolves to must itself be defined in an allowed module, and be a scikit-learn estimator
(a subclass of ``sklearn.base.BaseEstimator``, as xgboost's and lightgbm's are too), before it is
called.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from typing import Any

from seaway_serving.trainer.errors import InvalidSettings

PATH_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
NESTED_KEYS = {"importPath", "params"}


def allowed(path: str, prefixes: Sequence[str]) -> bool:
    """``sklearn.`` and ``sklearn`` both allow ``sklearn`` and its submodules, nothing else."""
    for prefix in prefixes:
        if prefix.endswith("."):
            if path.startswith(prefix):
                return True
        elif path == prefix or path.startswith(prefix + "."):
            return True
    return False


def resolve(path: str, prefixes: Sequence[str]) -> type:
    """The class at ``path``, imported only after the path passed the allow-list."""
    if not PATH_RE.match(path) or any(p.startswith("__") for p in path.split(".")):
        raise InvalidSettings(f"estimator import path {path!r} is not a dotted Python path "
                              "such as sklearn.ensemble.RandomForestClassifier")
    if not allowed(path, prefixes):
        raise InvalidSettings(f"estimator import path {path!r} is not allowed: it must start "
                              f"with {' or '.join(prefixes)} "
                              "(SEAWAY_TRAIN_ALLOWED_IMPORT_PREFIXES)")
    parts = path.split(".")
    module = None
    for cut in range(len(parts) - 1, 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        obj: Any = module
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError:
            break
        if not isinstance(obj, type):
            raise InvalidSettings(f"{path} is not a class (an estimator class is needed)")
        check_class(path, obj, prefixes)
        return obj
    raise InvalidSettings(f"cannot import {path}: no such "
                          f"{'name in module ' + module.__name__ if module else 'module'}")


def check_class(path: str, cls: type, prefixes: Sequence[str]) -> None:
    """Refuse a class defined outside the allowed modules, or one that is not an estimator."""
    own = f"{cls.__module__}.{cls.__qualname__}"
    if not allowed(own, prefixes):
        raise InvalidSettings(f"estimator import path {path!r} resolves to {own}, which is not "
                              f"defined under {' or '.join(prefixes)} "
                              "(SEAWAY_TRAIN_ALLOWED_IMPORT_PREFIXES)")
    from sklearn.base import BaseEstimator  # the trainer's image has it; importing is slow

    if not issubclass(cls, BaseEstimator):
        raise InvalidSettings(f"{path} is not a scikit-learn estimator (not a subclass of "
                              "sklearn.base.BaseEstimator)")


def _build(value: Any, prefixes: Sequence[str], where: str) -> Any:
    if isinstance(value, dict):
        if "importPath" in value and set(value) <= NESTED_KEYS:
            params = value.get("params") or {}
            if not isinstance(params, dict):
                raise InvalidSettings(f"{where}.params must be a JSON object")
            return construct(str(value["importPath"]), params, prefixes, where)
        return {k: _build(v, prefixes, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        built = [_build(v, prefixes, f"{where}[{i}]") for i, v in enumerate(value)]
        # (name, estimator) pairs, as Pipeline and ColumnTransformer take them
        if built and all(isinstance(v, list) and v and isinstance(v[0], str) for v in built):
            return [tuple(v) for v in built]
        return built
    return value


def construct(path: str, params: dict[str, Any], prefixes: Sequence[str],
              where: str = "params") -> Any:
    cls = resolve(path, prefixes)
    kwargs = {k: _build(v, prefixes, f"{where}.{k}") for k, v in params.items()}
    try:
        estimator = cls(**kwargs)
    except TypeError as exc:
        raise InvalidSettings(f"{path} does not take these parameters: {exc}") from None
    if not hasattr(estimator, "fit"):
        raise InvalidSettings(f"{path} is not an estimator (it has no fit method)")
    if hasattr(estimator, "get_params"):
        try:  # scikit-learn checks parameter values at fit; check their names now
            estimator.get_params()
        except Exception as exc:
            raise InvalidSettings(f"{path} rejects these parameters: {exc}") from None
    return estimator


def build(path: str, params: dict[str, Any], prefixes: Sequence[str]) -> Any:
    """The top-level estimator: it must predict, since the server calls ``predict``."""
    estimator = construct(path, params, prefixes)
    if not hasattr(estimator, "predict"):
        raise InvalidSettings(f"{path} cannot predict (it has no predict method); the model "
                              "server needs a classifier or regressor")
    return estimator
