from datetime import UTC, datetime, timedelta

from seaway.planning.lease import LeaseView, decide

T = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


def test_lease_decisions() -> None:
    held = LeaseView(holder="b", renewed=T, duration_seconds=15)
    assert decide(None, "a", T) == "acquire"
    assert decide(held, "b", T + timedelta(seconds=60)) == "renew"
    assert decide(held, "a", T + timedelta(seconds=10)) == "follow"
    assert decide(held, "a", T + timedelta(seconds=16)) == "acquire"
    assert decide(LeaseView(holder=None, renewed=None, duration_seconds=15), "a", T) == "acquire"
