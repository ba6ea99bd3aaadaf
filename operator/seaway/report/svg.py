"""Charts as inline SVG, written by hand.

Why not a plotting library: the page must be one file that opens anywhere (a mail client, a
wiki, an archive) with no script and no external asset, and the operator image should not carry
a plotting stack for four kinds of chart. Inline SVG is text in the page: it scales, prints, and
a test can read the figures back. Every string that reaches the SVG goes through
:func:`html.escape`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import UTC, datetime

from seaway.planning.durations import parse_time
from seaway.report import model

#: Colour-blind-safe colours (Okabe-Ito), one per revision number.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
FATE_COLOURS = {
    "Stable": "#009E73",
    "Canary": "#E69F00",
    "Pending": "#56B4E9",
    "Superseded": "#8a8a8a",
    "Retired": "#b5b5b5",
    "Failed": "#D55E00",
    "RolledBack": "#CC79A7",
}
WIDTH = 680
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def colour(label: str) -> str:
    """``r3`` -> the third colour; the same revision has the same colour in every chart."""
    digits = label.lstrip("r")
    if digits.isdigit():
        return PALETTE[(int(digits) - 1) % len(PALETTE)]
    return PALETTE[sum(map(ord, label)) % len(PALETTE)]


def nice_max(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above ``value`` (an axis's top)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = float(10 ** math.floor(math.log10(value)))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10 * power


def number(value: float) -> str:
    """An axis label: no trailing zeros."""
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def time_label(seconds: float, span: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    if span <= 2 * 86400:
        return moment.strftime("%H:%M" if span > 600 else "%H:%M:%S")
    return moment.strftime("%m-%d %H:%M")


def _frame(height: int, title: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}"'
        f' width="{WIDTH}" height="{height}" role="img" aria-label="{esc(title)}" {FONT}>'
        f"<title>{esc(title)}</title>"
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>'
        f'<text x="8" y="16" font-size="13" font-weight="bold">{esc(title)}</text>'
        + "".join(body)
        + "</svg>"
    )


def line_chart(chart: model.Chart, height: int = 220) -> str:
    """Lines per series over [start, end]; a NaN breaks the line; y starts at 0."""
    left, right, top, bottom = 56, 90, 28, 30
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    title = f"{chart.title} ({chart.unit})"
    values = [v for s in chart.series for _, v in s.points if math.isfinite(v)]
    span = max(chart.end - chart.start, 1.0)
    body: list[str] = []
    if not values:
        body.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" text-anchor="middle"'
            ' fill="#666">no data over the window</text>'
        )
        return _frame(height, title, body)
    y_max = nice_max(max(*values, chart.y_floor_max))

    def x(t: float) -> float:
        return left + (t - chart.start) / span * plot_w

    def y(v: float) -> float:
        return top + plot_h - v / y_max * plot_h

    for i in range(5):
        v = y_max * i / 4
        body.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(v):.1f}" y2="{y(v):.1f}"'
            ' stroke="#e3e3e3"/>'
            f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{esc(number(v))}</text>'
        )
    for i in range(5):
        t = chart.start + span * i / 4
        anchor = "start" if i == 0 else ("end" if i == 4 else "middle")
        body.append(
            f'<text x="{x(t):.1f}" y="{height - 10}" text-anchor="{anchor}">'
            f"{esc(time_label(t, span))}</text>"
        )
    body.append(
        f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}" stroke="#888"/>'
        f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}"'
        ' stroke="#888"/>'
    )
    for n, series in enumerate(chart.series):
        stroke = colour(series.label)
        for segment in _segments(series.points):
            if len(segment) == 1:
                t, v = segment[0]
                body.append(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2" fill="{stroke}"/>')
            else:
                points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in segment)
                body.append(
                    f'<polyline points="{points}" fill="none" stroke="{stroke}" stroke-width="2"/>'
                )
        ly = top + 10 + n * 16
        body.append(
            f'<rect x="{left + plot_w + 12}" y="{ly - 8}" width="10" height="10" fill="{stroke}"/>'
            f'<text x="{left + plot_w + 27}" y="{ly + 1}">{esc(series.label)}</text>'
        )
    return _frame(height, title, body)


def _segments(
    points: Sequence[tuple[float, float]],
) -> list[list[tuple[float, float]]]:
    out: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    for t, v in points:
        if math.isfinite(v):
            current.append((t, v))
        elif current:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def timeline(revisions: Sequence[model.Revision], end: float) -> str:
    """One lane per revision from its creation to its end (or now), coloured by its fate."""

    def seconds(text: str | None) -> float | None:
        if not text:
            return None
        try:
            return parse_time(text).timestamp()
        except ValueError:
            return None

    lanes = [(r, seconds(r.created_at), seconds(r.finished_at)) for r in revisions]
    starts = [s for _, s, _ in lanes if s is not None]
    lane_h, top, left, right = 22, 28, 56, 120
    height = top + lane_h * max(len(lanes), 1) + 30
    title = "Revisions over time"
    if not starts:
        return _frame(height, title, ['<text x="56" y="50" fill="#666">no revisions</text>'])
    start = min(starts)
    span = max(end - start, 1.0)
    plot_w = WIDTH - left - right

    def x(t: float) -> float:
        return left + (min(max(t, start), end) - start) / span * plot_w

    body = []
    for i, (r, created, finished) in enumerate(lanes):
        ly = top + i * lane_h
        body.append(f'<text x="{left - 6}" y="{ly + 14}" text-anchor="end">r{r.number}</text>')
        if created is None:
            continue
        stop = finished if finished is not None else end
        fill = FATE_COLOURS.get(r.fate, "#8a8a8a")
        bar_w = max(x(stop) - x(created), 2.0)
        body.append(
            f'<rect x="{x(created):.1f}" y="{ly + 3}" width="{bar_w:.1f}" height="{lane_h - 6}"'
            f' fill="{fill}" rx="3"><title>{esc(f"r{r.number} {r.fate}")}</title></rect>'
            f'<text x="{left + plot_w + 8}" y="{ly + 14}">{esc(r.fate)}</text>'
        )
    base = top + lane_h * len(lanes)
    for i in range(5):
        t = start + span * i / 4
        anchor = "start" if i == 0 else ("end" if i == 4 else "middle")
        body.append(
            f'<text x="{x(t):.1f}" y="{base + 18}" text-anchor="{anchor}">'
            f"{esc(time_label(t, span))}</text>"
        )
    return _frame(height, title, body)


def bar_chart(
    title: str,
    groups: Sequence[tuple[str, Sequence[tuple[str, float | None]]]],
    thresholds: Sequence[tuple[str, float]] = (),
) -> str:
    """Horizontal bars: one group per row label, one bar per (series label, value).

    Used for scores (candidate vs incumbent per run) and PSI per feature; ``thresholds`` draw
    labelled vertical lines (e.g. PSI 0.1 and 0.25).
    """
    series = list(dict.fromkeys(label for _, bars in groups for label, _ in bars))
    bar_h, gap, top, left, right = 10, 8, 44, 150, 40
    group_h = bar_h * max(len(series), 1) + gap
    height = top + group_h * max(len(groups), 1) + 12
    values = [v for _, bars in groups for _, v in bars if v is not None and math.isfinite(v)]
    body: list[str] = []
    if not values:
        body.append('<text x="150" y="50" fill="#666">no figures</text>')
        return _frame(height, title, body)
    x_max = nice_max(max([*values, *(v for _, v in thresholds)]))
    plot_w = WIDTH - left - right

    def x(v: float) -> float:
        return left + max(v, 0.0) / x_max * plot_w

    for n, label in enumerate(series):
        lx = left + n * 150
        body.append(
            f'<rect x="{lx}" y="24" width="10" height="10" fill="{colour(label)}"/>'
            f'<text x="{lx + 14}" y="33">{esc(label)}</text>'
        )
    for g, (row, bars) in enumerate(groups):
        gy = top + g * group_h
        body.append(
            f'<text x="{left - 6}" y="{gy + group_h / 2:.1f}" text-anchor="end">'
            f"{esc(_clip(row, 24))}</text>"
        )
        for label, value in bars:
            i = series.index(label)
            if value is None or not math.isfinite(value):
                continue
            by = gy + i * bar_h
            body.append(
                f'<rect x="{left}" y="{by}" width="{max(x(value) - left, 1.0):.1f}"'
                f' height="{bar_h - 1}" fill="{colour(label)}">'
                f"<title>{esc(f'{row} {label}: {value:.4g}')}</title></rect>"
            )
    for label, value in thresholds:
        body.append(
            f'<line x1="{x(value):.1f}" x2="{x(value):.1f}" y1="{top - 4}" y2="{height - 10}"'
            ' stroke="#444" stroke-dasharray="4 3"/>'
            f'<text x="{x(value) + 3:.1f}" y="{height - 2}">{esc(label)}</text>'
        )
    body.append(
        f'<text x="{left + plot_w}" y="{top - 4}" text-anchor="end">{esc(number(x_max))}</text>'
        f'<text x="{left}" y="{top - 4}">0</text>'
    )
    return _frame(height, title, body)


def _clip(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "\u2026"
