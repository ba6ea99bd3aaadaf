"""A model the server refused shows in the status and ONE Event, from the pod's termination
message, instead of only "not ready" until the deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from seaway import conditions
from seaway.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from seaway.planning import children, refusals, revisions, rollout
from seaway.planning.durations import format_time
from seaway.planning.rollout import Observed, Plan, plan

T0 = datetime(2026, 11, 30, 6, 0, 0, tzinfo=UTC)
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
REFUSAL = "digest mismatch: pinned (SEAWAY_MODEL_DIGEST) sha256:11 file sha256:22"


def pod(revision: int, *, message: str | None, name: str = "p", state: str = "lastState",
        exit_code: int = 2, container: str = "server") -> dict[str, Any]:
    terminated = {"exitCode": exit_code, "reason": "Error"}
    if message is not None:
        terminated["message"] = message
    return {
        "metadata": {"name": name, "labels": {children.REVISION_LABEL: str(revision)}},
        "status": {"containerStatuses": [
            {"name": container, "ready": False, state: {"terminated": terminated}}]},
    }  # fmt: skip


def test_from_pods() -> None:
    pods = [
        pod(1, message=None, name="a"),  # exit without a message: nothing to say
        pod(2, message=f"  {REFUSAL}\n", name="b"),
        pod(2, message="another", name="c"),  # the first pod by name wins
        pod(3, message="ok", exit_code=0, name="d"),  # a clean exit is no refusal
        pod(4, message="sidecar", container="istio-proxy", name="e"),
        pod(5, message="x" * 5000, state="state", name="f"),
    ]
    found = refusals.from_pods(pods, children.REVISION_LABEL)
    assert set(found) == {2, 5}
    assert found[2] == REFUSAL
    assert len(found[5]) == refusals.MAX_MESSAGE and found[5].endswith("...")


def spec(digest: str) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({
        "model": {"uri": f"s3://m/{digest[-4:]}/model.joblib", "digest": digest},
        "server": {"image": "seaway/server:1", "replicas": 1},
        "rollout": {"strategy": "Canary", "steps": [{"setWeight": 10}, {"pause": {}}],
                    "progressDeadlineSeconds": 120},
    })  # fmt: skip


class Sim:
    def __init__(self) -> None:
        self.status = ModelDeploymentStatus()
        self.now = T0
        self.events: list[tuple[str, str]] = []

    def step(self, s: ModelDeploymentSpec, ready: dict[int, int], refused: dict[int, str],
             after: float = 5) -> Plan:
        self.now += timedelta(seconds=after)
        result = plan(s, self.status, generation=1, model=revisions.resolve_model(s),
                      observed={n: Observed(ready=r) for n, r in ready.items()}, now=self.now)
        # the handler stamps what started once the pass's writes returned (where it does so)
        confirmed = getattr(rollout, "confirmed", None)
        if confirmed is not None:
            confirmed(result, self.now)
        refusals.explain(result, self.status, refused, ready, now=format_time(self.now),
                         generation=1)
        self.status = result.status
        self.events += [(e.reason, e.message) for e in result.events]
        return result

    def cond(self, type_: str) -> tuple[str, str, str]:
        c = conditions.find(self.status.conditions, type_)
        assert c is not None
        return c.status, c.reason, c.message or ""


def test_first_revision_refused_says_why_once_then_fails_with_the_reason() -> None:
    sim = Sim()
    for _ in range(5):  # a crash-looping pod: the same refusal pass after pass
        sim.step(spec(D1), {}, {1: REFUSAL})
    status, reason, message = sim.cond(conditions.READY)
    assert (status, reason) == ("False", "ModelRefused")
    assert message == f"revision 1: the model server refused the model: {REFUSAL}"
    assert sim.status.revisions[0].message == f"the model server refused the model: {REFUSAL}"
    assert [e for e in sim.events if e[0] == "ModelRefused"] == [
        ("ModelRefused", f"Revision 1: the model server refused the model: {REFUSAL}")
    ]
    sim.step(spec(D1), {}, {1: REFUSAL}, after=200)  # past progressDeadlineSeconds
    failed = sim.status.revisions[0]
    assert (failed.fate, failed.reason) == ("Failed", "ProgressDeadlineExceeded")
    assert failed.message is not None and REFUSAL in failed.message
    assert failed.message.startswith("no ready pod within progressDeadlineSeconds")
    assert len([e for e in sim.events if e[0] == "ModelRefused"]) == 1


def test_refused_canary_shows_in_progressing_while_stable_serves() -> None:
    sim = Sim()
    sim.step(spec(D1), {1: 1}, {})
    sim.step(spec(D1), {1: 1}, {})
    assert sim.status.stable_revision == 1
    sim.step(spec(D2), {1: 1}, {2: REFUSAL})
    sim.step(spec(D2), {1: 1}, {2: REFUSAL})
    assert sim.cond(conditions.READY)[:2] == ("True", "Available")
    status, reason, message = sim.cond(conditions.PROGRESSING)
    assert (status, reason) == ("True", "ModelRefused") and REFUSAL in message
    assert len([e for e in sim.events if e[0] == "ModelRefused"]) == 1


def test_a_refusal_that_went_away_leaves_no_stale_message() -> None:
    sim = Sim()
    sim.step(spec(D1), {}, {1: "could not fetch s3://m/1111/model.joblib: HTTP 503"})
    assert sim.status.revisions[0].message
    sim.step(spec(D1), {1: 1}, {1: "could not fetch s3://m/1111/model.joblib: HTTP 503"})
    assert sim.status.revisions[0].message is None
    assert sim.cond(conditions.READY)[:2] == ("True", "Available")
