"""Table-driven tests of the rollout step machine: pure inputs in, plan out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from seaway import conditions
from seaway.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from seaway.planning import revisions
from seaway.planning.rollout import Observed, Plan, confirmed, plan

T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def spec(digest: str = D1, **extra: Any) -> ModelDeploymentSpec:
    body: dict[str, Any] = {
        "model": {"uri": f"s3://m/{digest[-4:]}", "digest": digest},
        "server": {"image": "seaway/server:1", "replicas": 2},
        "rollout": {
            "strategy": "Canary",
            "steps": [
                {"setWeight": 10},
                {"pause": {"duration": "1m"}},
                {"setWeight": 50},
                {"pause": {}},
            ],
            "progressDeadlineSeconds": 120,
        },
    }
    body.update(extra)
    return ModelDeploymentSpec.model_validate(body)


class Sim:
    """Runs passes the way the operator does: each pass starts from the last pass's status."""

    def __init__(self) -> None:
        self.status = ModelDeploymentStatus()
        self.ready: dict[int, int] = {}
        #: Revisions whose Deployment status lags its spec (observedGeneration behind).
        self.stale: set[int] = set()
        self.now = T0
        self.generation = 1
        self.last: Plan | None = None
        self.events: list[str] = []
        self.pruned: list[int] = []

    def step(
        self,
        s: ModelDeploymentSpec,
        after: float = 0,
        *,
        stall: float = 0,
        outages: list[tuple[datetime, datetime]] | None = None,
    ) -> Plan:
        """One pass at ``after`` seconds from the last; its writes return ``stall`` s later."""
        self.now += timedelta(seconds=after)
        result = plan(
            s,
            self.status,
            generation=self.generation,
            model=revisions.resolve_model(s),
            observed={n: Observed(ready=r, current=n not in self.stale)
                      for n, r in self.ready.items()},
            now=self.now,
            outages=outages or [],
        )
        self.now += timedelta(seconds=stall)
        confirmed(result, self.now)
        self.status = result.status
        self.last = result
        self.events += [e.reason for e in result.events]
        self.pruned += result.pruned
        return result

    def cond(self, type_: str) -> tuple[str, str]:
        c = conditions.find(self.status.conditions, type_)
        assert c is not None
        return c.status, c.reason

    def fate(self, number: int) -> str:
        found = revisions.find_by_number(self.status.revisions, number)
        assert found is not None
        return found.fate


def stable_at_one(sim: Sim) -> None:
    sim.step(spec(D1))
    sim.ready[1] = 2
    sim.step(spec(D1), after=5)
    assert sim.status.stable_revision == 1


def test_first_revision_becomes_stable_when_ready() -> None:
    sim = Sim()
    p = sim.step(spec(D1))
    assert [r.number for r in sim.status.revisions] == [1]
    assert p.replicas == {1: 2}
    assert sim.cond("Ready") == ("False", "NoStableRevision")
    assert sim.cond("Progressing")[0] == "True"
    sim.ready[1] = 2
    p = sim.step(spec(D1), after=5)
    assert sim.status.stable_revision == 1 and sim.fate(1) == "Stable"
    assert p.weights == {1: 100}
    assert sim.cond("Ready") == ("True", "Available")
    assert sim.cond("Degraded") == ("False", "Healthy")
    assert sim.events == ["RevisionCreated", "RolloutStarted", "Promoted"]
    assert sim.status.observed_generation == 1


def test_idle_pass_changes_nothing() -> None:
    sim = Sim()
    stable_at_one(sim)
    before = sim.status.model_dump()
    p = sim.step(spec(D1), after=60)
    assert sim.status.model_dump() == before
    assert p.events == [] and p.requeue_after is None


