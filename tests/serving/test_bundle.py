"""The bundle format and ``seaway bundle create``; drift math. In-process, no server."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import sklearn
from click.testing import CliRunner
from sklearn.linear_model import LinearRegression

from seaway.cli.main import main as seaway_cli
from seaway_serving import bundle, loader, metrics
from tests.serving.conftest import Data


def test_manifest_describes_the_model(logreg_bundle: Path, logreg: Any, data: Data) -> None:
    m = bundle.read_manifest((logreg_bundle / "manifest.json").read_text())
    raw = (logreg_bundle / "model.joblib").read_bytes()
    assert m.sha256 == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert m.size_bytes == len(raw)
    assert m.version == m.sha256.split(":")[1][:12]
    assert (m.format, m.model_file, m.task) == ("sklearn-joblib", "model.joblib",
                                                "classification")
    assert m.estimator == "sklearn.linear_model._logistic.LogisticRegression"
    assert m.runtime.sklearn == sklearn.__version__
    assert m.runtime.numpy == np.__version__
    assert [f.name for f in m.inputs] == [f"x{i}" for i in range(30)]
    assert m.outputs.classes == [0, 1] and m.outputs.predict_proba
    assert m.outputs.predict_datatype == "INT64"
    assert not m.allow_nan
    assert m.created_at.endswith("Z")
    fp = m.fingerprint
    assert fp is not None and fp.rows == len(data.x_train)
    f0 = fp.features[0]
    assert f0.min == data.x_train[:, 0].min() and f0.max == data.x_train[:, 0].max()
    assert abs(sum(f0.bins.proportions) - 1) < 1e-9 and len(f0.bins.edges) == 9
    assert fp.predictions is not None and fp.predictions.kind == "categorical"
    share_1 = float(np.mean(logreg.predict(data.x_train) == 1))
    assert fp.predictions.proportions[1] == pytest.approx(share_1)


def test_regressor_bundle_round_trips_through_the_loader(tmp_path: Path, data: Data) -> None:
    model = LinearRegression().fit(data.x_train, data.x_train[:, 0] * 2)
    m = bundle.create_from_estimator(model, tmp_path / "b", name="reg", data=data.x_train)
    assert (m.task, m.outputs.predict_datatype, m.outputs.classes) == ("regression", "FP64",
                                                                       None)
    assert m.fingerprint is not None and m.fingerprint.predictions is not None
    assert m.fingerprint.predictions.kind == "numeric"
    loaded = loader.load(tmp_path / "b", loader.Policy(max_bytes=1 << 20))
    assert loaded.digest == m.sha256
    np.testing.assert_allclose(loaded.estimator.predict(data.x_test), model.predict(data.x_test))


def test_without_data_the_sample_is_synthetic_and_there_is_no_fingerprint(
        tmp_path: Path, logreg: Any) -> None:
    m = bundle.create_from_estimator(logreg, tmp_path / "b", name="m")
    assert m.fingerprint is None
    x = bundle.rows_from_json(m.sample.inputs)
    assert x.shape == (4, 30)
    assert m.sample.predict == logreg.predict(x).tolist()


def test_cli_bundle_create(tmp_path: Path, logreg: Any, data: Data) -> None:
    model_file = tmp_path / "churn.joblib"
    joblib.dump(logreg, model_file)
    csv = tmp_path / "train.csv"
    header = ",".join(f"f{i}" for i in range(30))
    lines = [",".join(str(float(v)) for v in row) for row in data.x_train]
    csv.write_text(header + "\n" + "\n".join(lines))
    out = tmp_path / "bundle"
    result = CliRunner().invoke(seaway_cli, [
        "bundle", "create", "--model", str(model_file), "--name", "churn", "--out", str(out),
        "--data", str(csv), "--metric", "roc_auc=0.97", "--code-version", "abc123",
        "--version", "2026-11-25", "--archive"])
    assert result.exit_code == 0, result.output
    m = bundle.read_manifest((out / "manifest.json").read_text())
    # the model file's bytes are kept exactly, so a digest pinned on the file stays valid
    assert (out / "model.joblib").read_bytes() == model_file.read_bytes()
    assert m.sha256 == bundle.sha256_of(model_file.read_bytes())
    assert m.sha256 in result.output
    assert (m.name, m.version, m.code_version) == ("churn", "2026-11-25", "abc123")
    assert m.metrics == {"roc_auc": 0.97}
    assert [f.name for f in m.inputs][:2] == ["f0", "f1"]
    assert m.fingerprint is not None and m.fingerprint.rows == len(data.x_train)
    with tarfile.open(tmp_path / "bundle.tar.gz") as tar:
        assert sorted(tar.getnames()) == ["manifest.json", "model.joblib"]
    again = CliRunner().invoke(seaway_cli, ["bundle", "create", "--model", str(model_file),
                                            "--name", "churn", "--out", str(out)])
    assert again.exit_code != 0 and "already holds a bundle" in again.output


@pytest.mark.parametrize(("args", "message"), [
    (["--name", "Bad Name"], "lowercase letters"),
    (["--metric", "auc"], "is not NAME=NUMBER"),
])
def test_cli_bundle_create_rejects_bad_arguments(tmp_path: Path, logreg: Any, args: list[str],
                                                 message: str) -> None:
    model_file = tmp_path / "m.joblib"
    joblib.dump(logreg, model_file)
    base = ["bundle", "create", "--model", str(model_file), "--out", str(tmp_path / "o")]
    if "--name" not in args:
        base += ["--name", "ok"]
    result = CliRunner().invoke(seaway_cli, base + args)
    assert result.exit_code == 2
    assert message in result.output


def test_cli_refuses_untrusted_skops_types(tmp_path: Path, data: Data) -> None:
    import operator

    import skops.io
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    model = make_pipeline(FunctionTransformer(operator.neg),
                          LogisticRegression(max_iter=5000)).fit(data.x_train, data.y_train)
    path = tmp_path / "m.skops"
    skops.io.dump(model, path)
    base = ["bundle", "create", "--model", str(path), "--name", "neg"]
    refused = CliRunner().invoke(seaway_cli, [*base, "--out", str(tmp_path / "a")])
    assert refused.exit_code == 1
    assert "untrusted types in skops file: _operator.neg" in refused.output
    ok = CliRunner().invoke(seaway_cli, [*base, "--out", str(tmp_path / "b"),
                                         "--trust", "_operator.neg"])
    assert ok.exit_code == 0, ok.output
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert (m["format"], m["model_file"]) == ("skops", "model.skops")


def test_psi() -> None:
    expected = [0.25, 0.25, 0.25, 0.25]
    assert metrics.psi(expected, np.array([25, 25, 25, 25])) == pytest.approx(0.0)
    # a known value: (0.4-0.25)ln(0.4/0.25) + (0.1-0.25)ln(0.1/0.25), twice over
    value = 2 * (0.15 * np.log(0.4 / 0.25) + (-0.15) * np.log(0.1 / 0.25))
    assert metrics.psi(expected, np.array([40, 10, 40, 10])) == pytest.approx(value)
    assert np.isnan(metrics.psi(expected, np.zeros(4)))


def test_drift_window_wraps_and_keeps_the_latest_rows(data: Data) -> None:
    fp = bundle.fingerprint(data.x_train, [f"x{i}" for i in range(30)], None, None)
    window = metrics.DriftWindow(fp, 30, size=50, min_rows=10)
    assert window.scores() is None
    for start in range(0, 130, 13):  # 130 rows through a 50-row ring in uneven steps
        window.add(data.x_train[start:start + 13], None)
    snap = window.snapshot()
    assert snap is not None
    kept = {tuple(r) for r in snap[0]}
    assert kept == {tuple(r) for r in data.x_train[80:130]}


@pytest.mark.parametrize(("name", "content", "message"), [
    ("train.csv", b"a,b,churned\n1,2,0\n", "train.csv cannot be loaded as a sklearn-joblib model"),
    ("m.skops", b"not a zip\n", "m.skops cannot be read as a skops file"),
    ("m.joblib", b"", "m.joblib cannot be loaded as a sklearn-joblib model"),
])
def test_cli_bundle_create_on_a_file_that_is_no_model(tmp_path: Path, name: str,
                                                      content: bytes, message: str) -> None:
    """One line that names the file, never a traceback from deep inside pickle or zipfile."""
    path = tmp_path / name
    path.write_bytes(content)
    result = CliRunner().invoke(seaway_cli, ["bundle", "create", "--model", str(path),
                                             "--name", "m", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {message}"), result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("classes", [["no", "yes"], None])
def test_drift_window_holds_the_same_rows_added_one_by_one_or_in_blocks(
        data: Data, classes: list[str] | None) -> None:
    """One-row requests take a shorter path into the window; what it holds must not differ."""
    names = [f"x{i}" for i in range(30)]
    if classes is None:  # a regressor's numeric predictions
        pred = data.x_train[:, 0] * 2.5
        fp = bundle.fingerprint(data.x_train, names, pred, None)
    else:  # class labels, one of them never seen in training
        pred = np.array(["no", "yes", "maybe"])[data.y_train.astype(int) + (
            np.arange(len(data.y_train)) % 17 == 0)]
        fp = bundle.fingerprint(data.x_train, names, np.array(classes)[data.y_train], classes)
    one = metrics.DriftWindow(fp, 30, size=50, min_rows=10)
    blocks = metrics.DriftWindow(fp, 30, size=50, min_rows=10)
    for i in range(130):
        one.add(data.x_train[i:i + 1], pred[i:i + 1])
    for start in range(0, 130, 13):
        blocks.add(data.x_train[start:start + 13], pred[start:start + 13])
    a, b = one.snapshot(), blocks.snapshot()
    assert a is not None and b is not None
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert one.scores() == blocks.scores()
