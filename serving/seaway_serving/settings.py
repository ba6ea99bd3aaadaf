"""Server settings: environment variables with the ``SEAWAY_`` prefix, overridable on the CLI.

The operator configures model pods only through these variables, so every knob of the server
is here, typed and validated once at start.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from seaway_serving import contract

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


class ServingSettings(BaseSettings):
    """Everything ``seaway-serve`` can be told. Field ``x`` is read from ``SEAWAY_X``."""

    model_config = SettingsConfigDict(env_prefix="SEAWAY_", extra="ignore")

    bundle: str = Field(description="Bundle location: a path, file://, http(s):// or s3:// URI "
                        "of a bundle directory, its archive, or a bare model file")
    model_name: str | None = Field(None, description="Name served; default: the manifest's")
    revision: str | None = Field(
        None, description="Revision reported as model_version; default: the manifest's version"
    )
    model_digest: str | None = Field(
        None, description="Pinned sha256 of the model file (sha256:<hex>), e.g. from the CRD"
    )
    model_format: Literal["sklearn-joblib", "skops"] | None = Field(
        None, description="Format the spec names; the bundle's manifest must name the same"
    )
    allow_unverified: bool = Field(
        False, description="Load a sklearn-joblib model whose digest is known nowhere"
    )
    trusted_types: list[str] = Field(
        default_factory=list, description="Extra types trusted in skops files (JSON list)"
    )
    max_bundle_bytes: int = Field(1 << 30, gt=0, description="Cap on fetched and model bytes")

    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(
        4 << 20, gt=0, description="Request bodies above this get 413 (4 MiB: some 10,000 rows "
        "of 30 features in JSON)")
    max_inflight_bytes: int = Field(
        64 << 20, gt=0, description="Request bodies and decoded rows held at once by all "
        "requests; beyond: 503 with Retry-After")
    max_inflight_rows: int = Field(
        262_144, gt=0, description="Decoded rows waiting for or in predict; beyond: 503 with "
        "Retry-After")
    max_rows_per_request: int = Field(
        100_000, gt=0, description="Rows one request may carry; more: 400")
    keepalive_timeout_s: float = Field(75.0, gt=0)
    request_timeout_s: float = Field(30.0, gt=0, description="Time to receive one request")

    max_batch_size: int = Field(64, ge=1, description="Most rows merged into one predict call")
    max_batch_wait_ms: float = Field(
        1.0, ge=0, description="Longest a batch waits to fill while requests keep arriving"
    )
    max_queue: int = Field(256, ge=1, description="Queued requests beyond this get 503")
    split_large_requests: bool = Field(
        False, description="Predict a request bigger than max_batch_size in chunks"
    )
    predict_workers: int = Field(1, ge=1, le=64, description="Threads calling predict")

    drift_window: int = Field(2000, ge=10, description="Rows in the drift sliding window")
    drift_min_rows: int = Field(100, ge=1, description="Rows needed before drift is reported")

    work_dir: Path = Path("/tmp/seaway")
    termination_log: Path | None = Field(
        None, description="Where a refusal is written (in a pod: /dev/termination-log)"
    )
    shutdown_grace_s: float = Field(25.0, ge=0)
    log_level: str = "INFO"
    access_log: bool = False
    fetch_timeout_s: float = Field(60.0, gt=0)

    @field_validator("model_digest")
    @classmethod
    def _digest_shape(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not DIGEST_RE.match(value):
            raise ValueError("must look like sha256:<64 lowercase hex digits>")
        return value


def known_variables() -> frozenset[str]:
    """Every ``SEAWAY_*`` variable ``seaway-serve`` reads: one per setting, plus the S3 endpoint."""
    fields = {contract.PREFIX + name.upper() for name in ServingSettings.model_fields}
    return frozenset(fields | {contract.S3_ENDPOINT})
