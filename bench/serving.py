"""Benchmark seaway-serve against MLServer, KServe and a bare endpoint, in one run on one machine.

Not a test: run it on demand and read the ratios (each anchor is measured in the same run, so
machine speed cancels out). For each model (see MODELS: a linear model, a scaler + linear
Pipeline, and the tree ensembles of the fast path, on scikit-learn's breast_cancer data, 75/25
stratified split, seed 0; regressors fit the 0/1 label as a number) and each server config, a
fresh server process is started on 127.0.0.1, timed to ready, checked for one correct answer,
warmed up, then driven by ``wrk`` (1 thread, keep-alive, one-row V2 requests) at each
concurrency; RSS of its whole process tree is read after the load; then it is stopped by PID.

Configs:
  seaway            seaway-serve with its defaults (this repository, .venv)
  bare              bench/bare_endpoint.py: raw ASGI on uvicorn + httptools, the floor
  mlserver-default  MLServer + mlserver-sklearn as shipped (parallel_workers=1)
  mlserver-pw0      the same with parallel workers off (inference in the server process)
  kserve            KServe's ModelServer with bench/kserve_model.py, KServe's defaults

uvicorn (for ``bare``) comes with the dev extra (``make venv``) or ``pip install -e .[bench]``.
MLServer and KServe cannot share Seaway's virtualenv (their pins conflict with ours and with
each other); create them apart, e.g.:

    SK=$(.venv/bin/python -c 'import sklearn; print(sklearn.__version__)')
    python3 -m venv ~/.cache/seaway/mlserver-venv
    ~/.cache/seaway/mlserver-venv/bin/pip install mlserver mlserver-sklearn "uvloop<0.22" \
        scikit-learn==$SK
    python3 -m venv ~/.cache/seaway/kserve-bench-venv
    ~/.cache/seaway/kserve-bench-venv/bin/pip install kserve scikit-learn==$SK

(uvloop<0.22: with newer uvloop MLServer 1.7's default inference worker dies at start.)
Needs ``wrk`` (Debian: apt-get install wrk). Usage:

    .venv/bin/python bench/serving.py --duration 5 --out bench-results.json

``--paired N`` measures one client only, for issue 17's "no added latency" goal, in a way a busy
machine disturbs less: all configs of a model are up at once and ``wrk -c1`` runs 1 s on each in
turn (in a shuffled order), N rounds; it prints the median p50 and server CPU per request of
each config and, per round, the ratio of each config's p50 to the first config's:

    .venv/bin/python bench/serving.py --paired 20 --configs bare,seaway --models logreg,pipeline
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn import ensemble
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from seaway_serving import bundle

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
TICKS = os.sysconf("SC_CLK_TCK")
WRK_SCRIPT = """
function init(args)
  local fh = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = fh:read("*a")
  fh:close()
  wrk.headers["Content-Type"] = "application/json"
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


# ------------------------------------------------------------------------------ models
MODELS: dict[str, Any] = {
    "logreg": lambda: LogisticRegression(max_iter=10000, random_state=0),
    "pipeline": lambda: make_pipeline(StandardScaler(), LogisticRegression(random_state=0)),
    "rf": lambda: ensemble.RandomForestClassifier(n_estimators=100, random_state=0),
    "et": lambda: ensemble.ExtraTreesClassifier(n_estimators=100, random_state=0),
    "gb": lambda: ensemble.GradientBoostingClassifier(random_state=0),
    "hgb": lambda: ensemble.HistGradientBoostingClassifier(random_state=0),
    "rf-reg": lambda: ensemble.RandomForestRegressor(n_estimators=100, random_state=0),
    "et-reg": lambda: ensemble.ExtraTreesRegressor(n_estimators=100, random_state=0),
    "gb-reg": lambda: ensemble.GradientBoostingRegressor(random_state=0),
    "hgb-reg": lambda: ensemble.HistGradientBoostingRegressor(random_state=0),
}


