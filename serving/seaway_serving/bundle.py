"""The model bundle: one model file plus ``manifest.json`` that says what it is and how to trust it.

A bundle is a directory (or a ``.tar.gz`` of one)::

    manifest.json      this module's :class:`Manifest`
    model.joblib       or model.skops: the estimator, byte for byte what was digested

The manifest carries everything the server needs to refuse a wrong model *before* unpickling it
(sha256 of the exact bytes, library versions) and to prove after loading that it behaves as when
it was built (a sample input with its recorded output), plus the training data fingerprint the
drift metrics compare live traffic with. Building it lives here, next to reading it, so the two
can never disagree; the ``seaway bundle create`` command only parses arguments and calls in.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

SCHEMA = "seaway.dev/bundle/v1"
MANIFEST_FILE = "manifest.json"
MODEL_FILES = {"sklearn-joblib": "model.joblib", "skops": "model.skops"}
SAMPLE_ROWS = 8
FINGERPRINT_BINS = 10
FINGERPRINT_MAX_ROWS = 100_000

Format = Literal["sklearn-joblib", "skops"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class FeatureSpec(_Strict):
    name: str
    datatype: str = "FP64"


class Runtime(_Strict):
    python: str
    sklearn: str
    numpy: str
    joblib: str | None = None
    skops: str | None = None


class OutputSpec(_Strict):
    predict_datatype: str
    classes: list[Any] | None = None
    predict_proba: bool = False


class Sample(_Strict):
    """Rows (None for a missing value) and what the model answered for them at build time."""

    inputs: list[list[float | None]]
    predict: list[Any]
    predict_proba: list[list[float]] | None = None


class Binned(_Strict):
    """A distribution over bins: ``edges`` are the inner bin edges (k-1 of them for k bins)."""

    edges: list[float]
    proportions: list[float]


class FeatureFingerprint(_Strict):
    name: str
    count: int
    missing: float
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    bins: Binned


class PredictionFingerprint(_Strict):
    kind: Literal["categorical", "numeric"]
    classes: list[Any] | None = None
    proportions: list[float]
    edges: list[float] | None = None


class Fingerprint(_Strict):
    rows: int
    features: list[FeatureFingerprint]
    predictions: PredictionFingerprint | None = None


class Manifest(_Strict):
    schema_: str = Field(SCHEMA, alias="schema")
    name: str
    version: str
    format: Format
    model_file: str
    sha256: str | None = None
    size_bytes: int
    estimator: str
    task: Literal["classification", "regression", "other"]
    inputs: list[FeatureSpec]
    allow_nan: bool = False
    outputs: OutputSpec
    runtime: Runtime
    sample: Sample
    fingerprint: Fingerprint | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    code_version: str | None = None
    created_at: str

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2) + "\n"


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def numpy_datatype(dtype: np.dtype[Any]) -> str:
    """The Open Inference Protocol datatype for a numpy dtype (BYTES for strings and objects)."""
    kinds = {"b": "BOOL", "f": "FP", "i": "INT", "u": "UINT"}
    if dtype.kind not in kinds:
        return "BYTES"
    if dtype.kind == "b":
        return "BOOL"
    return f"{kinds[dtype.kind]}{dtype.itemsize * 8}"


def runtime_versions() -> Runtime:
    import joblib
    import sklearn

    try:
        import skops

        skops_version: str | None = skops.__version__
    except ImportError:  # skops is only needed for skops bundles
        skops_version = None
    return Runtime(
        python=platform.python_version(),
        sklearn=sklearn.__version__,
        numpy=np.__version__,
        joblib=joblib.__version__,
        skops=skops_version,
    )


def _jsonable(values: np.ndarray) -> list[Any]:
    return [v.item() if isinstance(v, np.generic) else v for v in values.tolist()]


def _rows_to_json(x: np.ndarray) -> list[list[float | None]]:
    return [[None if np.isnan(v) else float(v) for v in row] for row in x]


def rows_from_json(rows: Sequence[Sequence[float | None]]) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=np.float64)


def _binned(values: np.ndarray) -> Binned:
    """Decile bins of ``values`` (finite ones only); ties collapse bins, never below one."""
    if values.size == 0:
        return Binned(edges=[], proportions=[1.0])
    qs = np.quantile(values, np.linspace(0, 1, FINGERPRINT_BINS + 1)[1:-1])
    edges = np.unique(qs)
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=edges.size + 1)
    return Binned(edges=edges.tolist(), proportions=(counts / values.size).tolist())


def fingerprint(x: np.ndarray, names: Sequence[str], predictions: np.ndarray | None,
                classes: Sequence[Any] | None) -> Fingerprint:
    """Per-feature summary and decile histogram of the training data (and of the predictions)."""
    if x.shape[0] > FINGERPRINT_MAX_ROWS:  # a deterministic subsample keeps bundling fast
        idx = np.random.default_rng(0).choice(x.shape[0], FINGERPRINT_MAX_ROWS, replace=False)
        x = x[np.sort(idx)]
        predictions = None if predictions is None else predictions[np.sort(idx)]
    features = []
    for j, name in enumerate(names):
        col = x[:, j]
        finite = col[np.isfinite(col)]
        has = finite.size > 0
        features.append(
            FeatureFingerprint(
                name=name,
                count=int(col.size),
                missing=float(1 - finite.size / col.size) if col.size else 0.0,
                mean=float(finite.mean()) if has else None,
                std=float(finite.std()) if has else None,
                min=float(finite.min()) if has else None,
                max=float(finite.max()) if has else None,
                bins=_binned(finite),
            )
        )
    pred_fp = None
    if predictions is not None and predictions.size:
        if classes is not None:
            index = {c: i for i, c in enumerate(classes)}
            counts = np.zeros(len(classes), dtype=np.int64)
            for value, n in zip(*np.unique(predictions, return_counts=True), strict=True):
                counts[index[value.item() if isinstance(value, np.generic) else value]] += n
            pred_fp = PredictionFingerprint(
                kind="categorical", classes=list(classes),
                proportions=(counts / predictions.size).tolist(),
            )
        else:
            values = predictions.astype(np.float64)
            b = _binned(values[np.isfinite(values)])
            pred_fp = PredictionFingerprint(kind="numeric", edges=b.edges,
                                            proportions=b.proportions)
    return Fingerprint(rows=int(x.shape[0]), features=features, predictions=pred_fp)


def _task(estimator: Any) -> Literal["classification", "regression", "other"]:
    kind = getattr(estimator, "_estimator_type", None)
    try:
        from sklearn.utils import get_tags

        kind = get_tags(estimator).estimator_type or kind
    except (ImportError, AttributeError, TypeError, ValueError):
        pass
    if kind == "classifier":
        return "classification"
    if kind == "regressor":
        return "regression"
    return "other"


def _allow_nan(estimator: Any) -> bool:
    try:
        from sklearn.utils import get_tags

        return bool(get_tags(estimator).input_tags.allow_nan)
    except (ImportError, AttributeError, TypeError, ValueError):
        return False


def _feature_names(estimator: Any, given: Sequence[str] | None, n: int) -> list[str]:
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        return [str(v) for v in names]
    if given is not None:
        if len(given) != n:
            raise ValueError(f"{len(given)} feature names given, the model takes {n} features")
        return list(given)
    return [f"x{i}" for i in range(n)]


def describe(estimator: Any, *, name: str, fmt: Format, model_bytes: bytes,
             data: np.ndarray | None = None, feature_names: Sequence[str] | None = None,
             version: str | None = None, metrics: dict[str, float] | None = None,
             code_version: str | None = None, now: dt.datetime | None = None) -> Manifest:
    """Build the manifest for ``estimator`` serialized as ``model_bytes``.

    ``data`` (rows of training or representative inputs) gives the fingerprint and the sample;
    without it the sample is a few fixed pseudo-random rows, which still proves at load time that
    the deserialized model computes what the original did.
    """
    n = getattr(estimator, "n_features_in_", None)
    if n is None:
        raise ValueError("the model does not say how many features it takes (not fitted?)")
    n = int(n)
    names = _feature_names(estimator, feature_names, n)
    if data is not None:
        data = np.asarray(data, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != n or data.shape[0] == 0:
            raise ValueError(f"data has shape {list(data.shape)}, expected [rows, {n}]")
        sample_x = data[:SAMPLE_ROWS]
    else:
        sample_x = np.random.default_rng(0).normal(size=(4, n))
    task = _task(estimator)
    predict = np.asarray(estimator.predict(sample_x))
    classes = getattr(estimator, "classes_", None)
    classes_list = _jsonable(np.asarray(classes)) if classes is not None else None
    has_proba = task == "classification" and hasattr(estimator, "predict_proba")
    proba = np.asarray(estimator.predict_proba(sample_x)) if has_proba else None
    fp = None
    if data is not None:
        preds = np.asarray(estimator.predict(data[:FINGERPRINT_MAX_ROWS]))
        fp = fingerprint(data[:FINGERPRINT_MAX_ROWS], names, preds,
                         classes_list if task == "classification" else None)
    digest = sha256_of(model_bytes)
    created = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    return Manifest(
        name=name,
        version=version or digest.split(":", 1)[1][:12],
        format=fmt,
        model_file=MODEL_FILES[fmt],
        sha256=digest,
        size_bytes=len(model_bytes),
        estimator=f"{type(estimator).__module__}.{type(estimator).__qualname__}",
        task=task,
        inputs=[FeatureSpec(name=v, datatype="FP64") for v in names],
        allow_nan=_allow_nan(estimator),
        outputs=OutputSpec(predict_datatype=numpy_datatype(predict.dtype),
                           classes=classes_list, predict_proba=has_proba),
        runtime=runtime_versions(),
        sample=Sample(inputs=_rows_to_json(sample_x), predict=_jsonable(predict),
                      predict_proba=None if proba is None else proba.tolist()),
        fingerprint=fp,
        metrics=dict(metrics or {}),
        code_version=code_version,
        created_at=created.isoformat().replace("+00:00", "Z"),
    )


def serialize(estimator: Any, fmt: Format) -> bytes:
    if fmt == "skops":
        import skops.io

        return bytes(skops.io.dumps(estimator))
    import joblib

    buf = io.BytesIO()
    joblib.dump(estimator, buf)
    return buf.getvalue()


def write(out_dir: Path, manifest: Manifest, model_bytes: bytes) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / manifest.model_file).write_bytes(model_bytes)
    (out_dir / MANIFEST_FILE).write_text(manifest.to_json())
    return out_dir


def create_from_estimator(estimator: Any, out_dir: Path, *, name: str,
                          fmt: Format = "sklearn-joblib", **kwargs: Any) -> Manifest:
    """Serialize a fitted estimator into a bundle directory; see :func:`describe` for kwargs."""
    model_bytes = serialize(estimator, fmt)
    manifest = describe(estimator, name=name, fmt=fmt, model_bytes=model_bytes, **kwargs)
    write(out_dir, manifest, model_bytes)
    return manifest


def format_for(path: Path) -> Format:
    return "skops" if path.suffix == ".skops" else "sklearn-joblib"


def create_from_file(model_path: Path, out_dir: Path, *, name: str, fmt: Format | None = None,
                     trusted: Sequence[str] = (), **kwargs: Any) -> Manifest:
    """Bundle an existing model file, keeping its exact bytes (so its digest stays the same).

    The file is loaded to read what the estimator knows about itself; for a pickle that runs its
    code, so only bundle files you made or trust. A skops file is loaded only if every type it
    holds is trusted by skops or listed in ``trusted``.
    """
    fmt = fmt or format_for(model_path)
    model_bytes = model_path.read_bytes()
    if fmt == "skops":
        import skops.io

        try:
            found = skops.io.get_untrusted_types(data=model_bytes)
        except Exception as exc:  # not a skops file at all
            raise ValueError(f"{model_path.name} cannot be read as a skops file: "
                             f"{type(exc).__name__}: {exc}") from None
        untrusted = [t for t in found if t not in trusted]
        if untrusted:
            raise ValueError("untrusted types in skops file: " + ", ".join(sorted(untrusted))
                             + " (list them with --trust if you trust them)")
    try:
        if fmt == "skops":
            estimator = skops.io.loads(model_bytes, trusted=list(trusted) or None)
        else:
            import joblib

            estimator = joblib.load(io.BytesIO(model_bytes))
    except Exception as exc:  # not a model file at all (a CSV, a truncated pickle): say so
        raise ValueError(f"{model_path.name} cannot be loaded as a {fmt} model file: "
                         f"{type(exc).__name__}: {exc}") from None
    try:
        manifest = describe(estimator, name=name, fmt=fmt, model_bytes=model_bytes, **kwargs)
    except ValueError:
        raise
    except Exception as exc:  # e.g. an object without predict
        raise ValueError(f"{model_path.name} does not hold a usable fitted estimator: "
                         f"{type(exc).__name__}: {exc}") from None
    write(out_dir, manifest, model_bytes)
    return manifest


def read_data(path: Path) -> tuple[np.ndarray, list[str] | None]:
    """Rows from a ``.npy`` file or a numeric CSV (a first row that is not numeric is a header)."""
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False).astype(np.float64), None
    with path.open(newline="") as fh:
        rows = [r for r in csv.reader(fh) if r]
    if not rows:
        raise ValueError(f"{path} holds no rows")
    header: list[str] | None = None
    try:
        [float(v) for v in rows[0]]
    except ValueError:
        header, rows = [v.strip() for v in rows[0]], rows[1:]
    values = np.array([[float(v) if v.strip() else np.nan for v in r] for r in rows])
    return values, header


def read_manifest(text: str | bytes) -> Manifest:
    return Manifest.model_validate(json.loads(text))
