"""Pure helpers for status conditions (``metav1.Condition`` semantics).

A condition's ``lastTransitionTime`` changes only when its status changes: re-asserting the same
status with a new reason or message keeps the time, so ``kubectl wait`` and dashboards see real
transitions, and an idle reconcile produces an identical status (no write at all).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from seaway.api.common import Condition, ConditionStatus

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
SUCCEEDED = "Succeeded"


def find(conditions: Iterable[Condition], type_: str) -> Condition | None:
    """The condition of this type, if present."""
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: Iterable[Condition], type_: str) -> bool:
    found = find(conditions, type_)
    return found is not None and found.status == "True"


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    now: str,
    generation: int | None,
) -> list[Condition]:
    """A new list with ``type_`` set; order is kept and new types are appended."""
    previous = find(conditions, type_)
    transition = (
        now if previous is None or previous.status != status else previous.last_transition_time
    )
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=transition,
        observed_generation=generation,
    )
    result = [updated if c.type == type_ else c for c in conditions]
    if previous is None:
        result.append(updated)
    return result
