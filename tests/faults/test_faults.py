"""The operator under faults, on a real API server: every pause holds its weight for its full
duration (measured with the API server's own times), no revision is doubled or lost, and an
outage logs one line when it starts and one when it ends.

Each scenario is bounded in time; the figures it prints (bake times, recovery times) are the
ones docs/operator.md quotes.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from tests.faults.conftest import Faults, OperatorProcess, Weights
from tests.integration.mdtools import User, md_body

T = TypeVar("T")
PAUSE = 5
STEPS = [
    {"setWeight": 20},
    {"pause": {"duration": f"{PAUSE}s"}},
    {"setWeight": 60},
    {"pause": {"duration": f"{PAUSE}s"}},
]
#: Longer than a pause and than the operator's request timeout, as the reproduction asks.
FREEZE = 20.0


def body(name: str, version: int, **spec: Any) -> dict[str, Any]:
    result = md_body(name, version, **spec)
    result["spec"]["rollout"]["steps"] = STEPS
    result["spec"]["rollout"]["progressDeadlineSeconds"] = 60
    return result


def until(check: Callable[[], T], *, timeout: float, what: str) -> T:
    """Poll ``check`` (errors of a recovering API server count as "not yet")."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except Exception as exc:  # the API server may be down on purpose
            last = exc
        else:
            if result:
                return result
            last = result
        time.sleep(0.1)
    raise AssertionError(f"not reached within {timeout:.0f}s: {what} (last: {last!r})")


def stable(user: User, name: str, number: int) -> bool:
    status = user.status(name)
    return status.get("stableRevision") == number and status.get("canaryRevision") is None


def first_revision(user: User, name: str, **spec: Any) -> None:
    """Create ``name`` at version 1 and wait until it is stable."""
    user.create(body(name, 1, **spec))
    until(lambda: stable(user, name, 1), timeout=60, what=f"{name}: revision 1 stable")


def canary_at_step(user: User, name: str, index: int) -> None:
    """Edit ``name`` to version 2 and wait until its canary is at step ``index``."""
    user.patch_spec(name, body(name, 2)["spec"])
    until(lambda: user.status(name).get("currentStepIndex") == index, timeout=60,
          what=f"{name}: step {index}")  # fmt: skip


def assert_clean_rollout(user: User, name: str, revisions: int) -> None:
    status = user.status(name)
    numbers = [r["number"] for r in status["revisions"]]
    assert numbers == list(range(1, revisions + 1)), status["revisions"]
    fates = [r["fate"] for r in status["revisions"]]
    assert fates == ["Retired"] * (revisions - 1) + ["Stable"], fates
    reasons = user.event_reasons(name)
    assert "RolledBack" not in reasons and "ProgressDeadlineExceeded" not in reasons, reasons
    assert reasons.count("Promoted") == revisions, reasons
    assert reasons.count("RevisionCreated") == revisions, reasons
    assert reasons.count("RolloutStarted") == revisions, reasons


def assert_bakes(weights: Weights, revision: int) -> list[tuple[int, int, float]]:
    bakes = weights.bakes(revision)
    print(f"bakes of revision {revision} (weight, server s, seen s): {bakes}")
    held: dict[int, int] = {}
    for weight, server, _ in bakes:
        held[weight] = min(held.get(weight, server), server)
    for weight in (20, 60):
        assert weight in held, f"revision {revision} never held {weight}%: {bakes}"
        assert held[weight] >= PAUSE, (
            f"{weight}% held {held[weight]}s by the API server's clock, the step says {PAUSE}s:"
            f" {bakes}"
        )
    return bakes


def outage_lines(output: str) -> tuple[list[str], list[str]]:
    lost = [line for line in output.splitlines() if "Lost the Kubernetes API server" in line]
    back = [line for line in output.splitlines() if "API server answers again" in line]
    return lost, back


