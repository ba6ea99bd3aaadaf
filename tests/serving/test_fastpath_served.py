"""The server predicts tree ensembles and linear models on a fast path, says so, and answers bit
for bit.

The equality proofs are in tests/unit/test_fastpath.py and test_fastpath_linear.py; here a real
server: its load log line and ``seaway_predict_path`` name the path, and its answers over HTTP
equal scikit-learn's exactly (JSON carries a float64 as its shortest repr, which reads back to
the same bits).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from seaway_serving import bundle
from tests.serving.conftest import Data, Server, metric_value, v2_body


def load_line(server: Server) -> dict[str, Any]:
    [line] = [r for r in server.log_lines() if r.get("msg", "").startswith("Loaded")]
    return line


def infer(server: Server, name: str, rows: np.ndarray) -> dict[str, Any]:
    body = v2_body(rows, outputs=[{"name": "predict"}, {"name": "predict_proba"}])
    reply = server.client().post(f"/v2/models/{name}/infer", body)
    assert reply.status == 200, reply.body
    return {o["name"]: o for o in reply.json()["outputs"]}


def test_forest_is_served_on_the_fast_path(start_server: Any, forest_bundle: Path,
                                           forest: Any, data: Data) -> None:
    server = start_server(forest_bundle).wait_ready()
    line = load_line(server)
    assert line["predict_path"] == "fast-trees", line
    assert "bitwise equal" in line["predict_path_reason"]
    text = server.metrics()
    assert metric_value(text, "seaway_predict_path", model="forest", path="fast-trees") == 1
    for rows in (data.x_test[:1], data.x_test[:3], data.x_test[:40]):
        out = infer(server, "forest", rows)
        assert out["predict"]["data"] == forest.predict(rows).tolist()
        got = np.asarray(out["predict_proba"]["data"]).reshape(len(rows), -1)
        assert np.array_equal(got, forest.predict_proba(rows))


def test_string_labels_with_missing_values(start_server: Any, tmp_path: Path,
                                           data: Data) -> None:
    x = data.x_train.copy()
    x[::7, 3] = np.nan
    labels = np.where(data.y_train == 1, "benign", "malignant")
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(x, labels)
    bundle.create_from_estimator(model, tmp_path / "hgb", name="hgb", data=x)
    server = start_server(tmp_path / "hgb").wait_ready()
    assert load_line(server)["predict_path"] == "fast-trees"
    rows = data.x_test[:5].copy()
    rows[1, 3] = np.nan
    out = infer(server, "hgb", rows)
    assert out["predict"]["data"] == model.predict(rows).tolist()
    got = np.asarray(out["predict_proba"]["data"]).reshape(len(rows), -1)
    assert np.array_equal(got, model.predict_proba(rows))


def test_linear_models_are_served_on_the_linear_fast_path(start_server: Any, logreg_bundle: Path,
                                                         logreg: Any, data: Data) -> None:
    server = start_server(logreg_bundle).wait_ready()
    line = load_line(server)
    assert line["predict_path"] == "fast-linear", line
    assert "bitwise equal" in line["predict_path_reason"]
    assert metric_value(server.metrics(), "seaway_predict_path", model="logreg",
                        path="fast-linear") == 1
    for rows in (data.x_test[:1], data.x_test[:3], data.x_test[:40]):
        out = infer(server, "logreg", rows)
        assert out["predict"]["data"] == logreg.predict(rows).tolist()
        got = np.asarray(out["predict_proba"]["data"]).reshape(len(rows), -1)
        assert np.array_equal(got, logreg.predict_proba(rows))


def test_scaler_pipeline_with_string_labels(start_server: Any, tmp_path: Path,
                                            data: Data) -> None:
    labels = np.where(data.y_train == 1, "benign", "malignant")
    labels[:40] = "unsure"  # three classes: softmax
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(
        data.x_train, labels)
    bundle.create_from_estimator(model, tmp_path / "pipe", name="pipe", data=data.x_train)
    server = start_server(tmp_path / "pipe").wait_ready()
    assert load_line(server)["predict_path"] == "fast-linear"
    rows = data.x_test[:7]
    out = infer(server, "pipe", rows)
    assert out["predict"]["data"] == model.predict(rows).tolist()
    got = np.asarray(out["predict_proba"]["data"]).reshape(len(rows), -1)
    assert np.array_equal(got, model.predict_proba(rows))


def test_other_models_keep_the_estimator(start_server: Any, tmp_path: Path, data: Data) -> None:
    model = KNeighborsClassifier().fit(data.x_train, data.y_train)
    bundle.create_from_estimator(model, tmp_path / "knn", name="knn", data=data.x_train)
    server = start_server(tmp_path / "knn").wait_ready()
    line = load_line(server)
    assert line["predict_path"] == "estimator"
    assert "KNeighborsClassifier" in line["predict_path_reason"]
    assert metric_value(server.metrics(), "seaway_predict_path", model="knn",
                        path="estimator") == 1
