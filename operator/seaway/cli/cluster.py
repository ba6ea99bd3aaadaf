"""``seaway cluster up|status|down``: the local control plane as Seaway's embedded default.

``up`` builds the binaries the first time (many minutes, progress shown), starts the plane in
the background (its processes outlive the command), installs Seaway's CRDs and prints the
kubeconfig. Progress and information go to stderr; stdout carries only the
``export KUBECONFIG=...`` line, so ``eval "$(seaway cluster up)"`` works.

Pods run on a real node (containerd, kubelet, kube-proxy, CoreDNS) when the host allows it, and
on kwok's simulated node otherwise; ``up`` says which in one line, and why. ``--real-node``
insists (and lists every missing prerequisite, starting nothing), ``--simulated`` never tries.

Errors are one line (``Error: ...``), never a traceback; the run directory keeps each component's
log for the details.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import NoReturn

import click

from seaway.localplane import binaries, config, nodeconfig, plane, preflight

logger = logging.getLogger("seaway.cli.cluster")

name_option = click.option(
    "--name",
    default=config.DEFAULT_CLUSTER_NAME,
    show_default=True,
    help="Name of the cluster (its run directory is ~/.cache/seaway/clusters/<name>).",
)


class _StderrHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"  {record.getMessage()}", err=True)


def _progress() -> None:
    """Show the plane's progress messages (INFO and up) on stderr, once."""
    root = logging.getLogger("seaway.localplane")
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        root.addHandler(_StderrHandler())
        root.setLevel(logging.INFO)
        root.propagate = False


def _run_dir(name: str) -> Path:
    try:
        return config.cluster_dir(name, os.environ)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--name") from None


def _mode_line(mode: str) -> str:
    if mode == plane.REAL:
        return f"real node {nodeconfig.NODE_NAME} (Pods run in containers)"
    return f"simulated node {config.NODE_NAME} (kwok: Pods run no containers)"


def _print_status(status: plane.Status) -> None:
    if status.running:
        state = "running"
    elif status.partly_running:
        state = "partly running (seaway cluster up restarts it)"
    elif status.recorded:
        state = "stopped (its processes are gone)"
    else:
        state = "stopped"
    click.echo(f"Cluster {status.name}: {state}", err=True)
    if not status.recorded:
        return
    click.echo(f"  API server: {status.api_server}", err=True)
    click.echo(f"  Kubeconfig: {status.kubeconfig}", err=True)
    click.echo(f"  Node {status.node_name}: {status.node_description}", err=True)
    click.echo(f"  Mode: {_mode_line(status.mode)}", err=True)
    for component, alive in status.components:
        mark = "running" if alive else "stopped"
        click.echo(f"  {component.name:<24} {mark:<8} pid {component.pid}", err=True)


def _export_line(status: plane.Status) -> None:
    click.echo(f"Kubeconfig: {status.kubeconfig}", err=True)
    click.echo(f"export KUBECONFIG={status.kubeconfig}")


def _processes(count: int) -> str:
    return f"{count} process" if count == 1 else f"{count} processes"


def _seaway_command() -> list[str]:
    """This installation's ``seaway`` command, whichever Python runs the CLI."""
    beside = Path(sys.executable).parent / "seaway"
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "seaway.cli.main"]


def _crds_text() -> str:
    from seaway import crdgen

    return "---\n".join([*(crdgen.render(kind) for kind in crdgen.KINDS), crdgen.render_policy()])


@click.group()
def cluster() -> None:
    """A local Kubernetes control plane on 127.0.0.1 (no Docker): up, status, down."""


