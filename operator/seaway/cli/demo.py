"""``seaway demo`` (``make demo``): a canary rollout, a model that never becomes ready, and the
automatic revert, narrated on the embedded local control plane.

It drives the cluster only the way a user would: ``seaway cluster up`` (the plane and the
operator and the chart's CRDs, only re-applied by ``kubectl apply`` when ``kubectl diff`` finds
them outdated), ``kubectl apply`` of the GitOps example folder, ``kubectl
patch`` of the model, and reads the ModelDeployment back as ``kubectl get md`` shows it. It leaves
the cluster up and says how to look around and how to stop it.

Pods run on a simulated node (kwok): revision 3's server "fails to load" through the local plane's
testing label ``sim.seaway.dev/not-ready`` in ``spec.server.podLabels`` (docs/localplane.md),
never something to put in a real manifest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from seaway.localplane import config, plane, processes

NAMESPACE = "ml"
NAME = "churn"
#: operator/seaway/cli/demo.py -> the clone's root, where the chart and the examples live.
ROOT = Path(__file__).resolve().parents[3]
APP = ROOT / "examples" / "gitops" / "apps" / "ml"
CRDS = ROOT / "charts" / "seaway" / "files" / "crds"
NOT_READY = {config.NOT_READY_LABEL: "true"}
COLUMNS = ("NAME", "STABLE", "CANARY", "WEIGHT", "READY", "REASON", "AGE")
WIDTHS = (8, 8, 8, 8, 7, 26, 5)
Status = dict[str, Any]


class Demo:
    def __init__(self, cluster: plane.Plane, *, interactive: bool, timeout: float) -> None:
        self.plane = cluster
        self.interactive = interactive
        self.timeout = timeout

    # -- output ----------------------------------------------------------------------------
    @staticmethod
    def say(text: str = "") -> None:
        click.echo(text)

    def act(self, number: int, title: str, story: str) -> None:
        self.say()
        self.say(click.style(f"[{number}/5] {title}", bold=True))
        for line in story.splitlines():
            self.say(f"      {line}")

    def shell(self, command: str) -> None:
        self.say(click.style(f"  $ {command}", fg="cyan"))

    def pause(self) -> None:
        if self.interactive:
            click.pause(info=click.style("  (press any key to go on)", dim=True))

    # -- the cluster -----------------------------------------------------------------------
    def kubectl(self, *args: str, input: str | None = None) -> str:
        try:
            return self.plane.kubectl(*args, input=input).stdout
        except plane.PlaneError as exc:
            raise click.ClickException(exc.one_line()) from None

    def read(self) -> dict[str, Any] | None:
        result = self.plane.kubectl("get", "md", NAME, "-n", NAMESPACE, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def patch(self, spec: dict[str, Any], summary: str) -> None:
        body = json.dumps({"spec": spec}, separators=(",", ":"))
        self.shell(f"kubectl -n {NAMESPACE} patch md {NAME} --type merge -p '{summary}'")
        self.kubectl("patch", "md", NAME, "-n", NAMESPACE, "--type", "merge", "-p", body)

    def watch(
        self,
        done: Callable[[Status], bool],
        what: str,
        extra: Callable[[], str] | None = None,
    ) -> Status:
        """Print a ``kubectl get md -w`` style line whenever a column changes, until ``done``.

        ``extra`` gives a line printed under each row from the second on (the live answers).
        """
        self.shell(f"kubectl -n {NAMESPACE} get md {NAME} --watch")
        self.say("  " + row(COLUMNS))
        deadline = time.monotonic() + self.timeout
        last: tuple[str, ...] | None = None
        while True:
            body = self.read() or {}
            status = body.get("status", {})
            columns = get_md_row(body)
            if columns[:-1] != (last or ())[:-1]:
                if extra is not None and last is not None:
                    self.say("      " + click.style(extra(), dim=True))
                self.say("  " + row(columns))
                last = columns
            if body and done(status):
                return dict(status)
            if time.monotonic() > deadline:
                raise click.ClickException(
                    f"{what} did not happen within {self.timeout:.0f}s; the operator's log is "
                    f"{self.plane.layout.log('seaway-operator')}"
                )
            time.sleep(0.5)

    # -- the story -------------------------------------------------------------------------
    def install_crds(self) -> None:
        """Show that `seaway cluster up` installed the chart's CRDs; apply only outdated ones.

        `kubectl diff` decides, so a cluster started from this clone gets nothing installed twice
        and one left up from an older clone is brought up to date.
        """
        self.act(
            2,
            "The chart's CRDs, installed by `seaway cluster up`",
            "The same files the Helm chart renders (charts/seaway/files/crds), generated from\n"
            "the API's pydantic models: ModelDeployment (md), RetrainJob (rj), and the policy\n"
            "that makes a retrain approval name its author. `kubectl diff` shows whether the\n"
            "cluster has them as they are in this clone; only a differing one is applied.",
        )
        for path in sorted(CRDS.glob("*.yaml")):
            self.shell(f"kubectl diff --server-side -f {path.relative_to(ROOT)}")
            result = self.plane.kubectl(
                "diff", "--server-side", "--force-conflicts", "--field-manager=seaway-localplane",
                "-f", str(path), check=False,
            )  # fmt: skip
            if not crds_outdated(result.returncode, result.stderr):
                self.say("    (no difference: installed by seaway cluster up)")
                continue
            self.shell(f"kubectl apply --server-side -f {path.relative_to(ROOT)}")
            try:
                self.plane.install_crds(path)
            except plane.PlaneError as exc:
                raise click.ClickException(exc.one_line()) from None
        self.pause()

    def first_revision(self) -> None:
        self.act(
            3,
            "Applying the GitOps example: examples/gitops/apps/ml",
            "The folder an Argo CD Application or a Flux Kustomization would sync: a namespace\n"
            "that enforces Pod Security 'restricted', and the ModelDeployment churn (canary\n"
            "steps 20% -> wait 5s -> 50% -> wait 5s -> 100%). Its first revision becomes stable\n"
            "as soon as its model servers are ready.",
        )
        if self.read() is not None:
            self.shell(f"kubectl -n {NAMESPACE} delete md {NAME} --cascade=foreground")
            self.kubectl(
                "delete", "md", NAME, "-n", NAMESPACE, "--cascade=foreground", "--timeout=60s"
            )
            self.say("      (removed the ModelDeployment of an earlier demo)")
        self.shell(f"kubectl apply --server-side -k {APP.relative_to(ROOT)}")
        for line in self.kubectl("apply", "--server-side", "-k", str(APP)).splitlines():
            self.say(f"  {line}")
        status = self.watch(lambda s: stable_is(s, 1), "revision 1 becoming stable")
        self.say(f"  Revision 1 serves all traffic: {condition(status, 'Ready')['message']}.")
        self.pause()

    def canary(self) -> None:
        self.act(
            4,
            "A new model: revision 2 rolls out as a canary",
            "A new model file is a new immutable revision. It gets 20% of the traffic, then 50%,\n"
            "then all of it; revision 1 is scaled to zero but kept for an instant rollback.",
        )
        self.patch(
            {"model": {"uri": uri(2), "digest": digest(2)}},
            '{"spec":{"model":{"uri":".../2026-11-27/model.joblib","digest":"sha256:..."}}}',
        )
        status = self.watch(
            lambda s: stable_is(s, 2) and s.get("canaryRevision") is None,
            "revision 2 being promoted",
        )
        self.say(f"  Revision 2 is stable: {condition(status, 'Ready')['message']}.")
        self.pause()

    def failure(self) -> None:
        self.act(
            5,
            "A broken model: revision 3 never becomes ready, and is reverted",
            "This revision's model server never gets ready (on the simulated node, the testing\n"
            "label sim.seaway.dev/not-ready does that; in a real cluster: a model that fails to\n"
            "load, a crash loop). progressDeadlineSeconds is set to 10 so the demo is quick.\n"
            "Nobody steps in: the operator gives all traffic back to revision 2 in one step.",
        )
        self.patch(
            {
                "model": {"uri": uri(3), "digest": digest(3)},
                "server": {"podLabels": NOT_READY},
                "rollout": {"progressDeadlineSeconds": 10},
            },
            '{"spec":{"model":{...v3...},"server":{"podLabels":{"sim.seaway.dev/not-ready":"true"}},'
            '"rollout":{"progressDeadlineSeconds":10}}}',
        )
        status = self.watch(
            lambda s: stable_is(s, 2) and fate(s, 3) in ("Failed", "RolledBack"),
            "the revert to revision 2",
        )
        degraded = condition(status, "Degraded")
        self.say(
            "  Revision 3 never had a ready pod, so it never got traffic (WEIGHT 0). After the\n"
            "  deadline the operator marked it Failed, scaled it to zero and kept revision 2:\n"
            f"  Degraded={degraded.get('status')} {degraded.get('reason')}"
        )
        self.say()
        self.shell(f"seaway status {NAME} -n {NAMESPACE}")
        report = subprocess.run(
            [*_seaway(), "status", NAME, "-n", NAMESPACE],
            env={**os.environ, "KUBECONFIG": str(self.plane.kubeconfig)},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        for line in (report.stdout or report.stderr).splitlines():
            self.say(f"  {line}")
        self.say()
        self.shell(f"kubectl -n {NAMESPACE} get deployments -l seaway.dev/model-deployment={NAME}")
        deployments = self.kubectl(
            "get", "deployments", "-n", NAMESPACE, "-l", f"seaway.dev/model-deployment={NAME}"
        )
        for line in deployments.splitlines():
            self.say(f"  {line}")


def row(columns: tuple[str, ...] | list[str]) -> str:
    return "".join(c.ljust(w) for c, w in zip(columns, WIDTHS, strict=True)).rstrip()


def condition(status: Status, type_: str) -> dict[str, Any]:
    for item in status.get("conditions", []) or []:
        if item.get("type") == type_:
            return dict(item)
    return {}


def stable_is(status: Status, number: int) -> bool:
    return bool(
        status.get("stableRevision") == number
        and condition(status, "Ready").get("status") == "True"
    )


def fate(status: Status, number: int) -> str | None:
    for revision in status.get("revisions", []) or []:
        if revision.get("number") == number:
            return str(revision.get("fate"))
    return None


def get_md_row(body: dict[str, Any]) -> tuple[str, ...]:
    """The printer columns of ``kubectl get md`` (the CRD's additionalPrinterColumns)."""
    if not body:
        return (NAME, "", "", "", "", "", "")
    status = body.get("status", {})
    ready = condition(status, "Ready")
    created = body["metadata"].get("creationTimestamp", "")
    age = ""
    if created:
        began = datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        age = f"{int((datetime.now(UTC) - began).total_seconds())}s"

    def text(value: Any) -> str:
        return "" if value is None else str(value)

    return (
        body["metadata"]["name"],
        text(status.get("stableRevision")),
        text(status.get("canaryRevision")),
        text(status.get("canaryWeight")),
        text(ready.get("status")),
        text(ready.get("reason")),
        age,
    )


def crds_outdated(diff_returncode: int, stderr: str) -> bool:
    """`kubectl diff`: 0 no difference, 1 a difference; anything else is an error to report."""
    if diff_returncode in (0, 1):
        return diff_returncode == 1
    raise click.ClickException(
        f"kubectl diff failed: {' '.join(stderr.split())[:300] or diff_returncode}"
    )


def uri(version: int) -> str:
    return f"s3://models/churn/2026-11-{25 + version:02d}/model.joblib"


def digest(version: int) -> str:
    return "sha256:" + f"{version:x}" * 64


def _seaway() -> list[str]:
    beside = Path(sys.executable).parent / "seaway"
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "seaway.cli.main"]


