"""Metric analysis: the verdict table, and how the rollout acts on it."""

from __future__ import annotations

from typing import Any

import pytest

from seaway.api.modeldeployment import Analysis
from seaway.planning.analysis import Measurement, due, judge
from tests.unit.test_rollout_plan import D1, D2, Sim, spec

ABS = Analysis.model_validate({"maxErrorRatio": "0.05", "maxLatencyP99Ms": 250, "minRequests": 100})
REL = Analysis.model_validate(
    {"maxErrorRatio": "0.02", "maxLatencyP99Ms": 50, "minRequests": 100, "comparison": "Relative"}
)


M = Measurement
STABLE = {"stable_requests": 1000, "stable_errors": 30, "stable_latency_p99_ms": 280}
CASES = [
    (ABS, M(requests=1000, errors=10, latency_p99_ms=120), "Pass", "error ratio 0.01"),
    (ABS, M(requests=1000, errors=300), "Fail", "error ratio 0.3 > maxErrorRatio 0.05"),
    (ABS, M(requests=1000, latency_p99_ms=400), "Fail", "p99 400ms > maxLatencyP99Ms 250"),
    (ABS, M(requests=99, errors=99), "NoData", "99 requests < minRequests 100"),
    (ABS, M(problem="refused"), "NoData", "metrics unavailable: refused"),
    (REL, M(requests=1000, errors=40, latency_p99_ms=300, **STABLE), "Pass", "requests"),
    (REL, M(requests=1000, errors=60, **STABLE), "Fail", "exceeds stable's 0.03"),
    (REL, M(requests=1000, latency_p99_ms=400, **STABLE), "Fail", "exceeds stable's 280ms"),
]


@pytest.mark.parametrize("analysis,m,result,fragment", CASES)
def test_judge(analysis: Analysis, m: Measurement, result: str, fragment: str) -> None:
    verdict, message = judge(analysis, m)
    assert verdict == result
    assert fragment in message


def canary_with_analysis(**analysis: Any) -> Any:
    settings = {"interval": "30s", "maxErrorRatio": "0.05", "minRequests": 100, "failureLimit": 2}
    settings.update(analysis)
    rollout = {
        "strategy": "Canary",
        "steps": [{"setWeight": 20}, {"pause": {"duration": "1m"}}],
        "progressDeadlineSeconds": 120,
        "analysis": settings,
    }
    return spec(D2, rollout=rollout)


def start_canary(sim: Sim, s: Any) -> None:
    sim.step(spec(D1))
    sim.ready[1] = 2
    sim.step(spec(D1), after=5)
    sim.ready[2] = 2
    p = sim.step(s)
    assert p.weights == {1: 80, 2: 20}
    sim.step(s, after=1)  # the canary has had traffic: the analysis clock starts
    assert sim.status.analysis is not None and sim.status.analysis.runs == 0


def measure(sim: Sim, s: Any, m: Measurement, after: float = 30) -> Any:
    from seaway.planning import revisions
    from seaway.planning.rollout import Observed, plan

    sim.now = sim.now.__class__.fromtimestamp(sim.now.timestamp() + after, sim.now.tzinfo)
    assert sim.status.analysis is not None
    assert due(s.rollout.analysis, sim.status.analysis, 2, sim.now)
    result = plan(
        s,
        sim.status,
        generation=1,
        model=revisions.resolve_model(s),
        observed={n: Observed(ready=r) for n, r in sim.ready.items()},
        now=sim.now,
        measurement=m,
    )
    sim.status = result.status
    sim.events += [e.reason for e in result.events]
    return result


def test_failed_analysis_reverts_with_values_and_thresholds() -> None:
    sim, s = Sim(), canary_with_analysis()
    start_canary(sim, s)
    bad = Measurement(requests=500, errors=150, latency_p99_ms=80)
    p = measure(sim, s, bad)
    assert p.weights == {1: 80, 2: 20}, "one failure is below failureLimit 2"
    p = measure(sim, s, bad)
    assert p.weights == {1: 100}
    assert sim.fate(2) == "Failed"
    revision = next(r for r in sim.status.revisions if r.number == 2)
    assert revision.reason == "AnalysisFailed"
    assert "error ratio 0.3 > maxErrorRatio 0.05" in (revision.message or "")
    assert "failureLimit 2" in (revision.message or "")
    assert p.notifications[0]["reason"] == "AnalysisFailed"
    assert "error ratio 0.3" in str(p.notifications[0]["message"])


