"""A bare model file (``.joblib``, ``.pkl``, ``.skops``) is served as a one-file bundle.

The pinned digest is what makes a bare pickle safe: without one (and without an explicit
allow-unverified) it is refused before a byte of it is unpickled, exactly like a bundle whose
manifest has no sha256.
"""

from __future__ import annotations

import functools
import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import pytest
from sklearn.linear_model import LogisticRegression

from seaway_serving import bundle, sources
from tests.serving.conftest import Data, v2_body
from tests.serving.test_refusals import WritesMarker, refused


def dump(estimator: Any, path: Path) -> str:
    buf = io.BytesIO()
    joblib.dump(estimator, buf)
    path.write_bytes(buf.getvalue())
    return bundle.sha256_of(buf.getvalue())


def check_serves(server: Any, logreg: Any, data: Data, name: str = "logreg") -> None:
    server.wait_ready()
    client = server.client()
    reply = client.post(f"/v2/models/{name}/infer", v2_body(data.x_test[:5]))
    assert reply.status == 200, reply.json()
    assert reply.json()["outputs"][0]["data"] == logreg.predict(data.x_test[:5]).tolist()
    meta = client.get(f"/v2/models/{name}").json()
    assert meta["inputs"][0]["shape"] == [-1, data.x_test.shape[1]]


def test_is_model_file() -> None:
    for name in ("m.joblib", "s3://b/k/M.PKL", "https://h/x/model.skops", "/a/b.pkl"):
        assert sources.is_model_file(name), name
    for name in ("m.tar.gz", "s3://b/k/", "/a/manifest.json", "/a/model.json", "/a/joblib"):
        assert not sources.is_model_file(name), name


@pytest.mark.parametrize("suffix", [".joblib", ".pkl"])
def test_pinned_pickle_is_served(start_server: Any, tmp_path: Path, logreg: Any, data: Data,
                                 suffix: str) -> None:
    path = tmp_path / f"churn{suffix}"
    digest = dump(logreg, path)
    server = start_server(f"file://{path}", {"SEAWAY_MODEL_DIGEST": digest,
                                             "SEAWAY_MODEL_FORMAT": "sklearn-joblib",
                                             "SEAWAY_MODEL_NAME": "logreg"})
    check_serves(server, logreg, data)
    said = [r["msg"] for r in server.log_lines() if "bare model file" in r.get("msg", "")]
    assert said and "no self-check against recorded outputs" in said[0], said


def test_name_defaults_to_the_file_stem(start_server: Any, tmp_path: Path, logreg: Any,
                                        data: Data) -> None:
    path = tmp_path / "churn.joblib"
    server = start_server(path, {"SEAWAY_MODEL_DIGEST": dump(logreg, path)})
    check_serves(server, logreg, data, name="churn")


def test_unpinned_pickle_is_refused_unread(start_server: Any, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "model.joblib"
    dump(WritesMarker(marker), path)
    server = start_server(path, {"SEAWAY_MODEL_FORMAT": "sklearn-joblib"})
    refused(server, "missing digest: model.joblib is a bare model file (no manifest)")
    assert not marker.exists()


def test_pinned_digest_mismatch_is_refused_unread(start_server: Any, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "model.pkl"
    dump(WritesMarker(marker), path)
    pinned = "sha256:" + "0" * 64
    server = start_server(path, {"SEAWAY_MODEL_DIGEST": pinned})
    refused(server, f"digest mismatch: pinned (SEAWAY_MODEL_DIGEST) {pinned} file sha256:")
    assert not marker.exists()


def test_unpinned_pickle_with_allow_unverified(start_server: Any, tmp_path: Path, logreg: Any,
                                               data: Data) -> None:
    path = tmp_path / "logreg.joblib"
    dump(logreg, path)
    check_serves(start_server(path, {"SEAWAY_ALLOW_UNVERIFIED": "true"}), logreg, data)


def test_skops_without_digest(start_server: Any, tmp_path: Path, logreg: Any,
                              data: Data) -> None:
    path = tmp_path / "logreg.skops"
    path.write_bytes(bundle.serialize(logreg, "skops"))
    check_serves(start_server(path, {"SEAWAY_MODEL_FORMAT": "skops"}), logreg, data)


def test_suffix_contradicting_the_format(start_server: Any, tmp_path: Path,
                                         logreg: Any) -> None:
    path = tmp_path / "logreg.skops"
    path.write_bytes(bundle.serialize(logreg, "skops"))
    server = start_server(path, {"SEAWAY_MODEL_FORMAT": "sklearn-joblib",
                                 "SEAWAY_MODEL_DIGEST": bundle.sha256_of(path.read_bytes())})
    refused(server, "format mismatch: the spec says sklearn-joblib (SEAWAY_MODEL_FORMAT), "
                    "the model file is named logreg.skops")


def test_unfitted_model_is_refused(start_server: Any, tmp_path: Path) -> None:
    path = tmp_path / "unfitted.joblib"
    digest = dump(LogisticRegression(), path)
    server = start_server(path, {"SEAWAY_MODEL_DIGEST": digest})
    refused(server, "unfitted.joblib has no manifest and cannot describe itself")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def web_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


def test_http_model_file(start_server: Any, web_root: tuple[str, Path], logreg: Any,
                         data: Data) -> None:
    url, root = web_root
    (root / "models").mkdir()
    digest = dump(logreg, root / "models" / "churn.joblib")
    server = start_server(f"{url}/models/churn.joblib",
                          {"SEAWAY_MODEL_DIGEST": digest, "SEAWAY_MODEL_NAME": "logreg"})
    check_serves(server, logreg, data)
