"""The server predicts tree ensembles on the fast path, says so, and answers bit for bit.

The equality proofs are in tests/unit/test_fastpath.py; here a real server: its load log line and
``seaway_predict_path`` name the path, and its answers over HTTP equal scikit-learn's exactly
(JSON carries a float64 as its shortest repr, which reads back to the same bits).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

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


def test_other_models_keep_the_estimator(start_server: Any, logreg_bundle: Path) -> None:
    server = start_server(logreg_bundle).wait_ready()
    line = load_line(server)
    assert line["predict_path"] == "estimator"
    assert "LogisticRegression" in line["predict_path_reason"]
    assert metric_value(server.metrics(), "seaway_predict_path", model="logreg",
                        path="estimator") == 1
