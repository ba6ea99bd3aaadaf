"""Just enough of the Kubernetes API to follow one ConfigMap: list, then watch, over HTTPS.

Why not the ``kubernetes`` client: the serving package must not depend on it (an import-linter
contract), the image stays small, and one list + one watch on a single object is a few dozen
lines of HTTP. The router needs ``get``, ``list`` and ``watch`` on its ConfigMap only; both
calls carry ``fieldSelector=metadata.name=<name>``, so a Role can restrict them to that name
with ``resourceNames``.

Access comes from the pod's ServiceAccount (``KUBERNETES_SERVICE_HOST``/``_PORT``, the token
and CA under ``/var/run/secrets/kubernetes.io/serviceaccount``; the token file is re-read on
every connection because kubelet rotates it), or, outside a cluster, from explicit options or a
kubeconfig file (token or client certificate).

The watch follows the reflector pattern: list (which gives the current object and a
resourceVersion), watch from that version, resume from the last version seen when the server
ends the watch, and list again when the server says the version is too old (410 Gone).
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import json
import logging
import random
import shutil
import socket
import ssl
import tempfile
import urllib.parse
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httptools
import yaml

log = logging.getLogger("seaway_serving.router.kube")

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MAX_BODY = 8 << 20
WATCH_SECONDS = 180


class KubeSetupError(RuntimeError):
    """The router was told to watch a ConfigMap but has no way to reach the API."""


class KubeError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


@dataclass(frozen=True)
class KubeAccess:
    server: str  # https://host:port
    ca_file: str | None = None
    token_file: str | None = None
    token: str | None = None
    client_cert: str | None = None
    client_key: str | None = None

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urllib.parse.urlsplit(self.server)
        if parts.scheme != "https" or not parts.hostname:
            raise KubeSetupError(f"API server URL {self.server!r} must be https://host[:port]")
        return parts.hostname, parts.port or 443

    def ssl_context(self) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.client_cert:
                context.load_cert_chain(self.client_cert, self.client_key)
        except (OSError, ssl.SSLError) as exc:
            raise KubeSetupError(f"cannot load the API server's CA or client certificate: "
                                 f"{exc}") from None
        return context

    def authorization(self) -> str | None:
        if self.token_file:
            try:
                token = Path(self.token_file).read_text().strip()
            except OSError as exc:
                raise KubeSetupError(f"cannot read the token file {self.token_file}: "
                                     f"{exc.strerror or exc}") from None
            return f"Bearer {token}"
        if self.token:
            return f"Bearer {self.token}"
        return None


def in_cluster(env: Mapping[str, str], sa_dir: Path = SERVICE_ACCOUNT_DIR) -> KubeAccess:
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise KubeSetupError(
            "not running in a cluster (KUBERNETES_SERVICE_HOST/PORT unset): give --kubeconfig, "
            "or --kube-api with --kube-ca-file and a token or client certificate")
    token, ca = sa_dir / "token", sa_dir / "ca.crt"
    if not token.is_file() or not ca.is_file():
        raise KubeSetupError(
            f"no ServiceAccount token and CA in {sa_dir}: the router Pod needs a ServiceAccount "
            "(automountServiceAccountToken) allowed to get, list and watch its ConfigMap")
    if ":" in host:
        host = f"[{host}]"
    return KubeAccess(f"https://{host}:{port}", ca_file=str(ca), token_file=str(token))


def from_kubeconfig(path: Path, context: str | None = None) -> KubeAccess:
    """The server and credentials of a kubeconfig's (current) context. Inline ``*-data``
    fields are written to a private temporary directory (ssl needs files)."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise KubeSetupError(f"cannot read kubeconfig {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise KubeSetupError(f"kubeconfig {path} is not a mapping")
    wanted = context or doc.get("current-context")
    ctx = _named(doc.get("contexts"), wanted, "context", path)
    cluster = _named(doc.get("clusters"), ctx.get("cluster"), "cluster", path)
    user = _named(doc.get("users"), ctx.get("user"), "user", path) if ctx.get("user") else {}
    base = path.parent
    private: list[Path] = []

    def file_of(section: Mapping[str, Any], key: str) -> str | None:
        if section.get(f"{key}-data"):
            if not private:
                private.append(Path(tempfile.mkdtemp(prefix="seaway-router-kube-")))
                atexit.register(shutil.rmtree, private[0], True)
            target = private[0] / key
            target.write_bytes(base64.b64decode(section[f"{key}-data"]))
            target.chmod(0o600)
            return str(target)
        value = section.get(key)
        return str(base / value) if value else None

    server = cluster.get("server")
    if not isinstance(server, str):
        raise KubeSetupError(f"kubeconfig {path}: cluster has no server")
    return KubeAccess(
        server=server,
        ca_file=file_of(cluster, "certificate-authority"),
        token_file=str(base / user["tokenFile"]) if user.get("tokenFile") else None,
        token=user.get("token"),
        client_cert=file_of(user, "client-certificate"),
        client_key=file_of(user, "client-key"),
    )


def _named(items: Any, name: Any, kind: str, path: Path) -> dict[str, Any]:
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name:
            body = item.get(kind)
            return body if isinstance(body, dict) else {}
    raise KubeSetupError(f"kubeconfig {path} has no {kind} named {name!r}")


class _Sink:
    """httptools callbacks collecting one response; body pieces are handed out as they come."""

    def __init__(self) -> None:
        self.status = 0
        self.pieces: list[bytes] = []
        self.complete = False
        self.headers_done = False

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.pieces.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


class ConfigMapWatch:
    """Calls ``on_object(configmap_or_None)`` with the ConfigMap now, then on every change."""

    def __init__(self, access: KubeAccess, namespace: str, name: str,
                 on_object: Callable[[dict[str, Any] | None], None], *,
                 timeout: float = 10.0, watch_seconds: int = WATCH_SECONDS) -> None:
        self.access = access
        self.namespace = namespace
        self.name = name
        self.on_object = on_object
        self.timeout = timeout
        self.watch_seconds = watch_seconds
        self._context: ssl.SSLContext | None = None
        self.failures = 0  # in a row; a recovered watch says so in the log

    @property
    def what(self) -> str:
        return f"ConfigMap {self.namespace}/{self.name}"

    def _path(self, **params: str) -> str:
        query = {"fieldSelector": f"metadata.name={self.name}", **params}
        ns = urllib.parse.quote(self.namespace, safe="")
        return f"/api/v1/namespaces/{ns}/configmaps?{urllib.parse.urlencode(query)}"

    async def run(self) -> None:
        backoff = 0.25
        while True:
            try:
                version: str | None = await self._list()
                backoff = 0.25
                while version is not None:
                    version = await self._watch(version)
                    if version is not None:
                        log.debug("Renewed the watch on %s from resourceVersion %s", self.what,
                                  version)
                log.info("Listing %s again: the watch's version expired", self.what)
            except asyncio.CancelledError:
                raise
            except KubeError as exc:
                hint = (" (the router's ServiceAccount needs get, list and watch on this "
                        "ConfigMap)" if exc.status in (401, 403) else "")
                log.error("Failed to read %s: %s%s", self.what, exc, hint)
            except (OSError, ssl.SSLError, TimeoutError, ValueError,
                    httptools.HttpParserError) as exc:
                log.warning("Lost the watch on %s: %s: %s; reconnecting", self.what,
                            type(exc).__name__, exc)
            self.failures += 1
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 10.0)

    async def _list(self) -> str:
        status, body = await self._get_all(self._path())
        if status != 200:
            raise KubeError(status, _status_message(body))
        doc = json.loads(body)
        items = doc.get("items") or []
        self.on_object(items[0] if items else None)
        return str(doc.get("metadata", {}).get("resourceVersion", ""))

    async def _watch(self, version: str) -> str | None:
        """Follow changes from ``version``; the version to resume from, or None to relist."""
        path = self._path(watch="1", resourceVersion=version, allowWatchBookmarks="true",
                          timeoutSeconds=str(self.watch_seconds))
        async with contextlib.aclosing(self._stream(path)) as stream:
            return await self._follow(stream, version)

    async def _follow(self, stream: AsyncGenerator[tuple[int, bytes], None],
                      version: str) -> str | None:
        buffer = b""
        async for status, piece in stream:
            if status != 200:
                raise KubeError(status, _status_message(piece))
            if self.failures:
                log.info("Watching %s again after %d failed attempts", self.what, self.failures)
                self.failures = 0
            buffer += piece
            if len(buffer) > MAX_BODY:
                raise ValueError("watch event larger than 8 MiB")
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        return None
                    raise KubeError(int(obj.get("code") or 500), obj.get("message", "error"))
                new_version = (obj.get("metadata") or {}).get("resourceVersion")
                if new_version:
                    version = str(new_version)
                if kind in ("ADDED", "MODIFIED"):
                    self.on_object(obj)
                elif kind == "DELETED":
                    self.on_object(None)
        return version

    async def _get_all(self, path: str) -> tuple[int, bytes]:
        status, pieces, size = 0, [], 0
        async with contextlib.aclosing(self._stream(path)) as stream:
            async for code, piece in stream:
                status = code
                pieces.append(piece)
                size += len(piece)
                if size > MAX_BODY:
                    raise ValueError("API response larger than 8 MiB")
        return status, b"".join(pieces)

    async def _stream(self, path: str) -> AsyncGenerator[tuple[int, bytes], None]:
        """GET ``path``; yields (status, body piece) as pieces arrive (an error status's body
        comes whole)."""
        host, port = self.access.host_port
        if self._context is None:
            self._context = self.access.ssl_context()
        auth = self.access.authorization()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host.strip("[]"), port, ssl=self._context,
                                    server_hostname=host.strip("[]")), self.timeout)
        try:
            _keepalive(writer.get_extra_info("socket"))
            request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                       "Accept: application/json\r\nUser-Agent: seaway-router\r\n"
                       "Connection: close\r\n")
            if auth:
                request += f"Authorization: {auth}\r\n"
            writer.write((request + "\r\n").encode("latin-1"))
            sink = _Sink()
            parser = httptools.HttpResponseParser(sink)
            read_timeout = self.watch_seconds + 30 if "watch=1" in path else self.timeout
            status = 0
            error_body: list[bytes] = []
            while not sink.complete:
                data = await asyncio.wait_for(reader.read(1 << 16), read_timeout)
                if not data:
                    if status == 200:
                        break  # the server ended the stream without its last chunk
                    raise ConnectionResetError("the API server closed the connection")
                parser.feed_data(data)
                if not sink.headers_done:
                    continue
                if not status:
                    status = parser.get_status_code()
                    if status == 200:
                        yield status, b""  # open: a quiet watch may send nothing for minutes
                pieces, sink.pieces = sink.pieces, []
                if status != 200:
                    error_body += pieces
                    continue
                for piece in pieces:
                    yield status, piece
            if status != 200:
                yield status, b"".join(error_body)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)


def _keepalive(sock: socket.socket | None) -> None:
    """Notice a dead API connection within about a minute instead of the watch's timeout."""
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


def _status_message(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return " ".join(body.decode("utf-8", "replace").split())[:300] or "no body"
    if isinstance(doc, dict) and doc.get("message"):
        return str(doc["message"])
    return " ".join(str(doc).split())[:300]

