"""A model that raises on input the server accepted answers 5xx: the failure is the model's.

The server checks what it can (shape, datatypes, finite values) and answers 400 for a request
that fails those checks. Past them, the request is valid for the model's declared inputs; if the
model still raises, a client cannot fix the request (another revision answers the same rows), so
the answer is 500. That is also what makes such a model visible to canary analysis, which
counts the router's 5xx per revision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from seaway_serving import bundle
from tests.serving.conftest import Data, metric_value, v2_body


def test_a_model_raising_on_accepted_input_answers_500(start_server: Any, tmp_path: Path,
                                                       data: Data) -> None:
    # sqrt of a negative feature is NaN, which LogisticRegression refuses with a ValueError
    positive = np.abs(data.x_train)
    model = make_pipeline(FunctionTransformer(np.sqrt),
                          LogisticRegression(max_iter=10000)).fit(positive, data.y_train)
    bundle.create_from_estimator(model, tmp_path / "sqrt", name="sqrt", data=positive)
    server = start_server(tmp_path / "sqrt").wait_ready()
    client = server.client()
    good = np.abs(data.x_test[:3])
    ok = client.post("/v2/models/sqrt/infer", v2_body(good))
    assert ok.status == 200
    assert ok.json()["outputs"][0]["data"] == model.predict(good).tolist()
    bad = good.copy()
    bad[:, 0] = -1.0
    failed = client.post("/v2/models/sqrt/infer", v2_body(bad))
    assert failed.status == 500, failed.body
    assert "ValueError" in failed.json()["error"]
    # a malformed request stays the client's fault
    assert client.post("/v2/models/sqrt/infer", v2_body(good[:, :3])).status == 400
    text = client.get("/metrics").body.decode()
    assert metric_value(text, "seaway_request_errors_total", code="500") == 1
    server.stop()
