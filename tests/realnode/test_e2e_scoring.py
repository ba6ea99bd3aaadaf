"""ScoringJobs for real: the Indexed Job's pods run ``seaway-score`` in the server image.

The operator (``seaway operator run`` on the host) resolves the model, renders the Job, and
follows it; the real node runs the pods; the input and output live in an S3-compatible store
(moto in server mode, Signature Version 4 required) bound to the bridge gateway, the host address
Pods reach; the model bundle is served over HTTP from the same address. The namespace enforces
Pod Security "restricted". Every output part is read back with boto3 (not with the scorer's own
client) and every row's prediction compared with scikit-learn's on that row.

The four cases share one operator, one store and one ModelDeployment, to keep the node's time
short: a multi-file dataset scored by 3 pods; the same dataset with one scorer killed mid-run; a
revision whose pinned digest does not match its bundle; an input larger than the pod's memory
limit, with the pod's peak memory read from its cgroup on the host while it runs.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_breast_cancer

from seaway.localplane import nodeconfig
from seaway.planning import scoring
from seaway_serving import sources
from tests.realnode.e2e import E2E, Models, e2e
from tests.serving.conftest import side_venv
from tests.serving.moto_store import moto_store

BUCKET = "seaway"
MD, BROKEN = "cancer", "cancer-tampered"
FEATURES = [f"x{i}" for i in range(30)]
FILES = 9
ROWS_PER_FILE = 30_000
#: The big single file: larger than the scoring pod's memory limit.
BIG_ROWS = 1_600_000
MEMORY_LIMIT = "256Mi"
MIB = 1 << 20
FETCH = Path(__file__).resolve().parents[1] / "scoring" / "s3_fetch.py"
CGROUP_MEMORY = Path("/sys/fs/cgroup/memory")


@dataclass
class Data:
    frames: list[pd.DataFrame]  # the multi-file dataset, as parsed back from its CSV text
    big_bytes: int
    models: Models

    @property
    def rows(self) -> int:
        return sum(len(f) for f in self.frames)


def csv_text(ids: np.ndarray, x: np.ndarray) -> str:
    frame = pd.DataFrame(x, columns=FEATURES)
    frame.insert(0, "id", ids)
    return str(frame.to_csv(index=False, float_format="%.5g"))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Data, list[str]]:
    """The datasets as files, and their ``FILE=KEY`` objects for the store."""
    work = tmp_path_factory.mktemp("scoring-data")
    x, _ = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(13)
    scale = x.std(axis=0) * 0.05
    objects, frames = [], []
    for n in range(FILES):
        picks = rng.integers(0, len(x), size=ROWS_PER_FILE)
        rows = x[picks] + rng.normal(size=(ROWS_PER_FILE, x.shape[1])) * scale
        text = csv_text(np.arange(n * ROWS_PER_FILE, (n + 1) * ROWS_PER_FILE), rows)
        path = work / f"part-{n}.csv"
        path.write_text(text)
        objects.append(f"{path}=multi/day-{n:02d}.csv")
        # the expected values come from the text the scorer reads, parsed exactly
        frames.append(pd.read_csv(io.StringIO(text)))  # pandas parses floats exactly
    block = csv_text(np.zeros(10_000, dtype=np.int64), x[rng.integers(0, len(x), 10_000)])
    header, body = block.split("\n", 1)
    big = work / "big.csv"
    with big.open("w") as fh:
        fh.write(header + "\n")
        for _ in range(BIG_ROWS // 10_000):
            fh.write(body)
    objects.append(f"{big}=big/big.csv")
    return Data(frames=frames, big_bytes=big.stat().st_size, models=Models.make()), objects


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, e2e: E2E,
          data: tuple[Data, list[str]]) -> Iterator[dict[str, str]]:  # fmt: skip
    work = tmp_path_factory.mktemp("scoring-s3")
    with moto_store(work, BUCKET, data[1], host=nodeconfig.GATEWAY) as env:
        yield env


@pytest.fixture(scope="module")
def ns(e2e: E2E, real_cluster: Any, store: dict[str, str], data: tuple[Data, list[str]]) -> str:
    """A restricted namespace with the store's Secret, a ModelDeployment serving the logistic
    regression (revision 1 stable), and one whose pinned digest is another model's."""
    from tests.realnode.test_e2e_chart import restricted_namespace

    ns = restricted_namespace(e2e, real_cluster, "score")
    e2e.kubectl("create", "secret", "generic", "store", "-n", ns,
                *(f"--from-literal={k}={v}" for k, v in store.items()))
    models = data[0].models
    uri, digest = e2e.store.publish(models.bundle("logreg"), "score-logreg")
    _, other = e2e.store.publish(models.bundle("tree"), "score-tree")
    for name, pinned in ((MD, digest), (BROKEN, other)):
        e2e.apply(ns, {
            "apiVersion": "seaway.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": name},
            "spec": {"model": {"uri": uri, "digest": pinned},
                     "server": {"image": E2E.SERVER_IMAGE, "replicas": 1},
                     "rollout": {"strategy": "Immediate", "progressDeadlineSeconds": 60}},
        })  # fmt: skip
    e2e.wait(ns, MD, lambda s: s.get("stableRevision") == 1, timeout=180, what="r1 stable")
    e2e.wait(ns, BROKEN, lambda s: bool(s.get("revisions")), timeout=60, what="tampered r1")
    return ns


