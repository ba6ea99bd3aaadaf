"""The result contract: what a training run hands back, whichever trainer ran.

One JSON document, ``seaway.dev/train-result/v1``, written to ``SEAWAY_TRAIN_RESULT_PATH`` (when
set), printed as the LAST line of stdout, and stored as ``train-result.json`` in the bundle
folder. A user's own training image honours the same contract (docs/trainer.md). Only
``schema``, ``status`` and, for a run that succeeded, ``bundle``, ``metric`` and
``candidate.score`` are required; everything else is for the record and may be left out.

This module imports only pydantic, so the operator can parse results without scikit-learn.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA = "seaway.dev/train-result/v1"
RESULT_FILE = "train-result.json"
#: Kubernetes keeps at most this many bytes of a container's termination message.
TERMINATION_MESSAGE_MAX = 4096
SCORE_RE = re.compile(r"^-?[0-9]{1,12}([.][0-9]{1,12})?$")

Metric = Literal[
    "accuracy", "f1", "precision", "recall", "roc_auc", "log_loss", "r2", "rmse", "mae"
]


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


def _score(value: str | None) -> str | None:
    if value is not None and not SCORE_RE.match(value):
        raise ValueError(f"score {value!r} is not a decimal string such as \"0.841200\"")
    return value


class BundleRef(_Part):
    uri: str = Field(min_length=1, max_length=2048)
    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    format: Literal["sklearn-joblib", "skops"] = "sklearn-joblib"
    name: str | None = None
    version: str | None = None


class Candidate(_Part):
    score: str
    metrics: dict[str, float] = Field(default_factory=dict)

    _check = field_validator("score")(_score)


class Incumbent(_Part):
    uri: str
    digest: str | None = None
    score: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    problem: str | None = None

    _check = field_validator("score")(_score)


class Window(_Part):
    train_rows: int
    test_rows: int
    train_until: str | None = None
    test_from: str | None = None
    test_until: str | None = None
    candidate_score: str
    incumbent_score: str | None = None


class SplitInfo(_Part):
    kind: Literal["Holdout", "Backtest", "Custom"]
    test_fraction: str | None = None
    seed: int | None = None
    cutoff: str | None = None
    windows: list[Window] = Field(default_factory=list)


class Rows(_Part):
    read: int
    used: int
    dropped_missing_target: int = 0
    train: int
    test: int


class DatasetInfo(_Part):
    uri: str
    format: str
    sha256: str
    bytes: int
    target: str
    features: list[str]
    timestamp_column: str | None = None


class EstimatorInfo(_Part):
    import_path: str
    params: dict[str, Any] = Field(default_factory=dict)
    estimator_class: str
    task: Literal["classification", "regression"]


class Gate(_Part):
    min_score: str | None = None
    min_improvement: str | None = None
    improvement: str | None = None
    passed: bool
    reason: str


class TrainResult(_Part):
    schema_: Literal["seaway.dev/train-result/v1"] = Field(
        "seaway.dev/train-result/v1", alias="schema")
    status: Literal["Succeeded", "Failed"]
    reason: str | None = Field(None, description="CamelCase cause of a failed run")
    message: str | None = Field(None, description="One line: why the run failed")
    exit_code: int = 0
    bundle: BundleRef | None = None
    metric: Metric | None = None
    higher_is_better: bool | None = None
    candidate: Candidate | None = None
    incumbent: Incumbent | None = None
    gate: Gate | None = None
    split: SplitInfo | None = None
    rows: Rows | None = None
    dataset: DatasetInfo | None = None
    estimator: EstimatorInfo | None = None
    refit: bool | None = None
    code_version: str | None = None
    trainer: str | None = None
    started_at: str | None = None
    finished_at: str | None = None

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _complete(self) -> TrainResult:
        if self.status == "Succeeded" and (self.bundle is None or self.metric is None
                                           or self.candidate is None):
            raise ValueError("a Succeeded result needs bundle, metric and candidate.score")
        if self.status == "Failed" and not self.message:
            raise ValueError("a Failed result needs a message")
        return self

    def to_json(self, indent: int | None = None) -> str:
        return self.model_dump_json(by_alias=True, indent=indent, exclude_none=True)

    def summary(self) -> str:
        """The result cut to what the operator acts on, within Kubernetes' 4096-byte message.

        This is what a succeeded run writes to its termination message (a failed run writes its
        one-line reason there instead), so the operator can read it from the pod's status.
        """
        doc: dict[str, Any] = {"schema": SCHEMA, "status": self.status}
        if self.bundle is not None:
            doc["bundle"] = {"uri": self.bundle.uri, "digest": self.bundle.digest,
                             "format": self.bundle.format}
        if self.metric is not None:
            doc["metric"] = self.metric
        if self.candidate is not None:
            doc["candidate_score"] = self.candidate.score
        if self.incumbent is not None and self.incumbent.score is not None:
            doc["incumbent_score"] = self.incumbent.score
        if self.gate is not None:
            doc["gate_passed"] = self.gate.passed
            doc["gate_reason"] = self.gate.reason
        text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
        while len(text.encode()) > TERMINATION_MESSAGE_MAX and "gate_reason" in doc:
            over = len(text.encode()) - TERMINATION_MESSAGE_MAX
            reason = doc["gate_reason"].encode()
            keep = len(reason) - over - 3
            if keep > 0:
                doc["gate_reason"] = reason[:keep].decode(errors="ignore") + "..."
            else:
                del doc["gate_reason"]
            text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
        return text


def parse(text: str | bytes) -> TrainResult:
    """A result document (the file, or the last stdout line); raises ValueError if invalid."""
    return TrainResult.model_validate_json(text)


def last_line(stdout: str) -> str:
    """The last non-empty line of a trainer's stdout: where the result JSON is."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise ValueError("the trainer printed nothing on stdout")
    return lines[-1]
