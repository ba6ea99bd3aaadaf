from seaway import conditions
from seaway.api.common import Condition

T0 = "2026-11-25T10:00:00Z"
T1 = "2026-11-25T10:05:00Z"


def test_new_condition_is_appended_with_the_current_time() -> None:
    result = conditions.set_condition(
        [], "Ready", "False", "Progressing", "rolling out", now=T0, generation=1
    )
    assert result == [
        Condition(
            type="Ready",
            status="False",
            reason="Progressing",
            message="rolling out",
            last_transition_time=T0,
            observed_generation=1,
        )
    ]


def test_same_status_keeps_the_transition_time_but_takes_the_new_reason() -> None:
    first = conditions.set_condition([], "Ready", "False", "Progressing", "", now=T0, generation=1)
    second = conditions.set_condition(
        first, "Ready", "False", "PodsNotReady", "0/2 ready", now=T1, generation=2
    )
    assert second[0].last_transition_time == T0
    assert (second[0].reason, second[0].message, second[0].observed_generation) == (
        "PodsNotReady",
        "0/2 ready",
        2,
    )


def test_status_change_moves_the_transition_time() -> None:
    first = conditions.set_condition([], "Ready", "False", "Progressing", "", now=T0, generation=1)
    second = conditions.set_condition(
        first, "Ready", "True", "RolloutComplete", "", now=T1, generation=1
    )
    assert second[0].last_transition_time == T1
    assert conditions.is_true(second, "Ready")


def test_order_is_kept_and_other_conditions_untouched() -> None:
    start = conditions.set_condition(
        [], "Ready", "True", "RolloutComplete", "", now=T0, generation=1
    )
    start = conditions.set_condition(
        start, "Degraded", "False", "Healthy", "", now=T0, generation=1
    )
    result = conditions.set_condition(
        start, "Ready", "False", "PodsNotReady", "", now=T1, generation=1
    )
    assert [c.type for c in result] == ["Ready", "Degraded"]
    assert result[1] == start[1]
    assert conditions.find(result, "Progressing") is None
    assert not conditions.is_true(result, "Progressing")
