"""The Open Inference Protocol through the router, with two real ``seaway-serve`` revisions
behind it: answers, statuses and the servers' provenance headers arrive unchanged."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from seaway_serving import bundle
from tests.router.conftest import HOST, REPO, Client, _child_env, _stop, metric, routes_doc


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dict[int, int], np.ndarray]]:
    """Revisions 1 and 2 of an iris model, each a real seaway-serve process."""
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    base = tmp_path_factory.mktemp("oip")
    bundle.create_from_estimator(model, base / "bundle", name="iris", data=x)
    procs: dict[int, tuple[subprocess.Popen[bytes], Path]] = {}
    for revision in (1, 2):
        log = base / f"server-{revision}.log"
        with log.open("wb") as sink:
            procs[revision] = (subprocess.Popen(
                [sys.executable, "-m", "seaway_serving"], stdout=sink, stderr=subprocess.STDOUT,
                cwd=REPO, env=_child_env({
                    "SEAWAY_BUNDLE": str(base / "bundle"), "SEAWAY_MODEL_NAME": "iris",
                    "SEAWAY_REVISION": str(revision), "SEAWAY_HOST": HOST, "SEAWAY_PORT": "0",
                    "SEAWAY_WORK_DIR": str(base / f"work-{revision}"),
                    "SEAWAY_TERMINATION_LOG": str(base / f"term-{revision}")})), log)
    ports: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 60
        while len(ports) < 2:
            assert time.monotonic() < deadline, "model servers did not start"
            for revision, (proc, log) in procs.items():
                assert proc.poll() is None, log.read_text()
                for line in log.read_text().splitlines():
                    rec = json.loads(line)
                    if "port" in rec:
                        ports[revision] = int(rec["port"])
            time.sleep(0.05)
        for port in ports.values():
            client = Client(port)
            while client.get("/v2/health/ready").status != 200:
                assert time.monotonic() < deadline, "model servers not ready"
                time.sleep(0.05)
            client.close()
        yield ports, model.predict(x[:5])
    finally:
        for proc, _ in procs.values():
            _stop(proc)


def test_inference_through_the_router_equals_the_servers(servers, router):
    ports, expected = servers
    rt = router(routes_doc(("iris-r1", 1, f"http://{HOST}:{ports[1]}", 50),
                           ("iris-r2", 2, f"http://{HOST}:{ports[2]}", 50), owner="iris"))
    x, _ = load_iris(return_X_y=True)
    body = json.dumps({"id": "q1", "inputs": [{"name": "input-0", "datatype": "FP64",
                                                "shape": [5, 4],
                                                "data": x[:5].ravel().tolist()}]}).encode()
    through, direct = rt.client(), Client(ports[1])
    revisions: Counter[int | None] = Counter()
    for _ in range(40):
        reply = through.post("/v2/models/iris/infer", body)
        assert reply.status == 200
        doc = reply.json()
        assert doc["outputs"][0]["data"] == expected.tolist()
        assert doc["id"] == "q1" and doc["model_version"] == reply.headers["seaway-revision"]
        assert reply.headers["seaway-model-revision"] == reply.headers["seaway-revision"]
        assert reply.headers["seaway-model-digest"].startswith("sha256:")
        revisions[reply.revision] += 1
    assert set(revisions) == {1, 2}
    mine = direct.post("/v2/models/iris/infer", body).json()
    assert mine["outputs"] == doc["outputs"]

    # metadata, readiness and errors pass through with the server's status and body
    assert through.get("/v2/models/iris").json()["platform"] == "sklearn"
    assert through.get("/v2/health/ready").json() == {"ready": True}
    missing = through.get("/v2/models/nope")
    assert missing.status == 404 and missing.json() == direct.get("/v2/models/nope").json()
    bad = through.post("/v2/models/iris/infer", b'{"inputs": 1}')
    assert bad.status == 400 and "error" in bad.json()
    text = rt.metrics()
    assert metric(text, "seaway_router_requests_total", model_deployment="iris",
                  code="200") == 42
    assert metric(text, "seaway_router_requests_total", code="404") == 1
    assert metric(text, "seaway_router_requests_total", code="400") == 1
