"""Bundle sources: path, file://, tar.gz, http(s):// and s3:// against real local servers.

The S3 server is moto in server mode (a real HTTP server speaking the S3 API) with IAM
authentication on, so it checks every request's AWS Signature Version 4. moto pins
python-dateutil<3 while the operator's kubernetes client needs >=3, so it lives in its own
virtualenv (``$SEAWAY_TEST_MOTO_VENV`` or ``~/.cache/seaway/moto-venv``), created here on first
use from PyPI.
"""

from __future__ import annotations

import datetime as dt
import functools
import http.server
import shutil
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from seaway_serving import sources
from tests.serving.conftest import Data, v2_body
from tests.serving.moto_store import moto_store


def tar_bundle(src: Path, dest: Path, prefix: str = "") -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        for p in sorted(src.iterdir()):
            tar.add(p, arcname=prefix + p.name)
    return dest


def check_serves(server: Any, logreg: Any, data: Data) -> None:
    server.wait_ready()
    reply = server.client().post("/v2/models/logreg/infer", v2_body(data.x_test[:3]))
    assert reply.status == 200
    assert reply.json()["outputs"][0]["data"] == logreg.predict(data.x_test[:3]).tolist()


def test_file_uri_and_manifest_path(start_server: Any, logreg_bundle: Path, logreg: Any,
                                    data: Data) -> None:
    check_serves(start_server(f"file://{logreg_bundle}"), logreg, data)
    check_serves(start_server(logreg_bundle / "manifest.json"), logreg, data)


def test_local_archive_with_top_directory(start_server: Any, tmp_path: Path,
                                          logreg_bundle: Path, logreg: Any, data: Data) -> None:
    archive = tar_bundle(logreg_bundle, tmp_path / "b.tgz", prefix="logreg/")
    check_serves(start_server(archive), logreg, data)


@pytest.fixture(scope="module")
def web_root(tmp_path_factory: pytest.TempPathFactory, logreg_bundle: Path) -> Iterator[str]:
    root = tmp_path_factory.mktemp("www")
    shutil.copytree(logreg_bundle, root / "models" / "logreg")
    tar_bundle(logreg_bundle, root / "logreg.tar.gz")
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_http_directory(start_server: Any, web_root: str, logreg: Any, data: Data) -> None:
    check_serves(start_server(f"{web_root}/models/logreg/"), logreg, data)


def test_http_archive(start_server: Any, web_root: str, logreg: Any, data: Data) -> None:
    check_serves(start_server(f"{web_root}/logreg.tar.gz"), logreg, data)


def test_http_not_found(start_server: Any, web_root: str) -> None:
    server = start_server(f"{web_root}/models/missing/")
    assert server.wait_exit() == 3
    assert not server.ever_ready
    assert server.termination_log.read_text() == (
        f"could not fetch {web_root}/models/missing/manifest.json: HTTP 404\n")


def test_http_download_over_cap(start_server: Any, web_root: str) -> None:
    server = start_server(f"{web_root}/logreg.tar.gz", {"SEAWAY_MAX_BUNDLE_BYTES": "300"})
    assert server.wait_exit() == 2
    assert "over the cap of 300 bytes" in server.termination_log.read_text()


def test_sigv4_matches_the_published_aws_example() -> None:
    """AWS's documented S3 GET Object example (access key AKIAIOSFODNN7EXAMPLE, 2013-05-24)."""
    headers = sources.sign_v4(
        "GET", "https://examplebucket.s3.amazonaws.com/test.txt", region="us-east-1",
        service="s3", access_key="AKIAIOSFODNN7EXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", session_token=None,
        now=dt.datetime(2013, 5, 24, tzinfo=dt.UTC), headers={"Range": "bytes=0-9"})
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")


# ---------------------------------------------------------------------------------- S3 (moto)
@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory, logreg_bundle: Path) -> Iterator[dict[str, str]]:
    work = tmp_path_factory.mktemp("s3")
    archive = tar_bundle(logreg_bundle, work / "logreg.tar.gz")
    objects = [f"{logreg_bundle / 'manifest.json'}=churn/v1/manifest.json",
               f"{logreg_bundle / 'model.joblib'}=churn/v1/model.joblib",
               f"{archive}=churn/v1.tar.gz"]
    with moto_store(work, "models", objects) as env:
        yield env


@pytest.mark.parametrize("uri", ["s3://models/churn/v1/", "s3://models/churn/v1.tar.gz"])
def test_s3_signed(start_server: Any, s3: dict[str, str], uri: str, logreg: Any,
                   data: Data) -> None:
    check_serves(start_server(uri, s3), logreg, data)


def test_s3_wrong_secret_is_refused_by_the_store(start_server: Any, s3: dict[str, str]) -> None:
    server = start_server("s3://models/churn/v1/", {**s3, "AWS_SECRET_ACCESS_KEY": "wrong"})
    assert server.wait_exit() == 3
    assert server.termination_log.read_text() == (
        f"could not fetch {s3['SEAWAY_S3_ENDPOINT']}/models/churn/v1/manifest.json: HTTP 403 "
        "SignatureDoesNotMatch\n")


def test_s3_unsigned_is_refused_by_the_store(start_server: Any, s3: dict[str, str]) -> None:
    env = {"SEAWAY_S3_ENDPOINT": s3["SEAWAY_S3_ENDPOINT"], "AWS_ACCESS_KEY_ID": "",
           "AWS_SECRET_ACCESS_KEY": ""}
    server = start_server("s3://models/churn/v1/", env)
    assert server.wait_exit() == 3
    assert "HTTP 403" in server.termination_log.read_text()


def test_s3_bare_model_file(start_server: Any, s3: dict[str, str], logreg_bundle: Path,
                            logreg: Any, data: Data) -> None:
    """A model.uri naming the model file itself: served as a one-file bundle, pinned digest."""
    from seaway_serving import bundle

    digest = bundle.sha256_of((logreg_bundle / "model.joblib").read_bytes())
    env = {**s3, "SEAWAY_MODEL_DIGEST": digest, "SEAWAY_MODEL_FORMAT": "sklearn-joblib",
           "SEAWAY_MODEL_NAME": "logreg"}
    check_serves(start_server("s3://models/churn/v1/model.joblib", env), logreg, data)
