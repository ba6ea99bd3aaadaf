"""Judging a canary by its metrics: pure functions over one measurement and the past runs.

The handler asks :func:`due` whether a measurement is needed now, fetches it from the metrics
provider (Prometheus first) and hands it to the rollout pass, which calls :func:`record`. A
measurement with too few requests, or none at all, is *no data*: the rollout holds (it never
promotes on missing data) and aborts after ``noDataLimit`` such intervals in a row.

Times are kept to the microsecond: an interval counted from a start cut to the whole second
would end up to a second early, and measure traffic from before the canary had any.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from seaway.api.modeldeployment import Analysis, AnalysisStatus
from seaway.planning.durations import format_precise, parse_duration, parse_time

Result = Literal["Pass", "Fail", "NoData"]


@dataclass(frozen=True)
class Measurement:
    """What the provider saw over the last interval, for the canary (and the stable revision)."""

    requests: int = 0
    errors: int = 0
    latency_p99_ms: float | None = None
    stable_requests: int = 0
    stable_errors: int = 0
    stable_latency_p99_ms: float | None = None
    #: The provider could not answer (unreachable, bad query): counts as no data.
    problem: str | None = None

    @property
    def error_ratio(self) -> Decimal | None:
        return Decimal(self.errors) / Decimal(self.requests) if self.requests else None

    @property
    def stable_error_ratio(self) -> Decimal | None:
        if not self.stable_requests:
            return None
        return Decimal(self.stable_errors) / Decimal(self.stable_requests)


def _due_at(analysis: Analysis, state: AnalysisStatus) -> datetime:
    last = state.last_run_at or state.started_at
    return parse_time(last) + parse_duration(analysis.interval)


def due(analysis: Analysis, state: AnalysisStatus | None, canary: int, now: datetime) -> bool:
    """Is a measurement of ``canary`` needed now? (One interval after it got traffic, then
    every interval; the rollout pass starts the clock when the canary first has weight.)"""
    if state is None or state.revision != canary:
        return False
    return now >= _due_at(analysis, state)


def seconds_until_due(analysis: Analysis, state: AnalysisStatus, now: datetime) -> float:
    return max((_due_at(analysis, state) - now).total_seconds(), 0.0)


def judge(analysis: Analysis, m: Measurement) -> tuple[Result, str]:
    """One interval's verdict and a message with the measured values and the thresholds."""
    if m.problem is not None:
        return "NoData", f"metrics unavailable: {m.problem}"
    if m.requests < analysis.min_requests:
        return "NoData", f"{m.requests} requests < minRequests {analysis.min_requests}"
    relative = analysis.comparison == "Relative"
    failures: list[str] = []
    ratio = m.error_ratio or Decimal(0)
    if analysis.max_error_ratio is not None:
        limit = Decimal(analysis.max_error_ratio)
        if relative:
            baseline = m.stable_error_ratio or Decimal(0)
            if ratio - baseline > limit:
                failures.append(
                    f"error ratio {_fmt(ratio)} exceeds stable's {_fmt(baseline)} by more than"
                    f" maxErrorRatio {analysis.max_error_ratio}"
                )
        elif ratio > limit:
            failures.append(f"error ratio {_fmt(ratio)} > maxErrorRatio {analysis.max_error_ratio}")
    if analysis.max_latency_p99_ms is not None and m.latency_p99_ms is not None:
        p99 = m.latency_p99_ms
        if relative:
            baseline_ms = m.stable_latency_p99_ms or 0.0
            if p99 - baseline_ms > analysis.max_latency_p99_ms:
                failures.append(
                    f"p99 {p99:.0f}ms exceeds stable's {baseline_ms:.0f}ms by more than"
                    f" maxLatencyP99Ms {analysis.max_latency_p99_ms}"
                )
        elif p99 > analysis.max_latency_p99_ms:
            failures.append(f"p99 {p99:.0f}ms > maxLatencyP99Ms {analysis.max_latency_p99_ms}")
    values = f"{m.requests} requests, error ratio {_fmt(ratio)}" + (
        f", p99 {m.latency_p99_ms:.0f}ms" if m.latency_p99_ms is not None else ""
    )
    if failures:
        return "Fail", "; ".join(failures) + f" ({values})"
    return "Pass", values


def record(
    analysis: Analysis,
    state: AnalysisStatus | None,
    canary: int,
    m: Measurement,
    now: datetime,
) -> AnalysisStatus:
    """The analysis status after one more interval."""
    if state is None or state.revision != canary:
        state = AnalysisStatus(revision=canary, started_at=format_precise(now))
    else:
        state = state.model_copy()
    result, message = judge(analysis, m)
    state.runs += 1
    state.last_run_at = format_precise(now)
    state.last_result = result
    state.last_requests = m.requests
    ratio = m.error_ratio
    state.last_error_ratio = _fmt(ratio) if ratio is not None else None
    state.last_latency_p99_ms = round(m.latency_p99_ms) if m.latency_p99_ms is not None else None
    state.message = message
    if result == "Fail":
        state.failures += 1
    state.no_data_in_a_row = state.no_data_in_a_row + 1 if result == "NoData" else 0
    return state


def _fmt(value: Decimal) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".") if value else "0"
