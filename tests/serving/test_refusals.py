"""Every refusal: the process exits non-zero with a one-line cause, never becomes ready, and
(for pickles) never runs the pickle's code."""

from __future__ import annotations

import io
import json
import operator
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from seaway_serving import bundle
from tests.serving.conftest import Data, Server


class WritesMarker:
    """Unpickling this calls ``open(marker, "w")``: proof that the pickle's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def copy_bundle(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_manifest(path: Path, **changes: Any) -> None:
    doc = json.loads((path / "manifest.json").read_text())
    for key, value in changes.items():
        target = doc
        *parents, last = key.split("__")
        for p in parents:
            target = target[p]
        if value is None:
            target.pop(last, None)
        else:
            target[last] = value
    (path / "manifest.json").write_text(json.dumps(doc))


def evil_bundle(tmp_path: Path, logreg_bundle: Path, marker: Path) -> Path:
    """A bundle whose model file is the marker-writing pickle, manifest otherwise intact."""
    out = copy_bundle(logreg_bundle, tmp_path / "evil")
    buf = io.BytesIO()
    joblib.dump(WritesMarker(marker), buf)
    (out / "model.joblib").write_bytes(buf.getvalue())
    return out


def refused(server: Server, cause: str) -> str:
    code = server.wait_exit()
    assert code != 0
    assert not server.ever_ready
    message = server.termination_log.read_text()
    assert message.count("\n") == 1 and message.endswith("\n"), message
    assert cause in message, message
    errors = [r for r in server.log_lines() if r.get("level") == "error"]
    assert errors and cause in errors[-1]["msg"]
    return message


def test_marker_pickle_really_writes_its_marker(tmp_path: Path, logreg_bundle: Path) -> None:
    """Control: loading the evil model file outside the server does run its code."""
    marker = tmp_path / "control-marker"
    path = evil_bundle(tmp_path, logreg_bundle, marker) / "model.joblib"
    subprocess.run([sys.executable, "-c", f"import joblib; joblib.load({str(path)!r})"],
                   check=False, timeout=60, capture_output=True)
    assert marker.exists()


def test_digest_mismatch(start_server: Any, tmp_path: Path, logreg_bundle: Path) -> None:
    marker = tmp_path / "marker"
    server = start_server(evil_bundle(tmp_path, logreg_bundle, marker))
    msg = refused(server, "digest mismatch: manifest sha256:")
    assert " file sha256:" in msg
    assert not marker.exists()


def test_pinned_digest_mismatch(start_server: Any, tmp_path: Path, logreg_bundle: Path) -> None:
    pinned = "sha256:" + "0" * 64
    server = start_server(logreg_bundle, {"SEAWAY_MODEL_DIGEST": pinned})
    refused(server, f"digest mismatch: pinned (SEAWAY_MODEL_DIGEST) {pinned} file sha256:")


def test_missing_digest(start_server: Any, tmp_path: Path, logreg_bundle: Path) -> None:
    marker = tmp_path / "marker"
    path = evil_bundle(tmp_path, logreg_bundle, marker)
    edit_manifest(path, sha256=None)
    server = start_server(path)
    refused(server, "missing digest")
    assert not marker.exists()


def test_missing_digest_allowed_explicitly(start_server: Any, tmp_path: Path,
                                           logreg_bundle: Path) -> None:
    path = copy_bundle(logreg_bundle, tmp_path / "b")
    edit_manifest(path, sha256=None)
    server = start_server(path, {"SEAWAY_ALLOW_UNVERIFIED": "true"})
    assert server.wait_ready().ready_status() == 200


def test_pinned_digest_alone_suffices(start_server: Any, tmp_path: Path,
                                      logreg_bundle: Path) -> None:
    path = copy_bundle(logreg_bundle, tmp_path / "b")
    digest = bundle.sha256_of((path / "model.joblib").read_bytes())
    edit_manifest(path, sha256=None)
    server = start_server(path, {"SEAWAY_MODEL_DIGEST": digest})
    assert server.wait_ready().ready_status() == 200


def test_sklearn_version_mismatch(start_server: Any, tmp_path: Path,
                                  logreg_bundle: Path) -> None:
    marker = tmp_path / "marker"
    path = evil_bundle(tmp_path, logreg_bundle, marker)
    digest = bundle.sha256_of((path / "model.joblib").read_bytes())
    edit_manifest(path, sha256=digest, runtime__sklearn="1.0.2")
    server = start_server(path)
    msg = refused(server, "scikit-learn version mismatch: bundle built with 1.0.2, server has ")
    assert msg.strip().endswith(__import__("sklearn").__version__)
    assert not marker.exists()


def test_untrusted_skops_types_are_listed(start_server: Any, tmp_path: Path,
                                          data: Data) -> None:
    model = make_pipeline(FunctionTransformer(operator.neg),
                          LogisticRegression(max_iter=5000)).fit(data.x_train, data.y_train)
    path = tmp_path / "skops-bundle"
    bundle.create_from_estimator(model, path, name="neg", fmt="skops")
    server = start_server(path)
    refused(server, "untrusted types in skops file: _operator.neg")
    trusted = start_server(path, {"SEAWAY_TRUSTED_TYPES": '["_operator.neg"]'})
    assert trusted.wait_ready().ready_status() == 200


def make_tar(path: Path, entries: list[tuple[str, bytes | None, str | None]]) -> Path:
    """(name, data, link target): data None with a target makes a symlink."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content, target in entries:
            info = tarfile.TarInfo(name)
            if target is not None:
                info.type = tarfile.SYMTYPE
                info.linkname = target
                tar.addfile(info)
            else:
                assert content is not None
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return path


