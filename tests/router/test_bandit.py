"""Bandits through the real router: rewards posted to /feedback by request id steer traffic to
the better variant, while every variant keeps its exploration floor."""

from __future__ import annotations

import math
import random
import time
from collections import Counter

import pytest

from tests.router.conftest import blast, metric, raw_request, routes_doc

RATES = {1: 0.2, 2: 0.5, 3: 0.8}  # simulated reward rate of each revision


def run_rounds(rt, rounds: int, per_round: int, rng: random.Random,
               deadline: float) -> list[Counter[int]]:
    """Send ``per_round`` requests, reward each answer by its revision's rate, post the rewards;
    repeat. The revisions seen per round."""
    client = rt.client()
    seen: list[Counter[int]] = []
    for _ in range(rounds):
        assert time.monotonic() < deadline, "bandit rounds took too long"
        replies = blast(rt.port, [raw_request(body=b"{}")] * per_round)
        assert {r.status for r in replies} == {200}
        feedback = [{"requestId": r.headers["x-request-id"],
                     "reward": 1 if rng.random() < RATES[r.revision] else 0} for r in replies]
        answer = client.post("/feedback", feedback)
        assert answer.status == 200 and answer.json() == {"accepted": per_round, "unknown": []}
        seen.append(Counter(r.revision for r in replies))
        time.sleep(0.01)  # let the (debounced) reallocation run now and then
    return seen


@pytest.mark.parametrize("bandit", [
    {"algorithm": "ThompsonSampling", "explorationFloorPercent": 5},
    {"algorithm": "EpsilonGreedy", "explorationFloorPercent": 5, "epsilon": "0.1"},
])
def test_the_better_arm_wins_the_majority_and_the_others_keep_the_floor(backends, router,
                                                                         bandit):
    bk = backends("a", "b", "c")
    experiment = {"type": "Bandit", "bandit": bandit,
                  "variants": [{"revision": 1}, {"revision": 2}, {"revision": 3}]}
    rt = router(routes_doc(("r1", 1, bk.url("a"), 34), ("r2", 2, bk.url("b"), 33),
                           ("r3", 3, bk.url("c"), 33), experiment=experiment))
    rng = random.Random(11)
    deadline = time.monotonic() + 60
    seen = run_rounds(rt, 30, 100, rng, deadline)  # 3,000 requests and feedback events

    first = sum(seen[:3], Counter())
    assert min(first.values()) > 50  # it starts out even: ~100 each of 300
    state = rt.client().get("/experiment").json()
    shares = {v["revision"]: v["share"] for v in state["variants"]}
    assert state["bestRevision"] == 3 and state["confidence"] > 0.95
    assert shares[3] > 0.5, state
    assert min(shares[1], shares[2]) >= 0.05 - 1e-9, state
    assert sum(v["feedback"] for v in state["variants"]) == 3000
    means = {v["revision"]: v["meanReward"] for v in state["variants"]}
    assert means[3] > means[2] > means[1]

    # what the traffic of the last 1,000 requests shows
    last = sum(seen[-10:], Counter())
    assert last[3] > 500, last
    floor_low = 1000 * 0.05 - 5 * math.sqrt(1000 * 0.05 * 0.95)
    assert last[1] >= floor_low and last[2] >= floor_low, last

    text = rt.metrics()
    assert metric(text, "seaway_router_experiment_allocation", revision="3") > 0.5
    assert metric(text, "seaway_router_experiment_allocation", revision="1") >= 0.05 - 1e-9
    assert metric(text, "seaway_router_experiment_feedback") == 3000
    assert metric(text, "seaway_router_backend_weight", revision="3") > 50


def test_feedback_is_checked_and_counted_once(backends, router):
    bk = backends("a", "b")
    experiment = {"type": "Bandit", "variants": [{"revision": 1}, {"revision": 2}]}
    rt = router(routes_doc(("r1", 1, bk.url("a"), 50), ("r2", 2, bk.url("b"), 50),
                           experiment=experiment))
    client = rt.client()
    rid = client.get("/v2/models/m/infer").headers["x-request-id"]
    assert client.post("/feedback", {"requestId": rid, "reward": 1.5}).status == 400
    assert client.post("/feedback", {"requestId": rid, "reward": True}).status == 400
    assert client.post("/feedback", {"reward": 1}).status == 400
    assert client.post("/feedback", b"{").status == 400
    assert client.get("/feedback").status == 405
    # the id may come in the header for a single reward
    ok = client.post("/feedback", {"reward": 0.5}, headers={"X-Request-Id": rid})
    assert ok.status == 200 and ok.json() == {"accepted": 1, "unknown": []}
    again = client.post("/feedback", {"requestId": rid, "reward": 1})
    assert again.status == 404 and "already rewarded" in again.json()["error"]
    batch = client.post("/feedback", [{"requestId": "nope", "reward": 0}])
    assert batch.json() == {"accepted": 0, "unknown": ["nope"]}
    state = client.get("/experiment").json()
    assert sum(v["feedback"] for v in state["variants"]) == 1
    assert sum(v["rewardSum"] for v in state["variants"]) == 0.5
    assert metric(rt.metrics(), "seaway_router_feedback_unknown_total") == 2
    # without an experiment there is nothing to reward
    rt.write(routes_doc(("r1", 1, bk.url("a"), 100)))
    rt.wait_generation(2)
    rid = client.get("/").headers["x-request-id"]
    assert client.post("/feedback", {"requestId": rid, "reward": 1}).status == 404
    assert client.get("/experiment").status == 404


def test_sticky_callers_stay_put_while_no_reward_arrives(backends, router):
    bk = backends("a", "b")
    experiment = {"type": "Bandit", "sticky": {"header": "X-User-Id"},
                  "variants": [{"revision": 1}, {"revision": 2}]}
    rt = router(routes_doc(("r1", 1, bk.url("a"), 50), ("r2", 2, bk.url("b"), 50),
                           experiment=experiment))
    client = rt.client()
    users = [f"u{i}" for i in range(200)]
    requests = [raw_request(headers={"X-User-Id": u}) for u in users]
    replies = blast(rt.port, requests)
    # variant 2 converts better: the bandit shifts traffic towards it
    answer = client.post("/feedback", [{"requestId": r.headers["x-request-id"],
                                        "reward": 1 if r.revision == 2 else 0}
                                       for r in replies])
    assert answer.json()["accepted"] == 200
    deadline = time.monotonic() + 5
    while metric(rt.metrics(), "seaway_router_backend_weight", revision="2") < 90:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    settled = [r.revision for r in blast(rt.port, requests)]
    for _ in range(3):  # scrapes and time change nothing without new rewards
        rt.metrics()
        client.get("/experiment")
        assert [r.revision for r in blast(rt.port, requests)] == settled
    moved = sum(1 for before, after in zip(replies, settled, strict=True)
                if before.revision != after)
    assert all(after == 2 for before, after in zip(replies, settled, strict=True)
               if before.revision != after)
    assert 0 < moved < 200
