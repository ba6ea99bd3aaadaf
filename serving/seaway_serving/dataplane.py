"""The data plane: the model's state, its metadata, and inference through the batcher.

REST handlers stay thin and call in here (MLServer's shape), so the protocol layer never touches
the estimator and the model never sees HTTP.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from typing import Any

import numpy as np

from seaway_serving import fastpath, protocol
from seaway_serving.batching import Batcher, Outputs, Overloaded
from seaway_serving.budget import Budget
from seaway_serving.loader import LoadedModel
from seaway_serving.metrics import ServingMetrics
from seaway_serving.settings import ServingSettings


class State(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    DRAINING = "draining"


class NotFound(LookupError):
    pass


class NotReady(RuntimeError):
    pass


@dataclass(frozen=True)
class Served:
    """What is being served, fixed once the bundle is loaded."""

    model: LoadedModel
    name: str
    revision: str
    spec: protocol.InputSpec
    output_types: dict[str, str]
    #: A fast path (trees, linear models) or the estimator (fastpath.py, loader.choose_predictor).
    predictor: fastpath.Predictor


class DataPlane:
    def __init__(self, settings: ServingSettings, metrics: ServingMetrics,
                 budget: Budget | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.budget = budget
        self.state = State.LOADING
        self.served: Served | None = None
        self.batcher: Batcher | None = None

    # ------------------------------------------------------------------ lifecycle
    def activate(self, model: LoadedModel, loop: asyncio.AbstractEventLoop) -> Served:
        m = model.manifest
        name = self.settings.model_name or m.name
        revision = self.settings.revision or m.version
        outputs = ["predict"] + (["predict_proba"] if m.outputs.predict_proba else [])
        spec = protocol.InputSpec(feature_names=tuple(f.name for f in m.inputs),
                                  allow_nan=m.allow_nan, outputs=tuple(outputs),
                                  max_rows=self.settings.max_rows_per_request)
        types = {"predict": m.outputs.predict_datatype, "predict_proba": "FP64"}
        predictor = model.predictor or fastpath.EstimatorPredictor(model.estimator)
        self.served = Served(model, name, revision, spec, types, predictor)
        s = self.settings
        self.batcher = Batcher(self._predict, loop=loop, max_batch_size=s.max_batch_size,
                               max_wait_s=s.max_batch_wait_ms / 1000, max_queue=s.max_queue,
                               workers=s.predict_workers, split_large=s.split_large_requests,
                               observe=self._observe)
        batcher = self.batcher
        import sklearn

        self.metrics.bind(name, revision, m, model.digest, sklearn_version=sklearn.__version__,
                          queue_depth=lambda: batcher.depth, window=s.drift_window,
                          min_rows=s.drift_min_rows, predict_path=predictor.path)
        self.metrics.ready.set(1)
        self.state = State.READY
        return self.served

    def drain(self) -> None:
        if self.state is State.READY:
            self.state = State.DRAINING
        self.metrics.ready.set(0)

    def stop(self) -> None:
        if self.batcher is not None:
            self.batcher.stop()

    @property
    def ready(self) -> bool:
        return self.state is State.READY

    @property
    def busy(self) -> bool:
        return self.batcher is not None and self.batcher.busy

    # ------------------------------------------------------------------ model access
    def served_model(self, name: str, version: str | None) -> Served:
        served = self.served
        if served is None:
            if self.settings.model_name is not None and name != self.settings.model_name:
                raise NotFound(f"model {name!r} not found")
            raise NotReady(f"model {name!r} is not ready ({self.state.value})")
        if name != served.name:
            raise NotFound(f"model {name!r} not found; this server serves {served.name!r}")
        if version is not None and version != served.revision:
            raise NotFound(f"model {name!r} has no version {version!r}; serving "
                           f"{served.revision!r}")
        return served

    def metadata(self, served: Served) -> dict[str, Any]:
        m = served.model.manifest
        n = len(m.inputs)
        outputs = [{"name": "predict", "datatype": served.output_types["predict"],
                    "shape": [-1]}]
        if "predict_proba" in served.spec.outputs:
            k = len(m.outputs.classes or [])
            outputs.append({"name": "predict_proba", "datatype": "FP64", "shape": [-1, k]})
        return {
            "name": served.name,
            "versions": [served.revision],
            "platform": "sklearn",
            "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, n]}],
            "outputs": outputs,
        }

    # ------------------------------------------------------------------ inference
    def submit(self, served: Served, body: bytes,
               header_length: int | None) -> tuple[protocol.InferRequest, asyncio.Future[Outputs]]:
        """Decode and enqueue; raises BadRequest, or Overloaded when the queue is full. The
        future is already done when the batcher predicted the request at once."""
        req = protocol.decode_infer(body, served.spec, header_length)
        assert self.batcher is not None
        budget = self.budget
        if budget is None:
            return req, self.batcher.submit(req.x, req.outputs)
        held, rows = req.x.nbytes, req.x.shape[0]
        if not budget.take(held, rows):
            raise Overloaded(f"server busy: the rows in flight are at the budget "
                             f"({budget.max_rows} rows, {budget.max_bytes} bytes: "
                             "SEAWAY_MAX_INFLIGHT_ROWS, SEAWAY_MAX_INFLIGHT_BYTES); retry later")
        try:
            fut = self.batcher.submit(req.x, req.outputs)
        except Overloaded:
            budget.give(held, rows)
            raise
        if fut.done():  # predicted already (a lone request)
            budget.give(held, rows)
        else:
            fut.add_done_callback(lambda _: budget.give(held, rows))
        return req, fut

    def response(self, served: Served, req: protocol.InferRequest, out: Outputs) -> bytes:
        doc: dict[str, Any] = {"model_name": served.name, "model_version": served.revision}
        if req.id is not None:
            doc["id"] = req.id
        doc["outputs"] = [protocol.output_tensor(k, served.output_types[k], out[k])
                          for k in req.outputs]
        return protocol.encode(doc)

    def _predict(self, x: np.ndarray, wanted: frozenset[str]) -> Outputs:
        """Runs in a predict worker thread, or on the loop's thread for a lone request."""
        served = self.served
        assert served is not None
        pred, proba = served.predictor.outputs(x, "predict_proba" in wanted)
        out: Outputs = {"predict": pred}
        if proba is not None:
            out["predict_proba"] = proba
        return out

    def _observe(self, x: np.ndarray, out: Outputs) -> None:
        """After each successful predict call: in the worker, or after a lone answer."""
        self.metrics.observe_batch(x, out["predict"])
