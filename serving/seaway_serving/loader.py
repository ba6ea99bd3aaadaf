"""Load a bundle only after it has proven it is the one intended, then prove it still works.

Order matters and is the point of this module: every check that can be made on bytes and on the
manifest (paths, size, sha256, library versions, skops types) runs before a single byte of the
model is deserialized, because unpickling runs code. The model file is read into memory once and
that very buffer is both hashed and deserialized, so nothing can swap the file in between.

A bare model file (no manifest) is a one-file bundle: the same digest rule applies (for a pickle,
the digest pinned in the spec is what makes loading it safe), and its manifest is derived from the
loaded estimator afterwards. It therefore has no self-check against recorded outputs and no drift
fingerprint; :func:`load_file` proves instead that the model predicts a few fixed rows at all.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from seaway_serving import bundle, fastpath
from seaway_serving.errors import BundleRefused

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Policy:
    """What the server accepts; built from the settings."""

    max_bytes: int
    pinned_digest: str | None = None
    allow_unverified: bool = False
    trusted_types: tuple[str, ...] = ()
    #: The format the spec names (SEAWAY_MODEL_FORMAT); the manifest may not claim another one.
    expected_format: str | None = None


@dataclass(frozen=True)
class LoadedModel:
    manifest: bundle.Manifest
    estimator: Any
    digest: str
    #: True for a bare model file: the manifest was derived here, not shipped with the model.
    derived: bool = False
    #: What the server calls to predict, set by :func:`choose_predictor` (None: the estimator).
    predictor: fastpath.Predictor | None = None
    #: Why that predictor, for the load log line.
    predictor_reason: str = ""

    @property
    def n_features(self) -> int:
        return len(self.manifest.inputs)


def read_manifest(bundle_dir: Path) -> bundle.Manifest:
    path = bundle_dir / bundle.MANIFEST_FILE
    try:
        with path.open("rb") as fh:
            raw = fh.read(16 << 20)
    except OSError as exc:
        raise BundleRefused(f"bundle has no readable {bundle.MANIFEST_FILE}: "
                            f"{exc.strerror or exc}") from None
    try:
        return bundle.read_manifest(raw)
    except ValueError as exc:  # JSONDecodeError and pydantic's ValidationError
        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise BundleRefused(f"{bundle.MANIFEST_FILE} is invalid: {where}: "
                                f"{first['msg']}") from None
        raise BundleRefused(f"{bundle.MANIFEST_FILE} is not valid JSON: {exc}") from None


def check_format(manifest: bundle.Manifest, policy: Policy) -> None:
    """The bundle may not pick its own format: a pickle that calls itself skops is still one."""
    if policy.expected_format is not None and manifest.format != policy.expected_format:
        raise BundleRefused(f"format mismatch: the spec says {policy.expected_format} "
                            f"(SEAWAY_MODEL_FORMAT), the bundle's manifest says "
                            f"{manifest.format}")


def _model_path(bundle_dir: Path, manifest: bundle.Manifest) -> Path:
    root = bundle_dir.resolve()
    path = (root / manifest.model_file).resolve()
    if not path.is_relative_to(root) or path == root:
        raise BundleRefused(f"manifest model_file {manifest.model_file!r} escapes the bundle "
                            "directory")
    return path


def _read_capped(path: Path, cap: int) -> bytes:
    try:
        size = path.stat().st_size
        if size > cap:
            raise BundleRefused(f"model file {path.name} is {size} bytes, over the cap of {cap} "
                                "bytes (SEAWAY_MAX_BUNDLE_BYTES)")
        with path.open("rb") as fh:
            data = fh.read(cap + 1)
    except OSError as exc:
        raise BundleRefused(f"model file {path.name} cannot be read: "
                            f"{exc.strerror or exc}") from None
    if len(data) > cap:  # grew after stat
        raise BundleRefused(f"model file {path.name} is over the cap of {cap} bytes "
                            "(SEAWAY_MAX_BUNDLE_BYTES)")
    return data


def verify_digest(data: bytes, recorded: str | None, fmt: str, policy: Policy, *,
                  where: str = "the manifest has no sha256") -> str:
    """The sha256 of ``data``, which must equal every digest known (``recorded`` and pinned).

    A sklearn-joblib model with no digest known anywhere is refused unless explicitly allowed:
    unpickling runs code. ``where`` says, in the refusal, why no digest was recorded.
    """
    actual = bundle.sha256_of(data)
    if recorded is not None and recorded != actual:
        raise BundleRefused(f"digest mismatch: manifest {recorded} file {actual}")
    if policy.pinned_digest is not None and policy.pinned_digest != actual:
        raise BundleRefused(f"digest mismatch: pinned (SEAWAY_MODEL_DIGEST) "
                            f"{policy.pinned_digest} file {actual}")
    if (recorded is None and policy.pinned_digest is None
            and fmt == "sklearn-joblib" and not policy.allow_unverified):
        raise BundleRefused(f"missing digest: {where} and SEAWAY_MODEL_DIGEST is not set; a "
                            "sklearn-joblib model runs code when loaded (pin model.digest, or "
                            "set SEAWAY_ALLOW_UNVERIFIED=true to load it anyway)")
    return actual


def check_versions(manifest: bundle.Manifest) -> None:
    import sklearn

    if manifest.runtime.sklearn != sklearn.__version__:
        raise BundleRefused(f"scikit-learn version mismatch: bundle built with "
                            f"{manifest.runtime.sklearn}, server has {sklearn.__version__}")


def deserialize(data: bytes, fmt: str, policy: Policy) -> Any:
    if fmt == "skops":
        import skops.io

        try:
            untrusted = skops.io.get_untrusted_types(data=data)
        except Exception as exc:  # a malformed zip or schema: refuse, never guess
            raise BundleRefused(f"skops file cannot be read: {exc}") from None
        refused = sorted(t for t in untrusted if t not in policy.trusted_types)
        if refused:
            raise BundleRefused("untrusted types in skops file: " + ", ".join(refused)
                                + " (trust them with SEAWAY_TRUSTED_TYPES)")
        try:
            return skops.io.loads(data, trusted=list(untrusted) or None)
        except Exception as exc:
            raise BundleRefused(f"skops file cannot be loaded: {exc}") from None
    import joblib
    from sklearn.exceptions import InconsistentVersionWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", InconsistentVersionWarning)
        try:
            return joblib.load(io.BytesIO(data))
        except InconsistentVersionWarning as exc:
            raise BundleRefused(f"scikit-learn version mismatch inside the model file: "
                                f"{exc}") from None
        except Exception as exc:
            raise BundleRefused(f"model file cannot be loaded: {type(exc).__name__}: "
                                f"{exc}") from None


def self_check(estimator: Any, manifest: bundle.Manifest) -> None:
    """The manifest's sample rows must give the recorded outputs, else the model is not served."""
    n = getattr(estimator, "n_features_in_", None)
    if n is not None and int(n) != len(manifest.inputs):
        raise BundleRefused(f"self-check failed: the model takes {n} features, the manifest "
                            f"lists {len(manifest.inputs)}")
    x = bundle.rows_from_json(manifest.sample.inputs)
    try:
        got = np.asarray(estimator.predict(x))
        proba = (np.asarray(estimator.predict_proba(x))
                 if manifest.sample.predict_proba is not None else None)
    except Exception as exc:
        raise BundleRefused(f"self-check failed: predict on the sample raised "
                            f"{type(exc).__name__}: {exc}") from None
    want = np.asarray(manifest.sample.predict)
    if got.shape != want.shape:
        raise BundleRefused(f"self-check failed: sample prediction has shape {list(got.shape)}, "
                            f"the manifest's {list(want.shape)}")
    if got.dtype.kind in "fc" and want.dtype.kind in "fiu":
        same = bool(np.allclose(got, want, rtol=1e-7, atol=1e-9, equal_nan=True))
    else:
        same = got.tolist() == want.tolist()
    if not same:
        raise BundleRefused(f"self-check failed: sample prediction {_short(got)} differs from "
                            f"the manifest's {_short(want)}")
    if proba is not None:
        want_p = np.asarray(manifest.sample.predict_proba, dtype=np.float64)
        if proba.shape != want_p.shape or not np.allclose(proba, want_p, rtol=1e-6, atol=1e-9):
            raise BundleRefused("self-check failed: sample predict_proba differs from the "
                                "manifest's")


