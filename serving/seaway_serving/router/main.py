"""``seaway-router``: listen, follow the routes (file or ConfigMap), forward until SIGTERM.

The port opens before any routes are known: ``/healthz`` answers at once and ``/readyz`` turns
200 with the first valid document, so a Pod whose ConfigMap is missing or invalid stays
unready (and says why in its log) instead of crash-looping.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from seaway_serving import budget as memory
from seaway_serving import logs
from seaway_serving.httpserver import HttpServer
from seaway_serving.router import kube
from seaway_serving.router.metrics import RouterMetrics
from seaway_serving.router.proxy import Limits, Router
from seaway_serving.router.settings import RouterSettings
from seaway_serving.router.sources import ConfigMapFeed, FileSource, Loader

log = logging.getLogger("seaway_serving.router")

TERMINATION_LOG = Path("/dev/termination-log")


class StartupError(RuntimeError):
    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def kube_access(settings: RouterSettings) -> kube.KubeAccess:
    """Explicit options first, then a kubeconfig, then the Pod's ServiceAccount."""
    if settings.kube_api:
        return kube.KubeAccess(
            settings.kube_api,
            ca_file=str(settings.kube_ca_file) if settings.kube_ca_file else None,
            token_file=str(settings.kube_token_file) if settings.kube_token_file else None,
            client_cert=str(settings.kube_client_cert) if settings.kube_client_cert else None,
            client_key=str(settings.kube_client_key) if settings.kube_client_key else None,
        )
    if settings.kubeconfig:
        return kube.from_kubeconfig(settings.kubeconfig, settings.kube_context)
    return kube.in_cluster(os.environ, settings.kube_serviceaccount_dir)


async def serve(settings: RouterSettings) -> int:
    loop = asyncio.get_running_loop()
    metrics = RouterMetrics()
    limits = Limits(
        backend_timeout=settings.backend_timeout_s, connect_timeout=settings.connect_timeout_s,
        max_connections=settings.max_backend_connections, max_queue=settings.max_backend_queue,
        max_response=settings.max_response_bytes,
        max_mirror_in_flight=settings.max_mirror_in_flight,
        feedback_capacity=settings.feedback_capacity, feedback_ttl=settings.feedback_ttl_s)
    token = None
    if settings.feedback_token_file is not None:
        try:
            token = settings.feedback_token_file.read_text().strip()
        except OSError as exc:
            raise StartupError(f"cannot read the feedback token file "
                               f"{settings.feedback_token_file}: {exc.strerror or exc}",
                               exit_code=2) from None
        if len(token) < 16:
            raise StartupError(f"the feedback token in {settings.feedback_token_file} is shorter "
                               "than 16 characters", exit_code=2)
    router = Router(metrics, limits, access_log=settings.access_log, seed=settings.seed,
                    control_token=token, control_port=settings.control_port is not None)
    loader = Loader(router, metrics, settings.backend_urls)

    source: Any
    if settings.config is not None:
        source = FileSource(settings.config, loader, settings.poll_interval_s)
        what = f"file {settings.config}"
    else:
        assert settings.configmap is not None
        namespace, name = settings.configmap.split("/", 1)
        try:
            access = kube_access(settings)
            access.host_port  # noqa: B018  (validates the URL now, not at first connect)
            access.ssl_context()
            access.authorization()
        except kube.KubeSetupError as exc:
            raise StartupError(str(exc), exit_code=2) from None
        source = kube.ConfigMapWatch(access, namespace, name,
                                     ConfigMapFeed(namespace, name, loader),
                                     watch_seconds=settings.kube_watch_seconds)
        what = f"ConfigMap {settings.configmap} via {access.server}"

    # bodies wait for a backend here: bound them all together, and give memory back after a burst
    memory.use_mmap_for_large_buffers()
    trimming: list[asyncio.TimerHandle] = []

    def trim() -> None:
        trimming.clear()
        memory.trim()

    def trim_soon() -> None:
        if not trimming:
            trimming.append(loop.call_later(0.2, trim))

    budget = memory.Budget(settings.max_inflight_bytes, 1 << 62, on_idle=trim_soon)
    server = HttpServer(router, max_body=settings.max_body_bytes,
                        keepalive_timeout=settings.keepalive_timeout_s,
                        request_timeout=settings.request_timeout_s, budget=budget)
    try:
        port = await server.start(settings.host, settings.port)
    except OSError as exc:
        raise StartupError(f"cannot listen on {settings.host}:{settings.port}: "
                           f"{exc.strerror or exc}") from None
    log.info("Listening on %s:%d", settings.host, port, extra={"port": port})
    control: HttpServer | None = None
    if settings.control_port is not None:
        control = HttpServer(router.control, max_body=settings.max_body_bytes,
                             keepalive_timeout=settings.keepalive_timeout_s,
                             request_timeout=settings.request_timeout_s)
        try:
            control_port = await control.start(settings.host, settings.control_port)
        except OSError as exc:
            raise StartupError(f"cannot listen on {settings.host}:{settings.control_port}: "
                               f"{exc.strerror or exc}") from None
        log.info("Serving /feedback and /experiment on %s:%d", settings.host, control_port,
                 extra={"control_port": control_port})
    log.info("Following routes from %s", what)
    # Everything imported so far lives as long as the process: keep it out of the collector's
    # scans, or a full collection (~10 ms here) lands in some request's latency.
    gc.collect()
    gc.freeze()

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    follower = loop.create_task(source.run())
    try:
        stopping = loop.create_task(stop.wait())
        await asyncio.wait([follower, stopping], return_when=asyncio.FIRST_COMPLETED)
        if follower.done():  # a bug: the sources never return
            follower.result()
            raise StartupError("the routes source stopped")
        if control is not None:
            await control.stop_accepting()
            control.close_all()
        return await _drain(server, router, settings.shutdown_grace_s)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await follower


