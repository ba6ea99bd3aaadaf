"""Every example under examples/ works from a fresh apply, as its comment tells a user.

Each example runs in a fresh namespace with the operator watching it: the commands its top
comment gives (lines ``#   kubectl ...``, run from examples/ as written, in that namespace) are run
in order, then the test waits for the state the comment promises. An example that needs
something first says so and how (a Secret, the revisions an experiment names, a RetrainJob);
what can only come from elsewhere (the Gateway API CRDs) is installed here from the local copy.
Pods run on the simulated node: they become Ready without running the model.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from seaway.localplane import config
from seaway.planning import children

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
OPERATOR = ["seaway.handlers.operator"]

Check = Callable[["Cluster"], Any]


class Cluster:
    """kubectl in one namespace, as the user's context would be."""

    def __init__(self, plane: Any, namespace: str) -> None:
        self.plane = plane
        self.namespace = namespace

    def kubectl(self, *args: str) -> str:
        result = self.plane.kubectl(*args, "--namespace", self.namespace, check=False)
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return str(result.stdout)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.kubectl("get", kind, name, "-o", "json"))
        return found

    def status(self, kind: str, name: str) -> dict[str, Any]:
        return dict(self.get(kind, name).get("status", {}))

    def condition(self, kind: str, name: str, type_: str) -> dict[str, Any]:
        for c in self.status(kind, name).get("conditions", []):
            if c["type"] == type_:
                return dict(c)
        return {}


def commands(path: Path) -> list[list[str]]:
    """The ``#   kubectl ...`` lines of the example's top comment, as argument lists."""
    found = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        if line.startswith("#   kubectl "):
            argv = shlex.split(line.removeprefix("#   kubectl "), comments=True)
            found.append(argv)
    return found


def serving(name: str, revision: int) -> Check:
    def check(c: Cluster) -> None:
        st = c.status("md", name)
        assert st.get("stableRevision") == revision and not st.get("canaryRevision"), st
        assert c.condition("md", name, "Ready").get("status") == "True", st

    return check


def weights(name: str, expected: dict[int, int], mirror: int | None = None) -> Check:
    def check(c: Cluster) -> None:
        st = c.status("md", name)
        live = {w["revision"]: w["weight"] for w in st.get("weights", [])}
        assert live == expected, st
        routes = c.get("configmap", children.router_name(name))["data"][children.ROUTES_KEY]
        document = json.loads(routes)
        assert {b["revision"]: b["weight"] for b in document["backends"]} == expected
        if mirror is not None:
            assert document.get("mirror", {}).get("revision") == mirror, document

    return check


def serving_with_weekly_summary(name: str, revision: int) -> Check:
    def check(c: Cluster) -> None:
        serving(name, revision)(c)
        summary = c.status("md", name).get("summary", {})
        assert summary.get("nextAt"), summary
        when = datetime.fromisoformat(summary["nextAt"].replace("Z", "+00:00"))
        assert (when.weekday(), when.hour, when.minute) == (0, 9, 0), summary

    return check


def waiting_for_model(name: str) -> Check:
    def check(c: Cluster) -> None:
        assert c.condition("md", name, "Ready").get("reason") == "WaitingForModel"

    return check


def scheduled_weekly(name: str) -> Check:
    def check(c: Cluster) -> None:
        st = c.status("rj", name)
        assert c.condition("rj", name, "Ready").get("status") == "True", st
        assert st.get("nextScheduleTime"), st  # Ready may come a pass before the time
        when = datetime.fromisoformat(st["nextScheduleTime"].replace("Z", "+00:00"))
        assert (when.weekday(), when.hour, when.minute) == (0, 3, 0), when

    return check


def run_started(name: str) -> Check:
    def check(c: Cluster) -> None:
        runs = c.status("rj", name).get("runs", [])
        assert runs and runs[0]["number"] == 1, runs
        c.get("job", runs[0]["jobName"])

    return check


def scoring(name: str, revision: int, shards: int) -> Check:
    def check(c: Cluster) -> None:
        st = c.status("sj", name)
        assert (st.get("model") or {}).get("revision") == revision, st
        job = c.get("job", name)
        assert (job["spec"]["completionMode"], job["spec"]["completions"]) == ("Indexed", shards)

    return check


#: What each example's comment promises once its commands ran.
PROMISED: dict[str, Check] = {
    "modeldeployment-minimal": serving("iris", 1),
    "modeldeployment-canary": serving_with_weekly_summary("churn", 1),
    "modeldeployment-abtest-step1": serving("pricing", 1),
    "modeldeployment-abtest": weights("pricing", {1: 70, 2: 30}),
    "modeldeployment-bandit-step1": serving("recommender", 1),
    "modeldeployment-bandit": weights("recommender", {1: 50, 2: 50}),
    "modeldeployment-mirror-step1": serving("fraud", 1),
    "modeldeployment-mirror": weights("fraud", {1: 100, 2: 0}, mirror=2),
    "modeldeployment-from-retrainjob": waiting_for_model("churn-monthly"),
    "modeldeployment-gateway": waiting_for_model("churn-edge"),
    "retrainjob-auto": scheduled_weekly("churn-weekly"),
    "retrainjob-manual": run_started("churn-monthly"),
    "scoringjob": scoring("iris-nightly", 1, 6),
}
FILES = sorted(EXAMPLES.glob("*.yaml"))


def test_every_example_promises_something() -> None:
    assert sorted(PROMISED) == sorted(p.stem for p in FILES)
    for path in FILES:
        applied = [c for c in commands(path) if c[0] == "apply"]
        assert any(path.name in c for c in applied), f"{path.name} says how to apply it"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_example_from_a_fresh_apply(
    path: Path, run_operator: Any, control_plane: Any, seaway_crds: list[str], namespace: str,
    eventually: Any,
) -> None:  # fmt: skip
    if "gateway-api" in path.read_text():
        gateway_crds = config.bin_dir(os.environ).parent / "gateway-api"
        control_plane.install_crds(gateway_crds)
    cluster = Cluster(control_plane, namespace)
    with run_operator(OPERATOR, namespace=namespace):
        for argv in commands(path):  # run from examples/: its file names are relative
            cluster.kubectl(*[str(EXAMPLES / a) if a.endswith(".yaml") else a for a in argv])
        eventually(lambda: PROMISED[path.stem](cluster), timeout=60, what=path.name)
