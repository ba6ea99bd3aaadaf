"""``seaway report`` end to end: a ModelDeployment with a history, real Prometheus, the real CLI.

The operator (in this process) takes ``churn`` through three revisions on the local plane:
revision 1, revision 2 promoted through a canary, revision 3 reverted by its metrics. Real
processes carry the traffic on 127.0.0.1: a ``seaway-router`` following the router's
ConfigMap, two ``seaway-serve`` model servers for revisions 1 and 2 (a bundle with a training
data fingerprint, so they export drift), a backend answering 500 for revision 3, and a real
Prometheus scraping the router and the servers. Nothing connects to a simulated Pod address.

The RetrainJob's runs are written into its status as the operator writes them (the training
itself is tested in test_retrainjob.py): the report reads status, not how it came to be.

The report is written by the ``seaway`` command in a subprocess, parsed with html.parser, and
each figure is checked against its source: revisions, fates, dates and weights against the
ModelDeployment's status; requests, errors and drift against Prometheus's answers to the same
queries at the same moment (``--at``, printed on the page).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from kubernetes import client
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from tests.integration.mdtools import User, md_body
from tests.integration.test_analysis import (  # noqa: F401  (prometheus_binary is a fixture)
    backend,
    free_port,
    loopback_prometheus,
    process,
    prometheus_binary,
    wait_http,
)
from tests.support import reportpage

from seaway.report import fmt
from seaway_serving import bundle

OPERATOR = ["seaway.handlers.operator"]
SEAWAY = str(Path(sys.executable).parent / "seaway")
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def spec(version: int, prometheus: str) -> dict[str, Any]:
    body = md_body("churn", version)["spec"]
    body["server"]["replicas"] = 1
    body["rollout"] = {
        "strategy": "Canary",
        "steps": [{"setWeight": 50}, {"pause": {"duration": "8s"}}],
        "progressDeadlineSeconds": 60,
        "analysis": {
            "interval": "3s",
            "maxErrorRatio": "0.1",
            "minRequests": 5,
            "failureLimit": 2,
            "provider": {"prometheus": {"address": prometheus}},
        },
    }
    return body


def make_bundle(out: Path) -> np.ndarray:
    """A fitted iris model with its training fingerprint; returns rows to send."""
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    bundle.create_from_estimator(model, out, name="churn", data=x, feature_names=FEATURES)
    shifted = x.copy()
    shifted[:, 2] = shifted[:, 2] * 1.8  # petal_length drifts; the others do not
    return shifted


@contextmanager
def load(url: str, rows: np.ndarray) -> Iterator[list[int]]:
    """Valid V2 requests of 5 rows each, ~40 per second, until the block ends."""
    codes: list[int] = []
    stop = threading.Event()

    def run() -> None:
        i = 0
        while not stop.is_set():
            chunk = rows[(i * 5) % len(rows) : (i * 5) % len(rows) + 5]
            body = {
                "inputs": [
                    {
                        "name": "input-0",
                        "shape": list(chunk.shape),
                        "datatype": "FP64",
                        "data": chunk.ravel().tolist(),
                    }
                ]
            }
            request = urllib.request.Request(
                url,
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    codes.append(response.status)
            except urllib.error.HTTPError as exc:
                codes.append(exc.code)
            except (urllib.error.URLError, OSError):
                codes.append(0)
            i += 1
            time.sleep(0.025)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield codes
    finally:
        stop.set()
        thread.join(timeout=10)


def promql(prometheus: str, query: str, at: str) -> dict[str, float]:
    """Prometheus's answer to ``query`` at ``at`` (Unix seconds), by revision (and feature)."""
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": query, "time": at})
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    out = {}
    for r in body["data"]["result"]:
        key = r["metric"].get("revision", "")
        if "feature" in r["metric"]:
            key += "/" + r["metric"]["feature"]
        out[key] = float(r["value"][1])
    return out


