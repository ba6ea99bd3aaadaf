"""What the model report asks Prometheus: per-revision totals, chart series and drift.

Instant queries are evaluated at one given moment and range queries end there, so the page's
figures are reproducible (the page prints the moment and the queries). Requests go through
:class:`seaway.egress.Client` like the operator's, and failures are described in our words.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from datetime import datetime, timedelta

from seaway import egress
from seaway.report import model, queries


def api_url(address: str, endpoint: str, params: dict[str, str]) -> str:
    """``<address>/api/v1/<endpoint>?...``; the address may carry a path prefix, nothing else."""
    parts = urllib.parse.urlsplit(address)
    if parts.query or parts.fragment or "#" in address or "?" in address:
        raise egress.NotAllowed("address must not carry a query or fragment")
    path = parts.path.rstrip("/") + f"/api/v1/{endpoint}"
    return urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc, path, urllib.parse.urlencode(params), "")
    )


def _value(text: object) -> float:
    try:
        return float(str(text))
    except ValueError:
        return math.nan


class Reader:
    """Instant and range queries against one Prometheus."""

    def __init__(self, client: egress.Client, address: str) -> None:
        self.client = client
        self.address = address
        self.where = egress.describe(address)

    def _data(self, endpoint: str, params: dict[str, str]) -> list[dict[str, object]]:
        _, raw = self.client.request(api_url(self.address, endpoint, params))
        try:
            body = json.loads(raw)
            if body.get("status") != "success":
                raise egress.EgressError(f"{self.where} refused a query")
            result = body["data"]["result"]
            if not isinstance(result, list):
                raise TypeError
            return result
        except (ValueError, KeyError, TypeError, AttributeError):
            raise egress.EgressError(f"{self.where} did not answer like Prometheus") from None

    def instant(self, promql: str, at: datetime) -> tuple[model.Sample, ...]:
        try:
            return tuple(
                model.Sample(dict(r["metric"]), _value(r["value"][1]))  # type: ignore[index, call-overload]
                for r in self._data("query", {"query": promql, "time": f"{at.timestamp():.3f}"})
            )
        except (KeyError, TypeError, IndexError):
            raise egress.EgressError(f"{self.where} did not answer like Prometheus") from None

    def series(
        self, promql: str, start: datetime, end: datetime, step_seconds: int
    ) -> tuple[model.Curve, ...]:
        params = {
            "query": promql,
            "start": f"{start.timestamp():.3f}",
            "end": f"{end.timestamp():.3f}",
            "step": str(step_seconds),
        }
        try:
            return tuple(
                model.Curve(
                    dict(r["metric"]),  # type: ignore[call-overload]
                    tuple((float(t), _value(v)) for t, v in r["values"]),  # type: ignore[attr-defined]
                )
                for r in self._data("query_range", params)
            )
        except (KeyError, TypeError, IndexError, ValueError):
            raise egress.EgressError(f"{self.where} did not answer like Prometheus") from None


def gather(
    reader: Reader,
    *,
    name: str,
    window_seconds: int,
    at: datetime,
    matchers: tuple[tuple[str, str], ...] = (),
) -> model.Answers:
    """Everything the report shows from Prometheus; raises :class:`egress.EgressError`.

    The router's series come first (what canary analysis reads); a ModelDeployment whose
    traffic does not pass the built-in router (Gateway API) is measured by its servers.
    """
    source = queries.ROUTER
    instant: dict[str, tuple[model.Sample, ...]] = {}
    for candidate in queries.SOURCES:
        window = queries.window_queries(candidate, name, window_seconds, matchers)
        requests = reader.instant(window["requests"], at)
        if requests:
            source = candidate
            instant["requests"] = requests
            break
    window = queries.window_queries(source, name, window_seconds, matchers)
    for key, promql in window.items():
        if key not in instant:
            instant[key] = reader.instant(promql, at)
    drift = queries.drift_queries(name, window_seconds, matchers)
    for key, promql in drift.items():
        instant[key] = reader.instant(promql, at)
    step = queries.range_step(window_seconds)
    start = at - timedelta(seconds=window_seconds)
    ranges: dict[str, tuple[model.Curve, ...]] = {}
    charts = queries.range_queries(source, name, step, matchers)
    if instant["requests"]:
        for key, promql in charts.items():
            ranges[key] = reader.series(promql, start, at, step)
    listed = [
        *((f"window {key}", q) for key, q in window.items()),
        *((f"drift {key}", q) for key, q in drift.items()),
        *((f"chart {key} (step {step}s)", q) for key, q in charts.items()),
    ]
    return model.Answers(
        source_name=source.name,
        measured_at=at,
        start=start,
        step_seconds=step,
        instant=instant,
        ranges=ranges,
        queries=tuple(listed),
    )