def test_happy_canary_walks_the_steps() -> None:
    sim = Sim()
    stable_at_one(sim)
    s2 = spec(D2)
    p = sim.step(s2)
    assert sim.status.canary_revision == 2
    assert p.weights == {1: 100, 2: 0}, "no weight before the canary has a ready pod"
    assert p.replicas == {1: 2, 2: 2}
    sim.ready[2] = 1
    p = sim.step(s2, after=3)
    assert p.weights == {1: 90, 2: 10}
    assert sim.status.current_step_index == 1
    assert p.requeue_after == pytest.approx(60)
    p = sim.step(s2, after=30)
    assert p.weights == {1: 90, 2: 10} and p.requeue_after == pytest.approx(30)
    sim.ready[2] = 2
    p = sim.step(s2, after=30)
    assert p.weights == {1: 50, 2: 50}
    assert sim.status.current_step_index == 3, "waits at the pause without duration"
    assert sim.status.canary_weight == 50
    p = sim.step(s2, after=600)
    assert sim.status.canary_revision == 2, "a pause without duration waits for a promote"
    promoted = spec(D2, actions={"promote": "go-1"})
    p = sim.step(promoted)
    assert sim.status.stable_revision == 2 and sim.status.canary_revision is None
    assert p.weights == {2: 100}
    assert p.replicas == {1: 0, 2: 2}
    assert (sim.fate(1), sim.fate(2)) == ("Retired", "Stable")
    assert sim.status.handled_actions is not None and sim.status.handled_actions.promote == "go-1"
    assert (
        sim.events[-5:]
        == ["RolloutStarted", "StepReached", "StepReached", "StepReached", "Promoted"][-5:]
    )
    # the same token again is not a second promote
    before = sim.status.model_dump()
    sim.step(promoted, after=1)
    assert sim.status.model_dump() == before


def test_canary_not_ready_by_the_deadline_is_reverted_in_one_pass() -> None:
    sim = Sim()
    stable_at_one(sim)
    s2 = spec(D2)
    sim.step(s2)
    p = sim.step(s2, after=60)
    assert p.requeue_after is not None and p.requeue_after <= 60
    p = sim.step(s2, after=60)
    assert p.weights == {1: 100}
    assert p.replicas == {1: 2, 2: 0}
    assert sim.fate(2) == "Failed"
    assert sim.cond("Ready") == ("True", "Available")
    assert sim.cond("Degraded") == ("True", "ProgressDeadlineExceeded")
    assert sim.status.message == (
        "desired revision 2 rejected: ProgressDeadlineExceeded (no ready pod within"
        " progressDeadlineSeconds (120s)); serving revision 1"
    )
    assert p.notifications and p.notifications[0]["reason"] == "ProgressDeadlineExceeded"
    assert "RolledBack" in sim.events
    # the operator holds the stable revision while the spec still asks for the failed one
    p = sim.step(s2, after=300)
    assert p.weights == {1: 100} and p.replicas == {1: 2, 2: 0} and p.events == []


def test_canary_that_becomes_unready_is_reverted() -> None:
    sim = Sim()
    stable_at_one(sim)
    s2 = spec(D2)
    sim.ready[2] = 2
    sim.step(s2)
    sim.ready[2] = 0
    p = sim.step(s2, after=5)
    assert p.weights == {1: 100}
    assert sim.fate(2) == "Failed"
    assert sim.cond("Degraded") == ("True", "PodsNotReady")


def test_retry_token_tries_a_rejected_template_again() -> None:
    sim = Sim()
    stable_at_one(sim)
    s2 = spec(D2)
    sim.step(s2)
    sim.step(s2, after=121)
    assert sim.fate(2) == "Failed"
    retry = spec(D2, actions={"retry": "r1"})
    sim.ready[2] = 2
    p = sim.step(retry)
    assert sim.status.canary_revision == 2 and sim.fate(2) == "Canary"
    assert p.weights == {1: 90, 2: 10}
    assert sim.cond("Degraded") == ("False", "Healthy")


def test_first_revision_failing_leaves_the_deployment_not_ready() -> None:
    sim = Sim()
    sim.step(spec(D1))
    sim.step(spec(D1), after=121)
    assert sim.fate(1) == "Failed"
    assert sim.cond("Ready") == ("False", "ProgressDeadlineExceeded")
    assert "no revision is serving" in (sim.status.message or "")


