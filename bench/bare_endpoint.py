"""The floor for a Python V2 endpoint: one raw ASGI callable on uvicorn + httptools.

No framework, no validation beyond what a crash would need, no metrics, no batching: decode
JSON, ``predict``, encode JSON. It answers only what the benchmark sends (``/ready`` and
``/infer`` for one model). bench/serving.py starts it to measure how close ``seaway-serve``
comes to the bare cost of HTTP + JSON + predict on the same machine.

    python bench/bare_endpoint.py --name logreg --model model.joblib --port 8080
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import joblib
import numpy as np
import uvicorn

Scope = dict[str, Any]


def build_app(name: str, model: Any) -> Any:
    infer_path = f"/v2/models/{name}/infer"
    ready_path = f"/v2/models/{name}/ready"

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        status, payload = 404, b'{"error":"not found"}'
        if scope["path"] == ready_path:
            status, payload = 200, b"{}"
        elif scope["path"] == infer_path and scope["method"] == "POST":
            tensor = json.loads(body)["inputs"][0]
            x = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
            pred = model.predict(x)
            payload = json.dumps({"model_name": name, "outputs": [
                {"name": "predict", "datatype": "FP64" if pred.dtype.kind == "f" else "INT64",
                 "shape": list(pred.shape),
                 "data": pred.tolist()}]}).encode()
            status = 200
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    args = ap.parse_args()
    app = build_app(args.name, joblib.load(args.model))
    uvicorn.run(app, host=args.host, port=args.port, http="httptools", loop="uvloop",
                access_log=False, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()
