"""Canary measurements from Prometheus (PromQL over the HTTP API).

The queries read the built-in router's per-revision metrics; the label names are the router's
(see docs/router.md). Each query is an instant query over ``[window]``.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from decimal import Decimal

from seaway.planning.analysis import Measurement
from seaway.planning.experiment import VariantFigures

REQUESTS = "seaway_router_requests_total"
LATENCY = "seaway_router_request_duration_seconds_bucket"
EXPERIMENT = "seaway_router_experiment"


@dataclass(frozen=True)
class Prometheus:
    address: str
    timeout: float = 5.0

    def query(self, promql: str) -> float | None:
        """The single value of an instant query; None when the result is empty or NaN."""
        url = f"{self.address.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode(
            {"query": promql}
        )
        with urllib.request.urlopen(url, timeout=self.timeout) as response:
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise ValueError(body.get("error", "query failed"))
        result = body["data"]["result"]
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value

    def measure(
        self, *, namespace: str, name: str, canary: int, stable: int | None, window: str
    ) -> Measurement:
        try:
            canary_values = self._revision(namespace, name, canary, window)
            stable_values = (
                self._revision(namespace, name, stable, window)
                if stable is not None
                else (0, 0, None)
            )
        except (OSError, urllib.error.URLError, ValueError, KeyError) as exc:
            return Measurement(problem=f"{self.address}: {exc}")
        requests, errors, p99 = canary_values
        stable_requests, stable_errors, stable_p99 = stable_values
        return Measurement(
            requests=requests,
            errors=errors,
            latency_p99_ms=p99,
            stable_requests=stable_requests,
            stable_errors=stable_errors,
            stable_latency_p99_ms=stable_p99,
        )

    def experiment(self, *, name: str, revisions: list[int]) -> list[VariantFigures] | None:
        """The router's per-variant experiment figures; None when Prometheus cannot answer."""
        figures = []
        try:
            for revision in revisions:
                labels = f'model_deployment="{name}",revision="{revision}"'
                requests = self.query(f"sum({EXPERIMENT}_requests{{{labels}}})")
                rewards = self.query(f"sum({EXPERIMENT}_reward_sum{{{labels}}})")
                best = self.query(f"max({EXPERIMENT}_best_probability{{{labels}}})")
                figures.append(
                    VariantFigures(
                        revision=revision,
                        requests=round(requests or 0),
                        rewards=Decimal(str(rewards or 0)),
                        best_probability=Decimal(str(best)) if best is not None else None,
                    )
                )
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            return None
        return figures

    def _revision(
        self, namespace: str, name: str, revision: int, window: str
    ) -> tuple[int, int, float | None]:
        labels = f'model_deployment="{name}",revision="{revision}"'
        requests = self.query(f"sum(increase({REQUESTS}{{{labels}}}[{window}]))") or 0.0
        errors = self.query(f'sum(increase({REQUESTS}{{{labels},code=~"5.."}}[{window}]))') or 0.0
        p99 = self.query(
            f"histogram_quantile(0.99, sum by (le) (rate({LATENCY}{{{labels}}}[{window}])))"
        )
        return round(requests), round(errors), p99 * 1000 if p99 is not None else None
