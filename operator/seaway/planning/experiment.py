"""A/B/N experiments and bandits: which revisions run, the split, and when a winner is declared.

While ``spec.traffic.experiment`` is set, traffic follows the experiment instead of the rollout:
every variant's revision runs, ABTest weights are the variants' fixed weights, a Bandit starts
from an even split that the router then learns from rewards. The operator reads the router's
per-variant figures (through the metrics provider) into ``status.experiment``; with
``promoteWinner`` it declares the winner once the best variant's probability of being best
reaches the configured confidence, and from then on sends it 100%.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from seaway.api.modeldeployment import Experiment, ExperimentStatus, VariantStatus
from seaway.planning.durations import format_time, parse_time

#: How often the experiment's figures are read when nothing else happens.
MEASURE_EVERY = timedelta(seconds=30)


@dataclass(frozen=True)
class VariantFigures:
    revision: int
    requests: int
    rewards: Decimal
    best_probability: Decimal | None


def weights(experiment: Experiment, status: ExperimentStatus | None) -> dict[int, int]:
    """The split the router starts from (ABTest: fixed; Bandit: even; concluded: the winner)."""
    if status is not None and status.winner is not None:
        return {status.winner: 100}
    revisions = [v.revision for v in experiment.variants]
    if experiment.type == "ABTest":
        return {v.revision: v.weight or 0 for v in experiment.variants}
    share, rest = divmod(100, len(revisions))
    return {r: share + (1 if i < rest else 0) for i, r in enumerate(revisions)}


def due(status: ExperimentStatus | None, now: datetime) -> bool:
    if status is not None and status.winner is not None:
        return False
    if status is None or status.measured_at is None:
        return True
    return now >= parse_time(status.measured_at) + MEASURE_EVERY


def record(
    experiment: Experiment,
    status: ExperimentStatus | None,
    figures: list[VariantFigures],
    split: dict[int, int],
    now: datetime,
) -> tuple[ExperimentStatus, int | None]:
    """The status after a measurement, and the winner if one was declared just now."""
    current = status.model_copy(deep=True) if status is not None else ExperimentStatus()
    by_revision = {f.revision: f for f in figures}
    current.variants = [
        VariantStatus(
            revision=v.revision,
            requests=by_revision[v.revision].requests if v.revision in by_revision else 0,
            rewards=_fmt(by_revision[v.revision].rewards) if v.revision in by_revision else "0",
            weight=split.get(v.revision, 0),
            best_probability=(
                _fmt(p)
                if v.revision in by_revision
                and (p := by_revision[v.revision].best_probability) is not None
                else None
            ),
        )
        for v in experiment.variants
    ]
    current.measured_at = format_time(now)
    ranked = [f for f in figures if f.best_probability is not None]
    if ranked:
        leader = max(ranked, key=lambda f: f.best_probability or Decimal(0))
        current.best_revision = leader.revision
        current.confidence = _fmt(leader.best_probability or Decimal(0))
        target = experiment.promote_winner
        if (
            target is not None
            and current.winner is None
            and (leader.best_probability or Decimal(0)) >= Decimal(target.confidence)
        ):
            current.winner = leader.revision
            current.concluded_at = format_time(now)
            return current, leader.revision
    return current, None


def _fmt(value: Decimal) -> str:
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return text or "0"
