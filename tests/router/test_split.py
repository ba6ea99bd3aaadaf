"""Pure routing math: shares, random and sticky picks, bandit allocations, signed request ids."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from typing import Any

import pytest

from seaway_serving.router import config, split
from seaway_serving.router.bandit import Experiment, Tickets
from seaway_serving.router.config import BanditSettings


def routes(weights: dict[int, int], experiment: dict[str, Any] | None = None) -> config.Routes:
    doc: dict[str, Any] = {"version": 1, "backends": [
        {"name": f"r{r}", "revision": r, "url": f"http://r{r}", "weight": w}
        for r, w in weights.items()]}
    if experiment is not None:
        doc["experiment"] = experiment
    return config.parse(json.dumps(doc))


def ab(**weights: int) -> dict[str, Any]:
    return {"type": "ABTest", "variants": [{"revision": int(k[1:]), "weight": w}
                                           for k, w in weights.items()]}


@pytest.mark.parametrize(("weights", "experiment", "allocation", "expected"), [
    # no experiment: the rollout's weights
    ({1: 90, 2: 10}, None, None, {"r1": 0.9, "r2": 0.1}),
    # an A/B test over both revisions replaces the rollout's split
    ({1: 90, 2: 10}, ab(r1=70, r2=30), None, {"r1": 0.7, "r2": 0.3}),
    # a canary outside the experiment keeps its share; the variants split the rest
    ({1: 45, 2: 45, 3: 10}, ab(r1=50, r2=50), None, {"r1": 0.45, "r2": 0.45, "r3": 0.1}),
    ({1: 80, 2: 10, 3: 10}, ab(r1=75, r2=25), None, {"r1": 0.675, "r2": 0.225, "r3": 0.1}),
    # a variant with weight 0 is out of the experiment: the others take its share
    ({1: 50, 2: 50, 3: 0}, ab(r2=20, r3=80), None, {"r1": 0.5, "r2": 0.5, "r3": 0.0}),
    # A/B weight only on variants taken out: the remaining variants keep the rollout's split
    ({1: 60, 2: 40, 3: 0}, ab(r1=0, r2=0, r3=100), None, {"r1": 0.6, "r2": 0.4, "r3": 0.0}),
    # a bandit's allocation over its variants
    ({1: 50, 2: 50}, {"type": "Bandit", "variants": [{"revision": 1}, {"revision": 2}]},
     {1: 0.25, 2: 0.75}, {"r1": 0.25, "r2": 0.75}),
])
def test_shares(weights, experiment, allocation, expected):
    got = split.shares(routes(weights, experiment), allocation)
    assert got.keys() == expected.keys()
    for name, share in expected.items():
        assert got[name] == pytest.approx(share), (name, got)


def test_random_pick_follows_the_shares():
    s = split.Split.of({"a": 0.9, "b": 0.1, "zero": 0.0})
    assert s.names == ("a", "b")
    rng = random.Random(1)
    counts = Counter(s.pick(rng.random()) for _ in range(20_000))
    assert abs(counts["b"] - 2000) < 5 * math.sqrt(20_000 * 0.09)
    assert s.pick(0.0) == "a" and s.pick(0.95) == "b" and s.pick(0.999999999) == "b"


def test_sticky_pick_follows_the_shares_and_is_stable():
    s = split.Split.of({"a": 0.6, "b": 0.3, "c": 0.1})
    keys = [f"user-{i}".encode() for i in range(30_000)]
    first = [s.pick_sticky(k) for k in keys]
    assert first == [s.pick_sticky(k) for k in keys]
    counts = Counter(first)
    for name, p in (("a", 0.6), ("b", 0.3), ("c", 0.1)):
        assert abs(counts[name] - 30_000 * p) < 5 * math.sqrt(30_000 * p * (1 - p)), counts
    assert split.Split.of({"only": 1.0}).pick_sticky(b"k") == "only"


def test_sticky_keys_move_as_little_as_the_weights_allow():
    keys = [f"k{i}".encode() for i in range(20_000)]

    def moves(before: dict[str, float], after: dict[str, float]) -> Counter[tuple[str, str]]:
        b, a = split.Split.of(before), split.Split.of(after)
        pairs = Counter((b.pick_sticky(k), a.pick_sticky(k)) for k in keys)
        return Counter({pair: n for pair, n in pairs.items() if pair[0] != pair[1]})

    def near(count: int, share: float) -> bool:
        return abs(count - 20_000 * share) < 5 * math.sqrt(20_000 * share * (1 - share))

    # one backend grows, the others keep their ratio: only keys joining it move, and exactly
    # the share it gained (the least any scheme can move)
    grown = moves({"a": 0.5, "b": 0.3, "c": 0.2}, {"a": 0.4375, "b": 0.2625, "c": 0.3})
    assert {to for _, to in grown} == {"c"} and near(sum(grown.values()), 0.1)
    # one backend drops to 0: only its keys move
    gone = moves({"a": 0.5, "b": 0.3, "c": 0.2}, {"a": 0.5, "b": 0.3})
    assert {frm for frm, _ in gone} == {"c"} and near(sum(gone.values()), 0.2)
    # two backends (A/B, canary): exactly the points that changed hands
    ab = moves({"a": 0.5, "b": 0.5}, {"a": 0.6, "b": 0.4})
    assert set(ab) == {("b", "a")} and near(ab[("b", "a")], 0.1)
    # several shares change at once: a key only leaves a loser or joins a gainer, and little
    # more than the minimum (10%) moves
    mixed = moves({"a": 0.5, "b": 0.3, "c": 0.2}, {"a": 0.5, "b": 0.2, "c": 0.3})
    assert all(frm == "b" or to == "c" for frm, to in mixed)
    assert sum(mixed.values()) < 20_000 * 0.2


def test_sticky_value_from_header_or_cookie():
    assert split.sticky_value("u1", None, None) == "u1"
    assert split.sticky_value("", None, None) is None
    assert split.sticky_value(None, "a=1; session=abc ; b=2", "session") == "abc"
    assert split.sticky_value(None, 'session="q"', "session") == "q"
    assert split.sticky_value(None, "sessionx=1", "session") is None
    assert split.sticky_value(None, None, "session") is None


def test_floor_mixing():
    mixed = split.mix_floor({1: 1.0, 2: 0.0, 3: 0.0}, [1, 2, 3], 0.05)
    assert mixed == pytest.approx({1: 0.9, 2: 0.05, 3: 0.05})
    assert sum(mixed.values()) == pytest.approx(1.0)
    assert split.mix_floor({}, [1, 2], 0.1) == pytest.approx({1: 0.5, 2: 0.5})
    assert split.mix_floor({1: 1.0}, [], 0.1) == {}


def feed(exp: Experiment, rates: dict[int, float], n: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    for _ in range(n):
        for revision, rate in rates.items():
            exp.arm(revision).requests += 1
            exp.reward(revision, 1.0 if rng.random() < rate else 0.0)


def test_thompson_allocation_favours_the_best_arm_and_keeps_the_floor():
    exp = Experiment(seed=3)
    settings = BanditSettings("ThompsonSampling", 5, 0.1)
    untrained = exp.allocation(settings, [1, 2, 3])
    assert all(abs(v - 1 / 3) < 0.03 for v in untrained.values()), untrained
    feed(exp, {1: 0.2, 2: 0.5, 3: 0.8}, 200)
    alloc = exp.allocation(settings, [1, 2, 3])
    assert sum(alloc.values()) == pytest.approx(1.0)
    assert alloc[3] > 0.85
    assert alloc[1] >= 0.05 and alloc[2] >= 0.05
    best = exp.best_probabilities([1, 2, 3])
    assert best[3] > 0.99
    # an arm taken out of the experiment is not allocated anything
    assert set(exp.allocation(settings, [1, 2])) == {1, 2}


def test_thompson_estimates_do_not_jitter():
    """The same posteriors give the same allocation (no Monte Carlo noise between two
    recomputations), and one more reward moves it a little, not at random."""
    exp = Experiment(seed=5)
    feed(exp, {1: 0.5, 2: 0.55}, 40)
    first = exp.best_probabilities([1, 2])
    assert exp.best_probabilities([1, 2]) == first
    assert Experiment(seed=5).best_probabilities([1, 2]) != first  # arms empty: a real change
    exp.reward(2, 1.0)
    after = exp.best_probabilities([1, 2])
    assert after[2] > first[2] and after[2] - first[2] < 0.05


def test_epsilon_greedy_allocation():
    exp = Experiment(seed=3)
    feed(exp, {1: 0.3, 2: 0.6}, 100)
    alloc = exp.allocation(BanditSettings("EpsilonGreedy", 5, 0.2), [1, 2])
    assert alloc == pytest.approx({1: 0.1, 2: 0.9})
    # the floor wins over a smaller epsilon: 2 arms x 20% floor = 40% spread evenly
    alloc = exp.allocation(BanditSettings("EpsilonGreedy", 20, 0.05), [1, 2])
    assert alloc == pytest.approx({1: 0.2, 2: 0.8})
    # ties split the greedy share
    fresh = Experiment()
    assert fresh.allocation(BanditSettings("EpsilonGreedy", 0, 0.0), [4, 5]) == \
        pytest.approx({4: 0.5, 5: 0.5})


def test_fractional_rewards_update_the_posterior():
    exp = Experiment()
    exp.reward(1, 0.25)
    exp.reward(1, 0.75)
    arm = exp.arm(1)
    assert (arm.feedback, arm.alpha, arm.beta) == (2, 2.0, 2.0)
    exp.forget_except([2])
    assert 1 not in exp.arms


def test_tickets_are_redeemed_once_only_if_issued_here_and_fresh():
    tickets = Tickets(capacity=2, ttl=10.0)
    a = tickets.issue(1, now=0.0)
    assert tickets.redeem(a, now=1.0) == (1, "")
    assert tickets.redeem(a, now=2.0) == (None, "already rewarded")
    assert tickets.redeem(tickets.issue(2, now=0.0), now=11.0) == (None, "expired")
    assert Tickets(2, 10.0).redeem(a, now=1.0) == (None, "not issued by this router")
    assert tickets.redeem("1.0.00.nope", now=1.0)[0] is None
    assert tickets.redeem(tickets.issue(2, now=3.0), now=4.0) == (2, "")
    # full of redeemed ids within the ttl: refused, never forgotten early (no second reward)
    assert tickets.redeem(tickets.issue(1, now=4.0), now=5.0)[1].startswith("too many")
    assert tickets.redeem(tickets.issue(1, now=12.0), now=12.5) == (1, "")  # a has expired