@pytest.mark.parametrize("index", [1, 3], ids=["at-20", "at-60"])
def test_apiserver_frozen_during_a_pause_never_shortens_it(
    index: int, api: Any, fault_namespace: str, faults: Faults, operator_process: OperatorProcess
) -> None:
    user = User(api, fault_namespace)
    operator_process.start()
    first_revision(user, "frozen")
    with Weights(api, fault_namespace, "frozen") as weights:
        canary_at_step(user, "frozen", index)
        began = time.monotonic()
        with faults.frozen("kube-apiserver"):
            time.sleep(FREEZE)
        until(lambda: stable(user, "frozen", 2), timeout=90, what="revision 2 stable")
        recovered = time.monotonic() - began - FREEZE
        until(lambda: weights.changes and weights.changes[-1].weights == {2: 100},
              timeout=10, what="the watch saw 100%")  # fmt: skip
    print(f"frozen {FREEZE:.0f}s at step {index}; revision 2 stable {recovered:.1f}s after")
    assert_bakes(weights, 2)
    assert_clean_rollout(user, "frozen", 2)
    # The end is said once answers have kept coming for a while (outage.SETTLE)
    until(lambda: outage_lines(operator_process.output())[1], timeout=30, what="outage's end")
    output = operator_process.output()
    assert "Traceback" not in output
    lost, back = outage_lines(output)
    print("operator:", *lost, *back, sep="\n  ")
    assert len(lost) == 1 and len(back) == 1, (lost, back)


#: How long a killed component stays down before it is started again.
DOWN = 8.0


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_restarted_mid_rollout_the_rollout_resumes(
    component: str, api: Any, fault_namespace: str, faults: Faults,
    operator_process: OperatorProcess,
) -> None:  # fmt: skip
    user = User(api, fault_namespace)
    operator_process.start()
    first_revision(user, "restarted")
    with Weights(api, fault_namespace, "restarted") as weights:
        canary_at_step(user, "restarted", 1)
        old = faults.kill(component)
        time.sleep(DOWN)
        ready = faults.api_ready if component == "kube-apiserver" else faults.etcd_ready
        came_back = faults.start_again(old, ready)
        began = time.monotonic()
        until(faults.api_ready, timeout=60, what="the API server ready")
        api_back = time.monotonic() - began
        until(lambda: stable(user, "restarted", 2), timeout=90, what="revision 2 stable")
        recovered = time.monotonic() - began
        until(lambda: weights.changes and weights.changes[-1].weights == {2: 100},
              timeout=30, what="the watch saw 100%")  # fmt: skip
    print(
        f"{component} down {DOWN:.0f}s, started in {came_back:.1f}s, API ready"
        f" {api_back:.1f}s later; revision 2 stable {recovered:.1f}s after"
    )
    assert_bakes(weights, 2)
    assert_clean_rollout(user, "restarted", 2)
    if component == "kube-apiserver":
        until(lambda: outage_lines(operator_process.output())[1], timeout=30, what="outage's end")
    output = operator_process.output()
    assert "Traceback" not in output
    lost, back = outage_lines(output)
    # Without etcd the API server holds requests rather than failing them: the operator may
    # see no outage at all; when it sees one, it says so once each way.
    print("operator:", *lost, *back, sep="\n  ")
    expected = 1 if component == "kube-apiserver" else len(lost)
    assert len(lost) == len(back) == expected <= 1, (lost, back)


#: Rollouts under random kills, and how long each may take.
ROLLOUTS = 3
ROLLOUT_DEADLINE = 120.0


