"""The bad-input corpus is refused by the generated schema, offline; the examples are accepted.

Each file under tests/bad-input/ holds one mistake and names the field it expects the refusal to
point at. The integration suite sends the same files to the real API server.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support import schemacheck

ROOT = Path(__file__).resolve().parents[2]
BAD = sorted((ROOT / "tests" / "bad-input").glob("*.yaml"))
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def expected_field(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("# field: "):
            return line.removeprefix("# field: ").strip()
    raise AssertionError(f"{path.name} does not say which field is wrong")


def test_corpus_is_large_enough() -> None:
    assert len(BAD) >= 40


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_input_is_refused_with_its_field(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    *before, _last = docs
    assert not schemacheck.check_documents(before), "the set-up documents must be valid"
    errors = schemacheck.check_documents(docs)
    assert errors, f"{path.name} was accepted"
    field = expected_field(path)
    assert any(
        e.path == field or e.path.startswith(field + ".") or e.path.startswith(field + "[")
        for e in errors
    ), f"expected an error at {field}, got: {[str(e) for e in errors]}"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_are_accepted(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("apiVersion", "").startswith("seaway.dev/"):
            assert schemacheck.check_documents([doc]) == []