def prepare(work: Path, names: list[str]) -> dict[str, Any]:
    """Train the models; write a Seaway bundle, an MLServer model dir and the payload."""
    x, y = load_breast_cancer(return_X_y=True)
    x_tr, x_te, y_tr, _ = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    expected = {}
    for name in names:
        est = MODELS[name]()
        est.fit(x_tr, y_tr.astype(np.float64) if name.endswith("-reg") else y_tr)
        d = work / name
        bundle.create_from_estimator(est, d / "bundle", name=name, data=x_tr)
        mls = d / "mlserver"
        mls.mkdir(parents=True)
        shutil.copy(d / "bundle" / "model.joblib", mls / "model.joblib")
        (mls / "model-settings.json").write_text(json.dumps({
            "name": name, "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib"}}))
        expected[name] = est.predict(x_te[:1]).tolist()[0]
    row = x_te[0]
    (work / "payload.json").write_text(json.dumps({"inputs": [{
        "name": "input-0", "shape": [1, 30], "datatype": "FP64", "data": row.tolist()}]}))
    (work / "post.lua").write_text(WRK_SCRIPT)
    return expected


# ------------------------------------------------------------------------------ processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def process_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rfind(")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_rss_mib(pid: int) -> float:
    total = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def tree_cpu_s(pid: int) -> float:
    total = 0
    for p in process_tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rfind(")") + 2:].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / TICKS


def http_call(port: int, method: str, path: str, body: bytes | None = None,
              timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body,
                     headers={"Content-Type": "application/json"} if body else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    port: int
    started: float
    log: Any
    pids: list[int] = field(default_factory=list)


def start(config: str, name: str, work: Path, args: argparse.Namespace) -> Running:
    port = free_port()
    env = dict(os.environ)
    model_dir = work / name
    if config == "seaway":
        cmd = [str(Path(sys.executable).with_name("seaway-serve")), "--bundle",
               str(model_dir / "bundle")]
        env.update(SEAWAY_HOST=HOST, SEAWAY_PORT=str(port),
                   SEAWAY_WORK_DIR=str(work / "seaway-work"),
                   SEAWAY_TERMINATION_LOG=str(work / "termination-log"))
    elif config == "bare":
        cmd = [sys.executable, str(HERE / "bare_endpoint.py"), "--name", name, "--model",
               str(model_dir / "bundle" / "model.joblib"), "--port", str(port)]
    elif config.startswith("mlserver"):
        cmd = [str(args.mlserver_venv / "bin" / "mlserver"), "start",
               str(model_dir / "mlserver")]
        env.update(MLSERVER_HOST=HOST, MLSERVER_HTTP_PORT=str(port),
                   MLSERVER_GRPC_PORT=str(free_port()),
                   MLSERVER_METRICS_PORT=str(free_port()))
        if config == "mlserver-pw0":
            env["MLSERVER_PARALLEL_WORKERS"] = "0"
    elif config == "kserve":
        cmd = [str(args.kserve_venv / "bin" / "python"), str(HERE / "kserve_model.py"),
               "--name", name, "--model", str(model_dir / "bundle" / "model.joblib"),
               "--http_port", str(port), "--grpc_port", str(free_port())]
    else:
        raise SystemExit(f"unknown config {config}")
    log = (work / f"{config}-{name}.log").open("wb")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            cwd=model_dir)
    return Running(proc, port, t0, log)


def wait_ready(run: Running, name: str, limit: float = 120.0) -> float:
    while time.monotonic() - run.started < limit:
        if run.proc.poll() is not None:
            raise RuntimeError(f"server exited early with {run.proc.returncode}")
        try:
            if http_call(run.port, "GET", f"/v2/models/{name}/ready", timeout=1)[0] == 200:
                return time.monotonic() - run.started
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError("server not ready in time")


def stop(run: Running) -> None:
    """SIGTERM the main PID; after 15 s SIGKILL whatever of its recorded tree is left."""
    pids = process_tree(run.proc.pid) if run.proc.poll() is None else [run.proc.pid]
    if run.proc.poll() is None:
        run.proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        run.proc.wait(timeout=15)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    if run.proc.poll() is None:
        run.proc.wait(timeout=10)
    run.log.close()


