"""No silent stall: when a ModelDeployment cannot progress, a condition and ONE Event say why.

Two kinds of stall are explained here, both pure:

- the API server refuses the operator's write for a reason that retrying does not fix: the kind
  does not exist (HTTP 404 on a write: the Gateway API CRDs are not installed) or the operator may
  not touch it (HTTP 403: its RBAC). :func:`from_api_error` names it, :func:`hold` turns it into
  the status to write *instead of* the pass's plan (whose weights were never applied), so the
  recorded progress stays true and the next pass simply tries again;
- the canary's analysis has no metrics to judge because the metrics provider cannot be asked
  (:func:`explain_analysis`): the steps hold, and the Progressing condition says why.

An Event is emitted when the reason is new (not on every retry), and :func:`hold` tells the
handler whether the state changed, so the operator logs one line per change, not one per pass.
An outage of the API server itself (5xx, timeouts) is not a stall of this kind: see
``seaway.k8s.outage``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from seaway import conditions
from seaway.api.common import Condition
from seaway.api.modeldeployment import ModelDeploymentStatus
from seaway.planning.rollout import Event, Plan

#: Retry a stalled ModelDeployment this often: a CRD or a permission can be added any time.
RETRY_SECONDS = 30.0

ANALYSIS_REASON = "MetricsUnavailable"
_NO_METRICS = "metrics unavailable: "

#: API groups a user installs separately, with where to get them.
_INSTALL_HINTS = {
    "HTTPRoute": (
        "the Gateway API CRDs are not installed: install them"
        " (https://gateway-api.sigs.k8s.io/guides/#installing-gateway-api),"
        " or set spec.traffic.router: builtin"
    ),
}


@dataclass(frozen=True)
class Stall:
    reason: str
    message: str


def from_api_error(
    kind: str, verb: str, status: int, namespace: str, detail: str | None = None
) -> Stall | None:
    """The stall a refused request means, or None when retrying may help (not ours to explain).

    ``detail`` is the API server's own message; for a 403 it names the resource and verb.
    """
    if status == 404:
        hint = _INSTALL_HINTS.get(
            kind, f"the cluster has no {kind} resource (is its CRD installed?)"
        )
        reason = "GatewayAPIMissing" if kind == "HTTPRoute" else "ResourceTypeMissing"
        return Stall(reason, f"cannot {verb} {kind} in {namespace}: {hint}")
    if status == 403:
        said = f" ({' '.join(detail.split())[:300]})" if detail else ""
        return Stall(
            "Forbidden",
            f"the operator is not allowed to {verb} {kind} in {namespace}{said}: grant it in the"
            " operator's RBAC (the Helm chart's ClusterRole has every rule it needs)",
        )
    return None


def hold_ready(
    current: Sequence[Condition], stall: Stall, *, now: str, generation: int
) -> tuple[list[Condition], bool]:
    """Conditions with Ready=False saying why, and whether that is news (for one Event)."""
    before = conditions.find(current, conditions.READY)
    changed = before is None or before.reason != stall.reason or before.message != stall.message
    updated = conditions.set_condition(
        current, conditions.READY, "False", stall.reason, stall.message,
        now=now, generation=generation,
    )  # fmt: skip
    return updated, changed


def hold(
    previous: ModelDeploymentStatus, stall: Stall, *, now: str, generation: int
) -> tuple[ModelDeploymentStatus, list[Event], bool]:
    """The status to write while stalled, its Events, and whether the state just changed.

    The status is the previous one (the plan was not carried out) with Ready=False saying why.
    """
    st = previous.model_copy(deep=True)
    st.conditions, changed = hold_ready(st.conditions, stall, now=now, generation=generation)
    st.message = stall.message
    st.observed_generation = generation
    events = [Event("Warning", stall.reason, stall.message)] if changed else []
    return st, events, changed


def explain_analysis(
    result: Plan, previous: ModelDeploymentStatus, *, now: str, generation: int
) -> None:
    """While the canary's analysis cannot reach its metrics, Progressing says so (one Event)."""
    st = result.status
    state = st.analysis
    if (
        st.canary_revision is None
        or state is None
        or state.revision != st.canary_revision
        or state.last_result != "NoData"
        or not (state.message or "").startswith(_NO_METRICS)
    ):
        return
    problem = (state.message or "")[len(_NO_METRICS) :]
    message = (
        f"the analysis of revision {st.canary_revision} holds the rollout at step"
        f" {st.current_step_index or 0}: no metrics ({problem}); check"
        " rollout.analysis.provider.prometheus.address (or the operator's --prometheus-url)"
        " and that the operator may reach it"
    )
    st.conditions = conditions.set_condition(
        st.conditions,
        conditions.PROGRESSING,
        "True",
        ANALYSIS_REASON,
        message,
        now=now,
        generation=generation,
    )
    st.message = message
    was = previous.analysis
    said_before = (
        was is not None
        and was.revision == state.revision
        and was.last_result == "NoData"
        and (was.message or "").startswith(_NO_METRICS)
    )
    if not said_before:
        result.events.append(Event("Warning", ANALYSIS_REASON, message))
