"""A status write that conflicts only because of a metadata change is repeated, not re-planned."""

from __future__ import annotations

import copy
from typing import Any

from seaway.handlers.modeldeployment import write_status
from seaway.k8s.kube import Conflict


class FakeKube:
    def __init__(self, live: dict[str, Any], conflicts: int) -> None:
        self.live = live
        self.conflicts = conflicts
        self.written: list[dict[str, Any]] = []

    def replace_status(self, kind: str, body: dict[str, Any]) -> None:
        if body["metadata"]["resourceVersion"] != self.live["metadata"]["resourceVersion"]:
            raise Conflict("changed")
        self.written.append(copy.deepcopy(body))

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.live)


def md(version: str, *, generation: int = 3, labels: dict[str, str] | None = None) -> Any:
    return {
        "metadata": {"name": "m", "namespace": "ns", "resourceVersion": version,
                     "generation": generation, "labels": labels or {}},
        "spec": {"paused": False},
        "status": {"currentStepIndex": 1},
    }  # fmt: skip


def test_a_label_change_meanwhile_repeats_the_write() -> None:
    kube = FakeKube(md("8", labels={"team": "growth"}), conflicts=1)
    body = md("7")
    assert write_status(kube, body, {"currentStepIndex": 3})  # type: ignore[arg-type]
    assert [w["metadata"]["resourceVersion"] for w in kube.written] == ["8"]
    assert kube.written[0]["status"] == {"currentStepIndex": 3}


def test_a_spec_or_status_change_meanwhile_means_planning_again() -> None:
    for live in (md("8", generation=4), {**md("8"), "status": {"currentStepIndex": 2}}):
        kube = FakeKube(live, conflicts=1)
        assert not write_status(kube, md("7"), {"currentStepIndex": 3})  # type: ignore[arg-type]
        assert kube.written == []
