"""Attacks on the model server's inputs that issue 15 found open, with the attacker's input.

* A store (or whoever answers in its name) redirects a signed request to another host or from
  https to http: the credentials must not follow (every source: http(s), s3, the trainer's).
* A presigned URL's signature must not reach the server's log.
* An archive of hundreds of thousands of tiny entries is refused before it is unpacked.

Everything runs against real HTTP servers on 127.0.0.1.
"""

from __future__ import annotations

import functools
import http.client
import http.server
import io
import json
import shutil
import tarfile
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from seaway_serving import sources
from seaway_serving.errors import BundleRefused, FetchFailed
from seaway_serving.trainer import store
from seaway_serving.trainer.errors import FetchFailed as TrainFetchFailed

KEYS = {"AWS_ACCESS_KEY_ID": "AKIATESTKEY", "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_SESSION_TOKEN": "session-token-value", "AWS_REGION": "us-east-1"}
LIMITS = sources.Limits(max_bytes=1 << 20, timeout_s=5, attempts=1)


class Recorder:
    """A loopback server that records each request's headers; answers a redirect or a body."""

    def __init__(self, redirect_to: str | None = None, body: bytes = b"x") -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []
        me = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                me.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                if redirect_to is not None:
                    self.send_response(307)
                    self.send_header("Location", redirect_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def collector() -> Iterator[Recorder]:
    """The attacker's host: "localhost" is another origin than the store's 127.0.0.1."""
    r = Recorder()
    yield r
    r.close()


@pytest.fixture
def redirecting_store(collector: Recorder) -> Iterator[Recorder]:
    r = Recorder(redirect_to=f"http://localhost:{collector.port}")
    yield r
    r.close()


def test_s3_credentials_do_not_follow_a_redirect_to_another_host(
    tmp_path: Path, redirecting_store: Recorder, collector: Recorder
) -> None:
    env = {**KEYS, "SEAWAY_S3_ENDPOINT": f"http://127.0.0.1:{redirecting_store.port}"}
    with pytest.raises(FetchFailed, match="redirected to another origin"):
        sources.materialize("s3://models/churn/", tmp_path, LIMITS, env)
    (_, headers), = redirecting_store.seen
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256")  # the store got them
    assert collector.seen == [], "the signed headers went to the redirect's host"


def test_an_https_source_never_follows_a_redirect_to_plain_http() -> None:
    handler = sources._SameOriginRedirects()
    request = urllib.request.Request("https://store.example.com/b/model.joblib")
    request.add_header("Authorization", "AWS4-HMAC-SHA256 Credential=...")
    with pytest.raises(FetchFailed, match="from https to http"):
        handler.redirect_request(request, io.BytesIO(), 307, "", http.client.HTTPMessage(),
                                 "http://store.example.com/b/model.joblib")


def test_http_sources_refuse_cross_origin_and_follow_same_origin_redirects(
    tmp_path: Path, redirecting_store: Recorder, collector: Recorder
) -> None:
    uri = f"http://127.0.0.1:{redirecting_store.port}/m/bundle.tar.gz?X-Amz-Signature=abc"
    with pytest.raises(FetchFailed) as refused:
        sources.materialize(uri, tmp_path, LIMITS, {})
    assert collector.seen == []
    assert "X-Amz-Signature" not in str(refused.value)
    same = Recorder(redirect_to=f"http://127.0.0.1:{collector.port}")  # same host, other port
    try:
        with pytest.raises(FetchFailed):
            sources.materialize(f"http://127.0.0.1:{same.port}/m/bundle.tar.gz", tmp_path,
                                LIMITS, {})
    finally:
        same.close()
    assert collector.seen == []


def test_same_origin_redirects_are_still_followed() -> None:
    class Moved(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            moved = self.path == "/old/model.joblib"
            self.send_response(307 if moved else 200)
            if moved:
                self.send_header("Location", "/new/model.joblib")
            self.send_header("Content-Length", "0" if moved else "5")
            self.end_headers()
            if not moved:
                self.wfile.write(b"model")

        def log_message(self, *_: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Moved)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        out = io.BytesIO()
        url = f"http://127.0.0.1:{httpd.server_address[1]}/old/model.joblib"
        sources._Getter(LIMITS).get(url, out, 1 << 20)
        assert out.getvalue() == b"model"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_trainer_store_refuses_the_same_redirect(
    tmp_path: Path, redirecting_store: Recorder, collector: Recorder
) -> None:
    env = {**KEYS, "SEAWAY_S3_ENDPOINT": f"http://127.0.0.1:{redirecting_store.port}"}
    with pytest.raises(TrainFetchFailed, match="redirected to another origin"):
        store.fetch("s3://data/churn.csv", tmp_path, cap=1 << 20, timeout_s=5, env=env)
    assert collector.seen == []


def test_an_archive_of_many_entries_is_refused_before_unpacking(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for i in range(20_000):  # the review's archive had 200,000
            info = tarfile.TarInfo(f"d/{i}")
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
    assert archive.stat().st_size < 100_000
    with pytest.raises(BundleRefused, match="more than 1000 entries"):
        sources.extract(archive, tmp_path / "out", 1 << 20)
    assert list((tmp_path / "out").iterdir()) == [], "nothing was written"


@pytest.fixture
def web_root(tmp_path: Path, logreg_bundle: Path) -> Iterator[str]:
    shutil.make_archive(str(tmp_path / "logreg"), "gztar", logreg_bundle)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *_: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_presigned_signature_never_reaches_the_log(start_server: Any, web_root: str) -> None:
    signature = "X-Amz-Signature=5e1f0c0ffee5e1f0"
    server = start_server(f"{web_root}/logreg.tar.gz?X-Amz-Expires=600&{signature}",
                          {"SEAWAY_ALLOW_UNVERIFIED": "true"})
    server.wait_ready()
    log = server.log_path.read_text()
    assert "Fetched bundle" in log
    assert "5e1f0c0ffee" not in log


def test_huge_declared_shapes_are_a_400_not_a_stack_trace(
    start_server: Any, logreg_bundle: Path
) -> None:
    server = start_server(logreg_bundle).wait_ready()
    for shape in ([2**62, 2**62, 0], [0, 2**62], [2**40, 2**40, 0, 1]):
        body = json.dumps({"inputs": [{"name": "x", "shape": shape, "datatype": "FP64",
                                       "data": []}]}).encode()
        reply = server.client().post("/v2/models/logreg/infer", body)
        assert reply.status == 400, (shape, reply.body)
        assert "declares more than" in reply.json()["error"]
    assert server.ready_status() == 200
    assert "Traceback" not in server.log_path.read_text()


# -- what held up in the review, kept tested ---------------------------------------------------
SMUGGLING = [
    b"POST /v2/models/logreg/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /v2/models/logreg/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
    b"Content-Length: 40\r\n\r\nabcdGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /v2/models/logreg/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity"
    b"\r\n\r\n0\r\n\r\n",
]


def test_request_smuggling_is_refused_and_nothing_is_smuggled(
    start_server: Any, logreg_bundle: Path
) -> None:
    import socket

    server = start_server(logreg_bundle).wait_ready()
    for raw in SMUGGLING:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(raw)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
        assert answer.count(b"HTTP/1.1 ") == 1, "a second, smuggled request was answered"
    assert server.ready_status() == 200


def test_the_bytes_deserialized_are_the_bytes_hashed(
    logreg_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No second read between the digest check and the load: a swap in between changes nothing."""
    from seaway_serving import bundle, loader

    hashed: list[bytes] = []
    loaded: list[bytes] = []
    verify, deserialize = loader.verify_digest, loader.deserialize
    monkeypatch.setattr(loader, "verify_digest",
                        lambda data, *a, **k: hashed.append(data) or verify(data, *a, **k))
    monkeypatch.setattr(loader, "deserialize",
                        lambda data, *a, **k: loaded.append(data) or deserialize(data, *a, **k))
    manifest = loader.read_manifest(logreg_bundle)
    policy = loader.Policy(max_bytes=1 << 30, pinned_digest=manifest.sha256)
    model = loader.load(logreg_bundle, policy)
    assert len(hashed) == len(loaded) == 1 and hashed[0] is loaded[0]
    assert model.digest == manifest.sha256 == bundle.sha256_of(loaded[0])
