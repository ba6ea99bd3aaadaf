"""Benchmark seaway-router against going direct and against nginx, in one run on one machine.

Not a test: run it on demand and read the ratios (the anchors are measured in the same run,
interleaved point by point, so machine speed and background load mostly cancel out).

Targets, all on 127.0.0.1, all in front of the same two upstreams weighted 90/10:
  direct          wrk straight to the first upstream (the floor: no proxy at all)
  seaway-router   this repository's router, one process, routes file with weights 90/10
  nginx-1w        nginx as a reverse proxy, ``upstream`` with ``weight=90``/``weight=10`` and
                  keep-alive to the upstreams, one worker process (one core, like the router)
  nginx-2w        the same with two workers (all the cores this VM has)

Upstreams: ``static`` = a separate nginx answering a fixed ~150-byte V2 infer response (cheap,
so the proxy's own cost shows); ``model`` = two real ``seaway-serve`` processes serving a
LogisticRegression bundle (what the router fronts in production; only at ~1,000 req/s).

Loads (``wrk``, one thread, keep-alive, a one-row 30-feature V2 infer POST):
  ~1k req/s   10 connections, each waiting 10 ms between requests (wrk's ``delay()``), so the
              rate is about 1,000/s and latency is measured without queueing
  c16, c64    closed loop at 16 and 64 connections: throughput

Needs ``nginx`` and ``wrk`` (Debian: ``apt-get install -y nginx wrk``); nginx is started with
its own prefix and config in a temporary directory, never as the system service. Usage:

    .venv/bin/python bench/router.py --duration 5 --out router-bench.json
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")
N_FEATURES = 30
WRK_SCRIPT = """
local pause = 0
function init(args)
  local fh = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = fh:read("*a")
  fh:close()
  wrk.headers["Content-Type"] = "application/json"
  pause = tonumber(args[2] or "0")
end
function delay()
  return pause
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"non2xx":%d,"socket_errors":%d,'
    .. '"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""
#: name -> (connections, ms each connection waits between requests)
LOADS = {"~1k req/s": (10, 10), "c16": (16, 0), "c64": (64, 0)}
STATIC_ANSWER = ('{"model_name":"m","model_version":"%d","id":"bench","outputs":[{"name":'
                 '"predict","datatype":"INT64","shape":[1],"data":[1]}]}')


