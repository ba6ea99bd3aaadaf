"""How the operator scales: N ModelDeployments created at once on the local control plane.

For each N it starts a fresh local plane (etcd, kube-apiserver, controller manager, scheduler,
kwok) and ``seaway operator run`` as a separate process, creates N ModelDeployments, and prints:

- seconds until every one has its children and ``Ready=True``;
- API requests the operator made (its own count, printed when it stops);
- the operator's peak RSS;
- writes per minute by anyone to Seaway's objects and children while idle afterwards
  (from the API server's ``apiserver_request_total``), which should be 0.

Anchor: on the same plane, before the operator starts, the bench creates as many plain
Deployments as Seaway will (a server and a router per ModelDeployment) and times until all are
available: the plane's own speed on this machine. The operator's figure is printed as a ratio.

    .venv/bin/python bench/operator_scale.py --sizes 100 300 1000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubernetes import client, config

from seaway import localplane
from seaway.localplane import binaries
from seaway.localplane import config as plane_config

ROOT = Path(__file__).resolve().parents[1]
WATCHED = {"modeldeployments", "deployments", "services", "configmaps", "horizontalpodautoscalers"}
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "APPLY", "CREATE", "UPDATE"}


def md(i: int) -> dict[str, object]:
    return {
        "apiVersion": "seaway.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": f"m{i:04d}"},
        "spec": {
            "model": {"uri": f"s3://models/m{i}/model.joblib", "digest": "sha256:" + "a" * 64},
            "server": {"image": "seaway/server:bench", "replicas": 1},
        },
    }


def writes(plane: localplane.Plane) -> int:
    """Writes to Seaway's kinds and children so far (the controller manager's Deployment status
    updates excluded), from the API server's own request counter."""
    body = plane.kubectl("get", "--raw", "/metrics").stdout
    total = 0
    for line in body.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        resource, sub = labels.get("resource"), labels.get("subresource", "")
        kcm_status = resource == "deployments" and sub == "status"
        if resource in WATCHED and sub in ("", "status") and not kcm_status:
            if labels.get("verb") in WRITE_VERBS:
                total += int(float(line.rsplit(" ", 1)[1]))
    return total


def anchor_seconds(api: client.ApiClient, plane: localplane.Plane, count: int) -> float:
    """Seconds for the plane alone to make ``count`` one-replica Deployments available."""
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.create_namespace({"metadata": {"name": "anchor"}})
    plane.wait_for_service_account("anchor")
    labels = {"app": "anchor"}

    def deployment(i: int) -> dict[str, object]:
        return {
            "metadata": {"name": f"d{i:05d}", "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"anchor": f"d{i}"}},
                "template": {
                    "metadata": {"labels": {"anchor": f"d{i}"}},
                    "spec": {"containers": [{"name": "c", "image": "anchor:1"}]},
                },
            },
        }

    began = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda i: apps.create_namespaced_deployment("anchor", deployment(i)), range(count)
            )
        )
    while time.monotonic() - began < 1800:
        items = apps.list_namespaced_deployment("anchor", label_selector="app=anchor").items
        if sum((d.status.available_replicas or 0) >= 1 for d in items) == count:
            break
        time.sleep(0.5)
    took = time.monotonic() - began
    core.delete_namespace("anchor")
    while any(ns.metadata.name == "anchor" for ns in core.list_namespace().items):
        time.sleep(1)  # its deletion writes must not count as the operator's idle writes
    return took


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(n: int, idle_seconds: float) -> dict[str, float]:
    bins = binaries.paths(plane_config.bin_dir(os.environ))
    with tempfile.TemporaryDirectory(prefix="seaway-bench-") as tmp:
        plane = localplane.start(Path(tmp), name="bench", bins=bins)
        operator = None
        try:
            plane.install_crds(ROOT / "crds")
            api = config.new_client_from_config(config_file=str(plane.kubeconfig))
            custom = client.CustomObjectsApi(api)
            plane.wait_for_service_account("default")
            log = Path(tmp) / "operator.log"
            env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig)}
            operator = subprocess.Popen(
                [str(Path(sys.executable).parent / "seaway"), "operator", "run", "-n", "default"],
                env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
            )  # fmt: skip
            anchor = anchor_seconds(api, plane, 2 * n)
            time.sleep(3)
            began = time.monotonic()
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda i: custom.create_namespaced_custom_object(
                    "seaway.dev", "v1alpha1", "default", "modeldeployments", md(i)), range(n)))  # fmt: skip
            deadline = began + max(300.0, n * 1.0)
            ready = 0
            while time.monotonic() < deadline:
                items = custom.list_namespaced_custom_object(
                    "seaway.dev", "v1alpha1", "default", "modeldeployments"
                )["items"]
                ready = sum(
                    any(c["type"] == "Ready" and c["status"] == "True"
                        for c in i.get("status", {}).get("conditions", []))
                    for i in items
                )  # fmt: skip
                if ready == n:
                    break
                time.sleep(1)
            converged = time.monotonic() - began
            before = writes(plane)
            time.sleep(idle_seconds)
            idle = writes(plane) - before
            peak = rss_kb(operator.pid)
            operator.send_signal(signal.SIGTERM)
            operator.wait(timeout=60)
            requests = re.findall(r"API requests: (.*)", log.read_text())
            return {
                "n": n,
                "converge_s": round(converged, 1),
                "ready": ready,
                "anchor_s": round(anchor, 1),
                "ratio_to_anchor": round(converged / anchor, 2),
                "operator_requests": requests[-1] if requests else "?",
                "rss_mb": round(peak / 1024),
                "idle_writes_per_min": round(idle * 60 / idle_seconds, 1),
            }
        finally:
            if operator is not None and operator.poll() is None:
                operator.kill()
            plane.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle measurement")
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        print(f"[bench] N={n}: starting a fresh plane", file=sys.stderr, flush=True)
        row = run(n, args.idle)
        print(f"[bench] {json.dumps(row)}", file=sys.stderr, flush=True)
        rows.append(row)
    print(
        f"{'N':>5} {'converge s':>11} {'anchor s':>9} {'ratio':>6} {'ready':>6} {'RSS MB':>7}"
        f" {'idle w/min':>11}  operator requests"
    )
    for r in rows:
        print(
            f"{r['n']:>5} {r['converge_s']:>11} {r['anchor_s']:>9} {r['ratio_to_anchor']:>6}"
            f" {r['ready']:>6} {r['rss_mb']:>7} {r['idle_writes_per_min']:>11}"
            f"  {r['operator_requests']}"
        )


if __name__ == "__main__":
    main()
