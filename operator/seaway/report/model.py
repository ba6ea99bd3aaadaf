"""The report as plain data: what the page says, before any HTML.

Figures are kept as measured (floats, Decimals, RFC 3339 strings); formatting for people happens
once, in :mod:`seaway.report.render`, so the JSON summary carries the same numbers unrounded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True)
class Revision:
    number: int
    fate: str
    created_at: str
    created_by: str
    reason: str | None = None
    message: str | None = None
    ready_at: str | None = None
    finished_at: str | None = None
    model_uri: str | None = None
    digest: str | None = None
    image: str | None = None
    #: Live weight in percent from ``status.weights`` (None: no weight in force).
    weight: int | None = None


@dataclass(frozen=True)
class Traffic:
    """One revision over the window, from Prometheus."""

    revision: int
    requests: float
    errors: float
    p50_seconds: float | None = None
    p99_seconds: float | None = None
    #: This revision's part of all requests over the window (0-1); None without requests.
    share: float | None = None

    @property
    def error_ratio(self) -> float | None:
        return self.errors / self.requests if self.requests > 0 else None


@dataclass(frozen=True)
class Series:
    label: str
    #: (unix seconds, value); a NaN value is a gap.
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str
    series: tuple[Series, ...]
    start: float
    end: float
    #: The y axis starts at 0 and reaches at least this (e.g. 100 for percent).
    y_floor_max: float = 0.0


@dataclass(frozen=True)
class Drift:
    """PSI per revision and feature (now and the worst over the window)."""

    revisions: tuple[int, ...]
    features: tuple[str, ...]
    now: dict[tuple[int, str], float]
    peak: dict[tuple[int, str], float]
    prediction_now: dict[int, float]
    prediction_peak: dict[int, float]
    rows: dict[int, float]


@dataclass(frozen=True)
class Variant:
    revision: int
    requests: int
    rewards: Decimal
    weight: int
    best_probability: Decimal | None


@dataclass(frozen=True)
class Experiment:
    variants: tuple[Variant, ...]
    best_revision: int | None
    confidence: Decimal | None
    measured_at: str | None
    winner: int | None
    concluded_at: str | None
    #: The spec's confidence to promote the winner (None: no promoteWinner).
    promote_at: Decimal | None = None


@dataclass(frozen=True)
class Run:
    number: int
    started_at: str
    result: str
    decision: str
    finished_at: str | None = None
    reason: str | None = None
    candidate_score: Decimal | None = None
    incumbent_score: Decimal | None = None
    decision_reason: str | None = None
    decided_by: str | None = None
    candidate_uri: str | None = None

    @property
    def improvement(self) -> Decimal | None:
        if self.candidate_score is None or self.incumbent_score is None:
            return None
        return self.candidate_score - self.incumbent_score


@dataclass(frozen=True)
class RetrainJob:
    name: str
    schedule: str | None
    promotion: str
    metric: str | None
    min_score: str | None
    min_improvement: str | None
    runs: tuple[Run, ...]


@dataclass(frozen=True)
class Event:
    time: str
    type: str
    reason: str
    message: str
    count: int = 1


@dataclass(frozen=True)
class Report:
    namespace: str
    name: str
    generated_at: datetime
    window_seconds: int
    window_text: str
    stable: int | None
    canary: int | None
    ready: str | None
    ready_reason: str | None
    message: str | None
    revisions: tuple[Revision, ...]
    retrain_jobs: tuple[RetrainJob, ...] = ()
    events: tuple[Event, ...] = ()
    experiment: Experiment | None = None
    #: None when Prometheus was not asked or did not answer (see ``missing``).
    traffic: tuple[Traffic, ...] | None = None
    source: str | None = None
    charts: tuple[Chart, ...] = ()
    drift: Drift | None = None
    #: What the page could not show, and why: one sentence each.
    missing: tuple[str, ...] = ()
    #: Caveats about figures that are shown.
    notes: tuple[str, ...] = ()
    #: (what, PromQL) of every figure from Prometheus, and when they were evaluated.
    queries: tuple[tuple[str, str], ...] = ()
    measured_at: datetime | None = None
    prometheus: str | None = None
    highlights: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Sample:
    """One series of a Prometheus instant vector."""

    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Curve:
    """One series of a Prometheus range query."""

    labels: dict[str, str]
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Answers:
    """What Prometheus answered, by query key (see :mod:`seaway.report.queries`)."""

    source_name: str
    measured_at: datetime
    start: datetime
    step_seconds: int
    instant: dict[str, tuple[Sample, ...]]
    ranges: dict[str, tuple[Curve, ...]]
    queries: tuple[tuple[str, str], ...]
    #: Sentences about parts Prometheus could not give (e.g. no drift series).
    missing: tuple[str, ...] = ()
