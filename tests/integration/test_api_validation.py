"""The bad-input corpus against the REAL API server: every mistake refused, with its field.

The same files are checked offline in tests/unit/test_bad_input.py; here the generated CRDs are
installed in the local control plane and each manifest goes through ``kubectl apply`` (strict
field validation, server-side dry run). Files with two documents create the first for real and
then apply the second as an update, for the rules that compare with the old object.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BAD = sorted((ROOT / "tests" / "bad-input").glob("*.yaml"))
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.yaml"))


def expected_field(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("# field: "):
            return line.removeprefix("# field: ").strip()
    raise AssertionError(f"{path.name} does not say which field is wrong")


def apply(control_plane: Any, namespace: str, doc: dict[str, Any], *, dry_run: bool) -> Any:
    args = ["apply", "-n", namespace, "-f", "-"]
    if dry_run:
        args.insert(1, "--dry-run=server")
    return control_plane.kubectl(*args, input=yaml.safe_dump(doc), check=False)


@pytest.fixture(scope="module")
def corpus_namespace(control_plane: Any, seaway_crds: Any) -> Iterator[str]:
    """One namespace for the whole corpus (each file names its objects after itself)."""
    name = "bad-input-corpus"
    control_plane.kubectl("create", "namespace", name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_invalid_manifest_is_refused_with_its_field_path(
    path: Path, control_plane: Any, corpus_namespace: str
) -> None:
    namespace = corpus_namespace
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    *setup, last = docs
    for doc in setup:
        created = apply(control_plane, namespace, doc, dry_run=False)
        assert created.returncode == 0, created.stderr
    refused = apply(control_plane, namespace, last, dry_run=True)
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0, f"{path.name} was accepted: {output}"
    assert expected_field(path) in output, f"{path.name}: no field path in {output!r}"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_is_accepted(
    path: Path, control_plane: Any, seaway_crds: Any, namespace: str
) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("apiVersion", "").startswith("seaway.dev/"):
            accepted = apply(control_plane, namespace, doc, dry_run=True)
            assert accepted.returncode == 0, accepted.stderr
