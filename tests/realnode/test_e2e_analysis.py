"""Metric analysis on real metrics: Prometheus scrapes the router pod, the operator judges by it.

A real Prometheus (Debian's ``prometheus``, as tests/integration/test_analysis.py runs it) runs
on the host with its own temporary directory, a bounded retention and a 1 s scrape interval. Its
only targets are the router pods of the test's ModelDeployment (their Pod IPs on the node's
bridge, port 8080, ``/metrics``), written to a file_sd file the test keeps current. The
ModelDeployment's ``rollout.analysis`` names it at ``http://127.0.0.1:<port>`` (the operator
runs on the host), and the operator is started allowing that host (``OPERATOR_ARGS``).

Nothing is simulated: the failing canary is a scikit-learn Pipeline ``sqrt -> LogisticRegression``
fitted on the (non-negative) training data. It loads and passes the server's self-check, but a
row with a negative feature becomes NaN inside the pipeline and the model raises: the server
answers 500 for that row, the router counts a 5xx for the canary's revision, Prometheus scrapes
it, and the analysis reverts the canary. The stable revision (a plain LogisticRegression) and the
healthy canary (a decision tree) answer every row. Figures are printed (``-s``).

Addresses dialled: loopback (Prometheus), the router's ClusterIP (traffic) and the router's Pod
IP (by Prometheus); nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from seaway.planning import children
from tests.realnode.conftest import unavailable
from tests.realnode.e2e import E2E, Models, Status, e2e, models
from tests.realnode.traffic import Traffic

#: The operator may query the Prometheus these tests run on loopback.
OPERATOR_ARGS = ("--allow-prometheus-host", "127.0.0.1")
#: Share of the rows sent whose first feature is negative (the failing canary's errors).
NEGATIVE_SHARE = 0.3
MAX_ERROR_RATIO = "0.1"
MIN_REQUESTS = 20
INTERVAL = "5s"
FAILURE_LIMIT = 2


class Prometheus:
    """Prometheus on 127.0.0.1 scraping the router pods of one ModelDeployment every second."""

    def __init__(self, binary: str, root: Path) -> None:
        self.root = root
        self.targets = root / "targets.json"
        self._write([])
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.address = f"http://127.0.0.1:{self.port}"
        (root / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "- job_name: seaway-router\n"
            f"  file_sd_configs: [{{files: ['{self.targets}'], refresh_interval: 1s}}]\n"
        )
        self.log = (root / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [binary, f"--config.file={root / 'prometheus.yml'}",
             f"--storage.tsdb.path={root / 'tsdb'}", "--storage.tsdb.retention.time=30m",
             "--storage.tsdb.retention.size=256MB",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None

    def _write(self, targets: list[str]) -> None:
        doc = [{"targets": targets, "labels": {}}] if targets else []
        tmp = self.targets.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(self.targets)  # file_sd reads whole files only

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited: {self.tail()}")
            with (contextlib.suppress(urllib.error.URLError, OSError),
                  urllib.request.urlopen(f"{self.address}/-/ready", timeout=2) as r):
                if r.status == 200:
                    return
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready in {timeout:.0f}s: {self.tail()}")

    def follow_routers(self, e2e: E2E, ns: str, name: str) -> None:
        """Keep the targets file on the ready router pods of ``ns/name`` (checked every 2 s)."""
        self.unfollow()
        self._stop.clear()

        def run() -> None:
            current: list[str] = []
            while not self._stop.is_set():
                with contextlib.suppress(Exception):
                    pods = e2e.core.list_namespaced_pod(
                        ns, label_selector=f"{children.MD_LABEL}={name},"
                                           f"{children.COMPONENT_LABEL}=router").items
                    found = sorted(f"{st.pod_ip}:{children.ROUTER_PORT}"
                                   for st in (p.status for p in pods)
                                   if st is not None and st.pod_ip and st.phase == "Running")
                    if found != current:
                        self._write(found)
                        current = found
                self._stop.wait(2.0)

        self._follower = threading.Thread(target=run, name="prometheus-targets", daemon=True)
        self._follower.start()

    def unfollow(self) -> None:
        self._stop.set()
        if self._follower is not None:
            self._follower.join(timeout=10)
            self._follower = None
        self._write([])

    def query(self, promql: str) -> float | None:
        url = f"{self.address}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as r:
            result = json.loads(r.read())["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def wait_scraped(self, name: str, timeout: float = 30.0) -> None:
        """Until a router of ``name`` has been scraped (its request counter exists)."""
        deadline = time.monotonic() + timeout
        promql = f'sum(seaway_router_requests_total{{model_deployment="{name}"}})'
        while time.monotonic() < deadline:
            if self.query(promql) is not None:
                return
            time.sleep(0.5)
        raise AssertionError(f"prometheus never scraped a router of {name}: {self.tail()}")

    def tail(self) -> str:
        self.log.flush()
        return (self.root / "prometheus.log").read_text(errors="replace")[-2000:]

    def close(self) -> None:
        self.unfollow()
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.log.close()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    if binary is None:
        unavailable("the prometheus binary is missing (Debian package prometheus: "
                    "`make system-deps`)")
    assert binary is not None
    prom = Prometheus(binary, tmp_path_factory.mktemp("prometheus"))
    try:
        prom.wait_ready()
        yield prom
    finally:
        prom.close()
        if not os.environ.get("SEAWAY_E2E_KEEP_LOGS"):
            shutil.rmtree(prom.root / "tsdb", ignore_errors=True)


def rows_with_negatives(models: Models) -> tuple[np.ndarray, np.ndarray]:
    """The test rows, the first feature negated in ``NEGATIVE_SHARE`` of them; which ones."""
    rows = models.rows.copy()
    negative = (np.arange(len(rows)) % 10) < round(NEGATIVE_SHARE * 10)
    rows[negative, 0] = -np.abs(rows[negative, 0]) - 1.0
    return rows, negative


def sqrt_model(models: Models) -> str:
    """The failing canary: fits and self-checks on non-negative rows, raises on a negative one."""
    assert (models.train_rows >= 0).all()
    labels = models.fitted["logreg"].predict(models.train_rows)
    models.fitted["sqrt"] = make_pipeline(
        FunctionTransformer(np.sqrt), LogisticRegression(max_iter=10000, random_state=0)
    ).fit(models.train_rows, labels)
    return "sqrt"


def md(name: str, uri: str, digest: str, prometheus: str, *,
       steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "seaway.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": uri, "format": "sklearn-joblib", "digest": digest},
            "server": {"image": E2E.SERVER_IMAGE, "replicas": 1},
            "rollout": {
                "strategy": "Canary", "steps": steps, "progressDeadlineSeconds": 120,
                "analysis": {"interval": INTERVAL, "maxErrorRatio": MAX_ERROR_RATIO,
                             "minRequests": MIN_REQUESTS, "failureLimit": FAILURE_LIMIT,
                             "provider": {"prometheus": {"address": prometheus}}},
            },
        },
    }  # fmt: skip


def serve_stable(e2e: E2E, prometheus: Prometheus, models: Models, ns: str,
                 prefix: str) -> tuple[str, int]:
    uri1, digest1 = e2e.store.publish(models.bundle("logreg"), f"{prefix}-r1")
    e2e.apply(ns, md("churn", uri1, digest1, prometheus.address, steps=[{"setWeight": 50}]))
    e2e.wait(ns, "churn", lambda s: s.get("stableRevision") == 1
             and e2e.condition(s, "Ready") == "True", timeout=180, what="r1 serving")
    prometheus.follow_routers(e2e, ns, "churn")
    return e2e.router_address(ns, "churn")


def canary_window(timeline: list[tuple[float, Status]]) -> tuple[float, Status | None]:
    """When status first showed weight on revision 2, and the last analysis of revision 2."""
    began = next((at for at, s in timeline
                  if any(w["revision"] == 2 and w["weight"] > 0 for w in s.get("weights", []))),
                 timeline[-1][0])
    analysed = [s["analysis"] for _, s in timeline
                if (s.get("analysis") or {}).get("revision") == 2]
    return began, analysed[-1] if analysed else None


def rolled_back_events(e2e: E2E, ns: str, name: str, timeout: float = 15.0) -> list[Any]:
    """The ModelDeployment's RolledBack Events, once there is one (Events are posted apart
    from the status write)."""
    deadline = time.monotonic() + timeout
    while True:
        events = [e for e in e2e.core.list_namespaced_event(
            ns, field_selector=f"involvedObject.name={name},"
                               "involvedObject.kind=ModelDeployment").items
            if e.reason == "RolledBack"]  # fmt: skip
        if events or time.monotonic() > deadline:
            return events
        time.sleep(0.5)


def test_a_canary_answering_errors_is_reverted_by_real_metrics(
    e2e: E2E, models: Models, prometheus: Prometheus
) -> None:
    ns = e2e.namespace("analysis-fail")
    rows, negative = rows_with_negatives(models)
    stable = models.fitted["logreg"].predict(rows).tolist()
    router = serve_stable(e2e, prometheus, models, ns, "fail")
    uri2, digest2 = e2e.store.publish(models.bundle(sqrt_model(models)), "fail-r2")
    canary = models.fitted["sqrt"]
    # what the canary's server meets for those rows (sqrt gives NaN, the classifier refuses it)
    with np.errstate(invalid="ignore"), pytest.raises(ValueError):
        canary.predict(rows[negative][:1])
    traffic = Traffic(*router, model="churn", rows=rows.tolist(), rate=40.0).start()
    try:
        traffic.wait_for(20, timeout=60)
        prometheus.wait_scraped("churn")
        # a pause of an hour: only the analysis can end this rollout
        steps: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {"duration": "1h"}}]
        e2e.patch(ns, "churn", md("churn", uri2, digest2, prometheus.address,
                                  steps=steps)["spec"])
        timeline = e2e.follow(ns, "churn", until=lambda s: any(
            r["number"] == 2 and r.get("fate") in ("Failed", "RolledBack")
            for r in s.get("revisions", [])), timeout=240)
        decided = timeline[-1][0]
        time.sleep(3.0)  # answers after the revert: r1 only, none failed
    finally:
        traffic.stop()
    status = timeline[-1][1]
    began, analysed = canary_window(timeline)
    r2 = next(r for r in status["revisions"] if r["number"] == 2)
    events = rolled_back_events(e2e, ns, "churn")
    answers = traffic.snapshot()
    on_canary = [a for a in answers if a.revision == 2]
    canary_failed = [a for a in on_canary if a.status != 200]
    seen_ratio = len(canary_failed) / len(on_canary) if on_canary else 0.0
    print(f"\n[analysis-fail] r2 {r2['fate']} ({r2.get('reason')}): {r2.get('message')}")
    print(f"[analysis-fail] Event: {events[-1].message if events else None}")
    print(f"[analysis-fail] last analysis: {json.dumps(analysed)}")
    print(f"[analysis-fail] client saw {len(canary_failed)}/{len(on_canary)} canary answers "
          f"fail ({seen_ratio:.3f}; {NEGATIVE_SHARE:.0%} of rows negative); threshold "
          f"maxErrorRatio {MAX_ERROR_RATIO}, failureLimit {FAILURE_LIMIT}, interval {INTERVAL}")
    print(f"[analysis-fail] canary weight first in status to revert: {decided - began:.1f}s")

    assert (r2["fate"], r2["reason"]) == ("Failed", "AnalysisFailed"), r2
    assert {w["revision"]: w["weight"] for w in status["weights"]} == {1: 100}
    assert events, "no RolledBack Event"
    message = events[-1].message or ""
    found = re.search(r"error ratio ([0-9.]+) > maxErrorRatio ([0-9.]+)", message)
    assert found, message
    measured, threshold = float(found.group(1)), found.group(2)
    assert threshold == MAX_ERROR_RATIO and "AnalysisFailed" in message
    # the ratio Prometheus measured is the one the client saw, within an interval's noise
    assert measured > float(MAX_ERROR_RATIO)
    assert abs(measured - NEGATIVE_SHARE) <= 0.15, (measured, seen_ratio)
    # every failure was the canary's, a 500 on a row with a negative feature; r1 never failed
    assert canary_failed, "the canary answered no errors"
    for a in traffic.failures():
        assert (a.revision, a.status) == (2, 500) and negative[a.row], a
    for a in answers:
        if a.status == 200 and a.revision == 1:
            assert a.prediction == stable[a.row], a
    after = [a for a in answers if a.at >= decided + 1.0]
    assert after and all(a.status == 200 and a.revision == 1 for a in after)
    assert decided - began <= 60, "the analysis took longer than a minute to decide"


def test_a_healthy_canary_is_promoted_by_the_same_analysis(
    e2e: E2E, models: Models, prometheus: Prometheus
) -> None:
    ns = e2e.namespace("analysis-pass")
    rows, _ = rows_with_negatives(models)  # the same traffic: the tree answers every row
    router = serve_stable(e2e, prometheus, models, ns, "pass")
    uri2, digest2 = e2e.store.publish(models.bundle("tree"), "pass-r2")
    traffic = Traffic(*router, model="churn", rows=rows.tolist(), rate=40.0).start()
    try:
        traffic.wait_for(20, timeout=60)
        prometheus.wait_scraped("churn")
        steps: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {"duration": "8s"}}]
        e2e.patch(ns, "churn", md("churn", uri2, digest2, prometheus.address,
                                  steps=steps)["spec"])
        timeline = e2e.follow(ns, "churn", until=lambda s: s.get("stableRevision") == 2
                              and not s.get("canaryRevision"), timeout=240)
        decided = timeline[-1][0]
        time.sleep(2.0)
    finally:
        traffic.stop()
    status = timeline[-1][1]
    began, analysed = canary_window(timeline)
    answers = traffic.snapshot()
    on_canary = [a for a in answers if a.revision == 2]
    print(f"\n[analysis-pass] last analysis before promotion: {json.dumps(analysed)}")
    print(f"[analysis-pass] {len(answers)} answers ({len(on_canary)} from r2), "
          f"{len(traffic.failures())} failed; thresholds maxErrorRatio {MAX_ERROR_RATIO}, "
          f"minRequests {MIN_REQUESTS}")
    print(f"[analysis-pass] canary weight first in status to promotion: {decided - began:.1f}s "
          f"(pause 8s, interval {INTERVAL})")

    r2 = next(r for r in status["revisions"] if r["number"] == 2)
    assert r2.get("fate") not in ("Failed", "RolledBack"), r2
    assert {w["revision"]: w["weight"] for w in status["weights"]} == {2: 100}
    assert analysed is not None, "promoted without an analysis of r2"
    assert analysed["lastResult"] == "Pass", analysed
    assert analysed["lastRequests"] >= MIN_REQUESTS, analysed
    assert float(analysed.get("lastErrorRatio") or 0) == 0.0, analysed
    assert analysed.get("failures", 0) == 0, analysed
    assert not traffic.failures(), traffic.failures()[:5]
    want = {1: models.fitted["logreg"].predict(rows).tolist(),
            2: models.fitted["tree"].predict(rows).tolist()}
    for a in answers:
        assert a.revision in want and a.prediction == want[a.revision][a.row], a


__all__ = ["e2e", "models"]