def test_operator_killed_at_random_moments_over_several_rollouts(
    api: Any, fault_namespace: str, operator_process: OperatorProcess
) -> None:
    seed = int(os.environ.get("SEAWAY_FAULT_SEED") or random.SystemRandom().randrange(10**6))
    print(f"SEAWAY_FAULT_SEED={seed} (set it to replay these kill times)")
    rng = random.Random(seed)
    user = User(api, fault_namespace)
    proc = operator_process.start()
    first_revision(user, "killed")
    kills: list[float] = []
    with Weights(api, fault_namespace, "killed") as weights:
        for version in range(2, ROLLOUTS + 2):
            user.patch_spec("killed", body("killed", version)["spec"])
            deadline = time.monotonic() + ROLLOUT_DEADLINE
            while not stable(user, "killed", version):
                assert time.monotonic() < deadline, f"revision {version} not stable in time"
                life = rng.uniform(0.5, 5.0)
                time.sleep(life)
                if proc.poll() is None and not stable(user, "killed", version):
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(timeout=10)
                    kills.append(round(life, 1))
                    proc = operator_process.start()
        until(lambda: weights.changes[-1].weights == {ROLLOUTS + 1: 100}, timeout=30,
              what="the watch saw the last promotion")  # fmt: skip
    print(f"{len(kills)} SIGKILLs after lives of {kills} s")
    assert len(kills) >= ROLLOUTS, "the operator was hardly ever killed"
    for revision in range(2, ROLLOUTS + 2):
        assert_bakes(weights, revision)
    assert_clean_rollout(user, "killed", ROLLOUTS + 1)
    reasons = user.event_reasons("killed")
    # An Event is posted after the status write: a kill between them loses it, never doubles it.
    assert reasons.count("Promoted") <= ROLLOUTS + 1 and reasons.count("RolloutStarted") <= (
        ROLLOUTS + 1
    ), reasons
    deployments = {n: d.spec.replicas for n, d in user.deployments("killed").items()}
    assert deployments == {**{n: 0 for n in range(1, ROLLOUTS + 1)}, ROLLOUTS + 1: 2}
    assert "Traceback" not in operator_process.output()


EDITS = 10


def test_ten_spec_edits_in_five_seconds_the_last_one_wins(
    api: Any, fault_namespace: str, operator_process: OperatorProcess
) -> None:
    user = User(api, fault_namespace)
    operator_process.start()
    keep = {"revisionHistoryLimit": EDITS + 5}  # every revision stays in the history
    first_revision(user, "edited", **keep)
    with Weights(api, fault_namespace, "edited") as weights:
        for version in range(2, EDITS + 2):
            user.patch_spec("edited", body("edited", version, **keep)["spec"])
            time.sleep(5.0 / EDITS)
        last_uri = f"s3://models/edited/v{EDITS + 1}/model.joblib"

        def settled() -> bool:
            status = user.status("edited")
            stable_rev = next(
                (r for r in status["revisions"] if r["number"] == status.get("stableRevision")),
                {},
            )
            return stable_rev.get("modelURI") == last_uri and not status.get("canaryRevision")

        until(settled, timeout=120, what="the last edit stable")
        until(lambda: weights.changes[-1].weights.get(stable_number(user, "edited")) == 100,
              timeout=30, what="the watch saw the promotion")  # fmt: skip
    status = user.status("edited")
    revisions = status["revisions"]
    numbers = [r["number"] for r in revisions]
    uris = [r["modelURI"] for r in revisions]
    splits = [c.weights for c in weights.changes]
    print(f"{len(revisions)} revisions for {EDITS + 1} specs; splits: {splits}")
    assert numbers == list(range(1, len(numbers) + 1)), "no number twice, none skipped"
    assert len(set(uris)) == len(uris), "one revision per edit at most"
    versions = [int(u.split("/v")[1].split("/")[0]) for u in uris]
    assert versions == sorted(versions), "revisions follow the edits' order"
    assert uris[-1] == last_uri and status["stableRevision"] == numbers[-1]
    fates = [r["fate"] for r in revisions]
    assert fates[0] == "Retired" and fates[-1] == "Stable"
    assert set(fates[1:-1]) <= {"Superseded"}, fates
    # traffic only ever on the stable revision or the newest one
    newest = 1
    for change in weights.changes:
        newest = max(newest, *change.weights)
        serving = {n for n, w in change.weights.items() if w > 0}
        assert serving <= {1, newest}, f"traffic on a superseded revision: {change.weights}"
    replicas = {n: d.spec.replicas for n, d in user.deployments("edited").items()}
    assert replicas[numbers[-1]] == 2
    assert all(r == 0 for n, r in replicas.items() if n != numbers[-1]), replicas
    assert "Traceback" not in operator_process.output()


