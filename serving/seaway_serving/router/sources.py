"""Where route documents come from, and the one place that accepts or refuses them.

Two sources feed the same :class:`Loader`: a file polled for changes (``--config``, for tests
and demos), and the ConfigMap followed through the Kubernetes API (``--configmap``). The loader
parses, refuses what it cannot apply (logged once per distinct document, counted in
``seaway_router_config_refused_total{reason}``) and keeps the last good routes in force; a
document equal to the one in force changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from seaway_serving.router import config
from seaway_serving.router.config import ConfigError
from seaway_serving.router.metrics import RouterMetrics
from seaway_serving.router.proxy import Router

log = logging.getLogger("seaway_serving.router")


class Loader:
    def __init__(self, router: Router, metrics: RouterMetrics,
                 overrides: Mapping[str, str] | None = None) -> None:
        self.router = router
        self.metrics = metrics
        self.overrides = dict(overrides or {})
        self.generation = 0
        self.applied_text: str | None = None
        self.refused_text: str | None = None
        metrics.config_valid.set(0)

    def offer(self, text: str, origin: str) -> bool:
        """Apply the routes document ``text`` if it is valid and new; True if it is in force."""
        if text == self.applied_text:
            self.refused_text = None
            self.metrics.config_valid.set(1)
            return True
        try:
            routes = config.parse(text, self.overrides)
        except ConfigError as exc:
            self.refuse(exc, origin, text)
            return False
        self.router.apply(routes)
        self.generation += 1
        self.applied_text, self.refused_text = text, None
        self.metrics.config_applied.inc()
        self.metrics.config_generation.set(self.generation)
        self.metrics.config_timestamp.set(time.time())
        self.metrics.config_valid.set(1)
        log.info("Applied routes generation %d from %s: %s", self.generation, origin,
                 routes.summary(), extra={"generation": self.generation, "origin": origin,
                                          "model_deployment": routes.model_deployment})
        return True

    def refuse(self, exc: ConfigError, origin: str, text: str | None = None) -> None:
        self.metrics.config_valid.set(0)
        if text is not None and text == self.refused_text:
            return  # the same bad document again (a relist, a touch): said already
        self.refused_text = text
        self.metrics.config_refused.labels(exc.reason).inc()
        kept = (f"kept generation {self.generation} in force" if self.generation
                else "no routes in force yet")
        log.error("Refused routes from %s: %s; %s", origin, exc, kept,
                  extra={"reason": exc.reason, "origin": origin, "generation": self.generation})


class FileSource:
    """Polls a file (``stat`` every ``interval``); re-reads it when its identity, size or mtime
    changes. Atomic replacements (write elsewhere, rename over) are the safe way to edit it."""

    def __init__(self, path: Path, loader: Loader, interval: float = 0.1) -> None:
        self.path = path
        self.loader = loader
        self.interval = interval
        self._seen: tuple[int, int, int] | None = None
        self._missing_logged = False

    def check(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            if not self._missing_logged:
                self._missing_logged = True
                self._seen = None
                self.loader.refuse(ConfigError("missing", f"cannot read {self.path}: "
                                               f"{exc.strerror or exc}"), str(self.path))
            return
        self._missing_logged = False
        identity = (st.st_ino, st.st_size, st.st_mtime_ns)
        if identity == self._seen:
            return
        self._seen = identity
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            self.loader.refuse(ConfigError("missing", f"cannot read {self.path}: "
                                           f"{exc.strerror or exc}"), str(self.path))
            return
        origin = f"file {self.path}"
        try:
            text = config.routes_text(raw, yaml_allowed=self.path.suffix in (".yaml", ".yml"))
        except ConfigError as exc:
            self.loader.refuse(exc, origin, raw.decode("utf-8", "replace"))
            return
        except UnicodeDecodeError:
            self.loader.refuse(ConfigError("unparsable", "file is not UTF-8 text"), origin)
            return
        self.loader.offer(text, origin)

    async def run(self) -> None:
        while True:
            self.check()
            await asyncio.sleep(self.interval)


class ConfigMapFeed:
    """Turns ConfigMap objects (from :class:`~seaway_serving.router.kube.ConfigMapWatch`)
    into documents for the loader."""

    def __init__(self, namespace: str, name: str, loader: Loader) -> None:
        self.origin = f"ConfigMap {namespace}/{name}"
        self.loader = loader

    def __call__(self, obj: dict[str, Any] | None) -> None:
        if obj is None:
            self.loader.refuse(ConfigError("missing", "the ConfigMap does not exist"),
                               self.origin, "")
            return
        version = (obj.get("metadata") or {}).get("resourceVersion", "?")
        origin = f"{self.origin} (resourceVersion {version})"
        try:
            text = config.configmap_routes(obj)
        except ConfigError as exc:
            self.loader.refuse(exc, origin, repr(obj.get("data")))
            return
        self.loader.offer(text, origin)
