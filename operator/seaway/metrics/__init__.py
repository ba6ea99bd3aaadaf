"""Metrics providers for canary analysis: one narrow interface, Prometheus first.

A provider answers one question: what did the canary (and the stable revision) do over the last
interval? Another backend (Datadog, CloudWatch, ...) is one more class with ``measure``.
"""

from __future__ import annotations

from typing import Protocol

from seaway.planning.analysis import Measurement


class Provider(Protocol):
    def measure(
        self, *, namespace: str, name: str, canary: int, stable: int | None, window: str
    ) -> Measurement: ...