def test_new_template_mid_rollout_supersedes_the_canary() -> None:
    sim = Sim()
    stable_at_one(sim)
    sim.ready[2] = 2
    sim.step(spec(D2))
    assert sim.status.canary_revision == 2
    p = sim.step(spec(D3), after=5)
    assert sim.fate(2) == "Superseded"
    assert sim.status.canary_revision == 3 and sim.status.current_step_index == 0
    assert p.replicas == {1: 2, 2: 0, 3: 2}
    assert p.weights == {1: 100, 3: 0}


def test_edited_steps_restart_at_step_zero() -> None:
    sim = Sim()
    stable_at_one(sim)
    sim.ready[2] = 2
    sim.step(spec(D2))
    sim.step(spec(D2), after=61)
    assert sim.status.current_step_index == 3
    edited = spec(D2, rollout={"strategy": "Canary", "steps": [{"setWeight": 5}, {"pause": {}}]})
    p = sim.step(edited, after=1)
    assert sim.status.current_step_index == 1
    assert p.weights == {1: 95, 2: 5}
    assert "StepsChanged" in sim.events


def test_reapplying_an_old_template_reuses_its_revision() -> None:
    sim = Sim()
    stable_at_one(sim)
    sim.ready[2] = 2
    sim.step(spec(D2, rollout={"strategy": "Immediate"}))
    assert sim.status.stable_revision == 2
    sim.step(spec(D1, rollout={"strategy": "Immediate"}), after=1)
    assert [r.number for r in sim.status.revisions] == [1, 2]
    assert sim.status.stable_revision == 1


def test_abort_reverts_and_marks_rolled_back() -> None:
    sim = Sim()
    stable_at_one(sim)
    sim.ready[2] = 2
    sim.step(spec(D2))
    p = sim.step(spec(D2, actions={"abort": "stop"}), after=1)
    assert p.weights == {1: 100} and sim.fate(2) == "RolledBack"
    assert sim.cond("Degraded") == ("True", "Aborted")


def test_rollback_to_goes_straight_to_the_old_revision() -> None:
    sim = Sim()
    stable_at_one(sim)
    sim.ready[2] = 2
    sim.step(spec(D2, rollout={"strategy": "Immediate"}))
    assert sim.status.stable_revision == 2
    p = sim.step(spec(D2, rollbackTo={"revision": 1}), after=1)
    assert sim.status.stable_revision == 1 and p.weights == {1: 100}
    p = sim.step(spec(D2, rollbackTo={"revision": 9}), after=1)
    assert sim.cond("Ready") == ("False", "InvalidSpec")
    assert p.weights == {1: 100}, "an invalid rollback keeps serving what serves"


def test_blue_green_switches_only_when_fully_ready() -> None:
    sim = Sim()
    stable_at_one(sim)
    bg = spec(D2, rollout={"strategy": "BlueGreen"})
    sim.ready[2] = 1
    p = sim.step(bg)
    assert p.weights == {1: 100}
    sim.ready[2] = 2
    p = sim.step(bg, after=2)
    assert p.weights == {2: 100} and sim.status.stable_revision == 2


def test_paused_freezes_everything() -> None:
    sim = Sim()
    stable_at_one(sim)
    sim.ready[2] = 2
    sim.step(spec(D2))
    weights = list(sim.status.weights)
    p = sim.step(spec(D2, paused=True), after=600)
    assert sim.status.weights == weights and p.weights == {}
    assert sim.cond("Progressing") == ("Unknown", "Paused")


def test_history_is_pruned_but_never_the_stable_or_canary() -> None:
    sim = Sim()
    digests = ["sha256:" + str(i) * 64 for i in range(1, 6)]
    for d in digests:
        s = spec(d, rollout={"strategy": "Immediate"}, revisionHistoryLimit=2)
        sim.step(s)
        sim.ready[sim.status.revisions[-1].number] = 2
        sim.step(s, after=1)
    numbers = [r.number for r in sim.status.revisions]
    assert numbers == [4, 5] and sim.status.stable_revision == 5
    assert sim.pruned == [1, 2, 3]
    assert revisions.next_number(sim.status.revisions) == 6


