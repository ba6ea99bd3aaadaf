"""KServe's ModelServer serving one scikit-learn model file: bench/serving.py's ``kserve`` config.

KServe's own sklearnserver is not published on PyPI, so this is the smallest custom model its
docs describe: load with joblib, V2 tensor in, ``predict`` out. Runs from KServe's virtualenv
(its pins conflict with ours); every KServe switch is left at its default (one worker, gRPC on,
access and latency logs on), except the ports:

    python bench/kserve_model.py --name rf --model model.joblib --http_port 8080 --grpc_port 8081
"""

from __future__ import annotations

import argparse
from typing import Any

import joblib
import kserve
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse


class SklearnModel(kserve.Model):  # type: ignore[misc]
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.model: Any = None
        self.load()

    def load(self) -> bool:
        self.model = joblib.load(self.path)
        self.ready = True
        return True

    def predict(self, payload: InferRequest, headers: Any = None,
                response_headers: Any = None) -> InferResponse:
        pred = self.model.predict(payload.inputs[0].as_numpy())
        datatype = "FP64" if pred.dtype.kind == "f" else "INT64"
        out = InferOutput(name="predict", shape=list(pred.shape), datatype=datatype,
                          data=pred.tolist())
        return InferResponse(response_id=payload.id or "", model_name=self.name,
                             infer_outputs=[out])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--model", required=True)
    args, _ = ap.parse_known_args()  # --http_port and --grpc_port are KServe's own flags
    kserve.ModelServer().start([SklearnModel(args.name, args.model)])


if __name__ == "__main__":
    main()
