"""The generator's output is pinned (golden files in crds/) and has the properties the API needs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pytest
import yaml
from pydantic import Field

from seaway import crdgen
from seaway.api.common import WireModel

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "path,text", sorted(crdgen.outputs(ROOT).items()), ids=lambda v: str(v)[-40:]
)
def test_generated_files_match_the_models(path: Path, text: str) -> None:
    assert path.exists(), f"{path} is missing: run `make generate`"
    assert path.read_text() == text, f"{path} differs from the models: run `make generate`"


def _walk(node: Any) -> list[dict[str, Any]]:
    found = [node] if isinstance(node, dict) else []
    if isinstance(node, dict):
        for value in node.values():
            found += _walk(value)
    elif isinstance(node, list):
        for value in node:
            found += _walk(value)
    return found


@pytest.mark.parametrize("kind", crdgen.KINDS, ids=lambda k: k.kind)
def test_crd_is_structural_and_complete(kind: crdgen.Kind) -> None:
    crd = crdgen.crd(kind)
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    nodes = _walk(schema)
    for banned in ("$ref", "$defs", "anyOf", "allOf", "oneOf", "title", "propertyNames", "const"):
        assert not [n for n in nodes if banned in n], f"{banned} left in the schema"
    assert not [n for n in nodes if "properties" in n and "additionalProperties" in n]
    assert version["subresources"] == {"status": {}}
    assert crd["spec"]["names"]["categories"] == ["seaway"]
    assert crd["spec"]["names"]["shortNames"] == list(kind.short_names)
    assert [c["name"] for c in version["additionalPrinterColumns"]][-1] == "Age"
    status = schema["properties"]["status"]["properties"]
    assert status["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    assert "observedGeneration" in status
    assert "phase" not in status
    rules = [r for n in nodes for r in n.get("x-kubernetes-validations", [])]
    assert rules and all("message" in r or "messageExpression" in r for r in rules)


def test_md_printer_columns() -> None:
    columns = crdgen.crd(crdgen.KINDS[0])["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in columns] == ["Stable", "Canary", "Weight", "Ready", "Reason", "Age"]


def test_no_float_anywhere_in_a_spec() -> None:
    for kind in crdgen.KINDS:
        spec = crdgen.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
            "spec"
        ]
        assert not [n for n in _walk(spec) if n.get("type") == "number"]


class _Loose(WireModel):
    name: str
    tags: list[Annotated[str, Field(max_length=8)]]


class _Tight(WireModel):
    name: Annotated[str, Field(max_length=8)]
    tags: Annotated[list[Annotated[str, Field(max_length=8)]], Field(max_length=4)]
    labels: Annotated[dict[str, Annotated[str, Field(max_length=8)]], Field(max_length=4)]
    extra: Annotated[dict[str, Any] | None, Field(json_schema_extra={"maxProperties": 4})] = None
    maybe: Annotated[int | None, Field(gt=0)] = None


def test_unbounded_strings_and_lists_are_refused() -> None:
    with pytest.raises(crdgen.UnboundedSchemaError) as info:
        crdgen.check_bounds(crdgen.structural(_Loose), ".spec")
    assert ".spec.name: string without maxLength" in str(info.value)
    assert ".spec.tags: list without maxItems" in str(info.value)


def test_rewrite_of_optional_maps_and_exclusive_bounds() -> None:
    schema = crdgen.structural(_Tight)
    crdgen.check_bounds(schema, ".spec")
    props = schema["properties"]
    assert props["extra"] == {
        "type": "object",
        "maxProperties": 4,
        "x-kubernetes-preserve-unknown-fields": True,
    }
    assert props["maybe"] == {"type": "integer", "minimum": 0, "exclusiveMinimum": True}
    assert props["labels"]["additionalProperties"] == {"type": "string", "maxLength": 8}
    assert schema["required"] == ["name", "tags", "labels"]


def test_check_mode_reports_stale_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert crdgen.main(["--root", str(tmp_path)]) == 0
    assert crdgen.main(["--root", str(tmp_path), "--check"]) == 0
    target = tmp_path / "crds" / crdgen.file_name(crdgen.KINDS[0])
    target.write_text(target.read_text() + "# edited by hand\n")
    assert crdgen.main(["--root", str(tmp_path), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert yaml.safe_load(target.read_text())["kind"] == "CustomResourceDefinition"
