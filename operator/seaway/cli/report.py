"""``seaway report``: the model report, one HTML file for people who do not use kubectl.

This is the I/O edge of :mod:`seaway.report`: it reads the ModelDeployment, the RetrainJobs
that train for it and the Events about both from the API server, asks Prometheus (when given)
through :mod:`seaway.metrics.report`, and writes what the pure layer renders. Whatever it cannot
read becomes a sentence on the page and on the terminal; only a missing ModelDeployment or a
broken kubeconfig stops it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from seaway.cli.rollout import _common, _connect, _read


def _window(text: str) -> int:
    from seaway.planning.durations import parse_duration

    try:
        seconds = int(parse_duration(text).total_seconds())
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a duration like 30m, 24h or 7d", param_hint="--window"
        ) from None
    if seconds < 60:
        raise click.BadParameter("the window must be at least 1m", param_hint="--window")
    return seconds


def _moment(text: str) -> datetime:
    from seaway.planning.durations import parse_time

    try:
        if text.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(text), UTC)
        return parse_time(text)
    except (ValueError, OverflowError, OSError):
        raise click.BadParameter(
            f"{text!r} is neither RFC 3339 (2026-11-20T09:00:00Z) nor Unix seconds",
            param_hint="--at",
        ) from None


def _matchers(items: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise click.BadParameter(
                f"{item!r}: use LABEL=VALUE, e.g. namespace=ml", param_hint="--match"
            )
        out.append((key, value))
    return tuple(out)


def _list(kube: Any, kind: str, ns: str, missing: list[str], what: str) -> list[dict[str, Any]]:
    from seaway.k8s.kube import KubeError

    try:
        found: list[dict[str, Any]] = kube.list(kind, ns)
    except KubeError as exc:
        missing.append(f"Cannot list {kind}s in {ns} ({exc.message}): {what} omitted.")
        return []
    return found


@click.command()
@click.argument("name")
@click.option(
    "--window", default="7d", show_default=True, help="How far back traffic and drift go."
)
@click.option(
    "--prometheus",
    "prometheus_url",
    envvar="SEAWAY_PROMETHEUS_URL",
    metavar="URL",
    help="Prometheus that scrapes the router and model servers [SEAWAY_PROMETHEUS_URL]."
    " Without it, the report holds status and history only.",
)
@click.option(
    "--match",
    "match",
    multiple=True,
    metavar="LABEL=VALUE",
    help="A label every Prometheus query must also match (repeatable), e.g. namespace=ml when"
    " the scrape configuration sets it: the router's own series carry no namespace.",
)
@click.option(
    "--at",
    "at_text",
    metavar="TIME",
    help="The moment the window ends, RFC 3339 (2026-11-20T09:00:00Z) or Unix seconds;"
    " default: now. The same --at gives the same figures.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    help="Default: <name>-report.html.",
)
@click.option(
    "--summary-json",
    type=click.Path(dir_okay=False, writable=True),
    help="Also write the JSON summary (the shape a webhook takes, docs/report.md).",
)
@_common
def report(
    name: str,
    window: str,
    prometheus_url: str | None,
    match: tuple[str, ...],
    at_text: str | None,
    output: str | None,
    summary_json: str | None,
    namespace: str | None,
    kubeconfig: str | None,
) -> None:
    """Write the model report of a ModelDeployment: one self-contained HTML file.

    Revisions with their dates and fates, retraining runs with candidate and production scores,
    the last experiment and recent events come from the API server; traffic share, requests,
    errors, latency and drift per revision over --window come from Prometheus.
    """
    from seaway import egress
    from seaway.metrics import report as prom
    from seaway.report import assemble, render, summary

    window_seconds = _window(window)
    now = _moment(at_text) if at_text else datetime.now(UTC).replace(microsecond=0)
    matchers = _matchers(match)
    if prometheus_url is not None:
        try:
            egress.host_and_port(prometheus_url)
            prom.api_url(prometheus_url, "query", {})
        except egress.NotAllowed as exc:
            raise click.BadParameter(
                f"{prometheus_url!r}: {exc}; give e.g. http://prometheus.example:9090",
                param_hint="--prometheus",
            ) from None
    kube, ns = _connect(kubeconfig, namespace)
    click.echo(f"Reading ModelDeployment {ns}/{name}, its RetrainJobs and Events ...")
    md = _read(kube, ns, name)
    missing: list[str] = []
    notes: list[str] = []
    jobs = _list(kube, "RetrainJob", ns, missing, "retraining runs")
    events = _list(kube, "Event", ns, missing, "events")
    answers = None
    where = None
    if prometheus_url is None:
        missing.append(
            "Prometheus not given (--prometheus URL): traffic, errors, latency and drift omitted."
        )
    else:
        where = egress.describe(prometheus_url)
        click.echo(f"Asking Prometheus at {where} about the last {window} ...")
        reader = prom.Reader(
            egress.Client(
                egress.Allowlist(setting="--prometheus").extended(prometheus_url), timeout=10.0
            ),
            prometheus_url,
        )
        try:
            answers = prom.gather(
                reader, name=name, window_seconds=window_seconds, at=now, matchers=matchers
            )
        except egress.EgressError as exc:
            missing.append(f"Prometheus: {exc}: traffic, errors, latency and drift omitted.")
        if not matchers:
            notes.append(
                "The router's and model servers' series carry no namespace: a ModelDeployment"
                f" named {name} in another namespace would be counted with this one"
                " (seaway report --match namespace=... when the scrape configuration adds it)."
            )
    try:
        built = assemble.build(
            md,
            now=now,
            window_seconds=window_seconds,
            retrain_job_bodies=jobs,
            event_bodies=events,
            answers=answers,
            prometheus=where,
            missing=missing,
            notes=notes,
        )
    except ValueError as exc:  # pydantic's ValidationError is one
        raise click.ClickException(f"cannot read the status of {name}: {exc}") from exc
    path = Path(output or f"{name}-report.html")
    try:
        path.write_text(render.page(built), encoding="utf-8")
        if summary_json:
            Path(summary_json).write_text(
                json.dumps(summary.document(built), indent=2) + "\n", encoding="utf-8"
            )
    except OSError as exc:
        raise click.ClickException(f"cannot write the report: {exc}") from exc
    runs = sum(len(j.runs) for j in built.retrain_jobs)
    click.echo(
        f"Wrote {path} ({len(built.revisions)} revisions, {runs} retraining runs,"
        f" traffic {'included' if built.traffic else 'omitted'},"
        f" drift {'included' if built.drift else 'omitted'})."
    )
    if summary_json:
        click.echo(f"Wrote the JSON summary to {summary_json}.")
    for line in built.missing:
        click.echo(f"Missing: {line}")