def scoring_job(name: str, input_uri: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": {"modelDeployment": MD},
        "input": {"uri": input_uri, "keyColumns": ["id"], "secretRef": {"name": "store"}},
        "output": {"uri": f"s3://{BUCKET}/scores/{name}/"},
        "parallelism": 3,
    }
    body.update(spec)
    return {"apiVersion": "seaway.dev/v1alpha1", "kind": "ScoringJob",
            "metadata": {"name": name}, "spec": body}  # fmt: skip


def sj_status(e2e: E2E, ns: str, name: str) -> dict[str, Any]:
    body = e2e.custom.get_namespaced_custom_object("seaway.dev", "v1alpha1", ns,
                                                   "scoringjobs", name)  # fmt: skip
    return dict(body.get("status") or {})


def finished(e2e: E2E, ns: str, name: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = sj_status(e2e, ns, name)
        states = {c["type"]: c["status"] for c in status.get("conditions", [])}
        if "True" in (states.get("Complete"), states.get("Failed")):
            return status
        time.sleep(0.5)
    pods = e2e.kubectl("get", "pods,jobs", "-n", ns, "-o", "wide")
    raise AssertionError(f"{name} did not finish in {timeout:.0f}s: {json.dumps(status)}\n{pods}")


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), {})


def download(store: dict[str, str], prefix: str, dest: Path) -> list[str]:
    """Every object beneath ``prefix``, fetched with boto3; their keys."""
    venv = side_venv("moto", ["moto[server]>=5", "boto3"])
    out = subprocess.run(
        [str(venv / "bin" / "python"), str(FETCH), store["SEAWAY_S3_ENDPOINT"],
         store["AWS_ACCESS_KEY_ID"], store["AWS_SECRET_ACCESS_KEY"], BUCKET, prefix, str(dest)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return out.stdout.split()


def scored(store: dict[str, str], name: str, dest: Path) -> pd.DataFrame:
    keys = download(store, f"scores/{name}/", dest)
    parts = sorted(k for k in keys if k.rsplit("/", 1)[-1].startswith("part-"))
    assert parts, keys
    return pd.concat([pd.read_parquet(dest / p.removeprefix(f"scores/{name}/")) for p in parts],
                     ignore_index=True)  # fmt: skip


def check_every_row(data: Data, output: pd.DataFrame, digest: str) -> None:
    """No row lost, none twice, each prediction scikit-learn's on that row."""
    expected = pd.concat(data.frames, ignore_index=True)
    assert len(output) == len(expected), (len(output), len(expected))
    assert output["id"].is_unique
    merged = expected.merge(output, on="id", how="left", validate="one_to_one")
    assert merged["prediction"].notna().all()
    want = data.models.fitted["logreg"].predict(merged[FEATURES].to_numpy())
    assert (merged["prediction"].to_numpy() == want).all()
    assert set(output["seaway_revision"].unique()) == {1}
    assert set(output["seaway_digest"].unique()) == {digest}


def list_keys(store: dict[str, str], prefix: str) -> list[str]:
    """Keys beneath ``prefix`` (a signed ListObjectsV2), to see records appear while pods run."""
    query = urllib.parse.urlencode({"list-type": "2", "prefix": prefix})
    url = f"{store['SEAWAY_S3_ENDPOINT']}/{BUCKET}?{query}"
    headers = sources.sign_v4("GET", url, region="us-east-1", service="s3",
                              access_key=store["AWS_ACCESS_KEY_ID"],
                              secret_key=store["AWS_SECRET_ACCESS_KEY"], session_token=None,
                              now=dt.datetime.now(dt.UTC))  # fmt: skip
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        text = r.read().decode()
    return [part.split("</Key>")[0] for part in text.split("<Key>")[1:]]


def pod_digest(e2e: E2E, ns: str, name: str) -> str:
    return str(sj_status(e2e, ns, name)["model"]["digest"])


def test_three_pods_score_every_file_of_a_multi_file_dataset(
    e2e: E2E, ns: str, store: dict[str, str], data: tuple[Data, list[str]], tmp_path: Path
) -> None:
    t0 = time.monotonic()
    e2e.apply(ns, scoring_job("multi", f"s3://{BUCKET}/multi/", shards=3))
    status = finished(e2e, ns, "multi", timeout=240)
    took = time.monotonic() - t0
    assert condition(status, "Complete").get("status") == "True", json.dumps(status)
    frames = data[0]
    assert (status["shards"], status["unitsDone"], status["unitsTotal"]) == ("3/3", FILES, FILES)
    assert status["rowsScored"] == frames.rows
    assert status["model"]["revision"] == 1
    job = e2e.kubectl("get", "job", "multi", "-n", ns, "-o", "json")
    assert json.loads(job)["spec"]["completionMode"] == "Indexed"
    output = scored(store, "multi", tmp_path)
    check_every_row(frames, output, pod_digest(e2e, ns, "multi"))
    print(f"\n[scoring] {frames.rows} rows in {FILES} files by 3 pods: complete {took:.1f}s after "
          f"apply ({status.get('rowsPerSecond')} rows/s of the job's wall time); every row's "
          f"prediction equals scikit-learn's, with revision 1 and the digest")


def pod_cgroup(uid: str) -> Path | None:
    """The pod's memory cgroup folder on the host (cgroup v1), or None."""
    pattern = f"pod{uid}"
    for path in (CGROUP_MEMORY / "kubepods").rglob("*"):
        if path.is_dir() and path.name.replace("_", "-").endswith(pattern):
            return path
    return None


def kill_scorer(uid: str) -> list[int]:
    """SIGKILL the pod's ``seaway-score`` process from the host, as the kernel's OOM killer or a
    crash would end it (the pod's sandbox and its object stay): the PIDs killed."""
    folder = pod_cgroup(uid)
    assert folder is not None, f"no cgroup for pod {uid}"
    killed = []
    for procs in folder.rglob("cgroup.procs"):
        for pid in procs.read_text().split():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"seaway-score" in cmdline or b"seaway_serving.scoring" in cmdline:
                os.kill(int(pid), signal.SIGKILL)
                killed.append(int(pid))
    return killed


def test_a_scoring_pod_killed_mid_run_loses_no_row_and_writes_none_twice(
    e2e: E2E, ns: str, store: dict[str, str], data: tuple[Data, list[str]], tmp_path: Path
) -> None:
    # small batches: each unit takes a few seconds, so a pod is caught between two units
    e2e.apply(ns, scoring_job("killed", f"s3://{BUCKET}/multi/", shards=3, batchRows=100,
                              backoffLimitPerIndex=2))  # fmt: skip
    deadline = time.monotonic() + 180
    records: list[str] = []
    while not records:
        assert time.monotonic() < deadline, "no unit record appeared"
        records = [k for k in list_keys(store, "scores/killed/_units/") if k.endswith(".json")]
        time.sleep(0.2)
    unit = int(records[0].rsplit("/", 1)[-1].removesuffix(".json"))
    index = unit % 3
    pods = e2e.core.list_namespaced_pod(
        ns, label_selector=f"{scoring.SCORING_LABEL}=killed").items
    victim = next(p for p in pods
                  if p.metadata.annotations.get(scoring.INDEX_ANNOTATION) == str(index))
    assert victim.status.phase == "Running", victim.status.phase
    assert kill_scorer(victim.metadata.uid), "the scorer's process was not found on the host"
    recorded = len(list_keys(store, "scores/killed/_units/"))
    status = finished(e2e, ns, "killed", timeout=240)
    assert condition(status, "Complete").get("status") == "True", json.dumps(status)
    output = scored(store, "killed", tmp_path)
    check_every_row(data[0], output, pod_digest(e2e, ns, "killed"))
    job = json.loads(e2e.kubectl("get", "job", "killed", "-n", ns, "-o", "json"))
    pods = [p for p in e2e.core.list_namespaced_pod(
        ns, label_selector=f"{scoring.SCORING_LABEL}=killed").items
        if p.metadata.annotations.get(scoring.INDEX_ANNOTATION) == str(index)]
    messages = [s.state.terminated.message for p in pods for s in p.status.container_statuses
                if s.state.terminated and s.state.terminated.exit_code == 0]
    print(f"\n[scoring] killed the scorer of index {index} after unit {unit}'s record "
          f"({recorded} of {FILES} units recorded by then); the Job ran that index again "
          f"({job['status'].get('failed', 0)} failed pod); output: {len(output)} rows, none "
          f"lost, none twice; status counts {status['rowsScored']} rows; the retry said "
          f"{messages}")
    assert job["status"].get("failed", 0) >= 1  # the killed pod, retried for its index only
    assert status["unitsDone"] == FILES and status["shards"] == "3/3"
    # the killed scorer left no message; its retry's rowsSkipped count the rows it had scored
    assert status["rowsScored"] == data[0].rows


def test_a_bundle_that_does_not_match_its_pinned_digest_fails_the_job_fast(
    e2e: E2E, ns: str
) -> None:
    t0 = time.monotonic()
    e2e.apply(ns, scoring_job("tampered", f"s3://{BUCKET}/multi/",
                              model={"modelDeployment": BROKEN, "revision": 1}))  # fmt: skip
    status = finished(e2e, ns, "tampered", timeout=180)
    took = time.monotonic() - t0
    failed = condition(status, "Failed")
    assert (failed.get("status"), failed.get("reason")) == ("True", "ModelRefused"), status
    assert "digest" in failed["message"], failed
    job = json.loads(e2e.kubectl("get", "job", "tampered", "-n", ns, "-o", "json"))
    reasons = [c.get("reason") for c in job["status"].get("conditions", [])]
    assert "PodFailurePolicy" in reasons, reasons  # failed at once, no retry of the index
    events = e2e.kubectl("get", "events", "-n", ns,
                         "--field-selector=involvedObject.name=tampered")  # fmt: skip
    assert "ModelRefused" in events
    print(f"\n[scoring] tampered bundle: Failed/ModelRefused {took:.1f}s after apply: "
          f"{failed['message']}")


class PeakMemory:
    """The pod's memory cgroup on the host (cgroup v1), sampled while it runs: the kernel's
    own high-water mark (``memory.max_usage_in_bytes``, page cache included) and the largest
    resident set seen (``total_rss`` of ``memory.stat``)."""

    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.usage_peak = 0
        self.rss_peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _dir(self) -> Path | None:
        return pod_cgroup(self.uid)

    def _run(self) -> None:
        folder = None
        while not self._stop.is_set():
            folder = folder or self._dir()
            if folder is not None:
                try:
                    usage = int((folder / "memory.max_usage_in_bytes").read_text())
                    stat = dict(line.split() for line in
                                (folder / "memory.stat").read_text().splitlines())
                    self.usage_peak = max(self.usage_peak, usage)
                    self.rss_peak = max(self.rss_peak, int(stat.get("total_rss", 0)))
                    self.samples += 1
                except OSError:
                    pass  # the pod ended and its cgroup is gone
            time.sleep(0.1)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def test_an_input_larger_than_the_pods_memory_limit_is_scored(
    e2e: E2E, ns: str, store: dict[str, str], data: tuple[Data, list[str]], tmp_path: Path
) -> None:
    assert CGROUP_MEMORY.is_dir(), "the host's memory cgroup (v1) is not mounted"
    limit = 256 * MIB
    big = data[0].big_bytes
    assert big > 1.2 * limit, (big, limit)  # larger than the limit with a margin
    t0 = time.monotonic()
    e2e.apply(ns, scoring_job("big", f"s3://{BUCKET}/big/big.csv", parallelism=1,
                              batchRows=20_000,
                              resources={"requests": {"memory": MEMORY_LIMIT},
                                         "limits": {"memory": MEMORY_LIMIT}}))  # fmt: skip
    deadline = time.monotonic() + 120
    pod = None
    while pod is None:
        assert time.monotonic() < deadline, "no scoring pod"
        pods = e2e.core.list_namespaced_pod(ns, label_selector=f"{scoring.SCORING_LABEL}=big")
        pod = pods.items[0] if pods.items else None
        time.sleep(0.2)
    with PeakMemory(pod.metadata.uid) as peak:
        status = finished(e2e, ns, "big", timeout=400)
    took = time.monotonic() - t0
    assert condition(status, "Complete").get("status") == "True", json.dumps(status)
    assert status["rowsScored"] == BIG_ROWS
    keys = download(store, "scores/big/", tmp_path)
    rows = sum(pq.ParquetFile(tmp_path / k.removeprefix("scores/big/")).metadata.num_rows
               for k in keys if k.rsplit("/", 1)[-1].startswith("part-"))  # fmt: skip
    assert rows == BIG_ROWS
    assert peak.samples > 0, "the pod's memory cgroup was never read"
    assert peak.usage_peak <= limit  # the kernel enforces it; an OOM kill would have failed
    print(f"\n[scoring] {big / MIB:.0f} MiB CSV ({BIG_ROWS} rows) scored by one pod limited to "
          f"{MEMORY_LIMIT} in {took:.1f}s ({status.get('rowsPerSecond')} rows/s); cgroup peak "
          f"{peak.usage_peak / MIB:.0f} MiB with page cache, largest resident set "
          f"{peak.rss_peak / MIB:.0f} MiB ({peak.samples} samples)")


__all__ = ["e2e"]