def wrk(port: int, name: str, conns: int, seconds: int, work: Path) -> dict[str, Any]:
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s", "-s",
           str(work / "post.lua"), f"http://{HOST}:{port}/v2/models/{name}/infer", "--",
           str(work / "payload.json")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"wrk failed: {out.stdout}{out.stderr}")
    res: dict[str, Any] = json.loads(lines[-1])
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
    return res


# ------------------------------------------------------------------------------ main
def same_answer(got: Any, want: Any) -> bool:
    """Servers encode floats differently (shortest repr or not): equal to 1e-9 relative."""
    if isinstance(want, float):
        return isinstance(got, (int, float)) and abs(got - want) <= 1e-9 * max(1.0, abs(want))
    return bool(got == want)


def run_one(config: str, name: str, work: Path, args: argparse.Namespace,
            expected: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"config": config, "model": name}
    run = start(config, name, work, args)
    try:
        rec["ready_s"] = round(wait_ready(run, name), 2)
        status, body = http_call(run.port, "POST", f"/v2/models/{name}/infer",
                                 (work / "payload.json").read_bytes(), timeout=30)
        answer = json.loads(body)["outputs"][0]["data"][0]
        if status != 200 or not same_answer(answer, expected):
            raise RuntimeError(f"wrong answer: {status} {body[:200]!r}")
        wrk(run.port, name, 16, args.warmup, work)
        rec["runs"] = {}
        for c in args.conns:
            cpu0 = tree_cpu_s(run.proc.pid)
            r = wrk(run.port, name, c, args.duration, work)
            r["cpu_us_per_req"] = (tree_cpu_s(run.proc.pid) - cpu0) / max(1, r["requests"]) * 1e6
            rec["runs"][c] = r
            print(f"  {config:17s} {name:8s} c={c:<3d} {r['rps']:9.0f} req/s  "
                  f"p50 {r['p50_us'] / 1e3:7.2f} ms  p99 {r['p99_us'] / 1e3:8.2f} ms  "
                  f"non-2xx {r['non2xx']} socket errors {r['socket_errors']}", flush=True)
        rec["rss_mib"] = round(tree_rss_mib(run.proc.pid), 1)
        rec["procs"] = len(process_tree(run.proc.pid))
    except Exception as exc:  # record and go on with the other configs
        rec["error"] = repr(exc)
        print(f"  {config} {name}: ERROR {exc!r}", flush=True)
    finally:
        stop(run)
    return rec