def test_template_hash_ignores_replicas_but_not_the_image() -> None:
    a, b = spec(D1), spec(D1, server={"image": "seaway/server:1", "replicas": 7})
    c = spec(D1, server={"image": "seaway/server:2", "replicas": 2})
    model = revisions.resolve_model(a)
    assert model is not None
    assert revisions.template_hash(model, a.server) == revisions.template_hash(model, b.server)
    assert revisions.template_hash(model, a.server) != revisions.template_hash(model, c.server)


def test_following_a_retrain_job_without_promotion_waits() -> None:
    sim = Sim()
    s = ModelDeploymentSpec.model_validate(
        {"model": {"fromRetrainJob": "weekly"}, "server": {"image": "seaway/server:1"}}
    )
    sim.step(s)
    assert sim.cond("Ready") == ("False", "WaitingForModel")
    assert sim.status.revisions == []


def test_blocked_spec_keeps_serving_and_says_why_once() -> None:
    sim = Sim()
    stable_at_one(sim)
    s2 = spec(D2)
    p = plan(
        s2,
        sim.status,
        generation=2,
        model=revisions.resolve_model(s2),
        observed={1: Observed(ready=2)},
        now=T0,
        blocked=("SecretNotFound", "Secret creds not found"),
    )
    assert [r.number for r in p.status.revisions] == [1], "no revision for a blocked spec"
    assert p.weights == {1: 100}
    ready = conditions.find(p.status.conditions, "Ready")
    assert ready is not None and (ready.status, ready.reason) == ("False", "SecretNotFound")
    assert [e.reason for e in p.events] == ["SecretNotFound"]
    again = plan(
        s2,
        p.status,
        generation=2,
        model=revisions.resolve_model(s2),
        observed={1: Observed(ready=2)},
        now=T0,
        blocked=("SecretNotFound", "Secret creds not found"),
    )
    assert again.events == [] and again.status == p.status


def test_a_retired_revision_coming_back_must_become_ready_again() -> None:
    sim = Sim()
    stable_at_one(sim)
    immediate = {"strategy": "Immediate"}
    sim.ready[2] = 2
    sim.step(spec(D2, rollout=immediate))
    assert sim.status.stable_revision == 2
    sim.ready[1] = 0  # retired: scaled to zero
    p = sim.step(spec(D2, rollout=immediate, rollbackTo={"revision": 1}), after=1)
    assert sim.status.canary_revision == 1 and sim.fate(1) == "Canary"
    assert p.replicas == {1: 2, 2: 2} and p.weights == {2: 100}
    sim.ready[1] = 2
    sim.step(spec(D2, rollout=immediate, rollbackTo={"revision": 1}), after=1)
    assert sim.status.stable_revision == 1 and sim.fate(2) == "Retired"


def test_a_mirror_revision_runs_with_live_weight_zero_unless_it_failed() -> None:
    from seaway.planning import children

    sim = Sim()
    stable_at_one(sim)
    sim.ready[2] = 2
    sim.step(spec(D2, rollout={"strategy": "Immediate"}))
    assert sim.status.stable_revision == 2
    shadow = spec(
        D2, rollout={"strategy": "Immediate"}, traffic={"mirror": {"revision": 1, "percent": 20}}
    )
    p = sim.step(shadow, after=1)
    assert (p.weights, p.mirror, p.replicas) == ({1: 0, 2: 100}, 1, {1: 2, 2: 2})
    routes = children.routes("churn", "ml", p.weights, shadow, p.mirror)
    assert routes["mirror"] == {"revision": 1, "percent": 20}
    assert {b["revision"]: b["weight"] for b in routes["backends"]} == {1: 0, 2: 100}
    # a failed revision gets no copies
    sim2 = Sim()
    stable_at_one(sim2)
    sim2.step(spec(D2))
    sim2.step(spec(D2), after=121)
    assert sim2.fate(2) == "Failed"
    p = sim2.step(spec(D2, traffic={"mirror": {"revision": 2, "percent": 50}}), after=1)
    assert p.mirror is None and 2 not in p.weights


