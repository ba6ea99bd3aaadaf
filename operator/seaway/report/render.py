"""The report as one self-contained HTML page: inline CSS and SVG, no script, no external asset.

Every string from a resource, an Event or Prometheus is escaped (:func:`esc`), so a model URI or
an Event message cannot add markup. Tables name their figures for machines too: each row has a
``data-revision`` (or ``data-run``, ``data-feature``) and each cell a ``data-field``, so a test,
or a reader's script, can find a figure without depending on the layout.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from seaway.report import fmt, model, svg

esc = svg.esc

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}
h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
.sub{color:#666;margin-top:0}table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border-bottom:1px solid #eee;padding:.3em .6em;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.fate{border-radius:.6em;padding:0 .5em;color:#fff;white-space:nowrap}
.missing{background:#fff4e5;border-left:4px solid #E69F00;padding:.5em 1em}
.notes{color:#555}.psi-none{background:#e9f6ef}.psi-moderate{background:#fff1cc}
.psi-significant{background:#fbd5c5}.psi-unknown{color:#999}code{font-size:.85em}
.small{font-size:.85em;color:#555}svg{max-width:100%;height:auto;display:block;margin:.5em 0}
"""


def _cell(field: str, text: str, numeric: bool = False, css: str = "") -> str:
    classes = " ".join(c for c in ("n" if numeric else "", css) if c)
    attr = f' class="{classes}"' if classes else ""
    return f'<td data-field="{field}"{attr}>{esc(text)}</td>'


