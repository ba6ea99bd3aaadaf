"""Whether a user's command can take effect now, and what to show of a resource: pure.

A command is a token in ``spec.actions`` that the next pass consumes whether or not it changed
anything (it is level-based: the token is recorded as handled). A ``seaway promote`` that the
planner cannot act on would therefore vanish silently; the CLI asks :func:`promote_blocker`
first and says why instead of writing the token. The answers mirror ``planning.rollout``'s rules.
"""

from __future__ import annotations

from seaway import conditions
from seaway.api.modeldeployment import ModelDeployment, RevisionStatus
from seaway.api.retrainjob import RetrainJob, RunStatus

#: Fates after which a revision's reason explains its end; for any other, a reason is stale.
ENDED_FATES = ("Superseded", "Retired", "Failed", "RolledBack")


def promote_blocker(md: ModelDeployment, *, full: bool) -> str | None:
    """Why ``promote`` (one step, or ``full``) would not take effect now; None when it would."""
    st, spec = md.status, md.spec
    name = md.metadata.name
    if spec.paused:
        return f"{name} is paused (spec.paused: true); unpause it first"
    if st.canary_revision is None:
        serving = (
            f"revision {st.stable_revision} is stable"
            if st.stable_revision is not None
            else "no revision is stable yet"
        )
        return f"{name} has no canary to promote ({serving} and nothing is rolling out)"
    canary = next((r for r in st.revisions if r.number == st.canary_revision), None)
    if canary is not None and canary.ready_at is None:
        return (
            f"canary revision {st.canary_revision} has no ready pod yet; a promote takes effect"
            " once it has (see `seaway status`)"
        )
    if full:
        return None
    rollout = spec.rollout
    analysis = st.analysis
    if (
        rollout is not None
        and rollout.analysis is not None
        and analysis is not None
        and analysis.revision == st.canary_revision
        and analysis.last_result == "NoData"
    ):
        detail = f": {analysis.message}" if analysis.message else ""
        return (
            f"the analysis holds revision {st.canary_revision} at step"
            f" {st.current_step_index or 0} (no usable metrics{detail}); fix the metrics source,"
            " or skip the analysis with `seaway promote --full`"
        )
    steps = (rollout.steps or []) if rollout is not None else []
    index = st.current_step_index or 0
    if rollout is not None and rollout.strategy == "Canary" and index >= len(steps):
        return (
            f"revision {st.canary_revision} has passed every step and waits for"
            + (" a passing analysis" if rollout.analysis is not None else " its pods")
            + "; `seaway promote --full` skips the wait"
        )
    return None


def abort_blocker(md: ModelDeployment) -> str | None:
    """Why ``abort`` would not take effect now: there is no canary to revert."""
    st = md.status
    if st.canary_revision is None:
        return f"{md.metadata.name} has no canary to abort (nothing is rolling out)"
    return None


def retry_blocker(md: ModelDeployment) -> str | None:
    """Why ``retry`` would not take effect now: the desired revision was not rejected.

    The planner marks a rejected desired revision with ``Degraded=True``; only then does a
    retry start it again.
    """
    degraded = conditions.find(md.status.conditions, conditions.DEGRADED)
    if degraded is None or degraded.status != "True":
        return (
            f"{md.metadata.name} has no rejected revision to retry"
            " (its template's revision did not fail and was not rolled back)"
        )
    return None


def revision_reason(revision: RevisionStatus) -> str | None:
    """The reason to show for a revision: only one that explains how it ended, never a stale one
    left from an earlier fate (a revision can be a canary again after being superseded)."""
    return revision.reason if revision.fate in ENDED_FATES else None


def retrainjob_lines(rj: RetrainJob, last_runs: int = 5) -> list[str]:
    """``seaway status`` for a RetrainJob: schedule, promoted model, conditions, last runs."""
    spec, st = rj.spec, rj.status
    observed = st.observed_generation if st.observed_generation is not None else "-"
    lines = [
        f"RetrainJob {rj.metadata.namespace}/{rj.metadata.name} (generation"
        f" {rj.metadata.generation}, observed {observed})",
        f"  model deployment: {spec.model_deployment}",
        f"  schedule: {spec.schedule or 'none (runs when asked: seaway retrain)'}"
        + (f", next run {st.next_schedule_time}" if st.next_schedule_time else ""),
        f"  promotion: {spec.promotion}",
    ]
    if st.promoted is not None:
        p = st.promoted
        lines.append(f"  promoted: run {p.run} {p.uri} {p.digest} at {p.promoted_at}")
    else:
        lines.append("  promoted: -")
    lines.append("Conditions:")
    for c in st.conditions:
        lines.append(f"  {c.type:<12} {c.status:<8} {c.reason:<26} {c.message or ''}")
    lines.append("Runs:")
    for run in st.runs[-last_runs:]:
        lines.append("  " + _run_line(run))
    if not st.runs:
        lines.append("  -")
    return lines


def _run_line(run: RunStatus) -> str:
    scores = ""
    if run.candidate_score is not None:
        scores = f" candidate {run.candidate_score}"
        if run.incumbent_score is not None:
            scores += f" vs incumbent {run.incumbent_score}"
    why = run.decision_reason or run.message or run.reason or ""
    return (
        f"#{run.number:<4} {run.result:<10} {run.decision:<9}{scores}"
        + (f" ({why})" if why else "")
    )