def test_missing_data_holds_and_never_promotes_then_aborts() -> None:
    sim, s = Sim(), canary_with_analysis(noDataLimit=3)
    start_canary(sim, s)
    empty = Measurement(requests=3)
    p = measure(sim, s, empty, after=61)  # the pause is over, but there is no data: hold
    assert sim.status.current_step_index == 1 and p.weights == {1: 80, 2: 20}
    measure(sim, s, empty)
    assert sim.status.canary_revision == 2
    p = measure(sim, s, empty)
    assert p.weights == {1: 100}
    assert [r.reason for r in sim.status.revisions if r.number == 2] == ["AnalysisInconclusive"]


def test_passing_analysis_promotes_after_the_steps() -> None:
    sim, s = Sim(), canary_with_analysis()
    start_canary(sim, s)
    good = Measurement(requests=1000, errors=1, latency_p99_ms=20)
    p = measure(sim, s, good, after=61)
    assert sim.status.stable_revision == 2 and p.weights == {2: 100}
    assert sim.status.analysis is not None and sim.status.analysis.last_result == "Pass"


# -- experiments ---------------------------------------------------------------------------------


def experiment_spec(kind: str, **extra: Any) -> Any:
    variants = (
        [{"revision": 1, "weight": 70}, {"revision": 2, "weight": 30}]
        if kind == "ABTest"
        else [{"revision": 1}, {"revision": 2}, {"revision": 3}]
    )
    return spec(
        D2,
        rollout={"strategy": "Immediate"},
        traffic={"experiment": {"type": kind, "variants": variants, **extra}},
    )


def three_revisions(sim: Sim) -> None:
    from tests.unit.test_rollout_plan import D3

    for digest in (D1, D2, D3):
        s = spec(digest, rollout={"strategy": "Immediate"})
        sim.step(s)
        sim.ready[sim.status.revisions[-1].number] = 2
        sim.step(s, after=1)


def test_ab_test_runs_every_variant_with_its_fixed_weight() -> None:
    sim = Sim()
    three_revisions(sim)
    p = sim.step(experiment_spec("ABTest"), after=1)
    assert p.weights == {1: 70, 2: 30}
    # r1 runs for the experiment besides the template's revision r2; r3 is out of both
    assert p.replicas == {1: 2, 2: 2, 3: 0}
    assert sim.status.experiment is not None
    assert [(v.revision, v.weight) for v in sim.status.experiment.variants] == [(1, 70), (2, 30)]


def test_unknown_variant_revision_is_an_invalid_spec() -> None:
    sim = Sim()
    sim.step(spec(D1))
    sim.ready[1] = 2
    sim.step(spec(D1), after=1)
    s = spec(
        D1,
        traffic={"experiment": {"type": "Bandit", "variants": [{"revision": 1}, {"revision": 7}]}},
    )
    sim.step(s, after=1)
    assert sim.cond("Ready") == ("False", "InvalidSpec")


def test_bandit_reports_figures_and_promotes_the_winner_at_the_confidence() -> None:
    from decimal import Decimal

    from seaway.planning import revisions
    from seaway.planning.experiment import VariantFigures
    from seaway.planning.rollout import Observed, plan

    sim = Sim()
    three_revisions(sim)
    s = experiment_spec("Bandit", promoteWinner={"confidence": "0.95"})
    p = sim.step(s, after=1)
    assert p.weights == {1: 34, 2: 33, 3: 33}

    def measured(best: str) -> Any:
        figures = [
            VariantFigures(1, 400, Decimal(40), Decimal("0.01")),
            VariantFigures(2, 900, Decimal(300), Decimal(best)),
            VariantFigures(3, 300, Decimal(20), Decimal("0.02")),
        ]
        result = plan(
            s, sim.status, generation=1, model=revisions.resolve_model(s),
            observed={n: Observed(ready=r) for n, r in sim.ready.items()},
            now=sim.now, figures=figures,
        )  # fmt: skip
        sim.status = result.status
        return result

    p = measured("0.90")
    assert sim.status.experiment is not None
    assert (sim.status.experiment.best_revision, sim.status.experiment.confidence) == (2, "0.9")
    assert sim.status.experiment.winner is None and p.weights == {1: 34, 2: 33, 3: 33}
    assert [v.requests for v in sim.status.experiment.variants] == [400, 900, 300]
    p = measured("0.97")
    assert sim.status.experiment.winner == 2 and p.weights == {2: 100}
    assert [e.reason for e in p.events] == ["ExperimentConcluded"]
    assert p.notifications[0]["event"] == "ExperimentConcluded"


def test_an_interval_is_never_shorter_than_written() -> None:
    from datetime import UTC, datetime, timedelta

    from seaway.planning.analysis import record

    spec_ = Analysis.model_validate({"interval": "30s"})
    start = datetime(2026, 11, 25, 10, 0, 0, 700000, tzinfo=UTC)
    state = record(spec_, None, 2, Measurement(requests=500), start)
    assert not due(spec_, state, 2, start + timedelta(seconds=29.9))
    assert due(spec_, state, 2, start + timedelta(seconds=30))