def _short(values: np.ndarray) -> str:
    items = values.ravel().tolist()
    text = ", ".join(repr(v) for v in items[:6])
    return f"[{text}{', ...' if len(items) > 6 else ''}]"


def file_format(path: Path, policy: Policy) -> bundle.Format:
    """The format of a bare model file: the spec's, which the file's suffix may not contradict."""
    by_suffix: bundle.Format = "skops" if path.suffix.lower() == ".skops" else "sklearn-joblib"
    if policy.expected_format is not None and policy.expected_format != by_suffix:
        raise BundleRefused(f"format mismatch: the spec says {policy.expected_format} "
                            f"(SEAWAY_MODEL_FORMAT), the model file is named {path.name} "
                            f"({by_suffix}: .skops for skops, .joblib or .pkl for sklearn-joblib)")
    return by_suffix


def derive_manifest(estimator: Any, path: Path, fmt: bundle.Format, data: bytes) -> bundle.Manifest:
    """The manifest of a bare model file, from what the fitted estimator says about itself.

    Its sample comes from predicting a few fixed rows now, so a model that cannot predict at all
    (unfitted, a transformer, the wrong input width) is refused before it is served.
    """
    try:
        manifest = bundle.describe(estimator, name=path.stem or "model", fmt=fmt,
                                   model_bytes=data)
    except Exception as exc:
        raise BundleRefused(f"model file {path.name} has no manifest and cannot describe itself: "
                            f"{type(exc).__name__}: {exc} (make a bundle with "
                            "`seaway bundle create`)") from None
    return manifest.model_copy(update={"model_file": path.name})


