"""Canary measurements from Prometheus (PromQL over the HTTP API).

The queries read the built-in router's per-revision metrics; the label names are the router's
(see docs/router.md). Each query is an instant query over ``[window]``.

The address comes from a spec, so requests go through :class:`seaway.egress.Client` (allowed
hosts only, no redirects), and a failure is described in our words, never Prometheus's: its
``error`` text or an internal page's body would otherwise reach ``status.analysis.message``.
"""

from __future__ import annotations

import json
import logging
import math
import urllib.parse
from dataclasses import dataclass
from decimal import Decimal

from seaway import egress
from seaway.planning.analysis import Measurement
from seaway.planning.experiment import VariantFigures

REQUESTS = "seaway_router_requests_total"
LATENCY = "seaway_router_request_duration_seconds_bucket"
EXPERIMENT = "seaway_router_experiment"

logger = logging.getLogger(__name__)


def query_url(address: str, promql: str) -> str:
    """``<address>/api/v1/query?query=...``; the address may have a path prefix, nothing else.

    Built from parts, never by concatenation: a ``#`` or ``?`` in the address would otherwise
    turn the query path into a fragment or a parameter and send the request to the address as
    written.
    """
    parts = urllib.parse.urlsplit(address)
    if parts.query or parts.fragment or "#" in address or "?" in address:
        raise egress.NotAllowed("address must not carry a query or fragment")
    path = parts.path.rstrip("/") + "/api/v1/query"
    query = urllib.parse.urlencode({"query": promql})
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, query, ""))


@dataclass(frozen=True)
class Prometheus:
    address: str
    #: The operator's client for Prometheus hosts (its allowlist, timeout).
    client: egress.Client

    def query(self, promql: str) -> float | None:
        """The single value of an instant query; None when the result is empty or NaN.

        Raises :class:`seaway.egress.EgressError` with a message safe to show users.
        """
        where = egress.describe(self.address)
        _, raw = self.client.request(query_url(self.address, promql))
        try:
            body = json.loads(raw)
            if body.get("status") != "success":
                logger.info("Prometheus at %s refused a query: %.200s", where, body.get("error"))
                raise egress.EgressError(f"{where} refused the query")
            result = body["data"]["result"]
            if not result:
                return None
            value = float(result[0]["value"][1])
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            raise egress.EgressError(f"{where} did not answer like Prometheus") from None
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
        except egress.EgressError as exc:
            return Measurement(problem=f"Prometheus: {exc}")
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
        except egress.EgressError:
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
