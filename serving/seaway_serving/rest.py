"""Open Inference Protocol REST routes: map HTTP to data-plane calls and results to HTTP.

Kept thin on purpose: no model logic here, only paths, status codes and response metrics.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from seaway_serving import __version__, protocol
from seaway_serving.batching import Overloaded
from seaway_serving.dataplane import DataPlane, NotFound, NotReady, Served
from seaway_serving.httpserver import Deferred, Request, Response, error_response
from seaway_serving.metrics import ServingMetrics

log = logging.getLogger("seaway_serving.access")

_OK = Response(200, b"{}")
_LIVE = Response(200, b'{"live":true}')
_READY = Response(200, b'{"ready":true}')
_NOT_READY = Response(503, b'{"ready":false}')
_RETRY = b"retry-after: 1\r\n"


class Rest:
    def __init__(self, plane: DataPlane, metrics: ServingMetrics, *, access_log: bool) -> None:
        self.plane = plane
        self.metrics = metrics
        self.access_log = access_log
        self._infer_paths: dict[str, Served] = {}

    def on_model_loaded(self, served: Served) -> None:
        base = f"/v2/models/{served.name}"
        self._infer_paths = {f"{base}/infer": served,
                             f"{base}/versions/{served.revision}/infer": served}

    def __call__(self, req: Request) -> Response | Deferred:
        served = self._infer_paths.get(req.path)
        if served is not None and req.method == "POST":  # the hot path
            return self._infer(req, served)
        return self._route(req)

    # ------------------------------------------------------------------ routing
    def _route(self, req: Request) -> Response | Deferred:
        parts = req.path.strip("/").split("/")
        if parts[0] == "metrics" and len(parts) == 1:
            return self._get(req) or Response(200, self.metrics.exposition(),
                                              content_type=b"text/plain; version=0.0.4")
        if parts[0] != "v2":
            return error_response(404, f"no route for {req.path}")
        rest = parts[1:]
        if not rest or rest == [""]:
            return self._get(req) or _json(200, {"name": "seaway", "version": __version__,
                                                 "extensions": []})
        if rest == ["health", "live"]:
            return self._get(req) or _LIVE
        if rest == ["health", "ready"]:
            return self._get(req) or (_READY if self.plane.ready else _NOT_READY)
        if rest[0] != "models" or len(rest) < 2:
            return error_response(404, f"no route for {req.path}")
        name, tail = rest[1], rest[2:]
        version = None
        if len(tail) >= 2 and tail[0] == "versions":
            version, tail = tail[1], tail[2:]
        action = tail[0] if len(tail) == 1 else ("" if not tail else None)
        if action is None or action not in ("", "ready", "infer"):
            return error_response(404, f"no route for {req.path}")
        try:
            served = self.plane.served_model(name, version)
        except NotFound as exc:
            return self._count(req, error_response(404, str(exc)), action == "infer")
        except NotReady as exc:
            if action == "ready":
                return Response(503, _dumps({"name": name, "ready": False}))
            return self._count(req, error_response(503, str(exc)), action == "infer")
        if action == "infer":
            if req.method != "POST":
                return error_response(405, "use POST for infer")
            return self._infer(req, served)
        if bad := self._get(req):
            return bad
        if action == "ready":
            ready = self.plane.ready
            return Response(200 if ready else 503, _dumps({"name": name, "ready": ready}))
        return _json(200, self.plane.metadata(served))

    @staticmethod
    def _get(req: Request) -> Response | None:
        if req.method != "GET":
            return error_response(405, f"use GET for {req.path}")
        return None

    # ------------------------------------------------------------------ inference
    def _infer(self, req: Request, served: Served) -> Response | Deferred:
        header_length = None
        raw = req.headers.get("inference-header-content-length")
        if raw is not None:
            if not raw.isdigit():
                return self._count(req, error_response(
                    400, "Inference-Header-Content-Length must be a number"))
            header_length = int(raw)
        if req.headers.get("content-encoding", "identity").lower() != "identity":
            return self._count(req, error_response(
                415, "compressed request bodies are not supported"))
        try:
            parsed, fut = self.plane.submit(served, req.body, header_length)
        except protocol.BadRequest as exc:
            return self._count(req, error_response(400, str(exc)))
        except Overloaded as exc:
            resp = error_response(503, str(exc) or "server overloaded: the inference queue is "
                                  "full, retry later")
            resp.headers = _RETRY
            return self._count(req, resp)

        def finish(f: asyncio.Future[Any]) -> Response:
            exc = f.exception()
            if exc is None:
                resp = Response(200, self.plane.response(served, parsed, f.result()))
            else:
                # The request passed every check the server makes (shape, types, finite
                # values): a model that still raises is the model's failure, not the client's,
                # and a 5xx is what canary analysis counts against the revision.
                log.error("Failed to predict: %s: %s", type(exc).__name__, exc)
                resp = error_response(500, _failure(exc))
            return self._count(req, resp)

        if fut.done():  # a lone request, predicted already: answered in this same callback
            return finish(fut)
        req.body = b""  # decoded: the rows are what waits for the model, not the JSON
        return fut, finish

    def _count(self, req: Request, resp: Response, infer: bool = True) -> Response:
        if infer:
            elapsed = time.perf_counter() - req.received
            self.metrics.observe_request(resp.status, elapsed)
            if self.access_log:
                log.info("Answered %s %s", req.method, req.path,
                         extra={"status": resp.status, "duration_ms": round(elapsed * 1e3, 3)})
        return resp


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _failure(exc: BaseException) -> str:
    """What the client is told: the exception's type, and for the input errors scikit-learn
    raises (``ValueError``/``TypeError``, which describe the rows) their first line."""
    what = f"prediction failed: {type(exc).__name__}"
    if isinstance(exc, (ValueError, TypeError)):
        first = str(exc).strip().splitlines()[:1]
        if first:
            what += f": {first[0][:200]}"
    return what


def _json(status: int, doc: Any) -> Response:
    return Response(status, _dumps(doc))
