"""The PromQL behind every figure of the report, built here so the page can show it.

Two sources of traffic figures share one shape: the built-in router's series (what canary
analysis reads; only ``traffic="live"`` requests, mirrored copies left out) and, for a
ModelDeployment without the built-in router, the model servers' own series. The router's and the
servers' series carry no namespace label: a ModelDeployment of the same name in another
namespace is counted with this one unless the caller adds a matcher (a label the scrape
configuration sets, e.g. ``namespace="ml"``).

Each instant query is evaluated at one moment (``measured_at``) that the report prints, so
anyone can run the same query at the same time and get the same figures.
"""

from __future__ import annotations

from dataclasses import dataclass

DRIFT = "seaway_feature_drift_psi"
PREDICTION_DRIFT = "seaway_prediction_drift_psi"
DRIFT_ROWS = "seaway_drift_window_rows"
#: Points of a chart over the window; the step never goes below :data:`MIN_STEP_SECONDS`.
CHART_POINTS = 100
MIN_STEP_SECONDS = 5
#: A rate over fewer seconds than this holds too few scrapes at common scrape intervals.
MIN_RATE_RANGE_SECONDS = 60


@dataclass(frozen=True)
class Source:
    """Where request counts and latencies come from."""

    name: str
    requests: str
    latency_buckets: str
    #: The label that names the ModelDeployment.
    md_label: str
    #: Matchers every query of this source adds.
    fixed: tuple[tuple[str, str], ...] = ()

    @property
    def title(self) -> str:
        return "the built-in router" if self.name == "router" else "the model servers"


ROUTER = Source(
    "router",
    "seaway_router_requests_total",
    "seaway_router_request_duration_seconds_bucket",
    "model_deployment",
    (("traffic", "live"),),
)
SERVER = Source(
    "server", "seaway_requests_total", "seaway_request_duration_seconds_bucket", "model"
)
SOURCES = (ROUTER, SERVER)


def quote(value: str) -> str:
    """A PromQL string literal: backslashes, quotes and newlines escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def selector(label: str, name: str, matchers: tuple[tuple[str, str], ...] = ()) -> str:
    """``label="name",k="v",...`` (without braces) for one ModelDeployment."""
    pairs = [(label, name), *matchers]
    return ",".join(f"{key}={quote(value)}" for key, value in pairs)


def seconds(value: int) -> str:
    return f"{value}s"


def window_queries(
    source: Source, name: str, window_seconds: int, matchers: tuple[tuple[str, str], ...] = ()
) -> dict[str, str]:
    """Per-revision totals over the window: requests, server errors (5xx), p50 and p99."""
    sel = selector(source.md_label, name, (*source.fixed, *matchers))
    w = seconds(window_seconds)
    return {
        "requests": f"sum by (revision) (increase({source.requests}{{{sel}}}[{w}]))",
        "errors": f'sum by (revision) (increase({source.requests}{{{sel},code=~"5.."}}[{w}]))',
        "p50": f"histogram_quantile(0.5, sum by (revision, le)"
        f" (rate({source.latency_buckets}{{{sel}}}[{w}])))",
        "p99": f"histogram_quantile(0.99, sum by (revision, le)"
        f" (rate({source.latency_buckets}{{{sel}}}[{w}])))",
    }


def range_step(window_seconds: int) -> int:
    """Seconds between two points of a chart: about :data:`CHART_POINTS` over the window."""
    return max(MIN_STEP_SECONDS, window_seconds // CHART_POINTS)


def range_queries(
    source: Source, name: str, step_seconds: int, matchers: tuple[tuple[str, str], ...] = ()
) -> dict[str, str]:
    """Per-revision series for the charts: request rate, 5xx rate and p99 latency."""
    sel = selector(source.md_label, name, (*source.fixed, *matchers))
    r = seconds(max(step_seconds, MIN_RATE_RANGE_SECONDS))
    return {
        "rate": f"sum by (revision) (rate({source.requests}{{{sel}}}[{r}]))",
        "error_rate": f'sum by (revision) (rate({source.requests}{{{sel},code=~"5.."}}[{r}]))',
        "p99": f"histogram_quantile(0.99, sum by (revision, le)"
        f" (rate({source.latency_buckets}{{{sel}}}[{r}])))",
    }


def drift_queries(
    name: str, window_seconds: int, matchers: tuple[tuple[str, str], ...] = ()
) -> dict[str, str]:
    """PSI per revision and feature: now and the worst over the window (worst pod of each)."""
    sel = selector("model", name, matchers)
    w = seconds(window_seconds)
    return {
        "feature_now": f"max by (revision, feature) ({DRIFT}{{{sel}}})",
        "feature_peak": f"max by (revision, feature) (max_over_time({DRIFT}{{{sel}}}[{w}]))",
        "prediction_now": f"max by (revision) ({PREDICTION_DRIFT}{{{sel}}})",
        "prediction_peak": f"max by (revision) (max_over_time({PREDICTION_DRIFT}{{{sel}}}[{w}]))",
        "rows": f"sum by (revision) ({DRIFT_ROWS}{{{sel}}})",
    }
