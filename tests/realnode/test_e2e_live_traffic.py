"""Real traffic end to end: model servers and the router run in containers on the real node.

The operator runs as ``seaway operator run`` on the host; every model server, every router and
every bundle fetch is real. A client sends a steady stream of single-row predictions to the
router's Service (its ClusterIP, routed by kube-proxy on this host) for the whole story, and each
test checks what users care about: the share of answers per revision follows the weight in
status, every answer is the prediction of the revision that made it, and no request fails while
models are replaced or a broken one is taken out.

Nothing is simulated here: a broken model is a bundle whose bytes do not match the pinned digest,
which the server refuses to load. Figures are printed (``-s`` or the captured output).
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from tests.realnode.e2e import E2E, Models, e2e, models
from tests.realnode.traffic import Traffic

#: Largest difference, in percentage points, between the observed share of answers of the canary
#: in a step and its weight. With about 200 answers per step this is more than 4 standard
#: deviations of a fair split, so it fails only for a router that does not follow the weights.
TOLERANCE = 10.0


def md(name: str, uri: str, digest: str, *, steps: list[dict[str, Any]],
       deadline: int = 120) -> dict[str, Any]:
    return {
        "apiVersion": "seaway.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": uri, "format": "sklearn-joblib", "digest": digest},
            "server": {"image": E2E.SERVER_IMAGE, "replicas": 1},
            "rollout": {"strategy": "Canary", "steps": steps,
                        "progressDeadlineSeconds": deadline},
        },
    }


def check_answers(traffic: Traffic, models: Models, revision_model: dict[int, str]) -> int:
    """Every answer equals scikit-learn's prediction of its revision's model; the count."""
    answers = [a for a in traffic.snapshot() if a.status == 200]
    for a in answers:
        assert a.revision in revision_model, f"answer from unknown revision {a.revision}"
        want = models.predict(revision_model[a.revision], a.row)
        assert a.prediction == want, (a, want)
    return len(answers)


def test_canary_under_live_traffic(e2e: E2E, models: Models) -> None:
    ns = e2e.namespace("canary")
    uri1, digest1 = e2e.store.publish(models.bundle("logreg"), "canary-r1")
    uri2, digest2 = e2e.store.publish(models.bundle("tree"), "canary-r2")
    # pauses leave room for the router to follow its ConfigMap on a busy node (settle 3 s)
    steps = [{"setWeight": 20}, {"pause": {"duration": "9s"}},
             {"setWeight": 60}, {"pause": {"duration": "9s"}}]
    t_apply = time.monotonic()
    e2e.apply(ns, md("churn", uri1, digest1, steps=steps))
    e2e.wait(ns, "churn", lambda s: s.get("stableRevision") == 1
             and e2e.condition(s, "Ready") == "True", timeout=180, what="r1 serving")
    router = e2e.router_address(ns, "churn")
    traffic = Traffic(*router, model="churn", rows=models.rows, rate=40.0).start()
    try:
        first = traffic.wait_for(1, timeout=60)
        print(f"\n[canary] apply to first answer: {first[0].at - t_apply:.1f}s")
        e2e.patch(ns, "churn", md("churn", uri2, digest2, steps=steps)["spec"])
        # the weight in status at each moment, sampled while the rollout walks its steps
        timeline = e2e.follow(ns, "churn", until=lambda s: s.get("stableRevision") == 2
                              and not s.get("canaryRevision"), timeout=240)
        time.sleep(2.0)  # answers after promotion, on r2 only
    finally:
        traffic.stop()

    windows = e2e.weight_windows(timeline, canary=2, settle=3.0)
    assert [w for w, *_ in windows if w in (20, 60)] == [20, 60], windows
    for weight, start, end in windows:
        if weight not in (20, 60):
            continue
        answers = [a for a in traffic.snapshot() if start <= a.at < end and a.status == 200]
        share = Traffic.shares(answers).get(2, 0.0)
        print(f"[canary] weight {weight:3d}%: observed {share:5.1f}% on r2 "
              f"over {len(answers)} answers")
        assert len(answers) >= 60, f"too few answers at weight {weight}: {len(answers)}"
        assert abs(share - weight) <= TOLERANCE, (weight, share, len(answers))
    total = check_answers(traffic, models, {1: "logreg", 2: "tree"})
    failed = traffic.failures()
    print(f"[canary] {total} answers, {len(failed)} failed")
    assert not failed, failed[:5]
    last = [a for a in traffic.snapshot() if a.at >= windows[-1][2] + 1.0]
    assert last and Traffic.shares(last) == {2: 100.0}


def test_a_broken_model_is_reverted_under_live_traffic(e2e: E2E, models: Models) -> None:
    ns = e2e.namespace("revert")
    uri1, digest1 = e2e.store.publish(models.bundle("logreg"), "revert-r1")
    # revision 2: another model's bytes under revision 1's digest, as a swapped bundle would be
    uri2, _ = e2e.store.publish(models.bundle("tree"), "revert-r2")
    steps = [{"setWeight": 50}, {"pause": {"duration": "5s"}}]
    e2e.apply(ns, md("churn", uri1, digest1, steps=steps, deadline=20))
    e2e.wait(ns, "churn", lambda s: s.get("stableRevision") == 1
             and e2e.condition(s, "Ready") == "True", timeout=180, what="r1 serving")
    traffic = Traffic(*e2e.router_address(ns, "churn"), model="churn", rows=models.rows,
                      rate=40.0).start()
    try:
        traffic.wait_for(20, timeout=60)
        e2e.patch(ns, "churn", md("churn", uri2, digest1, steps=steps, deadline=20)["spec"])
        status = e2e.wait(ns, "churn", lambda s: any(
            r["number"] == 2 and r["fate"] in ("Failed", "RolledBack")
            for r in s.get("revisions", [])), timeout=120, what="r2 taken out")
        reverted_at = time.monotonic()
        time.sleep(2.0)
    finally:
        traffic.stop()
    r2 = next(r for r in status["revisions"] if r["number"] == 2)
    print(f"\n[revert] r2 {r2['fate']} ({r2.get('reason')}): {r2.get('message')}")
    assert r2["reason"] == "ProgressDeadlineExceeded"
    started = e2e.timestamp(next(r for r in status["revisions"] if r["number"] == 2)["createdAt"])
    finished = e2e.timestamp(r2["finishedAt"])
    print(f"[revert] deadline 20s: r2 taken out {finished - started:.0f}s after it was created "
          f"({finished - started - 20:.0f}s past its deadline, whole seconds of status)")
    assert finished - started <= 20 + 5
    assert {w["revision"]: w["weight"] for w in status["weights"]} == {1: 100}
    # the server's own refusal, read from its termination message by the operator
    assert "digest mismatch: pinned (SEAWAY_MODEL_DIGEST)" in r2["message"]
    total = check_answers(traffic, models, {1: "logreg"})
    failed = traffic.failures()
    after = [a for a in traffic.snapshot() if a.at >= reverted_at]
    print(f"[revert] {total} answers, {len(failed)} failed; {len(after)} after the revert")
    assert not failed, failed[:5]
    assert after and Traffic.shares(after) == {1: 100.0}


def test_sticky_ab_split_through_the_router_pod(e2e: E2E, models: Models) -> None:
    """One user key always reaches the same revision; over many keys the split is the weights."""
    ns = e2e.namespace("ab")
    uri1, digest1 = e2e.store.publish(models.bundle("logreg"), "ab-r1")
    uri2, digest2 = e2e.store.publish(models.bundle("tree"), "ab-r2")
    body = md("churn", uri1, digest1, steps=[{"setWeight": 100}])
    body["spec"]["rollout"] = {"strategy": "Immediate"}
    e2e.apply(ns, body)
    e2e.wait(ns, "churn", lambda s: s.get("stableRevision") == 1, timeout=180, what="r1")
    e2e.patch(ns, "churn", {"model": {"uri": uri2, "digest": digest2}})
    e2e.wait(ns, "churn", lambda s: s.get("stableRevision") == 2, timeout=180, what="r2")
    e2e.patch(ns, "churn", {"traffic": {"experiment": {
        "type": "ABTest", "sticky": {"header": "X-User"},
        "variants": [{"revision": 1, "weight": 30}, {"revision": 2, "weight": 70}]}}})
    e2e.wait(ns, "churn", lambda s: sorted((w["revision"], w["weight"])
                                           for w in s.get("weights", [])) == [(1, 30), (2, 70)],
             timeout=120, what="A/B weights")
    time.sleep(2.0)  # the router picks its routes up from the watch
    host, port = e2e.router_address(ns, "churn")
    import http.client

    seen: dict[str, set[int]] = {}
    conn = http.client.HTTPConnection(host, port, timeout=10)
    body_row = json.dumps({"inputs": [{"name": "input-0", "shape": [1, models.rows.shape[1]],
                                       "datatype": "FP64",
                                       "data": models.rows[0].tolist()}]}).encode()
    for key in range(300):
        for _ in range(2):
            conn.request("POST", "/v2/models/churn/infer", body_row,
                         {"Content-Type": "application/json", "X-User": f"user-{key}"})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200
            seen.setdefault(f"user-{key}", set()).add(int(resp.getheader("seaway-revision")))
    conn.close()
    flapping = [k for k, revs in seen.items() if len(revs) > 1]
    share = 100.0 * sum(1 for revs in seen.values() if revs == {2}) / len(seen)
    print(f"\n[ab] {len(seen)} keys, {share:.1f}% on r2 (weight 70), {len(flapping)} flapping")
    assert not flapping
    assert abs(share - 70.0) <= TOLERANCE


__all__ = ["e2e", "models", "np"]
