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

Rewards are credited by :class:`Tickets`: the router issues each request routed to a variant
an id that names the variant and carries the router's signature, so a reward posted later to
``/feedback`` is credited to that variant, once, and only for an id this router issued.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
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


class Tickets:
    """Request ids the router issues for experiment variants, and redeems once each.

    An id is ``<revision>.<issued ms, hex>.<nonce>.<signature>``: HMAC-SHA256 of the rest under
    a key only this process knows. Clients used to pick their own ``X-Request-Id``: 300 forged
    ids rewarded a revision past a ``promoteWinner`` threshold, and a flood of ids pushed real
    ones out of the bounded ledger that mapped ids to variants. A signed id needs no memory
    until it is redeemed, so issuing cannot be flooded, and it cannot be forged or pointed at
    another variant. Redeemed ids are remembered until they expire (``ttl``); when ``capacity``
    of them are remembered, further rewards are refused instead of forgetting one early (which
    would let it be redeemed twice).
    """

    def __init__(self, capacity: int, ttl: float, key: bytes | None = None) -> None:
        self.capacity = capacity
        self.ttl = ttl
        self._key = key or secrets.token_bytes(32)
        self._redeemed: dict[str, float] = {}  # id -> issue time, oldest first

    def __len__(self) -> int:
        return len(self._redeemed)

    def _sign(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()[:32]

    def issue(self, revision: int, now: float | None = None) -> str:
        now = time.time() if now is None else now
        body = f"{revision}.{int(now * 1000):x}.{secrets.token_hex(8)}"
        return f"{body}.{self._sign(body)}"

    def redeem(self, request_id: str, now: float | None = None) -> tuple[int | None, str]:
        """(revision, "") for a valid id seen the first time, else (None, why not)."""
        now = time.time() if now is None else now
        body, _, signature = request_id.rpartition(".")
        parts = body.split(".")
        if (len(parts) != 3 or len(signature) != 32 or not parts[0].isdigit()
                or not hmac.compare_digest(signature, self._sign(body))):
            return None, "not issued by this router"
        try:
            issued = int(parts[1], 16) / 1000
        except ValueError:
            return None, "not issued by this router"
        if now - issued > self.ttl:
            return None, "expired"
        self._forget_expired(now)
        if request_id in self._redeemed:
            return None, "already rewarded"
        if len(self._redeemed) >= self.capacity:
            return None, "too many rewards within the ttl; retry later"
        self._redeemed[request_id] = issued
        return int(parts[0]), ""

    def _forget_expired(self, now: float) -> None:
        entries = self._redeemed
        while entries:
            key = next(iter(entries))
            if now - entries[key] <= self.ttl:
                break
            del entries[key]
