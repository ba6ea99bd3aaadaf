"""The report as a JSON document for a webhook (chat tools, mail gateways), shape version 1.

The top-level ``text`` is the page's summary in a few sentences, so a chat tool's incoming
webhook (which shows a ``text`` field) needs no template; the other fields carry the figures
unrounded for a mail gateway or a script. The shape is documented in docs/report.md; fields are
only ever added, never renamed, within a version.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from seaway.report import model

KIND = "SeawayModelReport"
VERSION = 1


def _number(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None


def document(report: model.Report) -> dict[str, Any]:
    title = f"Model report {report.namespace}/{report.name}"
    drift: dict[str, Any] | None = None
    if report.drift is not None:
        d = report.drift
        top = max(d.now.items(), key=lambda kv: kv[1]) if d.now else None
        drift = {
            "largestFeaturePSI": (
                {"revision": top[0][0], "feature": top[0][1], "psi": top[1]} if top else None
            ),
            "predictionPSI": [
                {"revision": n, "psi": v} for n, v in sorted(d.prediction_now.items())
            ],
        }
    exp = report.experiment
    return {
        "kind": KIND,
        "version": VERSION,
        "namespace": report.namespace,
        "name": report.name,
        "generatedAt": report.generated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "window": report.window_text,
        "text": f"{title} (last {report.window_text}): " + " ".join(report.highlights),
        "stableRevision": report.stable,
        "canaryRevision": report.canary,
        "ready": report.ready,
        "revisions": [
            {
                "number": r.number,
                "fate": r.fate,
                "reason": r.reason,
                "createdAt": r.created_at,
                "createdBy": r.created_by,
                "weight": r.weight,
            }
            for r in report.revisions
        ],
        "traffic": (
            [
                {
                    "revision": t.revision,
                    "requests": t.requests,
                    "errors": t.errors,
                    "errorRatio": t.error_ratio,
                    "share": t.share,
                    "p50Ms": t.p50_seconds * 1000 if t.p50_seconds is not None else None,
                    "p99Ms": t.p99_seconds * 1000 if t.p99_seconds is not None else None,
                }
                for t in report.traffic
            ]
            if report.traffic is not None
            else None
        ),
        "drift": drift,
        "experiment": (
            {
                "bestRevision": exp.best_revision,
                "confidence": _number(exp.confidence),
                "winner": exp.winner,
            }
            if exp is not None
            else None
        ),
        "retraining": [
            {
                "retrainJob": job.name,
                "run": run.number,
                "result": run.result,
                "decision": run.decision,
                "metric": job.metric,
                "candidateScore": _number(run.candidate_score),
                "incumbentScore": _number(run.incumbent_score),
                "finishedAt": run.finished_at,
            }
            for job in report.retrain_jobs
            for run in job.runs[-1:]
        ],
        "missing": list(report.missing),
        "highlights": list(report.highlights),
    }
