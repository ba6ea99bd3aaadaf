"""What ``seaway-train`` can be told: environment variables ``SEAWAY_TRAIN_*``, or CLI options.

The operator runs the trainer as a Kubernetes Job and configures it only through these variables
(docs/trainer.md lists them: that table is the contract the RetrainJob reconciler writes to).
Everything is parsed and checked here, once, before any data is fetched, so a typo fails the run
in a second with a message that names the variable.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "SEAWAY_TRAIN_"
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
#: The API's decimal strings (``"0.80"``, ``"-0.01"``).
DECIMAL_RE = re.compile(r"^-?[0-9]{1,12}([.][0-9]{1,12})?$")
RATIO_RE = re.compile(r"^(0(\.[0-9]{1,6})?|1(\.0{1,6})?)$")
DURATION_RE = re.compile(r"^([0-9]{1,6}(ms|s|m|h|d))+$")
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
RUN_ID_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$")
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}

Metric = Literal[
    "accuracy", "f1", "precision", "recall", "roc_auc", "log_loss", "r2", "rmse", "mae"
]
Split = Literal["Holdout", "Backtest"]


def parse_duration(text: str) -> dt.timedelta:
    """``28d`` -> 28 days, ``1h30m`` -> 90 minutes (the API's duration syntax)."""
    if not DURATION_RE.match(text):
        raise ValueError(f"invalid duration {text!r}: use a number and a unit (ms, s, m, h, d), "
                         "e.g. 28d or 1h30m")
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be longer than zero")
    return dt.timedelta(seconds=seconds)


class TrainSettings(BaseSettings):
    """Everything ``seaway-train`` can be told. Field ``x`` is read from ``SEAWAY_TRAIN_X``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    # -- data
    dataset_uri: str = Field(description="CSV or Parquet file: path, file://, http(s):// or s3://")
    dataset_format: Literal["csv", "parquet"] | None = Field(
        None, description="Default: from the file extension (.csv, .csv.gz, .parquet, .pq)")
    target: str = Field(min_length=1, description="The column to predict")
    features: list[str] | None = Field(
        None, description="Input columns (JSON list); default: all but target and timestamp")
    timestamp_column: str | None = Field(None, description="Orders rows for a Backtest split")

    # -- estimator
    estimator: str = Field(description="Import path of the estimator or Pipeline class")
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="Constructor keyword arguments (JSON object)")
    allowed_import_prefixes: list[str] = Field(
        default_factory=lambda: ["sklearn."],
        description="Import paths (also nested ones in params) must start with one of these")

    # -- validation and gate
    split: Split = "Holdout"
    test_fraction: str = Field("0.2", description="Holdout share of rows, a ratio string")
    cutoff: str | None = Field(None, description="Backtest: score on the newest rows of this span")
    windows: int = Field(1, ge=1, le=12, description="Rolling backtest windows")
    metric: Metric = "accuracy"
    min_score: str | None = Field(None, description="Gate: lowest acceptable score (decimal)")
    min_improvement: str | None = Field(
        None, description="Gate: required gain over the incumbent (decimal); unset means 0")
    seed: int = Field(0, description="Seed of the random holdout split")
    min_train_rows: int = Field(20, ge=1, description="Fewer training rows fail the run")
    min_test_rows: int = Field(10, ge=1, description="Fewer scoring rows fail the run")
    refit: bool = Field(False, description="Refit on every row after scoring; see docs")

    # -- the model in production
    incumbent_uri: str | None = Field(None, description="Bundle of the model now in production")
    incumbent_digest: str | None = Field(None, description="Its pinned sha256:<hex>")
    incumbent_allow_unverified: bool = False
    trusted_types: list[str] = Field(default_factory=list,
                                     description="Extra types trusted in skops files (JSON list)")

    # -- output
    output_uri: str = Field(description="Prefix the run's bundle folder goes under: file:// or s3://")
    run_id: str | None = Field(None, description="Folder name under output_uri; default: "
                                                 "UTC time and digest prefix")
    name: str = Field("model", description="Model name written in the manifest")
    bundle_format: Literal["sklearn-joblib", "skops"] = "sklearn-joblib"
    code_version: str | None = Field(None, description="Training code version for the manifest")
    result_path: Path | None = Field(None, description="Where to write the result JSON")
    termination_log: Path | None = Field(
        None, description="Where the one-line outcome is written (the operator's Job: "
                          "/dev/termination-log); unset: nowhere")

    # -- the process
    work_dir: Path = Path("/tmp/seaway-train")
    max_dataset_bytes: int = Field(8 << 30, gt=0)
    max_bundle_bytes: int = Field(1 << 30, gt=0, description="Cap on the incumbent's bytes")
    fetch_timeout_s: float = Field(60.0, gt=0)
    progress_interval_s: float = Field(30.0, gt=0, description="Heartbeat of long steps")
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("split", mode="before")
    @classmethod
    def _split_case(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() in ("holdout", "backtest"):
            return value.capitalize()
        return value

    @field_validator("test_fraction")
    @classmethod
    def _ratio(cls, value: str) -> str:
        if not RATIO_RE.match(value):
            raise ValueError("must be a ratio string from 0 to 1, e.g. 0.2")
        return value

    @field_validator("min_score", "min_improvement")
    @classmethod
    def _decimal(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not DECIMAL_RE.match(value):
            raise ValueError(f"invalid decimal {value}: write a number as a string, e.g. 0.80")
        return value

    @field_validator("cutoff")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        parse_duration(value)
        return value

    @field_validator("incumbent_digest")
    @classmethod
    def _digest(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not DIGEST_RE.match(value):
            raise ValueError("must look like sha256:<64 lowercase hex digits>")
        return value

    @field_validator("incumbent_uri", "timestamp_column", "run_id", "code_version",
                     "dataset_format", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError("must be 1-63 lowercase letters, digits, '.', '_' or '-', starting "
                             "and ending with a letter or digit")
        return value

    @field_validator("run_id")
    @classmethod
    def _run_id(cls, value: str | None) -> str | None:
        if value is not None and not RUN_ID_RE.match(value):
            raise ValueError("must be 1-128 letters, digits, '.', '_' or '-' (one path segment)")
        return value

    @field_validator("allowed_import_prefixes")
    @classmethod
    def _prefixes(cls, value: list[str]) -> list[str]:
        if not value or any(not p.strip(".") for p in value):
            raise ValueError("needs at least one non-empty prefix, e.g. [\"sklearn.\"]")
        return value

    @model_validator(mode="after")
    def _backtest_needs(self) -> TrainSettings:
        if self.split == "Backtest":
            if self.timestamp_column is None:
                raise ValueError("a Backtest split needs timestamp_column "
                                 "(SEAWAY_TRAIN_TIMESTAMP_COLUMN)")
            if self.cutoff is None:
                raise ValueError("a Backtest split needs cutoff (SEAWAY_TRAIN_CUTOFF), e.g. 28d")
        if self.features is not None and self.target in self.features:
            raise ValueError(f"target {self.target!r} is also listed in features")
        return self

    @property
    def cutoff_delta(self) -> dt.timedelta:
        assert self.cutoff is not None
        return parse_duration(self.cutoff)

    @property
    def test_share(self) -> decimal.Decimal:
        return decimal.Decimal(self.test_fraction)