@pytest.mark.parametrize(("entry", "cause"), [
    ("../escaped.txt", "archive entry '../escaped.txt' escapes the bundle directory"),
    ("/tmp/abs.txt", "archive entry '/tmp/abs.txt' escapes the bundle directory"),
    ("a/../../up.txt", "escapes the bundle directory"),
])
def test_archive_path_escape(start_server: Any, tmp_path: Path, logreg_bundle: Path,
                             entry: str, cause: str) -> None:
    files = [(p.name, p.read_bytes(), None) for p in sorted(logreg_bundle.iterdir())]
    archive = make_tar(tmp_path / "b.tar.gz", [*files, (entry, b"x", None)])
    server = start_server(archive)
    refused(server, cause)
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "up.txt").exists()


def test_archive_symlink(start_server: Any, tmp_path: Path, logreg_bundle: Path) -> None:
    files = [(p.name, p.read_bytes(), None) for p in sorted(logreg_bundle.iterdir())]
    archive = make_tar(tmp_path / "b.tar.gz", [*files, ("link", None, "/etc/passwd")])
    refused(start_server(archive), "archive entry 'link' is a link (to '/etc/passwd')")


def test_manifest_model_file_escape(start_server: Any, tmp_path: Path,
                                    logreg_bundle: Path) -> None:
    path = copy_bundle(logreg_bundle, tmp_path / "b")
    edit_manifest(path, model_file="../../etc/passwd")
    refused(start_server(path), "manifest model_file '../../etc/passwd' escapes the bundle")


def test_model_over_size_cap(start_server: Any, logreg_bundle: Path) -> None:
    size = (logreg_bundle / "model.joblib").stat().st_size
    server = start_server(logreg_bundle, {"SEAWAY_MAX_BUNDLE_BYTES": str(size - 1)})
    refused(server, f"model file model.joblib is {size} bytes, over the cap of {size - 1}")


def test_archive_over_size_cap(start_server: Any, tmp_path: Path, logreg_bundle: Path) -> None:
    files = [(p.name, p.read_bytes(), None) for p in sorted(logreg_bundle.iterdir())]
    archive = make_tar(tmp_path / "b.tar.gz", [*files, ("padding", b"\0" * 200_000, None)])
    server = start_server(archive, {"SEAWAY_MAX_BUNDLE_BYTES": "100000"})
    refused(server, "bundle archive unpacks to more than 100000 bytes")


def test_self_check_failure(start_server: Any, tmp_path: Path, logreg_bundle: Path) -> None:
    path = copy_bundle(logreg_bundle, tmp_path / "b")
    doc = json.loads((path / "manifest.json").read_text())
    flipped = [1 - v for v in doc["sample"]["predict"]]
    edit_manifest(path, sample__predict=flipped)
    refused(start_server(path), "self-check failed: sample prediction")


def test_invalid_manifest(start_server: Any, tmp_path: Path, logreg_bundle: Path) -> None:
    path = copy_bundle(logreg_bundle, tmp_path / "b")
    edit_manifest(path, format="pickle")
    refused(start_server(path), "manifest.json is invalid: format")


def test_no_bundle(start_server: Any, tmp_path: Path) -> None:
    refused(start_server(tmp_path / "nothing-here"), "no bundle at")


def test_invalid_setting(start_server: Any, logreg_bundle: Path) -> None:
    server = start_server(logreg_bundle, {"SEAWAY_MODEL_DIGEST": "md5:abc"})
    assert server.proc.wait(timeout=60) == 2
    assert "invalid setting model_digest (SEAWAY_MODEL_DIGEST)" in \
        server.termination_log.read_text()


def test_termination_log_skipped_when_directory_is_missing(start_server: Any,
                                                           tmp_path: Path) -> None:
    term = tmp_path / "no-such-dir" / "termination-log"
    server = start_server(tmp_path / "nothing", {"SEAWAY_TERMINATION_LOG": str(term)})
    assert server.wait_exit() != 0
    assert not term.exists()
    assert any("no bundle at" in r.get("msg", "") for r in server.log_lines())


def test_sample_rows_are_what_the_model_answered(tmp_path: Path, logreg: Any,
                                                 data: Data) -> None:
    """The self-check is only as good as the recorded sample: it must be the model's output."""
    m = bundle.create_from_estimator(logreg, tmp_path / "b", name="m", data=data.x_train)
    x = bundle.rows_from_json(m.sample.inputs)
    assert np.array_equal(x, data.x_train[:bundle.SAMPLE_ROWS])
    assert m.sample.predict == logreg.predict(x).tolist()


def test_unwritable_work_dir(start_server: Any, logreg_bundle: Path) -> None:
    """A read-only root filesystem without a volume for the work directory: say so."""
    server = start_server(logreg_bundle, {"SEAWAY_WORK_DIR": "/dev/null/seaway"})
    assert server.wait_exit() == 1
    assert not server.ever_ready
    assert server.termination_log.read_text() == (
        "cannot create the work directory in /dev/null/seaway: Not a directory (mount a "
        "writable volume there, e.g. an emptyDir on /tmp)\n")