async def _drain(server: HttpServer, router: Router, grace: float) -> int:
    """SIGTERM: not ready, stop accepting, finish what was accepted, then close."""
    log.info("Draining: finishing in-flight requests", extra={"in_flight": server.in_flight})
    router.draining = True
    await server.stop_accepting()
    await asyncio.sleep(0.05)  # requests already in socket buffers are read on the next turns
    deadline = time.monotonic() + grace
    server.close_idle()
    while server.in_flight and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
        server.close_idle()
    left = server.in_flight
    server.close_all()
    router.close()
    log.info("Stopped", extra={"unfinished": left})
    return 0


def _write_termination_message(message: str) -> None:
    """Best effort: the file exists only in a Pod (``kubectl describe`` shows it)."""
    path = Path(os.environ.get("SEAWAY_TERMINATION_LOG") or TERMINATION_LOG)
    if path.parent.is_dir():
        with contextlib.suppress(OSError):
            path.write_text(message + "\n")


def run(settings: RouterSettings) -> int:
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:  # uvloop is in the serving extra; plain asyncio works, slower
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(serve(settings))
    except StartupError as exc:
        log.error("Refused to start: %s", exc)
        _write_termination_message(str(exc))
        return exc.exit_code
    except Exception as exc:  # a bug or the machine: still say why, in one line
        message = " ".join(f"unexpected error: {type(exc).__name__}: {exc}".split())
        log.exception("Failed to route: %s", message)
        _write_termination_message(message)
        return 1
    finally:
        loop.close()


def _backend_urls(values: tuple[str, ...]) -> dict[str, str] | None:
    if not values:
        return None
    out = {}
    for value in values:
        name, sep, url = value.partition("=")
        if not sep or not name or not url:
            raise click.BadParameter(f"{value!r} is not NAME=URL", param_hint="--backend-url")
        out[name] = url
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", type=click.Path(path_type=Path),
              help="Routes file, re-read when it changes [SEAWAY_CONFIG]")
@click.option("--configmap", help="NAMESPACE/NAME of the routes ConfigMap to watch "
              "[SEAWAY_CONFIGMAP]")
@click.option("--backend-url", "backend_url", multiple=True, metavar="NAME=URL",
              help="Use URL for backend NAME instead of the document's (repeatable) "
                   "[SEAWAY_BACKEND_URLS, JSON]")
@click.option("--kubeconfig", type=click.Path(path_type=Path),
              help="Reach the API with this kubeconfig instead of the ServiceAccount")
@click.option("--kube-context", help="Context of --kubeconfig (default: current)")
@click.option("--kube-api", help="API server URL instead of the ServiceAccount's")
@click.option("--kube-token-file", type=click.Path(path_type=Path), help="Bearer token file")
@click.option("--kube-ca-file", type=click.Path(path_type=Path), help="API server CA bundle")
@click.option("--kube-client-cert", type=click.Path(path_type=Path), help="Client certificate")
@click.option("--kube-client-key", type=click.Path(path_type=Path), help="Client key")
@click.option("--host", help="Address to listen on [SEAWAY_HOST]")
@click.option("--port", type=int, help="Port to listen on, 0 for any [SEAWAY_PORT]")
@click.option("--backend-timeout-s", type=float, help="[SEAWAY_BACKEND_TIMEOUT_S]")
@click.option("--log-level", help="[SEAWAY_LOG_LEVEL]")
@click.option("--seed", type=int, help="Seed the random choices (reproducible tests)")
def main(backend_url: tuple[str, ...], **options: Any) -> None:
    """Split traffic between a ModelDeployment's revisions (weights, A/B, bandit, mirror).

    Every option can also be set by the environment variable in brackets; the full list is in
    docs/router.md.
    """
    overrides = {k: v for k, v in options.items() if v is not None}
    urls = _backend_urls(backend_url)
    if urls is not None:
        overrides["backend_urls"] = urls
    try:
        settings = RouterSettings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "settings"
        message = f"invalid setting {field}: {first['msg']}" if field != "settings" else \
            f"invalid settings: {first['msg'].removeprefix('Value error, ')}"
        logs.configure("INFO")
        log.error("Refused to start: %s", message)
        _write_termination_message(message)
        sys.exit(2)
    logs.configure(settings.log_level)
    sys.exit(run(settings))


if __name__ == "__main__":
    main()