def _display(command: str) -> str:
    """A command as the user would type it: relative to the clone when it lives there."""
    path = Path(command)
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def _start(name: str, simulated: bool) -> plane.Plane:
    """``seaway cluster up`` as a user runs it (progress on stderr), then the plane it started.

    Without ``simulated`` the cluster runs a real node where the host allows it (``up`` says
    which mode in one line, and why).
    """
    argv = [*_seaway(), "cluster", "up", "--name", name]
    if simulated:
        argv.append("--simulated")
    click.echo(click.style(f"  $ seaway cluster up{' --simulated' if simulated else ''}",
                           fg="cyan"))  # fmt: skip
    result = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise click.ClickException("seaway cluster up failed (its output is above)")
    run_dir = config.cluster_dir(name, os.environ)
    started = plane.load(run_dir)
    if started is None:
        raise click.ClickException(f"no cluster recorded in {run_dir}")
    operator = next((c for c in started.components if c.name == "seaway-operator"), None)
    if operator is None or not processes.is_alive(operator):
        operator = started.run_alongside("seaway-operator", [*_seaway(), "operator", "run"])
        click.echo(f"  Started the Seaway operator (pid {operator.pid})", err=True)
    return started


@click.command()
@click.option(
    "--name",
    default=config.DEFAULT_CLUSTER_NAME,
    show_default=True,
    help="The local cluster to use (started if it is not up).",
)
@click.option(
    "--interactive/--non-interactive",
    default=None,
    help="Wait for a key between steps. Default: when stdin is a terminal and $CI is unset.",
)
@click.option(
    "--timeout",
    default=120.0,
    show_default=True,
    type=click.FloatRange(min=10),
    help="Seconds each step may take before the demo gives up.",
)
@click.option(
    "--simulated",
    is_flag=True,
    help="Simulate Pods on kwok's node even where a real node could run.",
)
def demo(name: str, interactive: bool | None, timeout: float, simulated: bool) -> None:
    """A canary rollout, a model that never becomes ready, and the automatic revert, narrated
    on the local control plane (run from a Seaway clone: `make demo`). With a real node, live
    predictions go through the router for the whole story."""
    if not (APP / "kustomization.yaml").exists() or not CRDS.is_dir():
        raise click.ClickException(
            f"the demo applies files of a Seaway clone ({APP.relative_to(ROOT)}, "
            f"{CRDS.relative_to(ROOT)}), not found under {ROOT}: run it as `make demo` in a clone"
        )
    if interactive is None:
        interactive = sys.stdin.isatty() and not os.environ.get("CI")
    began = time.monotonic()
    click.echo(click.style("Seaway demo", bold=True))
    click.echo(
        "A canary rollout, a model that never becomes ready, and the automatic revert, on a\n"
        "local Kubernetes cluster: with a real node, model servers and the router run in\n"
        "containers and live predictions flow all along; on the simulated node Pods become\n"
        "Ready without running containers (rollouts and reverts, not predictions)."
    )
    click.echo()
    click.echo(click.style("[1/5] Starting the local control plane and the Seaway operator",
                           bold=True))  # fmt: skip
    cluster = _start(name, simulated)
    real = cluster.mode == plane.REAL
    click.echo(f"  Pods run {'in containers on a real node' if real else 'on the simulated node'}.")
    if real:
        from seaway.cli.realdemo import RealDemo

        story: Demo = RealDemo(cluster, interactive=interactive, timeout=timeout)
    else:
        story = Demo(cluster, interactive=interactive, timeout=timeout)
    story.install_crds()
    story.first_revision()
    story.canary()
    story.failure()
    if real:
        assert isinstance(story, RealDemo)
        _, failed, wrong = story.summary()
    kubectl = cluster.bins.get("kubectl", Path("kubectl"))
    stop = (
        "make down   (or: seaway cluster down)"
        if name == config.DEFAULT_CLUSTER_NAME
        else (f"seaway cluster down --name {name}")
    )
    click.echo()
    click.echo(click.style(f"Done in {time.monotonic() - began:.0f}s. The cluster is still up:",
                           bold=True))  # fmt: skip
    click.echo(f"  export KUBECONFIG={cluster.kubeconfig}")
    click.echo(f"  kubectl -n {NAMESPACE} get md                  # kubectl is {kubectl}")
    command = _seaway()
    seaway = _display(command[0]) if len(command) == 1 else "seaway"
    click.echo(f"  {seaway} status {NAME} -n {NAMESPACE}   # revisions, weights, conditions")
    click.echo(f"  {seaway} rollback {NAME} -n {NAMESPACE} --to-revision 1")
    click.echo(f"Stop it with: {stop}")
    if real and (failed or wrong):
        raise click.ClickException(
            f"{failed} requests failed and {wrong} answers differed from scikit-learn's"
        )
