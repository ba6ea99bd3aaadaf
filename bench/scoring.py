"""Benchmark ``seaway-score``: rows/s of 1, 2 and 3 processes over one file, against pandas.

Not a test: run it on demand and read the ratios. The anchor is measured in the same run, on
the same file and model: scikit-learn's own ``predict`` (and ``predict_proba``) in one process
that reads the whole file with pandas, predicts, and writes Parquet, the simplest correct batch
scoring script (unbounded memory). Each figure is the wall time of whole processes (interpreter
start, model load, read, score, write), best of ``--repeat``, anchor and scorer runs interleaved.

The scorer runs as an Indexed Job's pods would: P processes at once, ``SEAWAY_SCORE_SHARDS=P``,
``JOB_COMPLETION_INDEX=0..P-1``, over one Parquet file split by row groups. On a machine with
fewer cores than P, the extra process shares a core: the growth with P is bounded by the cores.

    .venv/bin/python bench/scoring.py --rows 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.ensemble import RandomForestClassifier

from seaway_serving import bundle, contract

FEATURES = 20
SCORER = Path(sys.executable).parent / "seaway-score"

ANCHOR = """
import sys, joblib, numpy as np, pandas as pd
model = joblib.load(sys.argv[1])
df = pd.read_parquet(sys.argv[2])
x = df[[f"f{i}" for i in range(FEATURES)]].to_numpy(dtype=np.float64)
out = pd.DataFrame({"id": df["id"], "prediction": model.predict(x)})
proba = model.predict_proba(x)
for i, c in enumerate(model.classes_):
    out[f"proba_{c}"] = proba[:, i]
out.to_parquet(sys.argv[3])
""".replace("FEATURES", str(FEATURES))


def make_inputs(work: Path, rows: int) -> tuple[Path, Path, str]:
    rng = np.random.default_rng(0)
    x_train = rng.normal(size=(20_000, FEATURES))
    y = (x_train[:, 0] + x_train[:, 1] * x_train[:, 2] > 0).astype(int)
    model = RandomForestClassifier(n_estimators=50, max_depth=10, random_state=0, n_jobs=1)
    model.fit(x_train, y)
    manifest = bundle.create_from_estimator(model, work / "bundle", name="bench", data=x_train,
                                            feature_names=[f"f{i}" for i in range(FEATURES)])
    assert manifest.sha256
    cols = {"id": pa.array(np.arange(rows, dtype=np.int64))}
    cols.update({f"f{i}": pa.array(rng.normal(size=rows)) for i in range(FEATURES)})
    data = work / "input.parquet"
    pq.write_table(pa.table(cols), data, row_group_size=50_000)
    return work / "bundle", data, manifest.sha256


def run_anchor(work: Path, model_dir: Path, data: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", ANCHOR, str(model_dir / "model.joblib"), str(data),
                    str(work / "anchor.parquet")], check=True)
    return time.perf_counter() - t0


def run_scorer(work: Path, model_dir: Path, digest: str, data: Path, processes: int,
               attempt: int) -> float:
    out = work / f"out-{processes}-{attempt}"
    base = {k: v for k, v in os.environ.items() if not k.startswith("SEAWAY_")}
    env = dict(base)
    env.update((k, v) for k, v in contract.server_env(
        bundle=str(model_dir), model_format="sklearn-joblib", digest=digest,
        allow_unverified=False, model_name="bench", revision=1, port=0)
        if k not in (contract.HOST, contract.PORT, contract.TERMINATION_LOG))
    env.update(contract.score_env(input_uri=str(data), output_uri=str(out), shards=processes,
                                  run_id=f"bench-{processes}-{attempt}", key_columns=("id",),
                                  methods=("predict", "predict_proba")))
    env["SEAWAY_WORK_DIR"] = str(work / "scratch")
    t0 = time.perf_counter()
    procs = [subprocess.Popen([str(SCORER)], env={**env, "JOB_COMPLETION_INDEX": str(i)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for i in range(processes)]
    codes = [p.wait() for p in procs]
    seconds = time.perf_counter() - t0
    if any(codes):
        raise SystemExit(f"seaway-score failed with exit codes {codes}")
    manifest = json.loads((out / "_manifest.json").read_text())
    shutil.rmtree(out)
    return seconds if manifest["totals"]["rows"] > 0 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="seaway-bench-scoring-"))
    try:
        print(f"Preparing {args.rows:,} rows x {FEATURES} features (Parquet) and a random "
              "forest of 50 trees...", file=sys.stderr)
        model_dir, data, digest = make_inputs(work, args.rows)
        best: dict[str, float] = {}
        for attempt in range(args.repeat):
            timings = {"anchor": run_anchor(work, model_dir, data)}
            for p in (1, 2, 3):
                timings[f"seaway-score x{p}"] = run_scorer(work, model_dir, digest, data, p,
                                                           attempt)
            for name, seconds in timings.items():
                best[name] = min(best.get(name, float("inf")), seconds)
            print(f"round {attempt + 1}: " + ", ".join(f"{k} {v:.2f}s"
                                                     for k, v in timings.items()),
                  file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    anchor_rate = args.rows / best["anchor"]
    load = os.getloadavg()
    print(f"{args.rows:,} rows, {FEATURES} features, RandomForest 50 trees, predict + "
          f"predict_proba; {os.cpu_count()} cores, load {load[0]:.1f}; best of {args.repeat}")
    print(f"{'':<18}{'seconds':>9}{'rows/s':>12}{'per process':>13}{'vs anchor':>11}")
    figures = {}
    for name, seconds in best.items():
        processes = 1 if name == "anchor" else int(name.rsplit("x", 1)[1])
        rate = args.rows / seconds
        figures[name] = {"seconds": round(seconds, 3), "rows_per_s": round(rate),
                         "per_process": round(rate / processes), "ratio": round(
                             rate / anchor_rate, 3)}
        print(f"{name:<18}{seconds:>9.2f}{rate:>12,.0f}{rate / processes:>13,.0f}"
              f"{rate / anchor_rate:>10.2f}x")
    if args.out:
        args.out.write_text(json.dumps({"rows": args.rows, "cores": os.cpu_count(),
                                        "load1": load[0], "figures": figures}, indent=2))


if __name__ == "__main__":
    main()
