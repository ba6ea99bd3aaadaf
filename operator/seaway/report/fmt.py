"""How figures read on the page: one function per kind of figure, used everywhere.

A reader compares numbers across sections (the share in a table, the same share in a sentence),
so each kind is written one way only. ``-`` stands for "no figure".
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal

from seaway.planning.durations import parse_time

NONE = "-"
#: PSI below this is read as no shift, above :data:`PSI_SIGNIFICANT` as a significant one.
PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.25


def _missing(value: float | Decimal | None) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def count(value: float | None) -> str:
    """A number of requests or errors: whole, with thousands separated (``12,345``)."""
    if value is None or _missing(value):
        return NONE
    return f"{round(value):,}"


def percent(value: float | None, digits: int = 1) -> str:
    """A share (0-1) as percent: ``12.5%``."""
    if value is None or _missing(value):
        return NONE
    return f"{value * 100:.{digits}f}%"


def error_ratio(value: float | None) -> str:
    """An error ratio (0-1) as percent with two decimals: small ratios matter."""
    return percent(value, 2)


def latency(seconds: float | None) -> str:
    """Seconds as milliseconds: ``3.2 ms``; from 10 ms on, whole milliseconds."""
    if seconds is None or _missing(seconds):
        return NONE
    ms = seconds * 1000
    return f"{ms:.1f} ms" if ms < 10 else f"{ms:,.0f} ms"


def psi(value: float | None) -> str:
    if value is None or _missing(value):
        return NONE
    return f"{value:.3f}"


def psi_level(value: float | None) -> str:
    """``none``, ``moderate`` or ``significant`` (the usual reading of PSI), ``unknown``."""
    if value is None or _missing(value):
        return "unknown"
    if value >= PSI_SIGNIFICANT:
        return "significant"
    return "moderate" if value >= PSI_MODERATE else "none"


def score(value: Decimal | None) -> str:
    if value is None:
        return NONE
    return f"{value:.4f}".rstrip("0").rstrip(".")


def signed(value: Decimal | None) -> str:
    if value is None:
        return NONE
    text = score(abs(value))
    return f"+{text}" if value > 0 else (f"-{text}" if value < 0 else "0")


def when(text: str | None) -> str:
    """An RFC 3339 time as ``2026-11-20 14:03:05 UTC``; unparsable text is shown as given."""
    if not text:
        return NONE
    try:
        moment = parse_time(text)
    except ValueError:
        return text
    return moment_text(moment)


def moment_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: int) -> str:
    """``7d``, ``36h``, ``90m``, ``45s``: the largest unit that divides it."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
