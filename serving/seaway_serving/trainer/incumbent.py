"""Load the model now in production exactly as the server would, then pick its input columns.

The incumbent is a pickle more often than not, and unpickling runs code: it goes through the
server's own fetcher and verified loader (size caps, manifest and pinned digest, scikit-learn
version, skops types, self-check) and is refused for the same reasons a model pod would refuse
it. Only then is it scored, on the same rows as the candidate, with the columns its manifest
names, so a candidate trained on a changed feature list is still compared fairly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from seaway_serving import errors as serving_errors
from seaway_serving import loader, sources
from seaway_serving.trainer.errors import FetchFailed, IncumbentRefused

GENERIC_NAME = re.compile(r"^x[0-9]+$")
#: The server's messages name the server's variables; here the trainer's do the same job.
RENAMED = {
    "SEAWAY_MODEL_DIGEST": "SEAWAY_TRAIN_INCUMBENT_DIGEST",
    "SEAWAY_ALLOW_UNVERIFIED": "SEAWAY_TRAIN_INCUMBENT_ALLOW_UNVERIFIED",
    "SEAWAY_TRUSTED_TYPES": "SEAWAY_TRAIN_TRUSTED_TYPES",
    "SEAWAY_MAX_BUNDLE_BYTES": "SEAWAY_TRAIN_MAX_BUNDLE_BYTES",
}
_RENAME_RE = re.compile(r"\b(" + "|".join(RENAMED) + r")\b")


def _refused(exc: Exception) -> IncumbentRefused:
    return IncumbentRefused("incumbent refused: "
                            + _RENAME_RE.sub(lambda m: RENAMED[m.group(1)], str(exc)))


def load(uri: str, work_dir: Path, *, digest: str | None, allow_unverified: bool,
         trusted_types: Sequence[str], max_bytes: int, timeout_s: float,
         env: Mapping[str, str] | None = None) -> loader.LoadedModel:
    limits = sources.Limits(max_bytes=max_bytes, timeout_s=timeout_s)
    policy = loader.Policy(max_bytes=max_bytes, pinned_digest=digest,
                           allow_unverified=allow_unverified,
                           trusted_types=tuple(trusted_types))
    try:
        bundle_dir = sources.materialize(uri, work_dir, limits, env)
    except serving_errors.FetchFailed as exc:
        raise FetchFailed(f"incumbent: {exc}") from None
    except serving_errors.StartupError as exc:
        raise _refused(exc) from None
    try:
        return loader.load(bundle_dir, policy)
    except serving_errors.StartupError as exc:
        raise _refused(exc) from None


def columns_for(model: loader.LoadedModel, available: Sequence[str],
                candidate_features: Sequence[str]) -> list[str] | str:
    """The dataset columns to feed the incumbent, or why there are none (a string)."""
    names = [spec.name for spec in model.manifest.inputs]
    if all(name in available for name in names):
        return names
    if all(GENERIC_NAME.match(n) for n in names) and len(names) == len(candidate_features):
        # a bundle that never knew its column names: same count, same order as the candidate
        return list(candidate_features)
    missing = [n for n in names if n not in available]
    shown = ", ".join(repr(n) for n in missing[:5])
    return (f"its input column{'s' if len(missing) > 1 else ''} {shown}"
            f"{' ...' if len(missing) > 5 else ''} not in the dataset")
