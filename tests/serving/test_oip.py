"""Open Inference Protocol conformance of every endpoint, against a real server process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from seaway_serving import bundle
from tests.serving.conftest import Client, Data, Server, metric_value, side_venv, v2_body

REVISION = "7"


@pytest.fixture(scope="module")
def server(module_server: Any, logreg_bundle: Path) -> Server:
    return module_server(logreg_bundle, {"SEAWAY_REVISION": REVISION})  # type: ignore[no-any-return]


@pytest.fixture
def client(server: Server) -> Client:
    return server.client()


def manifest(path: Path) -> bundle.Manifest:
    return bundle.read_manifest((path / "manifest.json").read_text())


def test_health_endpoints(client: Client) -> None:
    live = client.get("/v2/health/live")
    ready = client.get("/v2/health/ready")
    assert (live.status, live.json()) == (200, {"live": True})
    assert (ready.status, ready.json()) == (200, {"ready": True})


def test_server_metadata(client: Client) -> None:
    reply = client.get("/v2")
    assert reply.status == 200
    assert reply.json()["name"] == "seaway"
    assert isinstance(reply.json()["extensions"], list)


@pytest.mark.parametrize("path", ["/v2/models/logreg", f"/v2/models/logreg/versions/{REVISION}"])
def test_model_metadata(client: Client, path: str) -> None:
    reply = client.get(path)
    assert reply.status == 200
    assert reply.json() == {
        "name": "logreg", "versions": [REVISION], "platform": "sklearn",
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, 30]}],
        "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1]},
                    {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]}],
    }


@pytest.mark.parametrize("path", ["/v2/models/logreg/ready",
                                  f"/v2/models/logreg/versions/{REVISION}/ready"])
def test_model_ready(client: Client, path: str) -> None:
    reply = client.get(path)
    assert (reply.status, reply.json()) == (200, {"name": "logreg", "ready": True})


@pytest.mark.parametrize("path", ["/v2/models/logreg/infer",
                                  f"/v2/models/logreg/versions/{REVISION}/infer"])
def test_infer_matches_predict(client: Client, path: str, logreg: Any, data: Data,
                               logreg_bundle: Path) -> None:
    rows = data.x_test[:5]
    reply = client.post(path, v2_body(rows, id="req-1"))
    assert reply.status == 200
    doc = reply.json()
    assert doc["model_name"] == "logreg"
    assert doc["model_version"] == REVISION
    assert doc["id"] == "req-1"
    assert doc["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [5],
                               "data": logreg.predict(rows).tolist()}]
    # every response names the exact model file that produced it
    assert reply.headers["seaway-model-digest"] == manifest(logreg_bundle).sha256
    assert reply.headers["seaway-model-revision"] == REVISION


def test_predict_proba_as_requested_output(client: Client, logreg: Any, data: Data) -> None:
    rows = data.x_test[:3]
    reply = client.post("/v2/models/logreg/infer",
                        v2_body(rows, outputs=[{"name": "predict_proba"}]))
    assert reply.status == 200
    [out] = reply.json()["outputs"]
    assert (out["name"], out["datatype"], out["shape"]) == ("predict_proba", "FP64", [3, 2])
    np.testing.assert_allclose(np.reshape(out["data"], (3, 2)), logreg.predict_proba(rows))


def test_predict_proba_as_parameter(client: Client, logreg: Any, data: Data) -> None:
    rows = data.x_test[:2]
    reply = client.post("/v2/models/logreg/infer",
                        v2_body(rows, parameters={"predict_proba": True}))
    assert reply.status == 200
    names = [o["name"] for o in reply.json()["outputs"]]
    assert names == ["predict", "predict_proba"]


def test_one_input_per_feature(client: Client, logreg: Any, data: Data,
                               logreg_bundle: Path) -> None:
    rows = data.x_test[:4]
    names = [f.name for f in manifest(logreg_bundle).inputs]
    doc = {"inputs": [{"name": n, "datatype": "FP64", "shape": [4], "data": rows[:, j].tolist()}
                      for j, n in enumerate(names)]}
    reply = client.post("/v2/models/logreg/infer", json.dumps(doc).encode())
    assert reply.status == 200
    assert reply.json()["outputs"][0]["data"] == logreg.predict(rows).tolist()


def test_binary_tensor_extension(client: Client, logreg: Any, data: Data) -> None:
    rows = data.x_test[:3].astype(np.float32)
    raw = rows.tobytes()
    header = json.dumps({"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [3, 30],
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
    reply = client.post("/v2/models/logreg/infer", header + raw,
                        {"Inference-Header-Content-Length": str(len(header)),
                         "Content-Type": "application/octet-stream"})
    assert reply.status == 200
    assert reply.json()["outputs"][0]["data"] == logreg.predict(rows.astype(np.float64)).tolist()


def test_integer_input_datatype(client: Client, logreg: Any) -> None:
    rows = np.arange(60).reshape(2, 30)
    doc = {"inputs": [{"name": "x", "datatype": "INT64", "shape": [2, 30],
                       "data": rows.ravel().tolist()}]}
    reply = client.post("/v2/models/logreg/infer", json.dumps(doc).encode())
    assert reply.status == 200
    assert reply.json()["outputs"][0]["data"] == logreg.predict(rows.astype(float)).tolist()


@pytest.mark.parametrize(("method", "path", "status", "message"), [
    ("GET", "/v2/models/other", 404, "model 'other' not found"),
    ("POST", "/v2/models/other/infer", 404, "model 'other' not found"),
    ("GET", "/v2/models/logreg/versions/8", 404, "has no version '8'"),
    ("POST", "/v2/models/logreg/versions/8/infer", 404, "has no version '8'"),
    ("GET", "/v2/models/logreg/infer", 405, "use POST"),
    ("POST", "/v2/health/ready", 405, "use GET"),
    ("GET", "/v2/nothing/here", 404, "no route"),
    ("GET", "/elsewhere", 404, "no route"),
])
def test_errors_are_json_with_a_message(client: Client, method: str, path: str, status: int,
                                        message: str, data: Data) -> None:
    body = v2_body(data.x_test[:1]) if method == "POST" else None
    reply = client.request(method, path, body)
    assert reply.status == status
    assert message in reply.json()["error"]


def test_metrics_per_model_and_revision(server: Server, client: Client, data: Data) -> None:
    before = metric_value(server.metrics(), "seaway_requests_total", model="logreg",
                          revision=REVISION, code="200") or 0.0
    for row in data.x_test[:3]:
        assert client.post("/v2/models/logreg/infer", v2_body(row)).status == 200
    assert client.post("/v2/models/logreg/infer", b"{").status == 400
    text = server.metrics()
    labels = {"model": "logreg", "revision": REVISION}
    assert metric_value(text, "seaway_requests_total", code="200", **labels) == before + 3
    assert (metric_value(text, "seaway_request_errors_total", code="400", **labels) or 0) >= 1
    assert (metric_value(text, "seaway_request_duration_seconds_count", **labels)
            or 0) >= before + 4
    assert (metric_value(text, "seaway_batch_size_rows_count", **labels) or 0) >= 3
    assert metric_value(text, "seaway_queue_depth", **labels) == 0
    assert metric_value(text, "seaway_model_ready") == 1
    predicted = sum(metric_value(text, "seaway_predictions_total", **{"class": c}, **labels)
                    or 0 for c in ("0", "1"))
    assert predicted >= 3


def test_pipelined_requests_answer_in_order(server: Server, logreg: Any, data: Data) -> None:
    import socket

    rows = data.x_test[:6]
    payload = b""
    for i, row in enumerate(rows):
        body = v2_body(row, id=f"p{i}")
        payload += (b"POST /v2/models/logreg/infer HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(payload)
        received = b""
        while received.count(b"HTTP/1.1 200") < len(rows) or not received.endswith(b"]}]}"):
            chunk = sock.recv(65536)
            assert chunk, "connection closed early"
            received += chunk
    ids = [json.loads(part[part.index(b"{"):])["id"] for part in
           received.split(b"HTTP/1.1 ")[1:]]
    assert ids == [f"p{i}" for i in range(len(rows))]


def test_tritonclient_works_unchanged(server: Server, logreg: Any, data: Data) -> None:
    import tritonclient.http as httpclient  # the dev extra carries it: missing fails, never skips
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("logreg")
        meta = client.get_model_metadata("logreg")
        assert meta["inputs"][0]["shape"] == [-1, 30]
        rows = data.x_test[:4]
        for binary in (True, False):
            inp = httpclient.InferInput("input-0", list(rows.shape), "FP64")
            inp.set_data_from_numpy(rows, binary_data=binary)
            outs = [httpclient.InferRequestedOutput("predict", binary_data=False),
                    httpclient.InferRequestedOutput("predict_proba", binary_data=binary)]
            result = client.infer("logreg", [inp], outputs=outs, model_version=REVISION)
            assert result.as_numpy("predict").tolist() == logreg.predict(rows).tolist()
            np.testing.assert_allclose(result.as_numpy("predict_proba"),
                                       logreg.predict_proba(rows))
    finally:
        client.close()


def test_string_labels_and_regressors(start_server: Any, tmp_path: Path, data: Data) -> None:
    from sklearn.linear_model import LinearRegression, LogisticRegression

    labels = np.where(data.y_train == 1, "benign", "malignant")
    clf = LogisticRegression(max_iter=10000).fit(data.x_train, labels)
    reg = LinearRegression().fit(data.x_train, data.x_train[:, 0] * 2 + 1)
    bundle.create_from_estimator(clf, tmp_path / "labels", name="labels", data=data.x_train)
    bundle.create_from_estimator(reg, tmp_path / "reg", name="reg", data=data.x_train)
    rows = data.x_test[:5]
    for name, model, datatype in (("labels", clf, "BYTES"), ("reg", reg, "FP64")):
        server = start_server(tmp_path / name).wait_ready()
        client = server.client()
        meta = client.get(f"/v2/models/{name}").json()
        assert meta["outputs"][0]["datatype"] == datatype
        [out] = client.post(f"/v2/models/{name}/infer", v2_body(rows)).json()["outputs"]
        assert out["datatype"] == datatype
        if datatype == "BYTES":
            assert out["data"] == model.predict(rows).tolist()
        else:
            np.testing.assert_allclose(out["data"], model.predict(rows), rtol=1e-12)
        server.stop()


def test_kserve_client_works_unchanged(server: Server, logreg: Any, data: Data) -> None:
    """KServe's InferenceRESTClient (its pins conflict with ours: it runs from its own venv)."""
    import subprocess

    venv = side_venv("kserve", ["kserve>=0.13"])
    rows = data.x_test[:4]
    out = subprocess.run([str(venv / "bin" / "python"),
                          str(Path(__file__).with_name("kserve_client_check.py")),
                          f"http://127.0.0.1:{server.port}", "logreg",
                          json.dumps(rows.tolist())],
                         capture_output=True, timeout=120, check=True)
    got = json.loads(out.stdout.splitlines()[-1])
    assert (got["live"], got["ready"], got["model_ready"]) == (True, True, True)
    for binary in ("False", "True"):
        assert got[f"binary={binary}"] == {"model_name": "logreg", "revision": REVISION,
                                           "predict": logreg.predict(rows).tolist()}
