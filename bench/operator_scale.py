"""How the operator scales: N ModelDeployments created at once on the local control plane.

For each N it starts a fresh local plane (etcd, kube-apiserver, controller manager, scheduler,
kwok) and ``seaway operator run`` as a separate process, creates N ModelDeployments, and prints:

- seconds until every one has ``Ready=True`` (``ready s``), and until, beyond that, every
  Deployment Seaway made for them (a server and a router each) is available (``converge s``):
  the same pods the anchor waits for;
- API requests the operator made (its own count, printed when it stops), per ModelDeployment,
  by method and by method and resource;
- the operator's peak RSS and CPU seconds;
- writes per minute by anyone to Seaway's objects and children while idle afterwards
  (from the API server's ``apiserver_request_total``), which should be 0;
- the machine's load average when the row began and ended (the machine may be shared);
- where the time went: p50/p90/max seconds from a ModelDeployment's creation to its server
  Deployment's, its pod's readiness, its router Deployment's and the router pod's readiness,
  and the mean wait for an answer per kind of request.

Anchors: on the same plane, before the operator starts, the bench creates as many plain
Deployments as Seaway will (a server and a router per ModelDeployment) and times until all are
available: the plane's own speed on this machine for the same pods (``anchor s``). A second
anchor puts a ClusterIP Service before each Deployment, as Seaway does (``+svc s``): on this
plane a Service costs far more than a Deployment to create (its address is allocated), so this
is the plane's time for the same pods and the same Services. ``converge s`` is printed as a
ratio to each. ``--router-service-account`` and ``--workers`` measure those options.

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
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config

from seaway import localplane
from seaway.localplane import binaries
from seaway.localplane import config as plane_config
from seaway.planning.children import COMPONENT_LABEL, MD_LABEL

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
        ours = resource in WATCHED and sub in ("", "status") and not kcm_status
        if ours and labels.get("verb") in WRITE_VERBS:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def anchor_seconds(
    api: client.ApiClient, plane: localplane.Plane, count: int, services: bool = False
) -> float:
    """Seconds for the plane alone to make ``count`` one-replica Deployments available; with
    ``services``, each behind a ClusterIP Service created just before it, as Seaway does."""
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

    def service(i: int) -> dict[str, object]:
        return {
            "metadata": {"name": f"d{i:05d}"},
            "spec": {"selector": {"anchor": f"d{i}"}, "ports": [{"port": 80}]},
        }

    def create(i: int) -> None:
        if services:
            core.create_namespaced_service("anchor", service(i))
        apps.create_namespaced_deployment("anchor", deployment(i))

    began = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(create, range(count)))
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (from /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def per_object(counts: str, n: int) -> str:
    """``2000 GET, 800 PATCH`` for N objects as ``20.0 GET, 8.0 PATCH`` per object."""
    parts = []
    for part in counts.split(", "):
        number, _, name = part.partition(" ")
        if number.isdigit():
            parts.append(f"{int(number) / n:.1f} {name}")
    return ", ".join(parts) or counts


def available(apps: client.AppsV1Api, namespace: str, selector: str) -> int:
    items = apps.list_namespaced_deployment(namespace, label_selector=selector).items
    return sum((d.status.available_replicas or 0) >= 1 for d in items)


def _moment(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _ready_since(pod: dict[str, Any]) -> float | None:
    for condition in pod.get("status", {}).get("conditions", []):
        if condition["type"] == "Ready" and condition["status"] == "True":
            return _moment(condition.get("lastTransitionTime"))
    return None


def phases(custom: client.CustomObjectsApi, api: client.ApiClient) -> dict[str, str]:
    """Where each ModelDeployment's time went (whole seconds, as the API server stamps them):
    p50/p90/max of created -> its server Deployment written (operator), -> its pod Ready
    (plane), -> its router Deployment written (operator), -> the router's pod Ready (plane)."""
    mds = custom.list_namespaced_custom_object("seaway.dev", "v1alpha1", "default",
                                               "modeldeployments")["items"]  # fmt: skip
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    deployments = api.sanitize_for_serialization(apps.list_namespaced_deployment("default"))
    created = {d["metadata"]["name"]: _moment(d["metadata"]["creationTimestamp"])
               for d in deployments["items"]}  # fmt: skip
    ready: dict[tuple[str, str], float | None] = {}
    pods = api.sanitize_for_serialization(
        core.list_namespaced_pod("default", label_selector=MD_LABEL)
    )
    for pod in pods["items"]:
        labels = pod["metadata"]["labels"]
        ready[(labels[MD_LABEL], labels.get(COMPONENT_LABEL, ""))] = _ready_since(pod)
    spans: dict[str, list[float]] = {"server written": [], "server pod ready": [],
                                     "router written": [], "router pod ready": []}  # fmt: skip
    for md_body in mds:
        name = md_body["metadata"]["name"]
        moments = [
            _moment(md_body["metadata"]["creationTimestamp"]),
            created.get(f"{name}-r1"),
            ready.get((name, "model-server")),
            created.get(f"{name}-router"),
            ready.get((name, "router")),
        ]
        for key, begin, end in zip(spans, moments, moments[1:], strict=False):
            if begin is not None and end is not None:
                spans[key].append(end - begin)
    summary = {}
    for key, values in spans.items():
        values.sort()
        if values:
            pick = [values[len(values) // 2], values[int(len(values) * 0.9)], values[-1]]
            summary[key] = "/".join(f"{v:.0f}" for v in pick)
    return summary


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(
    n: int, idle_seconds: float, router_account: str | None = None, workers: int | None = None
) -> dict[str, object]:
    loads = load()
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
            if router_account is not None:  # one account for every router: no per-router RBAC
                client.CoreV1Api(api).create_namespaced_service_account(
                    "default", {"metadata": {"name": router_account}}
                )
                env["SEAWAY_ROUTER_SERVICE_ACCOUNT"] = router_account
            command = [str(Path(sys.executable).parent / "seaway"), "operator", "run"]
            command += ["-n", "default"] + (["--workers", str(workers)] if workers else [])
            operator = subprocess.Popen(
                command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
            )
            anchor = anchor_seconds(api, plane, 2 * n)
            with_services = anchor_seconds(api, plane, 2 * n, services=True)
            time.sleep(3)
            began = time.monotonic()

            def create(i: int) -> None:
                custom.create_namespaced_custom_object(
                    "seaway.dev", "v1alpha1", "default", "modeldeployments", md(i)
                )

            with ThreadPoolExecutor(16) as pool:
                list(pool.map(create, range(n)))
            deadline = began + max(300.0, n * 1.0)
            ready, ready_at, pods = 0, None, 0
            apps = client.AppsV1Api(api)
            while time.monotonic() < deadline:
                if ready_at is not None:
                    pods = available(apps, "default", MD_LABEL)
                    if pods == 2 * n:
                        break
                    time.sleep(1)
                    continue
                items = custom.list_namespaced_custom_object(
                    "seaway.dev", "v1alpha1", "default", "modeldeployments"
                )["items"]
                ready = sum(
                    any(c["type"] == "Ready" and c["status"] == "True"
                        for c in i.get("status", {}).get("conditions", []))
                    for i in items
                )  # fmt: skip
                if ready == n:
                    ready_at = time.monotonic() - began
                    continue
                time.sleep(1)
            converged = time.monotonic() - began
            cpu = cpu_seconds(operator.pid)
            spent = phases(custom, api)
            before = writes(plane)
            time.sleep(idle_seconds)
            idle = writes(plane) - before
            peak = rss_kb(operator.pid)
            operator.send_signal(signal.SIGTERM)
            operator.wait(timeout=60)
            found = re.findall(r"API requests: ([^;\n]*)(?:; by kind: (.*))?", log.read_text())
            methods, kinds = found[-1] if found else ("?", "?")
            total = sum(int(p.split()[0]) for p in methods.split(", ") if p[:1].isdigit())
            return {
                "n": n,
                "ready_s": round(ready_at, 1) if ready_at is not None else None,
                "converge_s": round(converged, 1),
                "ready": ready,
                "available": pods,
                "anchor_s": round(anchor, 1),
                "ratio_to_anchor": round(converged / anchor, 2),
                "anchor_services_s": round(with_services, 1),
                "ratio_to_anchor_services": round(converged / with_services, 2),
                "requests_per_md": round(total / n, 1),
                "per_md": per_object(methods, n),
                "per_md_by_kind": per_object(kinds, n),
                "operator_requests": methods,
                "rss_mb": round(peak / 1024),
                "cpu_s": round(cpu, 1),
                "idle_writes_per_min": round(idle * 60 / idle_seconds, 1),
                "load": f"{loads} -> {load()}",
                "phases_p50_p90_max_s": spent,
            }
        finally:
            if operator is not None and operator.poll() is None:
                operator.kill()
            plane.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle measurement")
    parser.add_argument(
        "--router-service-account",
        metavar="NAME",
        help="run every router as this one ServiceAccount (the operator's"
        " SEAWAY_ROUTER_SERVICE_ACCOUNT) instead of one account, Role and RoleBinding each",
    )
    parser.add_argument("--workers", type=int, help="the operator's --workers (default: its own)")
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        print(f"[bench] N={n}: starting a fresh plane", file=sys.stderr, flush=True)
        row = run(n, args.idle, args.router_service_account, args.workers)
        print(f"[bench] {json.dumps(row)}", file=sys.stderr, flush=True)
        rows.append(row)
    print(
        f"{'N':>5} {'ready s':>8} {'converge s':>11} {'anchor s':>9} {'ratio':>6}"
        f" {'+svc s':>7} {'ratio':>6} {'ready':>6} {'RSS MB':>7} {'CPU s':>6}"
        f" {'idle w/min':>11} {'req/MD':>7}  load (1/5/15 min)"
    )
    for r in rows:
        print(
            f"{r['n']:>5} {r['ready_s']!s:>8} {r['converge_s']:>11} {r['anchor_s']:>9}"
            f" {r['ratio_to_anchor']:>6} {r['anchor_services_s']:>7}"
            f" {r['ratio_to_anchor_services']:>6} {r['ready']:>6} {r['rss_mb']:>7}"
            f" {r['cpu_s']:>6} {r['idle_writes_per_min']:>11} {r['requests_per_md']:>7}"
            f"  {r['load']}"
        )
    for r in rows:
        print(f"N={r['n']} requests per ModelDeployment: {r['per_md']}")
        print(f"    by resource: {r['per_md_by_kind']}")
        print(f"    seconds p50/p90/max after the one before: {r['phases_p50_p90_max_s']}")


if __name__ == "__main__":
    main()