def test_with_an_autoscaler_fully_ready_means_its_minimum() -> None:
    sim = Sim()
    stable_at_one(sim)
    scaled = {
        "image": "seaway/server:1",
        "replicas": 2,
        "autoscaling": {"minReplicas": 1, "maxReplicas": 4},
    }
    bg = spec(D2, rollout={"strategy": "BlueGreen"}, server=scaled)
    sim.ready[2] = 1
    p = sim.step(bg)
    assert sim.status.stable_revision == 2 and p.weights == {2: 100}


TIMED = [
    {"setWeight": 20},
    {"pause": {"duration": "5s"}},
    {"setWeight": 60},
    {"pause": {"duration": "5s"}},
]


def timed(digest: str) -> ModelDeploymentSpec:
    return spec(digest, rollout={"strategy": "Canary", "steps": TIMED})


def test_a_pass_that_stalled_does_not_date_the_next_pause_back() -> None:
    """The frozen-API-server reproduction: the pass that ends the 20% pause stalls for 60 s
    while writing 60%; the 60% pause counts from when that write returned."""
    sim = Sim()
    stable_at_one(sim)
    sim.ready[2] = 2
    sim.step(timed(D2))
    assert sim.status.current_step_index == 1
    started = sim.now
    assert sim.status.pause_started_at == "2026-11-25T10:00:05.000000Z"
    assert sim.status.pause_ends_at == "2026-11-25T10:00:10.000000Z"
    p = sim.step(timed(D2), after=5, stall=60)
    assert p.weights == {1: 40, 2: 60} and sim.status.current_step_index == 3
    assert sim.now - started == timedelta(seconds=65)
    assert sim.status.pause_started_at == "2026-11-25T10:01:10.000000Z", "when 60% was live"
    p = sim.step(timed(D2), after=1)
    assert sim.status.canary_revision == 2 and p.weights == {1: 40, 2: 60}
    assert p.requeue_after == pytest.approx(4)
    p = sim.step(timed(D2), after=4)
    assert sim.status.stable_revision == 2 and p.weights == {2: 100}
    assert sim.status.pause_started_at is None and sim.status.pause_ends_at is None


def test_a_pause_keeps_the_fraction_of_its_start() -> None:
    sim = Sim()
    stable_at_one(sim)
    sim.ready[2] = 2
    sim.step(timed(D2), after=0.9)
    assert sim.status.pause_started_at == "2026-11-25T10:00:05.900000Z"
    p = sim.step(timed(D2), after=4.95)
    assert sim.status.current_step_index == 1, "4.95 s of a 5 s pause is not the pause"
    assert p.requeue_after == pytest.approx(0.05)
    p = sim.step(timed(D2), after=0.05)
    assert sim.status.current_step_index == 3


def test_time_without_the_api_server_does_not_count_towards_a_pause() -> None:
    sim = Sim()
    stable_at_one(sim)
    sim.ready[2] = 2
    sim.step(timed(D2))
    began = sim.now
    outage = [(began + timedelta(seconds=1), began + timedelta(seconds=4))]
    p = sim.step(timed(D2), after=5, outages=outage)
    assert sim.status.current_step_index == 1 and p.requeue_after == pytest.approx(3)
    assert sim.status.pause_ends_at == "2026-11-25T10:00:13.000000Z"
    sim.step(timed(D2), after=3, outages=outage)
    assert sim.status.current_step_index == 3