def stable_number(user: User, name: str) -> int:
    return int(user.status(name).get("stableRevision") or 0)


def test_a_burst_of_metadata_writes_during_a_rollout(
    api: Any, fault_namespace: str, operator_process: OperatorProcess
) -> None:
    import threading

    user = User(api, fault_namespace)
    operator_process.start()
    first_revision(user, "busy")
    writes = 0
    stop = threading.Event()

    def scribble(writer: int) -> None:
        nonlocal writes
        while not stop.is_set():
            user.custom.patch_namespaced_custom_object(
                "seaway.dev", "v1alpha1", fault_namespace, "modeldeployments", "busy",
                {"metadata": {"annotations": {f"example.com/writer-{writer}": str(writes)}}},
            )  # fmt: skip
            writes += 1

    with Weights(api, fault_namespace, "busy") as weights:
        user.patch_spec("busy", body("busy", 2)["spec"])
        threads = [threading.Thread(target=scribble, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        try:
            until(lambda: stable(user, "busy", 2), timeout=90, what="revision 2 stable")
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
        until(lambda: weights.changes[-1].weights == {2: 100}, timeout=10, what="100% seen")
    output = operator_process.output()
    conflicts = output.count("changed meanwhile; re-reading")
    print(f"{writes} metadata writes during the rollout; {conflicts} status writes conflicted")
    assert writes > 50
    assert_bakes(weights, 2)
    assert_clean_rollout(user, "busy", 2)
    assert "Traceback" not in output


#: Longer than the leader Lease (15 s).
LEADER_FREEZE = 25.0
WRITES = ("Set weights", "Applied Deployment", "RevisionCreated", "StepReached", "Promoted")


def test_a_leader_frozen_past_its_lease_never_writes_after_it_wakes(
    api: Any, fault_namespace: str, fault_plane: Any, tmp_path: Any
) -> None:
    user = User(api, fault_namespace)
    ops = {
        n: OperatorProcess(fault_plane, fault_namespace, tmp_path / f"{n}.log") for n in ("a", "b")
    }
    leader_flags = ("--leader-elect", "--lease-namespace", fault_namespace)
    procs = {n: op.start(*leader_flags, HOSTNAME=f"replica-{n}") for n, op in ops.items()}
    try:
        leader = until(
            lambda: next((n for n, op in ops.items() if "Became the leader" in op.output()), None),
            timeout=60, what="a leader",
        )  # fmt: skip
        follower = "b" if leader == "a" else "a"
        first_revision(user, "fenced")
        with Weights(api, fault_namespace, "fenced") as weights:
            canary_at_step(user, "fenced", 1)
            os.kill(procs[leader].pid, signal.SIGSTOP)
            try:
                time.sleep(LEADER_FREEZE)
            finally:
                woke_at = len(ops[leader].output())
                os.kill(procs[leader].pid, signal.SIGCONT)
            code = procs[leader].wait(timeout=30)
            until(lambda: stable(user, "fenced", 2), timeout=90, what="revision 2 stable")
            until(lambda: weights.changes[-1].weights == {2: 100}, timeout=10, what="100%")
        after_waking = ops[leader].output()[woke_at:]
        print(f"the frozen leader exited with {code}; after waking it logged:\n{after_waking}")
        assert code == 1 and "Lost the Lease" in after_waking
        assert not [line for line in after_waking.splitlines() if line.startswith(WRITES)]
        assert "Became the leader" in ops[follower].output()
        assert_bakes(weights, 2)
        assert_clean_rollout(user, "fenced", 2)
        assert "Traceback" not in ops[leader].output() + ops[follower].output()
    finally:
        for op in ops.values():
            op.stop_all()


def operator_rules() -> list[dict[str, Any]]:
    """The chart's rules for the operator in a namespace it manages, as the chart ships them."""
    import yaml
    from tests.conftest import ROOT

    text = (ROOT / "charts/seaway/templates/clusterrole-operator.yaml").read_text()
    text = text[text.index("apiVersion:") :]  # after the comment
    plain = "\n".join(line for line in text.splitlines() if "{{" not in line)
    rules: list[dict[str, Any]] = yaml.safe_load(plain)["rules"]
    return rules


def test_rbac_revoked_mid_rollout_then_restored(
    api: Any, fault_namespace: str, fault_plane: Any, operator_process: OperatorProcess,
    tmp_path: Any,
) -> None:  # fmt: skip
    import json

    ns = fault_namespace
    rules = operator_rules()
    for rule in rules:  # writing ConfigMaps is granted apart, so that it can be taken back
        if rule.get("resources") == ["configmaps"]:
            rule["verbs"] = [v for v in rule["verbs"] if v not in ("create", "patch")]
    grant = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "patch"]}
    subject = [{"kind": "ServiceAccount", "name": "operator", "namespace": ns}]
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "write-configmaps", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "write-configmaps"},
        "subjects": subject,
    }  # fmt: skip
    objects = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "operator"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "operator"}, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "operator"}, "subjects": subject,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "operator"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "write-configmaps"}, "rules": [grant]},
        binding,
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": f"{ns}-discovery"}, "subjects": subject,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "system:aggregate-to-view"}},
    ]  # fmt: skip
    crd_reader = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": f"{ns}-crds"},
        "rules": [{"apiGroups": ["apiextensions.k8s.io"],
                   "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]},
                  {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}],
    }  # fmt: skip
    objects[-1]["roleRef"]["name"] = crd_reader["metadata"]["name"]
    manifest = "\n---\n".join(json.dumps(o) for o in [crd_reader, *objects])
    fault_plane.kubectl("apply", "-n", ns, "-f", "-", input=manifest)
    token = fault_plane.kubectl("create", "token", "operator", "-n", ns, "--duration=1h").stdout
    kubeconfig = tmp_path / "operator-kubeconfig"
    kubeconfig.write_text(fault_plane.kubeconfig.read_text())
    fault_plane.kubectl(f"--kubeconfig={kubeconfig}", "config", "set-credentials", "operator",
                        f"--token={token.strip()}")  # fmt: skip
    fault_plane.kubectl(f"--kubeconfig={kubeconfig}", "config", "set-context", "--current",
                        "--user=operator")  # fmt: skip

    user = User(api, ns)
    operator_process.start(KUBECONFIG=str(kubeconfig))
    first_revision(user, "rbac")
    with Weights(api, ns, "rbac") as weights:
        canary_at_step(user, "rbac", 1)
        fault_plane.kubectl("delete", "rolebinding", "write-configmaps", "-n", ns)
        ready = until(
            lambda: (c := user.condition("rbac", "Ready")).get("reason") == "Forbidden" and c,
            timeout=60, what="Ready=False Forbidden",
        )  # fmt: skip
        print(f"while revoked: {ready['message']}")
        assert ready["status"] == "False" and "ConfigMap" in ready["message"]
        assert user.weights("rbac") == {1: 80, 2: 20}, "the canary holds its weight"
        fault_plane.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(binding))
        restored = time.monotonic()
        until(lambda: stable(user, "rbac", 2), timeout=90, what="revision 2 stable")
        print(f"revision 2 stable {time.monotonic() - restored:.1f}s after the grant came back")
        until(lambda: weights.changes[-1].weights == {2: 100}, timeout=10, what="100%")
    assert user.condition("rbac", "Ready")["status"] == "True"
    assert_bakes(weights, 2)
    assert_clean_rollout(user, "rbac", 2)
    assert user.event_reasons("rbac").count("Forbidden") == 1
    assert "Traceback" not in operator_process.output()