@cluster.command()
@name_option
@click.option(
    "--timeout",
    default=plane.DEFAULT_TIMEOUT,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds each component may take to become ready.",
)
@click.option(
    "--operator/--no-operator",
    "with_operator",
    default=True,
    show_default=True,
    help="Also run the Seaway operator against it (stopped by `seaway cluster down`).",
)
@click.option(
    "--real-node",
    "node_mode",
    flag_value=plane.REAL,
    help="Run Pods in containers on a real node; fail, starting nothing, if this host cannot.",
)
@click.option(
    "--simulated",
    "node_mode",
    flag_value=plane.SIMULATED,
    help="Simulate Pods on kwok's node even where a real node could run.",
)
def up(name: str, timeout: float, with_operator: bool, node_mode: str | None) -> None:
    """Start the plane in the background (building it first if needed) with Seaway's CRDs,
    and the Seaway operator watching all namespaces.

    Pods run on a real node when this host allows it (root, the node built with `make node`
    and `make images`), else on a simulated one; the first line says which and why."""
    run_dir = _run_dir(name)
    _progress()
    current = plane.status(run_dir)
    if current.running and node_mode is not None and node_mode != current.mode:
        raise click.ClickException(
            f"cluster {name} is already up with a {current.mode} node; stop it first "
            f"(seaway cluster down --name {name}) to start it with a {node_mode} node"
        )
    if current.running:
        click.echo(f"Cluster {name} is already up.", err=True)
        _print_status(current)
        _export_line(current)
        return
    if current.partly_running:
        stopped = plane.stop(run_dir)
        click.echo(
            f"Stopped {_processes(len(stopped))} left from a partly running cluster {name}.",
            err=True,
        )
    began = time.monotonic()
    try:
        bins = binaries.ensure(os.environ)
    except binaries.BinariesMissing as exc:
        raise click.ClickException(str(exc)) from None
    real_node = _choose_mode(run_dir, node_mode)
    try:
        started = plane.start(
            run_dir, name=name, bins=bins, timeout=timeout, real_node=real_node, env=os.environ
        )
    except plane.NodeUnavailable as exc:
        _fail_with(exc.problems)
    except plane.PlaneError as exc:
        raise click.ClickException(exc.one_line()) from None
    except KeyboardInterrupt:
        click.echo("Interrupted; stopped what had started.", err=True)
        sys.exit(130)
    try:
        started.install_crds(_crds_text())
    except (plane.PlaneError, OSError) as exc:
        started.stop()
        message = exc.one_line() if isinstance(exc, plane.PlaneError) else str(exc)
        raise click.ClickException(f"installing Seaway's CRDs failed: {message}") from None
    if with_operator:
        operator = started.run_alongside("seaway-operator", [*_seaway_command(), "operator", "run"])
        click.echo(
            f"  Started the Seaway operator (pid {operator.pid}); log: {operator.log}", err=True
        )
    click.echo(
        f"Cluster {name} is up in {time.monotonic() - began:.1f}s: API server "
        f"{started.api_server}, node {started.node_name} Ready, Seaway CRDs installed.",
        err=True,
    )
    click.echo(f"  Logs: {started.layout.logs}", err=True)
    click.echo(f"  Stop it with: seaway cluster down --name {name}", err=True)
    _export_line(plane.status(run_dir))


def _choose_mode(run_dir: Path, node_mode: str | None) -> bool:
    """Whether to run a real node; says so in one line (stderr), or exits listing why not."""
    if node_mode == plane.SIMULATED:
        click.echo("Mode: simulated node (--simulated): Pods run no containers.", err=True)
        return False
    problems = plane.real_node_problems(run_dir, os.environ)
    if node_mode == plane.REAL:
        if problems:
            _fail_with(problems)
        click.echo("Mode: real node (--real-node): Pods run in containers.", err=True)
        return True
    if problems:
        click.echo(
            f"Mode: simulated node, {preflight.reasons(problems)}: pods are simulated "
            "(`seaway cluster up --real-node` lists what is missing).",
            err=True,
        )
        return False
    click.echo(
        "Mode: real node, root and every prerequisite present: Pods run in containers "
        "(--simulated to simulate them).",
        err=True,
    )
    return True


def _fail_with(problems: list[preflight.Problem]) -> NoReturn:
    """Every reason on its own ``Error:`` line, then exit 1 (nothing was started)."""
    for problem in problems:
        click.echo(f"Error: {problem.line}", err=True)
    sys.exit(1)


@cluster.command()
@name_option
def status(name: str) -> None:
    """Show which components run, the API server URL and whether the node is Ready.

    Exits with 0 when every component runs and the node is Ready, 1 otherwise.
    """
    current = plane.status(_run_dir(name))
    _print_status(current)
    if current.healthy:
        click.echo(f"export KUBECONFIG={current.kubeconfig}")
        return
    sys.exit(1)


@cluster.command()
@name_option
def down(name: str) -> None:
    """Stop every process of the cluster and discard its data (logs stay in the run dir).

    With a real node, also its containers, and everything it changed on the host: network
    namespaces, iptables chains, the bridge, cgroups, mounts, directories and sysctls."""
    _progress()
    stopped = plane.stop(_run_dir(name))
    if stopped:
        click.echo(f"Cluster {name} is down ({_processes(len(stopped))} stopped).", err=True)
    else:
        click.echo(f"Cluster {name} was not running.", err=True)
