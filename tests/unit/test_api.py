"""The pydantic models read what the API server stores and write camelCase back."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from seaway.api import ModelDeployment, RetrainJob

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
PARSERS = {"ModelDeployment": ModelDeployment.parse, "RetrainJob": RetrainJob.parse}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_round_trip(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc or doc.get("kind") not in PARSERS:
            continue
        parsed = PARSERS[doc["kind"]](doc)
        wire = parsed.spec.to_wire()
        # Everything the user wrote comes back unchanged (defaults may be added).
        _assert_subset(doc["spec"], wire)


def _assert_subset(written: object, wire: object) -> None:
    if isinstance(written, dict):
        assert isinstance(wire, dict)
        for key, value in written.items():
            assert key in wire, f"{key} lost"
            _assert_subset(value, wire[key])
    elif isinstance(written, list):
        assert isinstance(wire, list) and len(wire) == len(written)
        for a, b in zip(written, wire, strict=True):
            _assert_subset(a, b)
    else:
        assert written == wire


def test_server_fields_are_tolerated_and_status_parsed() -> None:
    body = yaml.safe_load((ROOT / "examples" / "modeldeployment-minimal.yaml").read_text())
    body["metadata"].update(
        {"uid": "abc", "generation": 3, "managedFields": [{"manager": "kubectl"}]}
    )
    body["status"] = {
        "observedGeneration": 2,
        "stableRevision": 1,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "RolloutComplete",
                "lastTransitionTime": "2026-11-25T10:00:00Z",
            }
        ],
    }
    md = ModelDeployment.parse(body)
    assert md.metadata.generation == 3
    assert md.status.stable_revision == 1
    assert md.status.conditions[0].reason == "RolloutComplete"
    assert md.spec.server.replicas == 1
    assert md.status.to_wire()["observedGeneration"] == 2
