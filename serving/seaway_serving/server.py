"""``seaway-serve``: fetch, verify and load a bundle (or a bare model file), then serve it.

The HTTP port opens first so liveness answers while a large bundle loads; readiness turns on
only after the loader's checks and self-check pass. A refusal is logged, written to the
Kubernetes termination-message file, and ends the process with a non-zero code: the pod never
becomes ready and ``kubectl describe`` shows why.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from seaway_serving import budget as memory
from seaway_serving import contract, logs, sources
from seaway_serving.dataplane import DataPlane
from seaway_serving.errors import StartupError
from seaway_serving.httpserver import HttpServer
from seaway_serving.loader import LoadedModel, Policy, choose_predictor, load
from seaway_serving.metrics import ServingMetrics
from seaway_serving.rest import Rest
from seaway_serving.settings import ServingSettings, known_variables

log = logging.getLogger("seaway_serving")


def write_termination_message(path: Path | None, message: str) -> None:
    """Best effort, and only where told (the operator sets SEAWAY_TERMINATION_LOG in a pod)."""
    if path is None or not path.parent.is_dir():
        return
    with contextlib.suppress(OSError):
        path.write_text(message + "\n")


def fetch_and_load(settings: ServingSettings, work_dir: Path) -> LoadedModel:
    t0 = time.monotonic()
    limits = sources.Limits(max_bytes=settings.max_bundle_bytes,
                            timeout_s=settings.fetch_timeout_s)
    bundle_dir = sources.materialize(settings.bundle, work_dir, limits)
    # never the query string (a presigned URL's signature) or user info: use a secretRef
    log.info("Fetched bundle", extra={"bundle": sources._redact(settings.bundle),
                                      "dir": str(bundle_dir)})
    policy = Policy(max_bytes=settings.max_bundle_bytes, pinned_digest=settings.model_digest,
                    allow_unverified=settings.allow_unverified,
                    trusted_types=tuple(settings.trusted_types),
                    expected_format=settings.model_format)
    model = choose_predictor(load(bundle_dir, policy))
    path = {"predict_path": model.predictor.path if model.predictor else "estimator",
            "predict_path_reason": model.predictor_reason}
    if model.derived:
        log.info("Loaded bare model file %s (no manifest: it predicted %d fixed rows, but there "
                 "is no self-check against recorded outputs and no drift fingerprint; "
                 "`seaway bundle create` makes a bundle with both)", bundle_dir.name,
                 len(model.manifest.sample.inputs),
                 extra={"digest": model.digest, "estimator": model.manifest.estimator,
                        "seconds": round(time.monotonic() - t0, 3), **path})
        return model
    log.info("Loaded and self-checked bundle",
             extra={"digest": model.digest, "estimator": model.manifest.estimator,
                    "seconds": round(time.monotonic() - t0, 3), **path})
    return model


def _in_thread(fn: Any, *args: Any) -> asyncio.Future[Any]:
    """Run ``fn`` in a daemon thread: a load stuck on the network must not block exit."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()

    def run() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_settle, fut, None, exc)
            return
        if not loop.is_closed():
            loop.call_soon_threadsafe(_settle, fut, result, None)

    threading.Thread(target=run, name="seaway-load", daemon=True).start()
    return fut


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


async def serve(settings: ServingSettings) -> int:
    loop = asyncio.get_running_loop()
    metrics = ServingMetrics()
    memory.use_mmap_for_large_buffers()
    trimming: list[asyncio.TimerHandle] = []

    def trim() -> None:
        trimming.clear()
        sizes = memory.trim()
        if sizes is not None:
            log.info("Returned free memory after a burst: resident %d -> %d MiB",
                     sizes[0] >> 20, sizes[1] >> 20)

    def trim_soon() -> None:  # after a burst; debounced, off the path of the last answer
        if not trimming:
            trimming.append(loop.call_later(0.2, trim))

    budget = memory.Budget(settings.max_inflight_bytes, settings.max_inflight_rows,
                           on_idle=trim_soon)
    plane = DataPlane(settings, metrics, budget)
    rest = Rest(plane, metrics, access_log=settings.access_log)
    server = HttpServer(rest, max_body=settings.max_body_bytes,
                        keepalive_timeout=settings.keepalive_timeout_s,
                        request_timeout=settings.request_timeout_s, budget=budget)
    try:
        port = await server.start(settings.host, settings.port)
    except OSError as exc:
        raise StartupError(f"cannot listen on {settings.host}:{settings.port}: "
                           f"{exc.strerror or exc}") from None
    log.info("Listening on %s:%d", settings.host, port, extra={"port": port})

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    try:
        settings.work_dir.mkdir(parents=True, exist_ok=True)
        work_dir = Path(tempfile.mkdtemp(prefix="bundle-", dir=settings.work_dir))
    except OSError as exc:
        server.close_all()
        raise StartupError(f"cannot create the work directory in {settings.work_dir}: "
                           f"{exc.strerror or exc} (mount a writable volume there, e.g. an "
                           "emptyDir on /tmp)") from None
    try:
        loading = _in_thread(fetch_and_load, settings, work_dir)
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([loading, stopping], return_when=asyncio.FIRST_COMPLETED)
        if not loading.done():
            log.info("Stopped before the model was loaded")
            server.close_all()
            return 0
        try:
            model = loading.result()
        except StartupError:
            plane.state = plane.state.FAILED
            server.close_all()
            raise
        served = plane.activate(model, loop)
        rest.on_model_loaded(served)
        server.extra_headers = (f"seaway-model-digest: {model.digest}\r\n"
                                f"seaway-model-revision: {served.revision}\r\n").encode()
        gc.collect()
        gc.freeze()  # the model's objects never die: keep them out of the collector's scans
        log.info("Serving model %s revision %s", served.name, served.revision,
                 extra={"model": served.name, "revision": served.revision,
                        "digest": model.digest})
        await stopping
        return await _drain(server, plane, settings.shutdown_grace_s)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


