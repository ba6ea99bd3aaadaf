"""When the scheduled model report is due: (schedule, status, now) -> what to write and send.

The due time lives in ``status.summary.nextAt``, never in memory, so a restarted operator
neither skips nor repeats a send:

- A new (or changed) schedule only records its first due time: nothing is sent at once.
- At or after ``nextAt`` one summary is due. The claim (``lastDueAt``, the following ``nextAt``
  counted from *now*, ``lastResult: Sending``) is written before anything is sent, so a crash
  during the send loses that one summary instead of sending it twice: at most once per period.
  An operator that was down over several due times therefore sends once, not once per missed
  period.
- ``nextAt`` never moves earlier while the schedule stays the same: a clock that steps back
  waits longer, and never sends a period twice.

Pure: no clock, no I/O. Times are whole seconds in UTC (cron fires on minutes).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from croniter import croniter

from seaway.api.modeldeployment import Summary, SummaryStatus
from seaway.planning.durations import format_time, parse_duration, parse_time
from seaway.planning.rollout import Event

#: The shortest window the report's rate queries take.
MIN_WINDOW_SECONDS = 60
#: Look again at least this often: the work queue's delay runs on a monotonic clock, which a
#: suspended host or a stepped wall clock can leave behind the due time.
MAX_WAIT_SECONDS = 3600.0


@dataclass(frozen=True)
class Decision:
    #: ``status.summary`` as it should be before anything is sent (None: absent).
    status: SummaryStatus | None
    #: Send one summary now (the claim in ``status`` is written first).
    send: bool = False
    window_seconds: int = 0
    events: tuple[Event, ...] = ()
    #: Seconds until the next due time (None: nothing scheduled).
    requeue_after: float | None = None


def next_due(schedule: str, after: datetime) -> datetime:
    """The first time strictly after ``after``; raises ValueError for a schedule that cannot be
    used (out-of-range fields, a date that never comes)."""
    found: datetime = croniter(schedule, after).get_next(datetime)
    return found


def period_seconds(schedule: str, due: datetime) -> int:
    """Seconds from the due time before ``due`` to ``due``: the default window."""
    before: datetime = croniter(schedule, due).get_prev(datetime)
    return max(MIN_WINDOW_SECONDS, int((due - before).total_seconds()))


def window_seconds(spec: Summary, due: datetime) -> int:
    if spec.window is not None:
        return max(MIN_WINDOW_SECONDS, int(parse_duration(spec.window).total_seconds()))
    return period_seconds(spec.schedule, due)


def _wait(until: datetime, now: datetime) -> float:
    return min(MAX_WAIT_SECONDS, max(1.0, (until - now).total_seconds()))


def _parsed(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return parse_time(text)
    except ValueError:
        return None


def decide(spec: Summary | None, status: SummaryStatus | None, now: datetime) -> Decision:
    """What to write and whether to send, from the spec's schedule and the status's due time."""
    if spec is None:
        return Decision(status=None)  # the spec dropped it: so does status
    now = now.replace(microsecond=0)
    try:
        following = next_due(spec.schedule, now)
    except (ValueError, KeyError) as exc:
        message = (
            f"notifications.summary.schedule {spec.schedule!r} cannot be used ({exc});"
            " no summary is sent until it is fixed"
        )
        new = (status or SummaryStatus(schedule=spec.schedule)).model_copy(
            update={
                "schedule": spec.schedule,
                "next_at": None,
                "last_result": "InvalidSchedule",
                "message": message,
            }
        )
        said = status is not None and status.last_result == "InvalidSchedule"
        said = said and status is not None and status.schedule == spec.schedule
        events = () if said else (Event("Warning", "InvalidSchedule", message),)
        return Decision(status=new, events=events)
    next_at = _parsed(status.next_at) if status is not None else None
    if status is None or status.schedule != spec.schedule or next_at is None:
        base = status or SummaryStatus(schedule=spec.schedule)
        changes: dict[str, object] = {"schedule": spec.schedule, "next_at": format_time(following)}
        if base.last_result == "InvalidSchedule":
            changes.update(last_result=None, message=None)
        return Decision(status=base.model_copy(update=changes), requeue_after=_wait(following, now))
    if now < next_at:
        return Decision(status=status, requeue_after=_wait(next_at, now))
    claim = status.model_copy(
        update={
            "last_due_at": format_time(next_at),
            "next_at": format_time(following),
            "last_result": "Sending",
            "message": None,
        }
    )
    return Decision(
        status=claim,
        send=True,
        window_seconds=window_seconds(spec, next_at),
        requeue_after=_wait(following, now),
    )


def record(
    status: SummaryStatus | None, due: str | None, now: datetime, error: str | None
) -> SummaryStatus | None:
    """``status`` with the outcome of the send claimed for ``due``; None when the claim is gone
    (the schedule changed or was removed meanwhile): nothing to record."""
    if status is None or status.last_due_at != due or status.last_result != "Sending":
        return None
    if error is None:
        return status.model_copy(
            update={"last_result": "Sent", "last_sent_at": format_time(now), "message": None}
        )
    return status.model_copy(update={"last_result": "Failed", "message": error})


def missed(schedule: str, due: datetime, now: datetime, limit: int = 1000) -> int:
    """Due times after ``due`` up to ``now`` that the one send covers (at most ``limit``)."""
    count = 0
    moment = due
    while count < limit:
        moment = next_due(schedule, moment)
        if moment > now:
            break
        count += 1
    return count
