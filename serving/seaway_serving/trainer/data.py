"""Read the dataset into the arrays an estimator takes, refusing what the server could not serve.

The model server takes rows of numbers (the bundle's inputs are FP64), so every feature must be
numeric here already: a text column is refused with its name and an example value rather than
failing later inside ``fit`` with a traceback, or worse, producing a model no pod can serve.
Features are handed to the estimator as a float64 array in the order of ``features``, exactly as
the server will hand them over; a Pipeline that selects columns by name cannot work at serving
time, so it is not supported at training time either.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seaway_serving.trainer.errors import BadData, InvalidSettings

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst", ".csv.xz")
PARQUET_SUFFIXES = (".parquet", ".pq")


def format_of(uri: str, given: str | None) -> str:
    if given:
        return given
    path = uri.split("?", 1)[0].lower()
    if path.endswith(CSV_SUFFIXES):
        return "csv"
    if path.endswith(PARQUET_SUFFIXES):
        return "parquet"
    raise InvalidSettings(f"cannot tell the format of {path.rsplit('/', 1)[-1]!r} from its name: "
                          "set the dataset format (SEAWAY_TRAIN_DATASET_FORMAT=csv or parquet)")


def read(path: Path, fmt: str, shown_as: str) -> pd.DataFrame:
    """The whole file as a DataFrame; every way it can be unreadable is a one-line BadData."""
    try:
        if path.stat().st_size == 0:
            raise BadData(f"dataset {shown_as} is empty (0 bytes)")
        frame = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    except BadData:
        raise
    except pd.errors.EmptyDataError:
        raise BadData(f"dataset {shown_as} is empty (no header, no rows)") from None
    except (ValueError, UnicodeDecodeError, OSError, ImportError) as exc:
        # pandas' ParserError is a ValueError; pyarrow's ArrowInvalid too
        raise BadData(f"dataset {shown_as} is not readable as {fmt}: "
                      f"{type(exc).__name__}: {exc}") from None
    if len(frame) == 0:
        raise BadData(f"dataset {shown_as} has no rows")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _listing(columns: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(columns[:limit])
    return shown + (f", ... ({len(columns)} in all)" if len(columns) > limit else "")


@dataclass(frozen=True)
class Table:
    """The rows used for training and scoring, in file order."""

    frame: pd.DataFrame
    x: np.ndarray
    y: np.ndarray
    features: list[str]
    timestamps: np.ndarray | None
    rows_read: int
    dropped_missing_target: int

    @property
    def rows(self) -> int:
        return int(self.x.shape[0])

    def numeric(self, columns: Sequence[str]) -> np.ndarray:
        """Other columns of the same rows as float64 (e.g. the incumbent's inputs)."""
        return np.column_stack([_numeric_column(self.frame[c], c) for c in columns])


def _numeric_column(col: pd.Series, name: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return np.asarray(col.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    example = first_non_number(col.dropna())
    raise BadData(f"feature column {name!r} is not numeric (e.g. {example!r}); the model server "
                  "takes numbers only: encode it as numbers or leave it out of the features")


def first_non_number(values: Iterable[Any]) -> Any:
    """The first value that is not a number, to quote in a refusal (None if all are).

    A column read from CSV with one stray word is text throughout, numbers included: its
    first value may well be ``'3.5'``, which would make a misleading example.
    """
    return next((v for v in values if not _is_number(v)), None)


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _timestamps(col: pd.Series, name: str) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(col):
        parsed = pd.to_datetime(col, utc=True)
    elif pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        parsed = pd.to_datetime(col, unit="s", utc=True, errors="coerce")
    else:
        parsed = pd.to_datetime(col.astype("string"), utc=True, format="ISO8601",
                                errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        first: Any = col[bad].iloc[0]
        raise BadData(f"timestamp column {name!r} has {int(bad.sum())} empty or unparseable "
                      f"values (first: {first!r}); use ISO 8601 times or Unix seconds")
    return np.asarray(parsed.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(),
                      dtype="datetime64[ns]")


def select(frame: pd.DataFrame, *, target: str, features: Sequence[str] | None,
           timestamp_column: str | None) -> Table:
    columns = list(frame.columns)
    if target not in columns:
        raise BadData(f"target column {target!r} is not in the dataset (columns: "
                      f"{_listing(columns)})")
    if timestamp_column is not None and timestamp_column not in columns:
        raise BadData(f"timestamp column {timestamp_column!r} is not in the dataset (columns: "
                      f"{_listing(columns)})")
    if features is None:
        chosen = [c for c in columns if c not in (target, timestamp_column)]
    else:
        missing = [c for c in features if c not in columns]
        if missing:
            raise BadData(f"feature column{'s' if len(missing) > 1 else ''} "
                          f"{', '.join(repr(c) for c in missing)} not in the dataset (columns: "
                          f"{_listing(columns)})")
        chosen = list(features)
    if not chosen:
        raise BadData(f"the dataset has no feature columns besides the target {target!r}")
    rows_read = len(frame)
    keep = frame[target].notna().to_numpy()
    used = frame.loc[keep].reset_index(drop=True)
    if len(used) == 0:
        raise BadData(f"target column {target!r} is empty in all {rows_read} rows")
    x = np.column_stack([_numeric_column(used[c], c) for c in chosen])
    y = used[target].to_numpy()
    if y.dtype == object:  # mixed str/number labels would make sklearn fail obscurely
        kinds = {type(v).__name__ for v in y}
        if len(kinds) > 1:
            raise BadData(f"target column {target!r} mixes value types "
                          f"({', '.join(sorted(kinds))})")
    stamps = _timestamps(used[timestamp_column], timestamp_column) if timestamp_column else None
    return Table(frame=used, x=x, y=y, features=chosen, timestamps=stamps, rows_read=rows_read,
                 dropped_missing_target=int(rows_read - len(used)))
