"""When the scheduled model report is due (seaway.planning.summary): pure, with given clocks.

The due time lives in status; these tests replay the passes an operator would make, including
one that restarts after missing several due times, and a clock that steps back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from seaway.api.modeldeployment import Summary, SummaryStatus
from seaway.planning import summary as plan

MONDAY_9 = datetime(2026, 11, 30, 9, 0, 0, tzinfo=UTC)  # 2026-11-30 is a Monday


def at(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


class Operator:
    """Replays passes the way handlers/summary.py makes them: status is all that survives."""

    def __init__(self, spec: Summary | None) -> None:
        self.spec = spec
        self.status: SummaryStatus | None = None
        self.sent: list[tuple[datetime, int]] = []
        self.writes = 0

    def tick(self, now: datetime, error: str | None = None) -> plan.Decision:
        decision = plan.decide(self.spec, self.status, now)
        if decision.status != self.status:
            self.writes += 1
            self.status = decision.status
        if decision.send:
            assert self.status is not None
            self.sent.append((now, decision.window_seconds))
            outcome = plan.record(self.status, self.status.last_due_at, now, error)
            assert outcome is not None
            self.writes += 1
            self.status = outcome
        return decision


@pytest.mark.parametrize(
    ("schedule", "now", "first_due", "window"),
    [
        ("@daily", "2026-11-30T09:00:00Z", "2026-12-01T00:00:00Z", 86400),
        ("@weekly", "2026-11-30T09:00:00Z", "2026-12-06T00:00:00Z", 7 * 86400),
        ("0 9 * * 1", "2026-11-30T08:59:59Z", "2026-11-30T09:00:00Z", 7 * 86400),
        ("0 9 * * 1", "2026-11-30T09:00:00Z", "2026-12-07T09:00:00Z", 7 * 86400),
        ("* * * * *", "2026-11-30T09:00:30Z", "2026-11-30T09:01:00Z", 60),
        ("*/15 * * * *", "2026-11-30T09:00:00Z", "2026-11-30T09:15:00Z", 900),
        # weekdays at 9: Monday's summary covers the weekend since Friday
        ("0 9 * * 1-5", "2026-11-28T12:00:00Z", "2026-11-30T09:00:00Z", 3 * 86400),
    ],
)
def test_first_sight_records_the_next_due_time_and_sends_nothing(
    schedule: str, now: str, first_due: str, window: int
) -> None:
    op = Operator(Summary(schedule=schedule))
    decision = op.tick(at(now))
    assert not decision.send and op.sent == []
    assert op.status == SummaryStatus(schedule=schedule, next_at=first_due)
    assert decision.requeue_after == min(
        plan.MAX_WAIT_SECONDS, (at(first_due) - at(now)).total_seconds()
    )
    op.tick(at(first_due))
    assert op.sent == [(at(first_due), window)]
    assert op.status is not None
    assert op.status.last_due_at == first_due and op.status.last_sent_at == first_due
    assert op.status.last_result == "Sent"


def test_exactly_one_send_per_period_and_no_write_between() -> None:
    op = Operator(Summary(schedule="0 * * * *"))
    op.tick(MONDAY_9 + timedelta(minutes=1))
    writes = op.writes
    for minute in range(2, 60, 7):  # resyncs within the hour: nothing due, nothing written
        assert not op.tick(MONDAY_9 + timedelta(minutes=minute)).send
    assert op.writes == writes and op.sent == []
    for moment in ("10:00:00", "10:00:01", "10:30:00", "10:59:59", "11:00:00", "11:00:00"):
        op.tick(at(f"2026-11-30T{moment}Z"))
    assert [s for s, _ in op.sent] == [at("2026-11-30T10:00:00Z"), at("2026-11-30T11:00:00Z")]
    assert op.writes == writes + 4  # a claim and an outcome per send


def test_restart_after_missed_periods_sends_once_not_once_per_period() -> None:
    op = Operator(Summary(schedule="@daily"))
    op.tick(at("2026-11-30T09:00:00Z"))
    assert op.status is not None and op.status.next_at == "2026-12-01T00:00:00Z"
    # the operator is down for three and a half days; a new process has only status
    restarted = Operator(op.spec)
    restarted.status = op.status
    decision = restarted.tick(at("2026-12-04T12:00:00Z"))
    assert decision.send and decision.window_seconds == 86400
    assert restarted.sent == [(at("2026-12-04T12:00:00Z"), 86400)]
    assert restarted.status is not None
    assert restarted.status.last_due_at == "2026-12-01T00:00:00Z"
    assert restarted.status.next_at == "2026-12-05T00:00:00Z"
    assert plan.missed("@daily", at("2026-12-01T00:00:00Z"), at("2026-12-04T12:00:00Z")) == 3
    for hours in (1, 6, 11):
        restarted.tick(at("2026-12-04T12:00:00Z") + timedelta(hours=hours))
    assert len(restarted.sent) == 1


def test_a_crash_during_the_send_does_not_send_that_period_again() -> None:
    op = Operator(Summary(schedule="@hourly"))
    op.tick(at("2026-11-30T09:30:00Z"))
    claim = plan.decide(op.spec, op.status, at("2026-11-30T10:00:05Z"))
    assert claim.send and claim.status is not None and claim.status.last_result == "Sending"
    # the claim was written, then the process died before the send finished
    after_restart = plan.decide(op.spec, claim.status, at("2026-11-30T10:00:20Z"))
    assert not after_restart.send and after_restart.status == claim.status
    assert plan.decide(op.spec, claim.status, at("2026-11-30T11:00:00Z")).send


def test_a_failed_send_is_recorded_and_not_retried_within_the_period() -> None:
    op = Operator(Summary(schedule="@hourly"))
    op.tick(at("2026-11-30T09:30:00Z"))
    op.tick(at("2026-11-30T10:00:00Z"), error="127.0.0.1:9 could not be reached")
    assert op.status is not None
    assert (op.status.last_result, op.status.message) == (
        "Failed",
        "127.0.0.1:9 could not be reached",
    )
    assert op.status.last_sent_at is None
    op.tick(at("2026-11-30T10:20:00Z"))
    assert len(op.sent) == 1
    op.tick(at("2026-11-30T11:00:00Z"))
    assert len(op.sent) == 2 and op.status.last_result == "Sent" and op.status.message is None


def test_clock_stepping_back_never_sends_a_period_twice() -> None:
    op = Operator(Summary(schedule="@hourly"))
    op.tick(at("2026-11-30T09:30:00Z"))
    op.tick(at("2026-11-30T10:00:00Z"))
    assert op.status is not None and op.status.next_at == "2026-11-30T11:00:00Z"
    # the clock steps back over the 10:00 due time: nextAt stays where it was
    decision = op.tick(at("2026-11-30T09:59:00Z"))
    assert not decision.send and op.status.next_at == "2026-11-30T11:00:00Z"
    op.tick(at("2026-11-30T10:00:00Z"))
    assert len(op.sent) == 1


def test_the_second_before_the_due_time_and_a_fraction_after() -> None:
    op = Operator(Summary(schedule="@hourly"))
    op.tick(at("2026-11-30T09:30:00Z"))
    assert not op.tick(datetime(2026, 11, 30, 9, 59, 59, 999999, tzinfo=UTC)).send
    # microseconds are dropped: 09:59:59.999999 is not yet 10:00
    assert op.tick(datetime(2026, 11, 30, 10, 0, 0, 1, tzinfo=UTC)).send


def test_changed_schedule_starts_afresh_and_keeps_history() -> None:
    op = Operator(Summary(schedule="@hourly"))
    op.tick(at("2026-11-30T09:30:00Z"))
    op.tick(at("2026-11-30T10:00:00Z"))
    op.spec = Summary(schedule="@daily")
    decision = op.tick(at("2026-11-30T10:10:00Z"))
    assert not decision.send
    assert op.status is not None
    assert op.status.schedule == "@daily" and op.status.next_at == "2026-12-01T00:00:00Z"
    assert op.status.last_sent_at == "2026-11-30T10:00:00Z"


def test_removing_the_summary_removes_its_status_once() -> None:
    op = Operator(Summary(schedule="@hourly"))
    op.tick(at("2026-11-30T09:30:00Z"))
    op.spec = None
    op.tick(at("2026-11-30T09:31:00Z"))
    assert op.status is None and op.writes == 2
    decision = op.tick(at("2026-11-30T09:32:00Z"))
    assert op.writes == 2 and decision.requeue_after is None


@pytest.mark.parametrize(
    "schedule",
    ["61 * * * *", "0 25 * * *", "0 0 30 2 *", "* * * * funday"],
)
def test_a_schedule_the_cron_library_refuses_is_said_once(schedule: str) -> None:
    op = Operator(Summary(schedule=schedule))
    decision = op.tick(MONDAY_9)
    assert op.status is not None and op.status.last_result == "InvalidSchedule"
    assert op.status.next_at is None and schedule in (op.status.message or "")
    assert [e.reason for e in decision.events] == ["InvalidSchedule"]
    assert decision.requeue_after is None and not decision.send
    again = op.tick(MONDAY_9 + timedelta(hours=1))
    assert again.events == () and op.writes == 1
    op.spec = Summary(schedule="@hourly")
    op.tick(MONDAY_9 + timedelta(hours=1, minutes=5))
    assert op.status.last_result is None and op.status.next_at == "2026-11-30T11:00:00Z"


@pytest.mark.parametrize(
    ("window", "seconds"), [(None, 86400), ("7d", 7 * 86400), ("90m", 5400), ("30s", 60)]
)
def test_window_defaults_to_the_period_and_is_at_least_a_minute(
    window: str | None, seconds: int
) -> None:
    spec = Summary(schedule="@daily", window=window)
    assert plan.window_seconds(spec, at("2026-12-01T00:00:00Z")) == seconds


def test_waits_are_capped_so_a_stepped_clock_is_noticed() -> None:
    op = Operator(Summary(schedule="@weekly"))
    decision = op.tick(MONDAY_9)
    assert decision.requeue_after == plan.MAX_WAIT_SECONDS
    near = plan.decide(op.spec, op.status, at("2026-12-05T23:59:59Z"))
    assert near.requeue_after == 1.0


def test_record_ignores_an_outcome_whose_claim_is_gone() -> None:
    claimed = SummaryStatus(
        schedule="@hourly",
        next_at="2026-11-30T11:00:00Z",
        last_due_at="2026-11-30T10:00:00Z",
        last_result="Sending",
    )
    assert plan.record(None, "2026-11-30T10:00:00Z", MONDAY_9, None) is None
    assert plan.record(claimed, "2026-11-30T09:00:00Z", MONDAY_9, None) is None
    sent = plan.record(claimed, "2026-11-30T10:00:00Z", at("2026-11-30T10:00:03Z"), None)
    assert sent is not None and sent.last_sent_at == "2026-11-30T10:00:03Z"