async def _drain(server: HttpServer, plane: DataPlane, grace: float) -> int:
    """SIGTERM: not ready, stop accepting, finish what was accepted, then close."""
    log.info("Draining: finishing in-flight requests", extra={"in_flight": server.in_flight})
    plane.drain()
    await server.stop_accepting()
    # a request already in a socket buffer is read on the next loop turns: give it a moment
    # before idle keep-alive connections are closed under it
    await asyncio.sleep(0.05)
    deadline = time.monotonic() + grace
    server.close_idle()
    while (server.in_flight or plane.busy) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
        server.close_idle()
    left = server.in_flight
    server.close_all()
    plane.stop()
    log.info("Stopped", extra={"unfinished": left})
    return 0


def run(settings: ServingSettings) -> int:
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:  # uvloop is in the serving extra; plain asyncio works, slower
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(serve(settings))
    except StartupError as exc:
        message = str(exc)
        log.error("Refused to serve: %s", message, extra={"reason": type(exc).__name__})
        write_termination_message(settings.termination_log, message)
        return exc.exit_code
    except Exception as exc:  # a bug or the machine (memory, disk): still say why, in one line
        message = " ".join(f"unexpected error: {type(exc).__name__}: {exc}".split())
        log.exception("Failed to serve: %s", message)
        write_termination_message(settings.termination_log, message)
        return 1
    finally:
        loop.close()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--bundle", help="Bundle dir, archive or model file: path, file://, http(s):// "
              "or s3:// [SEAWAY_BUNDLE]")
@click.option("--name", "model_name", help="Model name served [SEAWAY_MODEL_NAME]")
@click.option("--revision", help="Revision reported as model_version [SEAWAY_REVISION]")
@click.option("--digest", "model_digest", help="Pinned sha256:<hex> [SEAWAY_MODEL_DIGEST]")
@click.option("--allow-unverified/--no-allow-unverified", default=None,
              help="Load a pickle whose digest is known nowhere [SEAWAY_ALLOW_UNVERIFIED]")
@click.option("--host", help="Address to listen on [SEAWAY_HOST]")
@click.option("--port", type=int, help="Port to listen on, 0 for any [SEAWAY_PORT]")
@click.option("--max-batch-size", type=int, help="[SEAWAY_MAX_BATCH_SIZE]")
@click.option("--max-batch-wait-ms", type=float, help="[SEAWAY_MAX_BATCH_WAIT_MS]")
@click.option("--max-queue", type=int, help="[SEAWAY_MAX_QUEUE]")
@click.option("--log-level", help="[SEAWAY_LOG_LEVEL]")
def main(**options: Any) -> None:
    """Serve a Seaway model bundle over the Open Inference Protocol (V2 REST).

    Every option can also be set by the environment variable in brackets; the full list is in
    docs/serving.md.
    """
    overrides = {k: v for k, v in options.items() if v is not None}
    termination = os.environ.get(contract.TERMINATION_LOG)
    unknown = contract.unknown_variables(os.environ, known_variables())
    if unknown:
        # A misspelt setting would otherwise be ignored, and a misspelt digest means an
        # unverified model: refuse, and name what is understood.
        message = (f"unknown setting {', '.join(unknown)}: seaway-serve reads "
                   f"{', '.join(sorted(known_variables()))}")
        logs.configure("INFO")
        log.error("Refused to serve: %s", message)
        write_termination_message(Path(termination) if termination else None, message)
        sys.exit(2)
    try:
        settings = ServingSettings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "settings"
        message = f"invalid setting {field} (SEAWAY_{field.upper()}): {first['msg']}"
        logs.configure("INFO")
        log.error("Refused to serve: %s", message)
        # the settings did not parse, so where the message goes was read from the env above
        write_termination_message(Path(termination) if termination else None, message)
        sys.exit(2)
    logs.configure(settings.log_level)
    sys.exit(run(settings))


if __name__ == "__main__":
    main()