def seaway(*args: str, kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SEAWAY, *args, "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def retrain_job(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "seaway.dev/v1alpha1",
        "kind": "RetrainJob",
        "metadata": {"name": "churn-weekly", "namespace": namespace},
        "spec": {
            "modelDeployment": "churn",
            "schedule": "0 3 * * 1",
            "dataset": {"uri": "s3://data/churn.csv", "target": "churned"},
            "estimator": {"importPath": "sklearn.linear_model.LogisticRegression"},
            "validation": {"metric": "roc_auc", "minScore": "0.8", "minImprovement": "0.005"},
            "promotion": "Manual",
            "output": {"uri": "s3://models/churn/runs/"},
        },
    }


RUNS = [
    {
        "number": 1,
        "jobName": "churn-weekly-1",
        "trigger": "schedule",
        "startedAt": "2026-11-16T03:00:00Z",
        "finishedAt": "2026-11-16T03:20:00Z",
        "result": "Succeeded",
        "candidate": {"uri": "s3://models/churn/runs/1/", "digest": "sha256:" + "1" * 64},
        "candidateScore": "0.8712",
        "incumbentScore": "0.8801",
        "decision": "NotPromoted",
        "decisionReason": "candidate 0.8712 does not beat 0.8801 by minImprovement 0.005",
    },
    {
        "number": 2,
        "jobName": "churn-weekly-2",
        "trigger": "schedule",
        "startedAt": "2026-11-23T03:00:00Z",
        "finishedAt": "2026-11-23T03:21:00Z",
        "result": "Succeeded",
        "candidate": {"uri": "s3://models/churn/runs/2/", "digest": "sha256:" + "2" * 64},
        "candidateScore": "0.9134",
        "incumbentScore": "0.8801",
        "decision": "AwaitingApproval",
    },
]