def test_the_progress_deadline_counts_from_the_written_canary() -> None:
    sim = Sim()
    stable_at_one(sim)
    s2 = spec(D2)
    sim.step(s2, stall=100)  # the pass that starts the canary stalled for 100 s
    assert sim.status.canary_started_at == "2026-11-25T10:01:45.000000Z"
    sim.step(s2, after=119.5)
    assert sim.fate(2) == "Canary", "119.5 s of a 120 s deadline is not the deadline"
    outage = [(sim.now, sim.now + timedelta(seconds=30))]
    sim.step(s2, after=30.2, outages=outage)
    assert sim.fate(2) == "Canary", "the 30 s without the API server do not count"
    sim.step(s2, after=0.4, outages=outage)
    assert sim.fate(2) == "Failed"


def test_a_revision_rolled_out_again_keeps_no_stale_reason() -> None:
    """r1 retired (reason Replaced), then its template applied again: r1 is a canary anew, and
    `seaway history` must not show it as "Replaced"."""
    sim = Sim()
    stable_at_one(sim)
    immediate = {"strategy": "Immediate"}
    sim.step(spec(D2, rollout=immediate))
    sim.ready[2] = 2
    sim.step(spec(D2, rollout=immediate), after=5)
    assert sim.status.stable_revision == 2
    r1 = revisions.find_by_number(sim.status.revisions, 1)
    assert r1 is not None and (r1.fate, r1.reason) == ("Retired", "Replaced")
    sim.ready[1] = 0
    sim.step(spec(D1), after=5)
    r1 = revisions.find_by_number(sim.status.revisions, 1)
    assert r1 is not None and r1.fate == "Canary"
    assert r1.reason is None and r1.message is None


def test_an_experiment_gives_a_variant_traffic_only_once_it_has_a_ready_pod() -> None:
    """Found with real pods: a retired variant got its share before its pods came back (502s)."""
    sim = Sim()
    stable_at_one(sim)
    sim.ready[2] = 2
    sim.step(spec(D2, rollout={"strategy": "Immediate"}))
    assert sim.status.stable_revision == 2
    sim.ready[1] = 0  # revision 1 is retired: scaled to zero
    ab = spec(D2, rollout={"strategy": "Immediate"}, traffic={"experiment": {
        "type": "ABTest", "variants": [{"revision": 1, "weight": 30},
                                       {"revision": 2, "weight": 70}]}})
    p = sim.step(ab, after=1)
    assert p.replicas[1] == 2, "the retired variant is scaled up"
    assert p.weights.get(1, 0) == 0 and {w.revision: w.weight for w in sim.status.weights} == {
        2: 100}
    assert p.requeue_after is not None and p.requeue_after <= 2.0
    sim.ready[1] = 1
    p = sim.step(ab, after=2)
    assert p.weights == {1: 30, 2: 70}


def test_a_stale_status_after_a_retry_neither_starts_traffic_nor_reverts() -> None:
    """Seen under load: just after an abort and a retry, the Deployment's status still showed the
    ready pods it had before it was scaled to zero; the canary got 10% and was then reverted as
    PodsNotReady. Readiness now counts only from a status that has caught up with the spec."""
    sim = Sim()
    stable_at_one(sim)
    sim.ready[2] = 2
    sim.step(spec(D2))
    sim.step(spec(D2, actions={"abort": "stop"}), after=1)
    assert sim.fate(2) == "RolledBack"
    sim.stale.add(2)  # scaled up again; the status still shows the old pods
    p = sim.step(spec(D2, actions={"abort": "stop", "retry": "again"}), after=1)
    assert sim.status.canary_revision == 2
    assert p.weights.get(2, 0) == 0, "no traffic on a stale readiness"
    sim.ready[2] = 0  # the status catches up: no pods yet
    p = sim.step(spec(D2, actions={"abort": "stop", "retry": "again"}), after=1)
    assert sim.fate(2) == "Canary" and p.weights.get(2, 0) == 0
    sim.stale.discard(2)
    p = sim.step(spec(D2, actions={"abort": "stop", "retry": "again"}), after=1)
    assert sim.fate(2) == "Canary", "not reverted while its new pods start"
    sim.ready[2] = 2
    p = sim.step(spec(D2, actions={"abort": "stop", "retry": "again"}), after=1)
    assert p.weights == {1: 90, 2: 10}
