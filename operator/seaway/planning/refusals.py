"""Why a revision's pods never become ready, when the model server said so: pure.

The model server writes a one-line refusal (digest mismatch, format mismatch, a fetch that
failed) to its termination-message file and exits; the kubelet copies it into the Pod's
container status. Without reading it, a user sees only "not ready" until the progress deadline,
and then ``ProgressDeadlineExceeded``. :func:`from_pods` reads the message per revision;
:func:`explain` folds it into the plan after the rollout planner ran: the revision's
``message``, a condition with reason ``ModelRefused``, and ONE Warning Event per new refusal (the
planner's own state machine is untouched: the deadline still decides when to give up, because a
fetch failure may be temporary).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from seaway import conditions
from seaway.api.common import ConditionStatus
from seaway.api.modeldeployment import ModelDeploymentStatus
from seaway.planning.rollout import Event, Plan

REASON = "ModelRefused"
SERVER_CONTAINER = "server"
#: Kubernetes keeps up to 4096 bytes of a termination message; a status message stays shorter.
MAX_MESSAGE = 512
PREFIX = "the model server refused the model: "


def _terminated(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for key in ("state", "lastState"):
        found = (status.get(key) or {}).get("terminated")
        if found and found.get("exitCode", 0) != 0 and (found.get("message") or "").strip():
            return dict(found)
    return None


def from_pod(pod: Mapping[str, Any]) -> str | None:
    """The model server's refusal in one Pod's status, as one line; None if it gave none."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") != SERVER_CONTAINER:
            continue
        terminated = _terminated(status)
        if terminated is not None:
            text = " ".join(str(terminated["message"]).split())
            return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."
    return None


def from_pods(pods: Iterable[Mapping[str, Any]], revision_label: str) -> dict[int, str]:
    """Revision number -> a refusal one of its pods reported (the first found, by pod name)."""
    found: dict[int, str] = {}
    for pod in sorted(pods, key=lambda p: str(p.get("metadata", {}).get("name", ""))):
        label = (pod.get("metadata", {}).get("labels") or {}).get(revision_label, "")
        if not label.isdigit() or int(label) in found:
            continue
        message = from_pod(pod)
        if message is not None:
            found[int(label)] = message
    return found


def pods_needed(result: Plan, previous: ModelDeploymentStatus, ready: Mapping[int, int]) -> bool:
    """Whether :func:`explain` could say anything from the Pods, i.e. whether to list them.

    ``ready`` holds the ready pods of each revision that has a Deployment. Only a revision
    being rolled out that has a Deployment but no ready pod, or one that failed in this very
    pass, can have a refusal to explain; any other pass leaves the Pods unread (at 1,000
    ModelDeployments, one list per pass was a sixth of the operator's requests).
    """
    st = result.status
    number = st.canary_revision
    if number is not None:
        return number in ready and ready[number] == 0
    was = {r.number: r.fate for r in previous.revisions}
    return any(r.fate == "Failed" and was.get(r.number) != "Failed" for r in st.revisions)


def explain(
    result: Plan,
    previous: ModelDeploymentStatus,
    refused: Mapping[int, str],
    ready: Mapping[int, int],
    *,
    now: str,
    generation: int,
) -> None:
    """Say in ``result`` why the revision being rolled out is not ready, when its server refused.

    Only the revision being rolled out (the canary, or the first revision) is explained, and only
    while it has no ready pod. Its ``message`` carries the refusal; so does a condition: Ready
    when nothing serves yet, Progressing when the stable revision still serves. A failed revision
    (the deadline passed) keeps the refusal in its message. The Event is emitted when the
    revision's message changes, so a crash-looping pod gives one Event, not one per restart.
    """
    st = result.status
    number = st.canary_revision
    failed = None
    if number is None:
        # reverted this pass: the revision that just failed still deserves its explanation
        was = {r.number: r.fate for r in previous.revisions}
        failed = next(
            (r for r in st.revisions
             if r.fate == "Failed" and r.number in refused and was.get(r.number) != "Failed"),
            None,
        )  # fmt: skip
        if failed is None:
            return
        number = failed.number
    revision = next((r for r in st.revisions if r.number == number), None)
    if revision is None:
        return
    if number not in refused or ready.get(number, 0) > 0:
        if failed is None and (revision.message or "").startswith(PREFIX):
            revision.message = None  # it recovered (a fetch that failed once): not stale
        return
    said = PREFIX + refused[number]
    before = next((r for r in previous.revisions if r.number == number), None)
    if failed is not None:
        if said not in (revision.message or ""):
            revision.message = f"{revision.message}; {said}" if revision.message else said
        st.message = f"revision {number} failed: {revision.message}"
        return
    revision.message = said
    if before is None or before.message != said:
        result.events.append(Event("Warning", REASON, f"Revision {number}: {said}"))
    message = f"revision {number}: {said}"
    status: ConditionStatus
    if st.stable_revision is None:
        type_, status = conditions.READY, "False"
    else:
        type_, status = conditions.PROGRESSING, "True"
    st.conditions = conditions.set_condition(
        st.conditions, type_, status, REASON, message, now=now, generation=generation
    )
    st.message = message