def test_report_of_a_model_deployment_with_a_history(
    run_operator: Any, kube_api: Any, namespace: str, seaway_crds: Any, control_plane: Any,
    prometheus_binary: str, tmp_path: Path, eventually: Any,  # noqa: F811
) -> None:  # fmt: skip
    user = User(kube_api, namespace)
    rows = make_bundle(tmp_path / "bundle")
    failing = backend(500)
    router_port, prom_port = free_port(), free_port()
    server_ports = {1: free_port(), 2: free_port()}
    prometheus = f"http://127.0.0.1:{prom_port}"
    targets = ", ".join(f"'127.0.0.1:{p}'" for p in [router_port, *server_ports.values()])
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs:\n- job_name: seaway\n  static_configs: [{{targets: [{targets}]}}]\n"
    )
    servers = {
        n: [sys.executable, "-m", "seaway_serving", "--bundle", str(tmp_path / "bundle"),
            "--name", "churn", "--revision", str(n), "--host", "127.0.0.1", "--port", str(port)]
        for n, port in server_ports.items()
    }  # fmt: skip
    router = [
        sys.executable, "-m", "seaway_serving.router",
        "--configmap", f"{namespace}/churn-router", "--kubeconfig", str(control_plane.kubeconfig),
        *(a for n, port in server_ports.items()
          for a in ("--backend-url", f"churn-r{n}=http://127.0.0.1:{port}")),
        "--backend-url", f"churn-r3=http://127.0.0.1:{failing.server_port}",
        "--host", "127.0.0.1", "--port", str(router_port),
    ]  # fmt: skip
    prom = [
        prometheus_binary, f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}",
    ]  # fmt: skip
    # the servers' settings, through env(1): a server refuses SEAWAY_ settings it does not read
    # (the operator's, set for this test), and drift shows from 20 rows on
    unset = [a for k in os.environ if k.startswith("SEAWAY_") for a in ("-u", k)]
    env = ["env", *unset, "SEAWAY_DRIFT_MIN_ROWS=20", f"SEAWAY_WORK_DIR={tmp_path / 'work'}"]
    infer = f"http://127.0.0.1:{router_port}/v2/models/churn/infer"
    try:
        with (
            process([*env, *servers[1]], tmp_path / "server-1.log"),
            process([*env, *servers[2]], tmp_path / "server-2.log"),
            process(prom, tmp_path / "prometheus.log"),
            run_operator(OPERATOR, namespace=namespace),
        ):
            body = md_body("churn", 1)
            body["spec"] = spec(1, prometheus)
            user.create(body)
            eventually(lambda: user.status("churn").get("stableRevision") == 1, timeout=30)
            with process(router, tmp_path / "router.log"):
                wait_http(f"http://127.0.0.1:{router_port}/readyz")
                for port in server_ports.values():
                    wait_http(f"http://127.0.0.1:{port}/v2/health/ready", timeout=60)
                wait_http(f"{prometheus}/-/ready")
                with load(infer, rows) as codes:
                    eventually(lambda: codes.count(200) > 20, what="r1 answering")
                    user.patch_spec("churn", spec(2, prometheus))
                    eventually(
                        lambda: user.status("churn").get("stableRevision") == 2,
                        timeout=90,
                        what="r2 promoted",
                    )
                    user.patch_spec("churn", spec(3, prometheus))
                    eventually(lambda: 500 in codes, timeout=30, what="r3's 500s")
                    eventually(
                        lambda: user.weights("churn") == {2: 100}, timeout=60, what="reverted"
                    )
                # every scrape up to this moment has landed when the report runs
                time.sleep(2)
                at = str(int(time.time()) - 1)
                status = user.status("churn")
                # the servers stay up so their drift gauges are current at ``at``
                custom = client.CustomObjectsApi(kube_api)
                custom.create_namespaced_custom_object(
                    "seaway.dev", "v1alpha1", namespace, "retrainjobs", retrain_job(namespace)
                )
                custom.patch_namespaced_custom_object_status(
                    "seaway.dev", "v1alpha1", namespace, "retrainjobs", "churn-weekly",
                    {"status": {"runs": RUNS}},
                )  # fmt: skip
                out = tmp_path / "report.html"
                result = seaway(
                    "report", "churn", "-n", namespace, "--prometheus", prometheus,
                    "--window", "10m", "--at", at, "-o", str(out),
                    "--summary-json", str(tmp_path / "summary.json"),
                    kubeconfig=control_plane.kubeconfig,
                )  # fmt: skip
                assert result.returncode == 0, result.stdout + result.stderr
                assert f"Wrote {out} (3 revisions, 2 retraining runs, traffic included," in (
                    result.stdout
                )
                page = reportpage.parse(out.read_text())
                check_revisions(page, status)
                check_traffic(page, prometheus, at)
                check_drift(page, prometheus, at)
                check_retraining(page)
                summary = json.loads((tmp_path / "summary.json").read_text())
                assert summary["stableRevision"] == 2
                assert [r["fate"] for r in summary["revisions"]][1:] == ["Stable", "Failed"]
        # Prometheus has stopped: the report is still written, and says what it lacks
        out = tmp_path / "no-prometheus.html"
        result = seaway(
            "report", "churn", "-n", namespace, "--prometheus", prometheus, "-o", str(out),
            kubeconfig=control_plane.kubeconfig,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        expected = (
            f"Missing: Prometheus: 127.0.0.1:{prom_port} could not be reached: traffic, errors,"
            " latency and drift omitted."
        )
        assert expected in result.stdout
        page = reportpage.parse(out.read_text())
        assert expected.removeprefix("Missing: ") in page.texts["missing"]
        assert sorted(page.rows("revisions-table")) == ["1", "2", "3"]
        # without Prometheus, as docs/report.md runs it on the demo's cluster
        out = tmp_path / "churn-report.html"
        result = seaway(
            "report", "churn", "-n", namespace, "-o", str(out), kubeconfig=control_plane.kubeconfig
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines() == [
            f"Reading ModelDeployment {namespace}/churn, its RetrainJobs and Events ...",
            f"Wrote {out} (3 revisions, 2 retraining runs, traffic omitted, drift omitted).",
            "Missing: Prometheus not given (--prometheus URL): traffic, errors, latency and drift"
            " omitted.",
        ]
        result = seaway("report", "nosuch", "-n", namespace, kubeconfig=control_plane.kubeconfig)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert f"Error: ModelDeployment nosuch not found in namespace {namespace}" in result.stderr
    finally:
        failing.shutdown()


def check_revisions(page: reportpage.Page, status: dict[str, Any]) -> None:
    rows = page.rows("revisions-table")
    assert sorted(rows) == ["1", "2", "3"]
    weights = {w["revision"]: w["weight"] for w in status["weights"]}
    for revision in status["revisions"]:
        cells = rows[str(revision["number"])].cells
        assert cells["fate"] == revision["fate"]
        assert cells["created"] == fmt.when(revision["createdAt"])
        assert cells["ready"] == fmt.when(revision.get("readyAt"))
        assert cells["ended"] == fmt.when(revision.get("finishedAt"))
        assert cells["model"] == revision["modelURI"]
        weight = weights.get(revision["number"])
        assert cells["weight"] == (f"{weight}%" if weight is not None else "-")
    assert rows["1"].cells["fate"] in ("Superseded", "Retired")  # Retired once scaled away
    assert [rows[n].cells["fate"] for n in ("2", "3")] == ["Stable", "Failed"]
    assert rows["3"].cells["reason"] == "AnalysisFailed"
    assert rows["2"].cells["role"] == "stable" and rows["2"].cells["weight"] == "100%"
    assert "Revision 2 is the stable revision with 100% of live traffic" in page.texts["summary"]
    assert "Revision 3, created" in page.texts["summary"]
    assert "was reverted (AnalysisFailed)" in page.texts["summary"]


def check_traffic(page: reportpage.Page, prometheus: str, at: str) -> None:
    assert page.ids["measured-at"]["data-unix"] == at
    requests = promql(prometheus, page.queries["window requests"], at)
    errors = promql(prometheus, page.queries["window errors"], at)
    p99 = promql(prometheus, page.queries["window p99"], at)
    assert 'model_deployment="churn"' in page.queries["window requests"]
    rows = page.rows("traffic-table")
    assert sorted(rows) == sorted(requests) == ["1", "2", "3"]
    total = sum(requests.values())
    for revision, count in requests.items():
        cells = rows[revision].cells
        assert cells["requests"] == fmt.count(count)
        assert cells["errors"] == fmt.count(errors.get(revision, 0.0))
        assert cells["share"] == fmt.percent(count / total)
        assert cells["p99"] == fmt.latency(p99.get(revision))
    assert errors.get("3", 0) > 0 and errors.get("2", 0) == 0
    assert len(page.svg_titles) >= 4  # the timeline and the traffic charts


def check_drift(page: reportpage.Page, prometheus: str, at: str) -> None:
    now = promql(prometheus, page.queries["drift feature_now"], at)
    peak = promql(prometheus, page.queries["drift feature_peak"], at)
    assert {key.split("/")[1] for key in now} == set(FEATURES)
    rows = page.rows("drift-table", key="data-feature")
    assert sorted(rows) == sorted(FEATURES)
    for key, value in now.items():
        revision, feature = key.split("/")
        cell = rows[feature].cell_attrs[f"r{revision}"]
        assert cell["data-now"] == fmt.psi(value)
        assert cell["data-peak"] == fmt.psi(peak[key])
    # the shifted feature shows as a significant shift on the stable revision; the others do not
    assert "psi-significant" in rows["petal_length"].cell_attrs["r2"]["class"]
    assert "psi-none" in rows["sepal_width"].cell_attrs["r2"]["class"]


def check_retraining(page: reportpage.Page) -> None:
    runs = page.rows("runs-churn-weekly", key="data-run")
    assert runs["1"].cells["candidate"] == "0.8712"
    assert runs["1"].cells["incumbent"] == "0.8801"
    assert runs["1"].cells["decision"] == "NotPromoted"
    assert runs["2"].cells["improvement"] == "+0.0333"
    assert (
        "RetrainJob churn-weekly run 2: the candidate scored 0.9134 roc_auc"
        in (page.texts["summary"])
    )
