"""The operator under faults, on a real API server: every pause holds its weight for its full
duration (measured with the API server's own times), no revision is doubled or lost, and an
outage logs one line when it starts and one when it ends.

Each scenario is bounded in time; the figures it prints (bake times, recovery times) are the
ones docs/operator.md quotes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from tests.faults.conftest import Faults, OperatorProcess, Weights
from tests.integration.mdtools import User, md_body

T = TypeVar("T")
PAUSE = 5
STEPS = [
    {"setWeight": 20},
    {"pause": {"duration": f"{PAUSE}s"}},
    {"setWeight": 60},
    {"pause": {"duration": f"{PAUSE}s"}},
]
#: Longer than a pause and than the operator's request timeout, as the reproduction asks.
FREEZE = 20.0


def body(name: str, version: int, **spec: Any) -> dict[str, Any]:
    result = md_body(name, version, **spec)
    result["spec"]["rollout"]["steps"] = STEPS
    result["spec"]["rollout"]["progressDeadlineSeconds"] = 60
    return result


def until(check: Callable[[], T], *, timeout: float, what: str) -> T:
    """Poll ``check`` (errors of a recovering API server count as "not yet")."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except Exception as exc:  # the API server may be down on purpose
            last = exc
        else:
            if result:
                return result
            last = result
        time.sleep(0.1)
    raise AssertionError(f"not reached within {timeout:.0f}s: {what} (last: {last!r})")


def stable(user: User, name: str, number: int) -> bool:
    status = user.status(name)
    return status.get("stableRevision") == number and status.get("canaryRevision") is None


def assert_clean_rollout(user: User, name: str, revisions: int) -> None:
    status = user.status(name)
    numbers = [r["number"] for r in status["revisions"]]
    assert numbers == list(range(1, revisions + 1)), status["revisions"]
    fates = [r["fate"] for r in status["revisions"]]
    assert fates == ["Retired"] * (revisions - 1) + ["Stable"], fates
    reasons = user.event_reasons(name)
    assert "RolledBack" not in reasons and "ProgressDeadlineExceeded" not in reasons, reasons
    assert reasons.count("Promoted") == revisions, reasons
    assert reasons.count("RevisionCreated") == revisions, reasons
    assert reasons.count("RolloutStarted") == revisions, reasons


def assert_bakes(weights: Weights, revision: int) -> list[tuple[int, int, float]]:
    bakes = weights.bakes(revision)
    print(f"bakes of revision {revision} (weight, server s, seen s): {bakes}")
    held = {w: server for w, server, _ in bakes}
    for weight in (20, 60):
        assert weight in held, f"revision {revision} never held {weight}%: {bakes}"
        assert held[weight] >= PAUSE, (
            f"{weight}% held {held[weight]}s by the API server's clock, the step says {PAUSE}s:"
            f" {bakes}"
        )
    return bakes


def outage_lines(output: str) -> tuple[list[str], list[str]]:
    lost = [line for line in output.splitlines() if "Lost the Kubernetes API server" in line]
    back = [line for line in output.splitlines() if "API server answers again" in line]
    return lost, back


@pytest.mark.parametrize("index", [1, 3], ids=["at-20", "at-60"])
def test_apiserver_frozen_during_a_pause_never_shortens_it(
    index: int, api: Any, fault_namespace: str, faults: Faults, operator_process: OperatorProcess
) -> None:
    user = User(api, fault_namespace)
    operator_process.start()
    user.create(body("frozen", 1))
    until(lambda: stable(user, "frozen", 1), timeout=60, what="revision 1 stable")
    with Weights(api, fault_namespace, "frozen") as weights:
        user.patch_spec("frozen", body("frozen", 2)["spec"])
        until(
            lambda: user.status("frozen").get("currentStepIndex") == index,
            timeout=60,
            what=f"step {index}",
        )
        began = time.monotonic()
        with faults.frozen("kube-apiserver"):
            time.sleep(FREEZE)
        until(lambda: stable(user, "frozen", 2), timeout=90, what="revision 2 stable")
        recovered = time.monotonic() - began - FREEZE
        until(lambda: weights.changes and weights.changes[-1].weights == {2: 100},
              timeout=10, what="the watch saw 100%")  # fmt: skip
    print(f"frozen {FREEZE:.0f}s at step {index}; revision 2 stable {recovered:.1f}s after")
    assert_bakes(weights, 2)
    assert_clean_rollout(user, "frozen", 2)
    output = operator_process.output()
    assert "Traceback" not in output
    lost, back = outage_lines(output)
    assert len(lost) == 1 and len(back) == 1, (lost, back)


#: How long a killed component stays down before it is started again.
DOWN = 8.0


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_restarted_mid_rollout_the_rollout_resumes(
    component: str, api: Any, fault_namespace: str, faults: Faults,
    operator_process: OperatorProcess,
) -> None:  # fmt: skip
    user = User(api, fault_namespace)
    operator_process.start()
    user.create(body("restarted", 1))
    until(lambda: stable(user, "restarted", 1), timeout=60, what="revision 1 stable")
    with Weights(api, fault_namespace, "restarted") as weights:
        user.patch_spec("restarted", body("restarted", 2)["spec"])
        until(
            lambda: user.status("restarted").get("currentStepIndex") == 1,
            timeout=60,
            what="step 1",
        )
        old = faults.kill(component)
        time.sleep(DOWN)
        ready = faults.api_ready if component == "kube-apiserver" else faults.etcd_ready
        came_back = faults.start_again(old, ready)
        began = time.monotonic()
        until(faults.api_ready, timeout=60, what="the API server ready")
        api_back = time.monotonic() - began
        until(lambda: stable(user, "restarted", 2), timeout=90, what="revision 2 stable")
        recovered = time.monotonic() - began
        until(lambda: weights.changes and weights.changes[-1].weights == {2: 100},
              timeout=30, what="the watch saw 100%")  # fmt: skip
    print(
        f"{component} down {DOWN:.0f}s, started in {came_back:.1f}s, API ready"
        f" {api_back:.1f}s later; revision 2 stable {recovered:.1f}s after"
    )
    assert_bakes(weights, 2)
    assert_clean_rollout(user, "restarted", 2)
    output = operator_process.output()
    assert "Traceback" not in output
    lost, back = outage_lines(output)
    # Without etcd the API server holds requests rather than failing them: the operator may
    # see no outage at all; when it sees one, it says so once each way.
    expected = 1 if component == "kube-apiserver" else len(lost)
    assert len(lost) == len(back) == expected <= 1, (lost, back)
