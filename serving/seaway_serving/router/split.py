"""Who gets a request: the live split of traffic over backends, and the pick for one request.

PURE. Every strategy ends up as one probability per backend (:class:`Split`), computed when the
config or the bandit's allocation changes, never per request. A request is then placed by one
of two picks over the same split:

* without a sticky key: a weighted random draw (one ``random()`` and a bisect);
* with a sticky key: weighted rendezvous hashing. Each backend scores the key as
  ``p / -ln(u)`` with ``u`` a hash of (backend name, key) in (0, 1); the highest score wins.
  A backend wins with probability ``p``, a key's winner depends only on the key and the split,
  and when one backend's share grows keys move only *to* it (when it shrinks, only *away* from
  it), so a weight change moves as few callers as possible. (A ring of virtual nodes would need
  hundreds of points per backend to follow percent-level weights this closely.)

How an experiment combines with the rollout's weights: the backends' ``weight`` is the rollout's
split; an experiment redistributes the share its variants hold together, among those variants
(fixed A/B weights, or the bandit's allocation). A variant whose backend weight is 0 is out of
the experiment: weight 0 means no request, whatever the experiment says.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from seaway_serving.router.config import Routes

_TWO64 = float(1 << 64)


@dataclass(frozen=True)
class Split:
    """Backends that may receive live traffic (probability > 0), in config order."""

    names: tuple[str, ...]
    probabilities: tuple[float, ...]
    cumulative: tuple[float, ...]
    keys: tuple[bytes, ...]  # per-backend hash keys for rendezvous hashing

    @classmethod
    def of(cls, shares: Mapping[str, float]) -> Split:
        names = tuple(n for n, p in shares.items() if p > 0)
        total = sum(shares[n] for n in names)
        if not names or total <= 0:
            raise ValueError("a split needs at least one backend with a positive share")
        probs = tuple(shares[n] / total for n in names)
        cumulative: list[float] = []
        acc = 0.0
        for p in probs:
            acc += p
            cumulative.append(acc)
        cumulative[-1] = 1.0  # no gap at the top from rounding
        keys = tuple(hashlib.blake2b(n.encode(), digest_size=32).digest() for n in names)
        return cls(names, probs, tuple(cumulative), keys)

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.names, self.probabilities, strict=True))

    def pick(self, u: float) -> str:
        """The backend for a uniform draw ``u`` in [0, 1)."""
        return self.names[bisect.bisect_right(self.cumulative, u)]

    def pick_sticky(self, key: bytes) -> str:
        """The backend for a sticky key: weighted rendezvous hashing (see the module doc)."""
        if len(self.names) == 1:
            return self.names[0]
        best = self.names[0]
        best_score = -1.0
        for name, p, salt in zip(self.names, self.probabilities, self.keys, strict=True):
            h = int.from_bytes(hashlib.blake2b(key, digest_size=8, key=salt).digest(), "big")
            u = (h + 0.5) / _TWO64  # strictly inside (0, 1)
            score = p / -math.log(u)
            if score > best_score:
                best, best_score = name, score
        return best


def shares(routes: Routes, allocation: Mapping[int, float] | None = None) -> dict[str, float]:
    """Each backend's share of live traffic (0..1; zeros included).

    ``allocation`` is the bandit's share per variant revision (summing to 1 over the eligible
    variants); ignored unless the experiment is a Bandit."""
    out = {b.name: b.weight / 100 for b in routes.backends}
    experiment = routes.experiment
    if experiment is None:
        return out
    variants = [routes.by_revision(r) for r in experiment.revisions]
    pool = sum(out[b.name] for b in variants)
    eligible = [b for b in variants if b.weight > 0]
    for b in variants:
        out[b.name] = 0.0
    if not eligible:
        return out
    if experiment.type == "ABTest":
        fixed = {v.revision: float(v.weight or 0) for v in experiment.variants}
        wanted = {b.revision: fixed[b.revision] for b in eligible}
    else:
        given = allocation or {}
        wanted = {b.revision: max(given.get(b.revision, 0.0), 0.0) for b in eligible}
    total = sum(wanted.values())
    if total <= 0:  # e.g. A/B weights only on variants taken out: keep the rollout's split
        wanted = {b.revision: float(b.weight) for b in eligible}
        total = sum(wanted.values())
    for b in eligible:
        out[b.name] = pool * wanted[b.revision] / total
    return out


def eligible_variants(routes: Routes) -> list[int]:
    """Variant revisions that may receive traffic (their backend weight is not 0)."""
    if routes.experiment is None:
        return []
    return [r for r in routes.experiment.revisions if routes.by_revision(r).weight > 0]


def sticky_value(header_value: str | None, cookie_header: str | None,
                 cookie: str | None) -> str | None:
    """The sticky key of a request: the header's value, or the named cookie's value."""
    if cookie is None:
        return header_value or None
    if not cookie_header:
        return None
    for part in cookie_header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name == cookie:
            return value.strip().strip('"') or None
    return None


def mix_floor(allocation: Mapping[int, float], eligible: Sequence[int],
              floor: float) -> dict[int, float]:
    """``allocation`` with every eligible arm raised to at least ``floor`` (a share 0..1):
    ``floor + (1 - n*floor) * q`` (the config guarantees ``n * floor <= 1``)."""
    n = len(eligible)
    if n == 0:
        return {}
    floor = min(floor, 1.0 / n)
    total = sum(max(allocation.get(r, 0.0), 0.0) for r in eligible)
    q = ({r: max(allocation.get(r, 0.0), 0.0) / total for r in eligible} if total > 0
         else dict.fromkeys(eligible, 1.0 / n))
    return {r: floor + (1 - n * floor) * q[r] for r in eligible}
