"""The user's commands on a RetrainJob: retrain now, approve or reject a candidate.

Like the rollout commands, each writes the spec field a GitOps user would write: ``runNow``, or
an entry in ``approvals`` whose ``approver`` is the caller as the API server knows them (the
same name ``kubectl auth whoami`` prints; an admission policy refuses any other name).
"""

from __future__ import annotations

import contextlib
from typing import Any

import click

from seaway.cli.rollout import _common, _connect, _patch, _read, _token

KIND = "RetrainJob"
#: Names the last editor of a RetrainJob's spec; the approval admission policy checks it.
SPEC_EDITOR = "seaway.dev/spec-editor"


@click.command("retrain")
@click.argument("name")
@_common
def retrain_now(name: str, namespace: str | None, kubeconfig: str | None) -> None:
    """Start a training run now (spec.runNow)."""
    kube, ns = _connect(kubeconfig, namespace)
    _read(kube, ns, name, KIND)
    token = _token()
    patch: dict[str, Any] = {"spec": {"runNow": token}}
    # a spec change names its editor (four-eyes approvals, docs/security.md); without
    # SelfSubjectReview that is fine unless four-eyes is on, and admission then says so
    with contextlib.suppress(Exception):
        patch["metadata"] = {"annotations": {SPEC_EDITOR: kube.whoami()}}
    _patch(kube, ns, name, patch, KIND)
    click.echo(f"Asked {name} for a run now (spec.runNow={token}).")


def _decide(
    decision: str,
    name: str,
    run: int | None,
    reason: str | None,
    namespace: str | None,
    kubeconfig: str | None,
) -> None:
    kube, ns = _connect(kubeconfig, namespace)
    body = _read(kube, ns, name, KIND)
    runs = body.get("status", {}).get("runs", [])
    waiting = [r["number"] for r in runs if r.get("decision") == "AwaitingApproval"]
    if run is None:
        if not waiting:
            raise click.ClickException(f"no run of {name} awaits approval")
        run = waiting[-1]
    elif run not in waiting:
        raise click.ClickException(
            f"run {run} of {name} does not await approval (waiting: {waiting or 'none'})"
        )
    try:
        approver = kube.whoami()
    except Exception as exc:  # an API server without SelfSubjectReview, or no permission
        raise click.ClickException(f"cannot tell who you are (kubectl auth whoami): {exc}") from exc
    entry: dict[str, Any] = {"run": run, "decision": decision, "approver": approver}
    if reason:
        entry["reason"] = reason
    approvals = [*body.get("spec", {}).get("approvals", []), entry]
    patch = {
        "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
        "spec": {"approvals": approvals},
    }
    _patch(kube, ns, name, patch, KIND)
    verb = "Approved" if decision == "Approve" else "Rejected"
    click.echo(f"{verb} run {run} of {name} as {approver} (spec.approvals).")


@click.command()
@click.argument("name")
@click.option(
    "--run", type=click.IntRange(min=1), help="Default: the newest run awaiting approval."
)
@_common
def approve(name: str, run: int | None, namespace: str | None, kubeconfig: str | None) -> None:
    """Approve a candidate that awaits approval (promotion: Manual)."""
    _decide("Approve", name, run, None, namespace, kubeconfig)


@click.command()
@click.argument("name")
@click.option(
    "--run", type=click.IntRange(min=1), help="Default: the newest run awaiting approval."
)
@click.option("--reason", help="Recorded in the run's status.")
@_common
def reject(
    name: str, run: int | None, reason: str | None, namespace: str | None, kubeconfig: str | None
) -> None:
    """Reject a candidate that awaits approval."""
    _decide("Reject", name, run, reason, namespace, kubeconfig)


COMMANDS = [retrain_now, approve, reject]
