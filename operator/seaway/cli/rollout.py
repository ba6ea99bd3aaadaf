"""The user's commands on a ModelDeployment: status, history, promote, abort, rollback, retry.

Each command that changes something writes the same spec field a GitOps user would write
(``spec.actions.<name>`` tokens, ``spec.rollbackTo``), so the CLI is a convenience, never a
second way of doing things.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def _common(func: F) -> F:
    func = click.option(
        "--namespace", "-n", default=None, help="Default: the kubeconfig context's."
    )(func)
    func = click.option("--kubeconfig", type=click.Path(dir_okay=False), default=None)(func)
    return func


def _connect(kubeconfig: str | None, namespace: str | None) -> tuple[Any, str]:
    from kubernetes import config

    from seaway.k8s.kube import Kube, load_api_client

    try:
        api = load_api_client(kubeconfig)
    except Exception as exc:  # a missing or broken kubeconfig is a user mistake
        raise click.ClickException(f"cannot load the kubeconfig: {exc}") from exc
    if namespace is None:
        try:
            _, context = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
                config_file=kubeconfig or os.environ.get("KUBECONFIG")
            )
            namespace = context.get("context", {}).get("namespace") or "default"
        except Exception:
            namespace = "default"
    return Kube(api), namespace


def _read(kube: Any, namespace: str, name: str, kind: str = "ModelDeployment") -> dict[str, Any]:
    from seaway.k8s.kube import KubeError

    try:
        body = kube.get(kind, namespace, name)
    except KubeError as exc:
        raise click.ClickException(f"cannot read {kind} {namespace}/{name}: {exc.message}") from exc
    if body is None:
        raise click.ClickException(f"{kind} {name} not found in namespace {namespace}")
    result: dict[str, Any] = body
    return result


def _token() -> str:
    return datetime.now(UTC).strftime("cli-%Y%m%dT%H%M%S%f")


def _patch(
    kube: Any, namespace: str, name: str, patch: dict[str, Any], kind: str = "ModelDeployment"
) -> None:
    from seaway.k8s.kube import Conflict, KubeError

    try:
        kube.merge_patch(kind, namespace, name, patch)
    except Conflict as exc:
        raise click.ClickException(f"{kind} {name} changed meanwhile; try again ({exc})") from exc
    except KubeError as exc:
        raise click.ClickException(exc.message) from exc


KIND_PREFIXES = {
    "md": "ModelDeployment",
    "modeldeployment": "ModelDeployment",
    "modeldeployments": "ModelDeployment",
    "rj": "RetrainJob",
    "retrainjob": "RetrainJob",
    "retrainjobs": "RetrainJob",
}


def _kind_and_name(arg: str) -> tuple[str | None, str]:
    """``rj/churn`` -> (RetrainJob, churn); a bare name leaves the kind open."""
    prefix, sep, rest = arg.partition("/")
    if not sep:
        return None, arg
    kind = KIND_PREFIXES.get(prefix.lower().split(".", 1)[0])
    if kind is None or not rest:
        raise click.BadParameter(
            f"{arg!r}: use NAME, md/NAME or rj/NAME", param_hint="NAME"
        )
    return kind, rest


def _events(kube: Any, ns: str, kind: str, name: str) -> None:
    events = kube.list("Event", ns)
    mine = [
        e
        for e in events
        if e.get("involvedObject", {}).get("name") == name
        and e.get("involvedObject", {}).get("kind") == kind
    ]
    mine.sort(key=lambda e: e.get("eventTime") or e.get("lastTimestamp") or "")
    if mine:
        click.echo("Events:")
        for e in mine[-8:]:
            click.echo(f"  {e.get('type', ''):<8} {e.get('reason', ''):<20} {e.get('message', '')}")


@click.command()
@click.argument("name")
@_common
def status(name: str, namespace: str | None, kubeconfig: str | None) -> None:
    """A readable summary of a ModelDeployment or a RetrainJob (NAME, md/NAME or rj/NAME).

    A bare NAME is a ModelDeployment, or else a RetrainJob of that name.
    """
    from seaway.api.modeldeployment import RevisionStatus
    from seaway.api.retrainjob import RetrainJob
    from seaway.planning import commands

    kind, name = _kind_and_name(name)
    kube, ns = _connect(kubeconfig, namespace)
    if kind is None:
        if _maybe(kube, ns, name, "ModelDeployment") is not None:
            kind = "ModelDeployment"
        elif _maybe(kube, ns, name, "RetrainJob") is not None:
            kind = "RetrainJob"
        else:
            raise click.ClickException(f"no ModelDeployment or RetrainJob {name} in namespace {ns}")
    if kind == "RetrainJob":
        rj = RetrainJob.parse(_read(kube, ns, name, "RetrainJob"))
        for line in commands.retrainjob_lines(rj):
            click.echo(line)
        _events(kube, ns, "RetrainJob", name)
        return
    body = _read(kube, ns, name)
    st = body.get("status", {})
    click.echo(
        f"ModelDeployment {ns}/{name} (generation {body['metadata'].get('generation')},"
        f" observed {st.get('observedGeneration', '-')})"
    )
    click.echo(f"  stable revision: {st.get('stableRevision', '-')}")
    if st.get("canaryRevision"):
        click.echo(
            f"  canary revision: {st['canaryRevision']} at step {st.get('currentStepIndex', 0)},"
            f" weight {st.get('canaryWeight', 0)}%"
        )
        if st.get("pauseStartedAt"):
            ends = st.get("pauseEndsAt") or "a promote (seaway promote)"
            click.echo(f"  paused since {st['pauseStartedAt']} until {ends}")
    weights = ", ".join(f"r{w['revision']}={w['weight']}%" for w in st.get("weights", []))
    click.echo(f"  traffic: {weights or '-'}")
    if st.get("message"):
        click.echo(f"  {st['message']}")
    click.echo("Conditions:")
    for c in st.get("conditions", []):
        click.echo(f"  {c['type']:<12} {c['status']:<8} {c['reason']:<26} {c.get('message', '')}")
    click.echo("Revisions:")
    for r in st.get("revisions", [])[-5:]:
        shown = commands.revision_reason(RevisionStatus.model_validate(r))
        reason = f" ({shown})" if shown else ""
        click.echo(f"  r{r['number']:<4} {r['fate']:<11}{reason} {r.get('modelURI', '')}")
    _events(kube, ns, "ModelDeployment", name)


def _maybe(kube: Any, ns: str, name: str, kind: str) -> dict[str, Any] | None:
    from seaway.k8s.kube import KubeError

    try:
        found: dict[str, Any] | None = kube.get(kind, ns, name)
    except KubeError as exc:
        raise click.ClickException(f"cannot read {kind} {ns}/{name}: {exc.message}") from exc
    return found


@click.command()
@click.argument("name")
@_common
def history(name: str, namespace: str | None, kubeconfig: str | None) -> None:
    """Every revision still in history, newest last."""
    from seaway.api.modeldeployment import RevisionStatus
    from seaway.planning import commands

    kube, ns = _connect(kubeconfig, namespace)
    st = _read(kube, ns, name).get("status", {})
    click.echo(f"{'REVISION':<9} {'FATE':<11} {'REASON':<26} {'CREATED':<21} {'BY':<24} MODEL")
    for r in st.get("revisions", []):
        reason = commands.revision_reason(RevisionStatus.model_validate(r))
        click.echo(
            f"{r['number']:<9} {r['fate']:<11} {reason or '-':<26}"
            f" {r.get('createdAt', ''):<21}"
            f" {r.get('createdBy', ''):<24} {r.get('modelURI', '')} {r.get('digest') or ''}"
        )


@click.command()
@click.argument("name")
@click.option("--full", is_flag=True, help="Skip every remaining step.")
@_common
def promote(name: str, full: bool, namespace: str | None, kubeconfig: str | None) -> None:
    """Advance the canary one step (spec.actions.promote), or all the way (--full).

    Refused, with the reason, when it could not take effect now (no canary, paused, pods not
    ready, the analysis holding the step): the operator would consume the command unused.
    """
    from seaway.api.modeldeployment import ModelDeployment
    from seaway.planning import commands

    kube, ns = _connect(kubeconfig, namespace)
    blocker = commands.promote_blocker(ModelDeployment.parse(_read(kube, ns, name)), full=full)
    if blocker is not None:
        raise click.ClickException(f"cannot promote: {blocker}")
    field = "promoteFull" if full else "promote"
    _patch(kube, ns, name, {"spec": {"actions": {field: _token()}}})
    click.echo(
        f"Asked {name} to {'promote fully' if full else 'advance one step'} (spec.actions.{field})."
    )


@click.command()
@click.argument("name")
@_common
def abort(name: str, namespace: str | None, kubeconfig: str | None) -> None:
    """Revert the canary to the stable revision (spec.actions.abort); refused without one."""
    from seaway.api.modeldeployment import ModelDeployment
    from seaway.planning import commands

    kube, ns = _connect(kubeconfig, namespace)
    blocker = commands.abort_blocker(ModelDeployment.parse(_read(kube, ns, name)))
    if blocker is not None:
        raise click.ClickException(f"cannot abort: {blocker}")
    _patch(kube, ns, name, {"spec": {"actions": {"abort": _token()}}})
    click.echo(f"Asked {name} to abort its rollout (spec.actions.abort).")


@click.command()
@click.argument("name")
@_common
def retry(name: str, namespace: str | None, kubeconfig: str | None) -> None:
    """Try a rejected revision again (spec.actions.retry); refused when none was rejected."""
    from seaway.api.modeldeployment import ModelDeployment
    from seaway.planning import commands

    kube, ns = _connect(kubeconfig, namespace)
    blocker = commands.retry_blocker(ModelDeployment.parse(_read(kube, ns, name)))
    if blocker is not None:
        raise click.ClickException(f"cannot retry: {blocker}")
    _patch(kube, ns, name, {"spec": {"actions": {"retry": _token()}}})
    click.echo(f"Asked {name} to retry its desired revision (spec.actions.retry).")


@click.command()
@click.argument("name")
@click.option(
    "--to-revision",
    "revision",
    type=click.IntRange(min=1),
    help="A revision from `seaway history`.",
)
@click.option(
    "--with-steps", is_flag=True, help="Walk the rollout steps instead of going straight to 100%."
)
@click.option("--clear", is_flag=True, help="Remove spec.rollbackTo: follow the template again.")
@click.option(
    "--wait", "wait_seconds", type=int, default=0, help="Wait up to N seconds for it to serve."
)
@_common
def rollback(
    name: str,
    revision: int | None,
    with_steps: bool,
    clear: bool,
    wait_seconds: int,
    namespace: str | None,
    kubeconfig: str | None,
) -> None:
    """Serve an earlier revision (spec.rollbackTo), straight to 100% once ready."""
    kube, ns = _connect(kubeconfig, namespace)
    body = _read(kube, ns, name)
    if clear:
        _patch(kube, ns, name, {"spec": {"rollbackTo": None}})
        click.echo(f"Removed spec.rollbackTo from {name}: it follows its template again.")
        return
    if revision is None:
        raise click.UsageError("give --to-revision N (see `seaway history NAME`) or --clear")
    known = [r["number"] for r in body.get("status", {}).get("revisions", [])]
    if revision not in known:
        raise click.ClickException(
            f"revision {revision} is not in the history of {name} (known: {known})"
        )
    _patch(
        kube,
        ns,
        name,
        {"spec": {"rollbackTo": {"revision": revision, "skipSteps": not with_steps}}},
    )
    click.echo(f"Rolling {name} back to revision {revision} (spec.rollbackTo).")
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if _read(kube, ns, name).get("status", {}).get("stableRevision") == revision:
            click.echo(f"Revision {revision} is serving.")
            return
        time.sleep(1)
    if wait_seconds:
        click.echo(f"Revision {revision} is not serving yet after {wait_seconds}s", err=True)
        sys.exit(1)


COMMANDS = [status, history, promote, abort, retry, rollback]
