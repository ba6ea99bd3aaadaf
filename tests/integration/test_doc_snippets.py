"""The manifests in docs/api.md are accepted by the real API server as written.

Each ``yaml`` block that is a Seaway object (not a status excerpt) is applied with
``kubectl apply --server-side`` to a fresh namespace (the one change: ``metadata.namespace``),
through the CRDs' schema, their CEL rules and the approval admission policy. A manifest with
``approvals`` is applied by the approver it names, as the docs say a user must: the policy
refuses an entry written by anyone else, which is how the docs' approval examples used to be
refused as written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.rbac import wait_allowed

ROOT = Path(__file__).resolve().parents[2]
API_MD = ROOT / "docs" / "api.md"


def snippets(text: str) -> list[tuple[int, dict[str, Any]]]:
    """(line, object) of every yaml block that is a whole Seaway object to apply."""
    found = []
    for match in re.finditer(r"```yaml\n(.*?)```", text, re.S):
        document = yaml.safe_load(match.group(1))
        if not isinstance(document, dict) or "status" in document:
            continue
        if str(document.get("apiVersion", "")).startswith("seaway.dev/"):
            found.append((text[: match.start()].count("\n") + 1, document))
    return found


SNIPPETS = snippets(API_MD.read_text())


def test_the_docs_have_snippets_of_both_kinds() -> None:
    kinds = sorted({doc["kind"] for _, doc in SNIPPETS})
    assert kinds == ["ModelDeployment", "RetrainJob", "ScoringJob"], kinds
    assert any(doc["spec"].get("approvals") for _, doc in SNIPPETS)


def writer_of(document: dict[str, Any]) -> str | None:
    """The user who can apply ``document``: the approver it names, if it names one."""
    approvers = {a["approver"] for a in document["spec"].get("approvals", [])}
    assert len(approvers) <= 1, f"one user cannot write approvals of several: {approvers}"
    return approvers.pop() if approvers else None


@pytest.mark.parametrize(
    "document", [d for _, d in SNIPPETS], ids=[f"line{line}" for line, _ in SNIPPETS]
)
def test_snippet_is_accepted_as_written(
    document: dict[str, Any], control_plane: Any, seaway_crds: list[str], namespace: str,
    kube_api: Any
) -> None:
    document = {**document, "metadata": {**document["metadata"], "namespace": namespace}}
    writer = writer_of(document)
    argv = ["apply", "--server-side", "--field-manager=docs-reader", "-f", "-"]
    if writer is not None:
        control_plane.kubectl("create", "role", "seaway-editor", "--namespace", namespace,
                              "--verb=get,create,update,patch",
                              "--resource=retrainjobs.seaway.dev,modeldeployments.seaway.dev,"
                              "scoringjobs.seaway.dev")
        control_plane.kubectl("create", "rolebinding", "seaway-editor", "--namespace", namespace,
                              "--role=seaway-editor", f"--user={writer}")  # fmt: skip
        wait_allowed(kube_api, writer, "create", "seaway.dev", document["kind"].lower() + "s",
                     namespace)  # the authorizer's cache follows the binding
        argv = [*argv, f"--as={writer}"]
    result = control_plane.kubectl(*argv, input=yaml.safe_dump(document), check=False)
    assert result.returncode == 0, result.stderr
    assert "serverside-applied" in result.stdout
