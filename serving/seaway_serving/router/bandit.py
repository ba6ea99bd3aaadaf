"""Experiment state: requests and rewards per variant, the bandit's allocation, the reward ledger.

Rewards are numbers in [0, 1] (1 = the outcome you want, e.g. a click or a conversion) and
update a Beta posterior per variant: ``alpha = 1 + sum(r)``, ``beta = 1 + sum(1 - r)``.

* Thompson sampling sends each variant the probability that it is the best one under the
  posteriors, estimated by Monte Carlo (numpy, a few thousand joint draws from a fixed random
  stream). It is recomputed when feedback arrives (at most a few times a second), not per
  request: with rewards arriving seconds after the requests, per-request draws would not learn
  faster, and one probability per variant is what sticky hashing and the exploration floor
  need.
* Epsilon-greedy sends ``max(epsilon, n * floor)`` of the traffic uniformly and the rest to the
  variant with the best posterior mean.

Either way every variant keeps at least ``explorationFloorPercent`` of the experiment's traffic,
so a variant that was unlucky early can still recover.

The ledger remembers which variant answered each request id (bounded in size and age) so a
reward posted later to ``/feedback`` is credited to that variant, once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from seaway_serving.router.config import BanditSettings
from seaway_serving.router.split import mix_floor

DRAWS = 8192


@dataclass
class Arm:
    requests: int = 0
    feedback: int = 0
    reward_sum: float = 0.0

    @property
    def alpha(self) -> float:
        return 1.0 + self.reward_sum

    @property
    def beta(self) -> float:
        return 1.0 + (self.feedback - self.reward_sum)

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)


class Experiment:
    """Per-variant numbers. Kept across config changes (keyed by revision), so a weight change
    or a reload does not forget what was learned."""

    def __init__(self, seed: int | None = None) -> None:
        self.arms: dict[int, Arm] = {}
        self.seed = int(np.random.SeedSequence(seed).generate_state(1)[0])

    def arm(self, revision: int) -> Arm:
        arm = self.arms.get(revision)
        if arm is None:
            arm = self.arms[revision] = Arm()
        return arm

    def reward(self, revision: int, value: float) -> None:
        arm = self.arm(revision)
        arm.feedback += 1
        arm.reward_sum += value

    def best_probabilities(self, revisions: Sequence[int]) -> dict[int, float]:
        """P(variant is the best) under the Beta posteriors, by Monte Carlo."""
        if not revisions:
            return {}
        if len(revisions) == 1:
            return {revisions[0]: 1.0}
        alpha = np.array([self.arm(r).alpha for r in revisions])
        beta = np.array([self.arm(r).beta for r in revisions])
        # The same random stream every time: the estimate is then a function of the posteriors
        # alone, so it does not jitter between recomputations (which would move sticky callers
        # back and forth across a variant boundary) and moves smoothly as rewards arrive.
        rng = np.random.default_rng(self.seed)
        draws = rng.beta(alpha, beta, size=(DRAWS, len(revisions)))
        wins = np.bincount(draws.argmax(axis=1), minlength=len(revisions))
        return {r: float(w) / DRAWS for r, w in zip(revisions, wins, strict=True)}

    def allocation(self, settings: BanditSettings, revisions: Sequence[int]) -> dict[int, float]:
        """The share of the experiment's traffic each eligible variant should get now."""
        if not revisions:
            return {}
        floor = settings.exploration_floor_percent / 100
        if settings.algorithm == "ThompsonSampling":
            return mix_floor(self.best_probabilities(revisions), revisions, floor)
        n = len(revisions)
        means = {r: self.arm(r).mean for r in revisions}
        top = max(means.values())
        leaders = [r for r in revisions if means[r] == top]
        explore = min(max(settings.epsilon, n * floor), 1.0)
        return {r: explore / n + (1 - explore) * (1 / len(leaders) if r in leaders else 0.0)
                for r in revisions}

    def forget_except(self, revisions: Iterable[int]) -> None:
        keep = set(revisions)
        for r in list(self.arms):
            if r not in keep:
                del self.arms[r]


class Ledger:
    """request id -> variant revision, for rewards that arrive after the response.

    Bounded: entries older than ``ttl`` seconds or beyond ``capacity`` are dropped, oldest
    first (a dict keeps insertion order, so the oldest entry is always the first)."""

    def __init__(self, capacity: int, ttl: float) -> None:
        self.capacity = capacity
        self.ttl = ttl
        self._entries: dict[str, tuple[int, float]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, request_id: str, revision: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        entries = self._entries
        entries.pop(request_id, None)
        entries[request_id] = (revision, now)
        if len(entries) > self.capacity or self._expired(now):
            self._trim(now)

    def _expired(self, now: float) -> bool:
        first = next(iter(self._entries.values()), None)
        return first is not None and now - first[1] > self.ttl

    def _trim(self, now: float) -> None:
        entries = self._entries
        while entries:
            key = next(iter(entries))
            if len(entries) > self.capacity or now - entries[key][1] > self.ttl:
                del entries[key]
            else:
                break

    def take(self, request_id: str, now: float | None = None) -> int | None:
        """The variant that answered ``request_id``, once; None if unknown, expired or taken."""
        entry = self._entries.pop(request_id, None)
        if entry is None:
            return None
        now = time.monotonic() if now is None else now
        if now - entry[1] > self.ttl:
            return None
        return entry[0]
