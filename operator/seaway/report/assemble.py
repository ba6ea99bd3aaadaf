"""Objects as read from the API server, plus Prometheus's answers -> one :class:`model.Report`.

Pure: the caller passes ``now`` and whatever it could read; what it could not read arrives as
sentences in ``missing`` and is carried to the page as given, so the page always says what it
leaves out and why.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from seaway.api.modeldeployment import ModelDeployment
from seaway.api.retrainjob import RetrainJob as RetrainJobObject
from seaway.planning import commands
from seaway.report import fmt, model, queries

#: Events shown, newest first.
EVENTS_SHOWN = 20


def revisions(md: ModelDeployment) -> tuple[model.Revision, ...]:
    weights = {w.revision: w.weight for w in md.status.weights}
    return tuple(
        model.Revision(
            number=r.number,
            fate=r.fate,
            created_at=r.created_at,
            created_by=r.created_by,
            reason=commands.revision_reason(r),
            message=r.message if commands.revision_reason(r) else None,
            ready_at=r.ready_at,
            finished_at=r.finished_at,
            model_uri=r.model_uri,
            digest=r.digest,
            image=r.image,
            weight=weights.get(r.number),
        )
        for r in md.status.revisions
    )


def experiment(md: ModelDeployment) -> model.Experiment | None:
    st = md.status.experiment
    if st is None:
        return None
    spec = md.spec.traffic.experiment if md.spec.traffic is not None else None
    promote_at = (
        Decimal(spec.promote_winner.confidence)
        if spec is not None and spec.promote_winner is not None
        else None
    )
    return model.Experiment(
        variants=tuple(
            model.Variant(
                revision=v.revision,
                requests=v.requests,
                rewards=Decimal(v.rewards),
                weight=v.weight,
                best_probability=(
                    Decimal(v.best_probability) if v.best_probability is not None else None
                ),
            )
            for v in st.variants
        ),
        best_revision=st.best_revision,
        confidence=Decimal(st.confidence) if st.confidence is not None else None,
        measured_at=st.measured_at,
        winner=st.winner,
        concluded_at=st.concluded_at,
        promote_at=promote_at,
    )


def retrain_jobs(md_name: str, bodies: Iterable[dict[str, Any]]) -> tuple[model.RetrainJob, ...]:
    """The RetrainJobs that train for this ModelDeployment, by name, runs oldest first."""
    found = []
    for body in bodies:
        if body.get("spec", {}).get("modelDeployment") != md_name:
            continue
        rj = RetrainJobObject.parse(body)
        validation = rj.spec.validation
        runs = tuple(
            model.Run(
                number=r.number,
                started_at=r.started_at,
                finished_at=r.finished_at,
                result=r.result,
                reason=r.reason,
                decision=r.decision,
                candidate_score=_decimal(r.candidate_score),
                incumbent_score=_decimal(r.incumbent_score),
                decision_reason=r.decision_reason,
                decided_by=r.decided_by,
                candidate_uri=r.candidate.uri if r.candidate is not None else None,
            )
            for r in sorted(rj.status.runs, key=lambda r: r.number)
        )
        found.append(
            model.RetrainJob(
                name=rj.metadata.name or "",
                schedule=rj.spec.schedule,
                promotion=rj.spec.promotion,
                metric=validation.metric if validation is not None else None,
                min_score=_text(validation.min_score) if validation else None,
                min_improvement=_text(validation.min_improvement) if validation else None,
                runs=runs,
            )
        )
    return tuple(sorted(found, key=lambda j: j.name))


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def events(
    bodies: Iterable[dict[str, Any]], subjects: set[tuple[str, str]]
) -> tuple[model.Event, ...]:
    """Events about the given (kind, name) subjects, newest first, at most :data:`EVENTS_SHOWN`."""
    mine = []
    for e in bodies:
        involved = e.get("involvedObject") or {}
        if (involved.get("kind"), involved.get("name")) not in subjects:
            continue
        time = (
            e.get("lastTimestamp")
            or e.get("eventTime")
            or e.get("series", {}).get("lastObservedTime")
            or e.get("metadata", {}).get("creationTimestamp")
            or ""
        )
        mine.append(
            model.Event(
                time=_second(time),
                type=str(e.get("type") or ""),
                reason=str(e.get("reason") or ""),
                message=str(e.get("message") or ""),
                count=int(e.get("count") or 1),
            )
        )
    mine.sort(key=lambda e: e.time, reverse=True)
    return tuple(mine[:EVENTS_SHOWN])


def _second(text: str) -> str:
    """``2026-11-20T14:03:05.123456Z`` -> ``2026-11-20T14:03:05Z`` (Events carry either)."""
    if "." in text and text.endswith("Z"):
        return text.split(".", 1)[0] + "Z"
    return text


def _revision_of(labels: dict[str, str]) -> int | None:
    try:
        return int(labels.get("revision", ""))
    except ValueError:
        return None


def _by_revision(samples: Sequence[model.Sample]) -> dict[int, float]:
    out: dict[int, float] = {}
    for s in samples:
        number = _revision_of(s.labels)
        if number is not None:
            out[number] = s.value
    return out


def traffic(answers: model.Answers) -> tuple[model.Traffic, ...]:
    """Per revision over the window; a revision without requests in the window is left out."""
    requests = _by_revision(answers.instant.get("requests", ()))
    errors = _by_revision(answers.instant.get("errors", ()))
    p50 = _by_revision(answers.instant.get("p50", ()))
    p99 = _by_revision(answers.instant.get("p99", ()))
    total = sum(v for v in requests.values() if math.isfinite(v))
    rows = []
    for number in sorted(requests):
        count = requests[number]
        rows.append(
            model.Traffic(
                revision=number,
                requests=count,
                errors=errors.get(number, 0.0),
                p50_seconds=_finite(p50.get(number)),
                p99_seconds=_finite(p99.get(number)),
                share=count / total if total > 0 else None,
            )
        )
    return tuple(rows)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _curves(curves: Sequence[model.Curve]) -> dict[int, dict[float, float]]:
    out: dict[int, dict[float, float]] = {}
    for c in curves:
        number = _revision_of(c.labels)
        if number is not None:
            out[number] = dict(c.points)
    return out


def charts(answers: model.Answers) -> tuple[model.Chart, ...]:
    """Share of requests, error ratio and p99 latency per revision over the window."""
    start, end = answers.start.timestamp(), answers.measured_at.timestamp()
    rates = _curves(answers.ranges.get("rate", ()))
    error_rates = _curves(answers.ranges.get("error_rate", ()))
    p99 = _curves(answers.ranges.get("p99", ()))
    moments = sorted({t for points in rates.values() for t in points})
    if moments:  # the charts begin at the first measurement: a young history is not a dot
        start = max(start, moments[0])
    totals = {t: sum(points.get(t, 0.0) for points in rates.values()) for t in moments}
    nan = float("nan")
    share, ratio, latency = [], [], []
    for number in sorted(rates):
        points = rates[number]
        share.append(
            model.Series(
                f"r{number}",
                tuple(
                    (t, 100 * points[t] / totals[t] if t in points and totals[t] > 0 else nan)
                    for t in moments
                ),
            )
        )
        errors = error_rates.get(number, {})
        ratio.append(
            model.Series(
                f"r{number}",
                tuple(
                    (t, 100 * errors.get(t, 0.0) / points[t] if points.get(t, 0) > 0 else nan)
                    for t in moments
                ),
            )
        )
    for number in sorted(p99):
        latency.append(
            model.Series(f"r{number}", tuple((t, v * 1000) for t, v in sorted(p99[number].items())))
        )
    return (
        model.Chart("Share of requests", "%", tuple(share), start, end, y_floor_max=100),
        model.Chart("Error ratio (5xx)", "%", tuple(ratio), start, end, y_floor_max=1),
        model.Chart("p99 latency", "ms", tuple(latency), start, end, y_floor_max=1),
    )


def drift(answers: model.Answers) -> model.Drift | None:
    def table(key: str) -> dict[tuple[int, str], float]:
        out = {}
        for s in answers.instant.get(key, ()):
            number, feature = _revision_of(s.labels), s.labels.get("feature")
            if number is not None and feature is not None and math.isfinite(s.value):
                out[(number, feature)] = s.value
        return out

    now, peak = table("feature_now"), table("feature_peak")
    if not now and not peak:
        return None
    numbers = sorted({n for n, _ in [*now, *peak]})
    features = sorted({f for _, f in [*now, *peak]})
    finite = {
        key: {
            n: v for n, v in _by_revision(answers.instant.get(key, ())).items() if math.isfinite(v)
        }
        for key in ("prediction_now", "prediction_peak", "rows")
    }
    return model.Drift(
        revisions=tuple(numbers),
        features=tuple(features),
        now=now,
        peak=peak,
        prediction_now=finite["prediction_now"],
        prediction_peak=finite["prediction_peak"],
        rows=finite["rows"],
    )


def highlights(report: model.Report) -> tuple[str, ...]:
    """A few sentences for the top of the page: what serves, what changed, is the new one better."""
    out = []
    by_number = {r.number: r for r in report.revisions}
    if report.stable is not None:
        stable = by_number.get(report.stable)
        weight = stable.weight if stable is not None and stable.weight is not None else None
        since = f", ready since {fmt.when(stable.ready_at)}" if stable and stable.ready_at else ""
        share = f" with {weight}% of live traffic" if weight is not None else ""
        out.append(f"Revision {report.stable} is the stable revision{share}{since}.")
    else:
        out.append("No revision is stable yet.")
    if report.canary is not None:
        canary = by_number.get(report.canary)
        weight = canary.weight if canary is not None and canary.weight is not None else 0
        out.append(f"Revision {report.canary} is being rolled out as a canary at {weight}%.")
    ended = [r for r in report.revisions if r.fate in ("Failed", "RolledBack")]
    if ended:
        last = max(ended, key=lambda r: r.number)
        why = f" ({last.reason})" if last.reason else ""
        out.append(
            f"Revision {last.number}, created {fmt.when(last.created_at)} by {last.created_by},"
            f" was {'reverted' if last.fate == 'Failed' else 'rolled back'}{why}."
        )
    if report.traffic:
        total = sum(t.requests for t in report.traffic)
        errors = sum(t.errors for t in report.traffic)
        out.append(
            f"Over the last {report.window_text}: {fmt.count(total)} requests,"
            f" {fmt.count(errors)} server errors"
            f" ({fmt.error_ratio(errors / total if total else None)})."
        )
    scored = [
        (job, run)
        for job in report.retrain_jobs
        for run in job.runs
        if run.candidate_score is not None
    ]
    if scored:
        job, run = max(scored, key=lambda pair: pair[1].finished_at or pair[1].started_at)
        metric = f" {job.metric}" if job.metric else ""
        versus = (
            f" against the model in production's {fmt.score(run.incumbent_score)}"
            f" ({fmt.signed(run.improvement)})"
            if run.incumbent_score is not None
            else ""
        )
        out.append(
            f"RetrainJob {job.name} run {run.number}: the candidate scored"
            f" {fmt.score(run.candidate_score)}{metric}{versus}; decision: {run.decision}."
        )
    exp = report.experiment
    if exp is not None and exp.best_revision is not None:
        if exp.winner is not None:
            out.append(f"The experiment concluded: revision {exp.winner} won.")
        else:
            out.append(
                f"In the experiment, revision {exp.best_revision} leads"
                f" (probability it is best: {fmt.percent(_float(exp.confidence))})."
            )
    if report.drift is not None and report.drift.now:
        (number, feature), value = max(report.drift.now.items(), key=lambda kv: kv[1])
        out.append(
            f"Largest input drift now: feature {feature} on revision {number},"
            f" PSI {fmt.psi(value)} ({fmt.psi_level(value)} shift)."
        )
    return tuple(out)


def _float(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None


def build(
    md_body: dict[str, Any],
    *,
    now: datetime,
    window_seconds: int,
    retrain_job_bodies: Sequence[dict[str, Any]] = (),
    event_bodies: Sequence[dict[str, Any]] = (),
    answers: model.Answers | None = None,
    prometheus: str | None = None,
    missing: Sequence[str] = (),
    notes: Sequence[str] = (),
) -> model.Report:
    md = ModelDeployment.parse(md_body)
    name, namespace = md.metadata.name or "", md.metadata.namespace or ""
    jobs = retrain_jobs(name, retrain_job_bodies)
    subjects = {("ModelDeployment", name), *(("RetrainJob", j.name) for j in jobs)}
    ready = next((c for c in md.status.conditions if c.type == "Ready"), None)
    all_missing = list(missing)
    all_notes = list(notes)
    report = model.Report(
        namespace=namespace,
        name=name,
        generated_at=now,
        window_seconds=window_seconds,
        window_text=fmt.duration(window_seconds),
        stable=md.status.stable_revision,
        canary=md.status.canary_revision,
        ready=ready.status if ready is not None else None,
        ready_reason=ready.reason if ready is not None else None,
        message=md.status.message,
        revisions=revisions(md),
        retrain_jobs=jobs,
        events=events(event_bodies, subjects),
        experiment=experiment(md),
        prometheus=prometheus,
    )
    if not jobs:
        all_notes.append(f"No RetrainJob trains for {name}: no retraining runs to show.")
    if answers is not None:
        rows = traffic(answers)
        drift_table = drift(answers)
        all_missing.extend(answers.missing)
        if not rows:
            all_missing.append(
                f"Prometheus has no requests of {name} over the last {report.window_text}:"
                " traffic, errors and latency omitted."
            )
        if drift_table is None:
            all_missing.append(
                "Prometheus has no drift series of the model servers"
                f" ({queries.DRIFT}): drift omitted (a bundle without a training data"
                " fingerprint, or servers not scraped)."
            )
        report = _replace(
            report,
            traffic=rows or None,
            source=answers.source_name,
            charts=charts(answers) if rows else (),
            drift=drift_table,
            queries=answers.queries,
            measured_at=answers.measured_at,
        )
    report = _replace(report, missing=tuple(all_missing), notes=tuple(all_notes))
    return _replace(report, highlights=highlights(report))


def _replace(report: model.Report, **changes: Any) -> model.Report:
    return dataclasses.replace(report, **changes)