def load_file(path: Path, policy: Policy) -> LoadedModel:
    """Verify and deserialize a bare model file, then derive its manifest; raise BundleRefused."""
    fmt = file_format(path, policy)
    data = _read_capped(path, policy.max_bytes)
    digest = verify_digest(data, None, fmt, policy,
                           where=f"{path.name} is a bare model file (no manifest)")
    estimator = deserialize(data, fmt, policy)
    manifest = derive_manifest(estimator, path, fmt, data)
    del data
    return LoadedModel(manifest=manifest, estimator=estimator, digest=digest, derived=True)


def choose_predictor(model: LoadedModel) -> LoadedModel:
    """The model with its predictor: a fast path (trees, linear models) if it is bitwise equal to
    the estimator on the manifest's sample rows (see fastpath.py), else the estimator itself.

    Apart from :func:`load` because it costs a few predict calls of the estimator, which a caller
    that only verifies a bundle does not need.
    """
    rows = bundle.rows_from_json(model.manifest.sample.inputs)
    predictor, reason = fastpath.choose(model.estimator, rows,
                                        proba=model.manifest.outputs.predict_proba)
    return dataclasses.replace(model, predictor=predictor, predictor_reason=reason)


def load(location: Path, policy: Policy) -> LoadedModel:
    """Verify, deserialize and self-check the bundle at ``location``; raise BundleRefused.

    ``location`` is a bundle directory or a bare model file (see :func:`load_file`).
    """
    if location.is_file():
        return load_file(location, policy)
    bundle_dir = location
    manifest = read_manifest(bundle_dir)
    check_format(manifest, policy)
    path = _model_path(bundle_dir, manifest)
    data = _read_capped(path, policy.max_bytes)
    digest = verify_digest(data, manifest.sha256, manifest.format, policy)
    check_versions(manifest)
    estimator = deserialize(data, manifest.format, policy)
    del data
    self_check(estimator, manifest)
    return LoadedModel(manifest=manifest, estimator=estimator, digest=digest)