def _table(table_id: str, headers: Sequence[str], rows: Iterable[str]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _fate(fate: str) -> str:
    fill = svg.FATE_COLOURS.get(fate, "#8a8a8a")
    return (
        f'<td data-field="fate"><span class="fate" style="background:{fill}">'
        f"{esc(fate)}</span></td>"
    )


def revisions_section(report: model.Report) -> str:
    rows = []
    for r in reversed(report.revisions):
        role = (
            "stable"
            if r.number == report.stable
            else ("canary" if r.number == report.canary else "")
        )
        rows.append(
            f'<tr data-revision="{r.number}">'
            + _cell("number", f"r{r.number}")
            + _fate(r.fate)
            + _cell("role", role)
            + _cell("reason", r.reason or fmt.NONE)
            + _cell("created", fmt.when(r.created_at))
            + _cell("createdBy", r.created_by)
            + _cell("ready", fmt.when(r.ready_at))
            + _cell("ended", fmt.when(r.finished_at))
            + _cell("weight", f"{r.weight}%" if r.weight is not None else fmt.NONE, True)
            + _cell("model", r.model_uri or fmt.NONE)
            + _cell("digest", _short_digest(r.digest))
            + "</tr>"
        )
    messages = [
        f"<li><b>r{r.number}</b>: {esc(r.message)}</li>"
        for r in reversed(report.revisions)
        if r.message
    ]
    end = report.generated_at.timestamp()
    parts = [
        '<section id="revisions"><h2>Revisions</h2>',
        '<p class="small">Newest first. Weight: the share of live traffic in force now'
        " (status.weights).</p>",
        _table(
            "revisions-table",
            [
                "Revision",
                "Fate",
                "Role",
                "Reason",
                "Created",
                "By",
                "Ready",
                "Ended",
                "Weight",
                "Model",
                "Digest",
            ],
            rows,
        ),
    ]
    if messages:
        parts.append(f'<ul class="small">{"".join(messages)}</ul>')
    if report.revisions:
        parts.append(svg.timeline(report.revisions, end))
    parts.append("</section>")
    return "".join(parts)


def _short_digest(digest: str | None) -> str:
    if not digest:
        return fmt.NONE
    algorithm, _, hexdigits = digest.partition(":")
    return f"{algorithm}:{hexdigits[:12]}" if hexdigits else digest


def traffic_section(report: model.Report) -> str:
    parts = [f'<section id="traffic"><h2>Traffic over the last {esc(report.window_text)}</h2>']
    if report.traffic is None:
        parts.append('<p class="small">Not available (see "Missing" above).</p></section>')
        return "".join(parts)
    source = "the built-in router" if report.source == "router" else "the model servers"
    parts.append(
        f'<p class="small">Measured by {esc(source)} and read from Prometheus at'
        f" {esc(fmt.moment_text(report.measured_at) if report.measured_at else fmt.NONE)};"
        " share: the revision's part of all live requests over the window.</p>"
    )
    rows = []
    for t in report.traffic:
        rows.append(
            f'<tr data-revision="{t.revision}">'
            + _cell("revision", f"r{t.revision}")
            + _cell("share", fmt.percent(t.share), True)
            + _cell("requests", fmt.count(t.requests), True)
            + _cell("errors", fmt.count(t.errors), True)
            + _cell("errorRatio", fmt.error_ratio(t.error_ratio), True)
            + _cell("p50", fmt.latency(t.p50_seconds), True)
            + _cell("p99", fmt.latency(t.p99_seconds), True)
            + "</tr>"
        )
    parts.append(
        _table(
            "traffic-table",
            ["Revision", "Share", "Requests", "Server errors (5xx)", "Error ratio", "p50", "p99"],
            rows,
        )
    )
    parts.extend(svg.line_chart(chart) for chart in report.charts)
    parts.append("</section>")
    return "".join(parts)


def drift_section(report: model.Report) -> str:
    parts = ['<section id="drift"><h2>Prediction and input drift</h2>']
    d = report.drift
    if d is None:
        parts.append('<p class="small">Not available (see "Missing" above).</p></section>')
        return "".join(parts)
    parts.append(
        '<p class="small">Population Stability Index (PSI) of each input feature and of the'
        " predictions: the model servers' last rows (a sliding window) against the training"
        " data fingerprint in the model bundle, the worst pod of each revision. Below 0.1: no"
        " shift; 0.1 to 0.25: moderate; above 0.25: significant. Each cell: now / the highest"
        f" over the last {esc(report.window_text)}.</p>"
    )
    headers = ["Feature", *(f"r{n}" for n in d.revisions)]
    rows = []

    def cell(n: int, now: float | None, peak: float | None) -> str:
        level = fmt.psi_level(now)
        return (
            f'<td data-field="r{n}" data-now="{esc(fmt.psi(now))}" data-peak="{esc(fmt.psi(peak))}"'
            f' class="n psi-{level}">{esc(fmt.psi(now))} / {esc(fmt.psi(peak))}</td>'
        )

    rows.append(
        '<tr data-prediction="true"><td data-field="feature"><b>predictions</b></td>'
        + "".join(cell(n, d.prediction_now.get(n), d.prediction_peak.get(n)) for n in d.revisions)
        + "</tr>"
    )
    for feature in d.features:
        rows.append(
            f'<tr data-feature="{esc(feature)}">'
            + _cell("feature", feature)
            + "".join(
                cell(n, d.now.get((n, feature)), d.peak.get((n, feature))) for n in d.revisions
            )
            + "</tr>"
        )
    rows.append(
        '<tr><td class="small">rows in the window</td>'
        + "".join(_cell(f"rows-r{n}", fmt.count(d.rows.get(n)), True) for n in d.revisions)
        + "</tr>"
    )
    parts.append(_table("drift-table", headers, rows))
    ranked = sorted(
        d.features,
        key=lambda f: max((d.now.get((n, f), 0.0) for n in d.revisions), default=0.0),
        reverse=True,
    )[:12]
    parts.append(
        svg.bar_chart(
            "PSI now, the 12 most shifted features",
            [(f, [(f"r{n}", d.now.get((n, f))) for n in d.revisions]) for f in ranked],
            thresholds=[("0.1", fmt.PSI_MODERATE), ("0.25", fmt.PSI_SIGNIFICANT)],
        )
    )
    parts.append("</section>")
    return "".join(parts)


def experiment_section(report: model.Report) -> str:
    exp = report.experiment
    if exp is None:
        return ""
    parts = ['<section id="experiment"><h2>Last experiment</h2>']
    if exp.winner is not None:
        parts.append(
            f"<p>Concluded {esc(fmt.when(exp.concluded_at))}: revision {exp.winner} won and"
            " serves all traffic.</p>"
        )
    elif exp.best_revision is not None:
        confidence = fmt.percent(float(exp.confidence)) if exp.confidence is not None else fmt.NONE
        target = (
            f"; it is promoted at {esc(fmt.percent(float(exp.promote_at)))}"
            if exp.promote_at is not None
            else ""
        )
        parts.append(
            f"<p>Revision {exp.best_revision} leads; the probability that it is the best is"
            f" {esc(confidence)}{target} (measured {esc(fmt.when(exp.measured_at))}).</p>"
        )
    rows = [
        f'<tr data-revision="{v.revision}">'
        + _cell("revision", f"r{v.revision}")
        + _cell("weight", f"{v.weight}%", True)
        + _cell("requests", fmt.count(v.requests), True)
        + _cell("rewards", fmt.score(v.rewards), True)
        + _cell(
            "meanReward",
            fmt.score(round(v.rewards / v.requests, 4)) if v.requests else fmt.NONE,
            True,
        )
        + _cell(
            "bestProbability",
            fmt.percent(float(v.best_probability)) if v.best_probability is not None else fmt.NONE,
            True,
        )
        + "</tr>"
        for v in exp.variants
    ]
    parts.append(
        _table(
            "experiment-table",
            ["Revision", "Weight", "Requests", "Rewards", "Reward per request", "P(best)"],
            rows,
        )
    )
    parts.append("</section>")
    return "".join(parts)


def retraining_section(report: model.Report) -> str:
    if not report.retrain_jobs:
        return ""
    parts = ['<section id="retraining"><h2>Retraining</h2>']
    for job in report.retrain_jobs:
        gate = ", ".join(
            text
            for text in (
                f"minScore {job.min_score}" if job.min_score else "",
                f"minImprovement {job.min_improvement}" if job.min_improvement else "",
            )
            if text
        )
        parts.append(
            f'<h3 data-retrainjob="{esc(job.name)}">RetrainJob {esc(job.name)}</h3>'
            f'<p class="small">Schedule: {esc(job.schedule or "none (on request)")}; promotion:'
            f" {esc(job.promotion)}; metric: {esc(job.metric or fmt.NONE)}"
            f"{'; gate: ' + esc(gate) if gate else ''}.</p>"
        )
        rows = [
            f'<tr data-run="{run.number}">'
            + _cell("run", str(run.number))
            + _cell("started", fmt.when(run.started_at))
            + _cell("finished", fmt.when(run.finished_at))
            + _cell("result", run.result + (f" ({run.reason})" if run.reason else ""))
            + _cell("candidate", fmt.score(run.candidate_score), True)
            + _cell("incumbent", fmt.score(run.incumbent_score), True)
            + _cell("improvement", fmt.signed(run.improvement), True)
            + _cell("decision", run.decision)
            + _cell("decidedBy", run.decided_by or fmt.NONE)
            + "</tr>"
            for run in reversed(job.runs)
        ]
        parts.append(
            _table(
                f"runs-{esc(job.name)}",
                [
                    "Run",
                    "Started",
                    "Finished",
                    "Result",
                    "Candidate",
                    "In production",
                    "Change",
                    "Decision",
                    "Decided by",
                ],
                rows,
            )
        )
        scored = [r for r in job.runs if r.candidate_score is not None]
        if scored:
            parts.append(
                svg.bar_chart(
                    f"{job.name}: candidate and production scores ({job.metric or 'score'})",
                    [
                        (
                            f"run {r.number}",
                            [
                                ("candidate", float(r.candidate_score or 0)),
                                (
                                    "in production",
                                    float(r.incumbent_score)
                                    if r.incumbent_score is not None
                                    else None,
                                ),
                            ],
                        )
                        for r in scored[-10:]
                    ],
                )
            )
    parts.append("</section>")
    return "".join(parts)


def events_section(report: model.Report) -> str:
    if not report.events:
        return ""
    rows = [
        "<tr>"
        + _cell("time", fmt.when(e.time))
        + _cell("type", e.type)
        + _cell("reason", e.reason)
        + _cell("message", e.message + (f" (x{e.count})" if e.count > 1 else ""))
        + "</tr>"
        for e in report.events
    ]
    return (
        '<section id="events"><h2>Recent events</h2>'
        + _table("events-table", ["Time", "Type", "Reason", "Message"], rows)
        + "</section>"
    )


def method_section(report: model.Report) -> str:
    parts = ['<section id="method"><h2>How these figures were measured</h2>']
    parts.append(
        '<p class="small">Revisions, weights, the experiment and retraining runs: the status'
        " of the ModelDeployment and its RetrainJobs as the API server holds them.</p>"
    )
    if report.queries:
        when = fmt.moment_text(report.measured_at) if report.measured_at else fmt.NONE
        stamp = int(report.measured_at.timestamp()) if report.measured_at else ""
        parts.append(
            f'<p class="small">Prometheus {esc(report.prometheus or "")}, instant queries at'
            f' <span id="measured-at" data-unix="{stamp}">{esc(when)}</span>:</p><ul>'
        )
        parts.extend(
            f'<li class="small" data-query="{esc(key)}">{esc(key)}: <code>{esc(q)}</code></li>'
            for key, q in report.queries
        )
        parts.append("</ul>")
    parts.append("</section>")
    return "".join(parts)


def page(report: model.Report) -> str:
    title = f"Model report: {report.namespace}/{report.name}"
    ready = (
        f"Ready: {report.ready} ({report.ready_reason})" if report.ready is not None else "Ready: -"
    )
    highlights = "".join(f"<li>{esc(h)}</li>" for h in report.highlights)
    missing = (
        '<div class="missing" id="missing"><b>Missing from this report</b><ul>'
        + "".join(f"<li>{esc(m)}</li>" for m in report.missing)
        + "</ul></div>"
        if report.missing
        else ""
    )
    notes = (
        '<ul class="notes small" id="notes">'
        + "".join(f"<li>{esc(n)}</li>" for n in report.notes)
        + "</ul>"
        if report.notes
        else ""
    )
    message = f'<p class="small">{esc(report.message)}</p>' if report.message else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{esc(title)}</h1>"
        f'<p class="sub">As of {esc(fmt.moment_text(report.generated_at))}; window: the last'
        f" {esc(report.window_text)}. {esc(ready)}.</p>"
        f'<section id="summary"><ul>{highlights}</ul>{message}</section>'
        f"{missing}{notes}"
        + revisions_section(report)
        + traffic_section(report)
        + drift_section(report)
        + experiment_section(report)
        + retraining_section(report)
        + events_section(report)
        + method_section(report)
        + "</body></html>\n"
    )