def paired(configs: list[str], names: list[str], work: Path, args: argparse.Namespace,
           expected: dict[str, Any]) -> None:
    """One-client rounds with every config up at once; ratios against the first config."""
    rnd = random.Random(0)
    for name in names:
        runs = {config: start(config, name, work, args) for config in configs}
        try:
            for config, run in runs.items():
                wait_ready(run, name)
                status, body = http_call(run.port, "POST", f"/v2/models/{name}/infer",
                                         (work / "payload.json").read_bytes(), timeout=30)
                if status != 200 or not same_answer(json.loads(body)["outputs"][0]["data"][0],
                                                    expected[name]):
                    raise SystemExit(f"{config} {name}: wrong answer: {status} {body[:200]!r}")
                wrk(run.port, name, 1, args.warmup, work)
            p50: dict[str, list[float]] = {c: [] for c in configs}
            cpu: dict[str, list[float]] = {c: [] for c in configs}
            for i in range(args.paired):
                order = list(configs)
                rnd.shuffle(order)
                for config in order:
                    pid = runs[config].proc.pid
                    cpu0 = tree_cpu_s(pid)
                    r = wrk(runs[config].port, name, 1, 1, work)
                    cpu[config].append((tree_cpu_s(pid) - cpu0) / max(1, r["requests"]) * 1e6)
                    p50[config].append(r["p50_us"])
                print(f"  {name} round {i + 1}/{args.paired}: " + ", ".join(
                    f"{c} {p50[c][-1]:.0f} µs" for c in configs), flush=True)
        finally:
            for run in runs.values():
                stop(run)
        anchor = configs[0]
        print(f"{name}: median p50 / server CPU per request over {args.paired} rounds of 1 s:")
        for c in configs:
            line = (f"  {c:17s} {statistics.median(p50[c]):6.0f} µs  "
                    f"{statistics.median(cpu[c]):6.0f} µs/req")
            if c != anchor:
                ratios_ = sorted(a / b for a, b in zip(p50[c], p50[anchor], strict=True))
                q1, q3 = ratios_[len(ratios_) // 4], ratios_[(3 * len(ratios_)) // 4]
                within = sum(x <= 1.05 for x in ratios_)
                line += (f"  p50 / {anchor}'s per round: median {statistics.median(ratios_):.2f}x"
                         f" (quartiles {q1:.2f}-{q3:.2f}x), within +5% in {within}/"
                         f"{len(ratios_)} rounds")
            print(line, flush=True)


def table(results: list[dict[str, Any]], conns: list[int]) -> str:
    rows = ["| server | model | conc. | req/s | p50 ms | p99 ms | server CPU µs/req | "
            "RSS MiB | ready s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for rec in results:
        if "error" in rec:
            rows.append(f"| {rec['config']} | {rec['model']} | - | failed: {rec['error']} "
                        "| | | | | |")
            continue
        for c in conns:
            r = rec["runs"][c]
            if not r["requests"]:
                rows.append(f"| {rec['config']} | {rec['model']} | {c} | 0 (none answered "
                            f"in {args_duration(r)} s) | - | - | - | {rec['rss_mib']:.0f} | "
                            f"{rec['ready_s']:.2f} |")
                continue
            rows.append(f"| {rec['config']} | {rec['model']} | {c} | {r['rps']:.0f} | "
                        f"{r['p50_us'] / 1e3:.2f} | {r['p99_us'] / 1e3:.2f} | "
                        f"{r['cpu_us_per_req']:.0f} | {rec['rss_mib']:.0f} | "
                        f"{rec['ready_s']:.2f} |")
    return "\n".join(rows)


def args_duration(run: dict[str, Any]) -> str:
    return f"{run['duration_us'] / 1e6:.0f}"


def ratios(results: list[dict[str, Any]], conns: list[int]) -> str:
    by = {(r["config"], r["model"]): r for r in results if "error" not in r}
    rows = ["| model | conc. | vs | req/s ratio | p50 ratio | p99 ratio | RSS ratio |",
            "|---|---:|---|---:|---:|---:|---:|"]
    for model in dict.fromkeys(r["model"] for r in results):
        ours = by.get(("seaway", model))
        if ours is None:
            continue
        for other in ("mlserver-default", "mlserver-pw0", "kserve", "bare"):
            them = by.get((other, model))
            if them is None:
                continue
            for c in conns:
                a, b = ours["runs"][c], them["runs"][c]
                if not b["requests"]:  # nothing answered in the window: no ratio
                    rows.append(f"| {model} | {c} | {other} | {other} answered none | | | |")
                    continue
                rows.append(f"| {model} | {c} | {other} | {a['rps'] / b['rps']:.2f}x | "
                            f"{a['p50_us'] / max(1, b['p50_us']):.2f}x | "
                            f"{a['p99_us'] / max(1, b['p99_us']):.2f}x | "
                            f"{ours['rss_mib'] / them['rss_mib']:.2f}x |")
    return "\n".join(rows)


def goals(results: list[dict[str, Any]]) -> str:
    """Issue 17's goals at one client, as measured in this run."""
    by = {(r["config"], r["model"]): r["runs"][1] for r in results
          if "error" not in r and 1 in r["runs"]}
    rows = ["| goal (c=1) | measured | met |", "|---|---|---|"]
    rf = by.get(("seaway", "rf"))
    if rf is not None:
        p50 = rf["p50_us"] / 1e3
        met = "yes" if p50 <= 0.5 else "no"
        rows.append(f"| rf: seaway p50 <= 0.5 ms | {p50:.2f} ms | {met} |")
        for other in ("mlserver-default", "mlserver-pw0"):
            them = by.get((other, "rf"))
            if them is not None and them["requests"]:
                x = rf["rps"] / them["rps"]
                rows.append(f"| rf: seaway req/s >= 3x {other} | {rf['rps']:.0f} vs "
                            f"{them['rps']:.0f} req/s: {x:.2f}x | {'yes' if x >= 3 else 'no'} |")
    for model in dict.fromkeys(r["model"] for r in results):
        ours, bare = by.get(("seaway", model)), by.get(("bare", model))
        if ours is None or bare is None or not bare["requests"]:
            continue
        x = ours["p50_us"] / bare["p50_us"]
        rows.append(f"| {model}: seaway p50 <= bare p50 + 5% | {ours['p50_us'] / 1e3:.2f} vs "
                    f"{bare['p50_us'] / 1e3:.2f} ms: {x:.2f}x | {'yes' if x <= 1.05 else 'no'} |")
    return "\n".join(rows)


def machine() -> str:
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    return f"{os.cpu_count()} cores, load average {load} (1/5/15 min)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="seaway,bare,mlserver-default,mlserver-pw0,kserve")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--conns", default="1,16,64")
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--mlserver-venv", type=Path,
                    default=Path.home() / ".cache" / "seaway" / "mlserver-venv")
    ap.add_argument("--kserve-venv", type=Path,
                    default=Path.home() / ".cache" / "seaway" / "kserve-bench-venv")
    ap.add_argument("--out", type=Path, help="Also write the raw results here (JSON)")
    ap.add_argument("--paired", type=int, default=0, metavar="ROUNDS",
                    help="One-client paired rounds instead of the table (see above)")
    args = ap.parse_args()
    args.conns = [int(c) for c in args.conns.split(",")]
    configs = args.configs.split(",")
    names = args.models.split(",")
    problems = [f"unknown model {n} (known: {', '.join(MODELS)})" for n in names
                if n not in MODELS]
    if shutil.which("wrk") is None:
        problems.append("wrk not found (Debian: apt-get install wrk)")
    if "bare" in configs:
        try:
            import uvicorn  # noqa: F401
        except ImportError:
            problems.append("uvicorn not installed (for the bare config): make venv, or "
                            "pip install -e '.[bench]'")
    if any(c.startswith("mlserver") for c in configs) and not (
            args.mlserver_venv / "bin" / "mlserver").exists():
        problems.append(f"no MLServer in {args.mlserver_venv} (--mlserver-venv); see this "
                        "script's docstring, or leave its configs out with --configs")
    if "kserve" in configs and not (args.kserve_venv / "bin" / "python").exists():
        problems.append(f"no KServe in {args.kserve_venv} (--kserve-venv); see this "
                        "script's docstring, or leave it out with --configs")
    if args.paired < 0 or (args.paired and len(configs) < 2):
        problems.append("--paired needs a positive number of rounds and at least two configs")
    if problems:
        raise SystemExit("\n".join(problems))
    before = machine()
    if args.paired:
        with tempfile.TemporaryDirectory(prefix="seaway-bench-") as tmp:
            work = Path(tmp)
            expected = prepare(work, names)
            paired(configs, names, work, args, expected)
        print(f"{len(os.sched_getaffinity(0))} usable cores; before the run {before}; after it "
              f"{machine()}")
        return
    with tempfile.TemporaryDirectory(prefix="seaway-bench-") as tmp:
        work = Path(tmp)
        expected = prepare(work, names)
        results = []
        for name in names:
            for config in configs:
                results.append(run_one(config, name, work, args, expected[name]))
    print()
    print(f"{len(os.sched_getaffinity(0))} usable cores; before the run {before}; after it "
          f"{machine()}")
    print(f"wrk 1 thread, {args.duration} s per point, one-row requests; python "
          f"{sys.version.split()[0]}, scikit-learn {sklearn_version()}, numpy {np.__version__}, "
          f"joblib {joblib.__version__}")
    if args.out:  # first, so that the raw results survive a failure below
        args.out.write_text(json.dumps(results, indent=2))
    print(table(results, args.conns))
    print()
    print(ratios(results, args.conns))
    print()
    print(goals(results))
    failed = [r for r in results if "error" in r]
    if failed:
        print(f"\n{len(failed)} configuration(s) failed, see their logs above")
        sys.exit(1)


def sklearn_version() -> str:
    import sklearn

    return str(sklearn.__version__)


if __name__ == "__main__":
    main()
