"""The kwok Stage set: at most one stage applies to any Pod or Node, and the right one.

kwok picks among matching stages at random, so overlapping selectors would make the simulated
kubelet flaky. The selectors are evaluated here with kwok's rules (``pkg/utils/expression``:
a jq query per key; a missing value matches ``NotIn`` and ``DoesNotExist``) over every combination
of phase, Ready condition, deletion and ``sim.seaway.dev/*`` labels. The integration tests then
check the same behaviour on the real kwok.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from seaway.localplane import config

STAGES = config.parse_stages(config.stages_text())
LABELS = (config.NOT_READY_LABEL, config.COMPLETE_LABEL, config.FAIL_LABEL)

_TOKEN = re.compile(r'\.\[\]|\.([A-Za-z_][A-Za-z0-9_]*)|\["([^"]+)"\]')
_SELECT = re.compile(r'select\(\s*\.([A-Za-z_]+)\s*==\s*"([^"]*)"\s*\)')


def _path(expr: str, value: Any) -> list[Any]:
    values = [value]
    position = 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        assert match, f"unsupported query syntax at {expr[position:]!r}"
        position = match.end()
        key = match.group(1) or match.group(2)
        if key is None:  # .[] iterates; iterating over null is an error: no values
            values = [item for v in values if isinstance(v, list) for item in v]
        else:
            values = [v.get(key) if isinstance(v, dict) else None for v in values]
    return values


def query(expr: str, obj: dict[str, Any]) -> list[Any]:
    values = [obj]
    for part in (p.strip() for p in expr.split("|")):
        select = _SELECT.fullmatch(part)
        if select:
            field, wanted = select.groups()
            values = [v for v in values if isinstance(v, dict) and v.get(field) == wanted]
        else:
            values = [r for v in values for r in _path(part, v)]
    return [v for v in values if v is not None]


def requirement_holds(requirement: dict[str, Any], obj: dict[str, Any]) -> bool:
    values = query(requirement["key"], obj)
    wanted = [str(v) for v in requirement.get("values", [])]
    present = [v if isinstance(v, str) else str(v).lower() for v in values]
    operator = requirement["operator"]
    if operator == "In":
        return any(v in wanted for v in present)
    if operator == "NotIn":
        return not any(v in wanted for v in present)
    if operator == "Exists":
        return bool(values)
    if operator == "DoesNotExist":
        return not values
    raise AssertionError(f"unknown operator {operator}")


def stage_matches(stage: dict[str, Any], obj: dict[str, Any]) -> bool:
    selector = stage["spec"]["selector"]
    labels = obj.get("metadata", {}).get("labels", {})
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    return all(requirement_holds(r, obj) for r in selector.get("matchExpressions", []))


def matching(obj: dict[str, Any]) -> list[str]:
    kind = obj["kind"]
    return [
        s["metadata"]["name"]
        for s in STAGES
        if s["spec"]["resourceRef"]["kind"] == kind and stage_matches(s, obj)
    ]


def pod(
    phase: str | None = "Pending",
    ready: str | None = None,
    deleting: bool = False,
    **labels: str,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": "p",
        "labels": {
            "app": "x",
            **{f"sim.seaway.dev/{k.replace('_', '-')}": v for k, v in labels.items()},
        },
    }
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status: dict[str, Any] = {"conditions": [{"type": "PodScheduled", "status": "True"}]}
    if phase is not None:
        status["phase"] = phase
    if ready is not None:
        status["conditions"].append({"type": "Ready", "status": ready})
    return {
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"nodeName": "kwok-node-0"},
        "status": status,
    }


def node(
    phase: str | None = None, ready: str | None = None, deleting: bool = False
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "kwok-node-0"}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status: dict[str, Any] = {}
    if phase is not None:
        status["phase"] = phase
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready}]
    return {"kind": "Node", "metadata": metadata, "status": status}


def test_the_evaluator_follows_kwok_semantics() -> None:
    obj = pod("Running", "True", not_ready="true")
    assert query('.metadata.labels["sim.seaway.dev/not-ready"]', obj) == ["true"]
    assert query('.metadata.labels["missing"]', obj) == []
    assert query('.status.conditions.[] | select( .type == "Ready" ) | .status', obj) == ["True"]
    assert query('.status.conditions.[] | select( .type == "Ready" ) | .status', node()) == []
    assert requirement_holds(
        {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}, obj
    )
    assert requirement_holds({"key": ".x", "operator": "NotIn", "values": ["a"]}, obj)
    assert not requirement_holds({"key": ".x", "operator": "In", "values": ["a"]}, obj)


LABEL_VALUES = (None, "true", "false")
POD_STATES = [
    pod(
        phase,
        ready,
        deleting,
        **{k: v for k, v in zip(("not_ready", "complete", "fail"), values, strict=True) if v},
    )
    for phase, ready, deleting, values in itertools.product(
        (None, "Pending", "Running", "Succeeded", "Failed"),
        (None, "True", "False"),
        (False, True),
        itertools.product(LABEL_VALUES, repeat=3),
    )
]


def test_at_most_one_pod_stage_matches_any_pod() -> None:
    assert len(POD_STATES) == 810
    overlaps = [(obj, matching(obj)) for obj in POD_STATES if len(matching(obj)) > 1]
    assert not overlaps, overlaps[:3]


@pytest.mark.parametrize(
    ("phase", "ready", "deleting"),
    list(itertools.product((None, "Running"), (None, "True", "False"), (False, True))),
)
def test_at_most_one_node_stage_matches_any_node(
    phase: str | None, ready: str | None, deleting: bool
) -> None:
    assert len(matching(node(phase, ready, deleting))) <= 1


# (the Pod as kwok sees it, the stage that applies, the Pod after it: must match no stage)
TRANSITIONS = [
    ("new Pod", pod("Pending"), "pod-start-ready", pod("Running", "True")),
    (
        "new Pod labelled not-ready",
        pod("Pending", not_ready="true"),
        "pod-start-not-ready",
        pod("Running", "False", not_ready="true"),
    ),
    (
        "Ready Pod gets the not-ready label",
        pod("Running", "True", not_ready="true"),
        "pod-crash",
        pod("Running", "False", not_ready="true"),
    ),
    (
        "crash-looping Pod loses the label",
        pod("Running", "False"),
        "pod-recover",
        pod("Running", "True"),
    ),
    (
        "label set to false counts as absent",
        pod("Running", "False", not_ready="false"),
        "pod-recover",
        pod("Running", "True", not_ready="false"),
    ),
    (
        "running Job Pod labelled complete",
        pod("Running", "True", complete="true"),
        "pod-succeed",
        pod("Succeeded", "False", complete="true"),
    ),
    (
        "Pod created with the complete label",
        pod("Pending", complete="true"),
        "pod-succeed",
        pod("Succeeded", "False", complete="true"),
    ),
    (
        "crash-looping Pod labelled complete",
        pod("Running", "False", not_ready="true", complete="true"),
        "pod-succeed",
        pod("Succeeded", "False", not_ready="true", complete="true"),
    ),
    (
        "fail wins over complete",
        pod("Running", "True", complete="true", fail="true"),
        "pod-fail",
        pod("Failed", "False", complete="true", fail="true"),
    ),
    (
        "Pod labelled fail at creation",
        pod("Pending", fail="true"),
        "pod-fail",
        pod("Failed", "False", fail="true"),
    ),
]


@pytest.mark.parametrize(
    ("before", "stage", "after"),
    [t[1:] for t in TRANSITIONS],
    ids=[t[0] for t in TRANSITIONS],
)
def test_pod_transitions_apply_one_stage_and_then_rest(
    before: dict[str, Any], stage: str, after: dict[str, Any]
) -> None:
    assert matching(before) == [stage]
    assert matching(after) == [], "the state a stage produces must be stable"


@pytest.mark.parametrize(
    "obj",
    [
        pod("Running", "True"),
        pod("Running", "False", not_ready="true"),
        pod("Succeeded", "False"),
        pod("Failed", "False", fail="true"),
        pod("Succeeded", "False", not_ready="true"),
    ],
    ids=["ready", "crash-looping", "succeeded", "failed", "succeeded-with-label"],
)
def test_settled_pods_match_no_stage(obj: dict[str, Any]) -> None:
    assert matching(obj) == []


def test_job_pods_are_not_completed_without_a_label() -> None:
    job_pod = pod("Running", "True")
    job_pod["metadata"]["ownerReferences"] = [{"kind": "Job", "name": "train", "controller": True}]
    assert matching(job_pod) == []


@pytest.mark.parametrize("phase", ["Pending", "Running", "Succeeded"])
def test_deleted_pods_are_removed_whatever_their_state(phase: str) -> None:
    assert matching(pod(phase, deleting=True, not_ready="true")) == ["pod-delete"]


def test_nodes_are_initialized_then_only_heartbeat() -> None:
    assert matching(node()) == ["node-initialize"]
    assert matching(node("Running", "False")) == ["node-initialize"]
    assert matching(node("Running", "True")) == ["node-heartbeat"]
    assert matching(node("Running", "True", deleting=True)) == []


def test_every_stage_but_delete_skips_objects_being_deleted() -> None:
    for stage in STAGES:
        if stage["metadata"]["name"] == "pod-delete":
            continue
        requirements = stage["spec"]["selector"]["matchExpressions"]
        assert {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"} in requirements


def test_the_simulation_labels_in_the_stages_are_the_documented_ones() -> None:
    keys = {
        r["key"]
        for s in STAGES
        for r in s["spec"]["selector"].get("matchExpressions", [])
        if r["key"].startswith(".metadata.labels")
    }
    assert keys == {f'.metadata.labels["{label}"]' for label in LABELS}


def test_templates_never_hand_out_a_node_address_other_than_kwoks_own() -> None:
    # Node addresses come only from NodeIP / NodeIPWith, i.e. kwok --node-ip=127.0.0.1.
    for stage in STAGES:
        template = stage["spec"].get("next", {}).get("statusTemplate", "")
        assert not re.search(r"\b10\.\d+\.\d+\.\d+\b", template), stage["metadata"]["name"]
        if "hostIP" in template:
            assert "NodeIPWith .spec.nodeName" in template