# ------------------------------------------------------------------------------ processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its children (nginx workers)."""
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat[stat.rfind(")") + 2:].split()[1]) == pid:
                    pids.append(int(entry))
    total = 0
    for p in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rfind(")") + 2:].split()
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def get(port: int, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("POST" if body is not None else "GET", path, body=body,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_http(port: int, path: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            if get(port, path)[0] == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"127.0.0.1:{port}{path} did not answer 200 in {limit} s")


@dataclass
class Proc:
    name: str
    proc: subprocess.Popen[bytes]
    port: int

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def spawn(name: str, argv: list[str], port: int, work: Path, env: dict[str, str] | None = None
          ) -> Proc:
    log = (work / f"{name}.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                            env={**os.environ, **(env or {})})
    log.close()
    return Proc(name, proc, port)


def nginx(name: str, work: Path, workers: int, servers: str, port: int) -> Proc:
    """An nginx with its own prefix, config, pid and logs under ``work``, in the foreground;
    ``servers`` goes into its ``http`` block, ``port`` is where it is reached."""
    prefix = work / name
    (prefix / "tmp").mkdir(parents=True)
    conf = prefix / "nginx.conf"
    temp = "".join(f"  {kind}_temp_path {prefix}/tmp/{kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf.write_text(
        f"worker_processes {workers};\npid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/error.log warn;\nevents {{ worker_connections 4096; }}\n"
        f"http {{\n  access_log off;\n  keepalive_requests 1000000;\n{temp}{servers}}}\n")
    return spawn(name, ["nginx", "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
                 port, work)


def static_upstreams(work: Path) -> tuple[Proc, list[int]]:
    ports = [free_port(), free_port()]
    servers = "".join(
        f"  server {{ listen {HOST}:{port}; location / {{ default_type application/json; "
        f"return 200 '{STATIC_ANSWER % (i + 1)}'; }} }}\n" for i, port in enumerate(ports))
    return nginx("upstreams", work, 1, servers, ports[0]), ports


def nginx_proxy(name: str, workers: int, upstreams: list[int], work: Path) -> Proc:
    port = free_port()
    servers = (
        f"  upstream revisions {{\n    server {HOST}:{upstreams[0]} weight=90;\n"
        f"    server {HOST}:{upstreams[1]} weight=10;\n    keepalive 256;\n  }}\n"
        f"  server {{\n    listen {HOST}:{port};\n    location / {{\n"
        "      proxy_pass http://revisions;\n      proxy_http_version 1.1;\n"
        '      proxy_set_header Connection "";\n    }\n  }\n')
    return nginx(name, work, workers, servers, port)


def router(upstreams: list[int], work: Path, name: str = "seaway-router") -> Proc:
    port = free_port()
    routes = work / f"{name}.json"
    routes.write_text(json.dumps({"version": 1, "modelDeployment": "bench", "backends": [
        {"name": "bench-r1", "revision": 1, "url": f"http://{HOST}:{upstreams[0]}",
         "weight": 90},
        {"name": "bench-r2", "revision": 2, "url": f"http://{HOST}:{upstreams[1]}",
         "weight": 10}]}))
    return spawn(name, [sys.executable, "-m", "seaway_serving.router", "--config", str(routes),
                        "--host", HOST, "--port", str(port), "--log-level", "WARNING"],
                 port, work)


def model_servers(work: Path) -> tuple[list[Proc], bytes]:
    """Two seaway-serve revisions of a LogisticRegression on breast_cancer; the payload."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    from seaway_serving import bundle

    x, y = load_breast_cancer(return_X_y=True)
    model = LogisticRegression(max_iter=10000).fit(x, y)
    bundle.create_from_estimator(model, work / "bundle", name="m", data=x)
    procs = []
    for revision in (1, 2):
        port = free_port()
        procs.append(spawn(f"seaway-serve-r{revision}", [sys.executable, "-m", "seaway_serving"],
                           port, work, {
                               "SEAWAY_BUNDLE": str(work / "bundle"), "SEAWAY_MODEL_NAME": "m",
                               "SEAWAY_REVISION": str(revision), "SEAWAY_HOST": HOST,
                               "SEAWAY_PORT": str(port), "SEAWAY_LOG_LEVEL": "WARNING",
                               "SEAWAY_WORK_DIR": str(work / f"serve-{revision}"),
                               "SEAWAY_TERMINATION_LOG": str(work / f"term-{revision}")}))
    return procs, payload(x[0].tolist())


def payload(row: list[float]) -> bytes:
    return json.dumps({"inputs": [{"name": "input-0", "datatype": "FP64",
                                   "shape": [1, len(row)], "data": row}]}).encode()


# ------------------------------------------------------------------------------ load
def wrk(port: int, conns: int, pause_ms: int, seconds: int, work: Path) -> dict[str, Any]:
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s", "-s",
           str(work / "post.lua"), f"http://{HOST}:{port}/v2/models/m/infer", "--",
           str(work / "payload.json"), str(pause_ms)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"wrk failed: {out.stdout}{out.stderr}")
    res: dict[str, Any] = json.loads(lines[-1])
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
    return res


def measure(target: Proc, cpu_of: Proc, load: str, args: argparse.Namespace,
            work: Path) -> dict[str, Any]:
    conns, pause = LOADS[load]
    wrk(target.port, conns, pause, args.warmup, work)
    cpu0 = tree_cpu_s(cpu_of.proc.pid)
    res = wrk(target.port, conns, pause, args.duration, work)
    res["cpu_us_per_req"] = (tree_cpu_s(cpu_of.proc.pid) - cpu0) / max(1, res["requests"]) * 1e6
    print(f"  {target.name:14s} {load:10s} {res['rps']:8.0f} req/s  p50 "
          f"{res['p50_us'] / 1e3:6.2f} ms  p99 {res['p99_us'] / 1e3:6.2f} ms  "
          f"{res['cpu_us_per_req']:5.0f} µs CPU/req  non-2xx {res['non2xx']}  "
          f"socket errors {res['socket_errors']}", flush=True)
    return res


@contextlib.contextmanager
def running(procs: list[Proc]) -> Iterator[None]:
    """Wait until each answers ``/v2/models/m/ready``; stop them all at the end."""
    try:
        for p in procs:
            if p.proc.poll() is not None:
                raise RuntimeError(f"{p.name} exited; see its log")
            wait_http(p.port, "/v2/models/m/ready")
        yield
    finally:
        for p in reversed(procs):
            p.stop()


def scenario(upstream: str, upstream_procs: list[Proc], ports: list[int], loads: list[str],
             args: argparse.Namespace, work: Path, check: bytes) -> list[dict[str, Any]]:
    proxies = [router(ports, work, f"seaway-router-{upstream}"),
               nginx_proxy(f"nginx-1w-{upstream}", 1, ports, work)]
    if upstream == "static":
        proxies.append(nginx_proxy(f"nginx-2w-{upstream}", 2, ports, work))
    direct = Proc("direct", upstream_procs[0].proc, ports[0])
    results = []
    with running(upstream_procs), running(proxies):
        for p in proxies:
            status, body = get(p.port, "/v2/models/m/infer", check)
            if status != 200:
                raise RuntimeError(f"{p.name} answered {status}: {body[:200]!r}")
        targets = [(direct, upstream_procs[0])] + [(p, p) for p in proxies]
        for load in loads:
            for target, cpu_of in targets:
                res = measure(target, cpu_of, load, args, work)
                name = target.name.removesuffix(f"-{upstream}")
                results.append({"upstream": upstream, "target": name, "load": load, **res})
    return results


# ------------------------------------------------------------------------------ report
def table(results: list[dict[str, Any]]) -> str:
    rows = ["| upstreams | load | target | req/s | p50 ms | p99 ms | proxy CPU µs/req |",
            "|---|---|---|---:|---:|---:|---:|"]
    for r in results:
        cpu = "—" if r["target"] == "direct" else f"{r['cpu_us_per_req']:.0f}"
        rows.append(f"| {r['upstream']} | {r['load']} | {r['target']} | {r['rps']:.0f} | "
                    f"{r['p50_us'] / 1e3:.2f} | {r['p99_us'] / 1e3:.2f} | {cpu} |")
    return "\n".join(rows)


def verdicts(results: list[dict[str, Any]]) -> str:
    by = {(r["upstream"], r["load"], r["target"]): r for r in results}
    lines = []
    for upstream in ("static", "model"):
        direct = by.get((upstream, "~1k req/s", "direct"))
        for proxy in ("seaway-router", "nginx-1w"):
            r = by.get((upstream, "~1k req/s", proxy))
            if direct and r:
                p50 = (r["p50_us"] - direct["p50_us"]) / 1e3
                p99 = (r["p99_us"] - direct["p99_us"]) / 1e3
                lines.append(f"{upstream}: {proxy} adds p50 {p50:+.2f} ms, p99 {p99:+.2f} ms at "
                             f"{r['rps']:.0f} req/s (goal for the router: p99 <= +1 ms)")
    for load in ("c16", "c64"):
        ours = by.get(("static", load, "seaway-router"))
        for anchor in ("nginx-1w", "nginx-2w"):
            them = by.get(("static", load, anchor))
            if ours and them:
                lines.append(f"static {load}: seaway-router at {ours['rps'] / them['rps']:.0%} of "
                             f"{anchor}'s throughput (goal: >= 50%)")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--loads", default=",".join(LOADS))
    ap.add_argument("--no-model-servers", action="store_true",
                    help="Skip the scenario with two real seaway-serve upstreams")
    ap.add_argument("--out", type=Path, help="Also write the raw results here (JSON)")
    args = ap.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found (Debian: apt-get install -y nginx wrk)")
    loads = args.loads.split(",")
    with tempfile.TemporaryDirectory(prefix="seaway-router-bench-") as tmp:
        work = Path(tmp)
        (work / "post.lua").write_text(WRK_SCRIPT)
        body = payload([float(i) for i in range(N_FEATURES)])
        (work / "payload.json").write_bytes(body)
        print("static upstreams (nginx returning a fixed answer):", flush=True)
        upstreams, ports = static_upstreams(work)
        results = scenario("static", [upstreams], ports, loads, args, work, body)
        if not args.no_model_servers:
            print("model upstreams (two seaway-serve revisions, LogisticRegression):",
                  flush=True)
            servers, body = model_servers(work)
            (work / "payload.json").write_bytes(body)
            results += scenario("model", servers, [s.port for s in servers],
                                [load for load in loads if load.startswith("~")], args, work,
                                body)
    nginx_version = subprocess.run(["nginx", "-v"], capture_output=True, text=True,
                                   check=False).stderr.strip()
    print()
    print(f"{len(os.sched_getaffinity(0))} cores; wrk 1 thread, {args.duration:g} s per point "
          f"after {args.warmup:g} s warm-up; {nginx_version}; python {sys.version.split()[0]}")
    print(table(results))
    print()
    print(verdicts(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
