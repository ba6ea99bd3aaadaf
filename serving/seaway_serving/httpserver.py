"""A small HTTP/1.1 server on asyncio and httptools (llhttp), built for one job: low overhead.

Why not an ASGI framework: for a sub-millisecond model, the framework is most of the cost of a
request (the reference measurements put MLServer and KServe at 350-500 us of server CPU per
request on top of a 95 us predict). This transport parses with llhttp, hands a complete request
to one handler callable and writes the response in one ``write``; everything about inference
lives above it (``rest``, ``dataplane``).

What it does do, because a production server must: keep-alive and pipelining (responses in
request order), ``Expect: 100-continue``, a request body limit (413, the body is drained but never
stored), header and URL size limits (431/414), idle and slow-request timeouts, back-pressure when
the client does not read, and a graceful close that lets in-flight requests finish. With a
:class:`~seaway_serving.budget.Budget`, the bodies held by all connections together are bounded
too: a body that does not fit is drained, never stored, and answered 503 with ``Retry-After``.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import logging
import os
import socket
import termios
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httptools

from seaway_serving.budget import Budget

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 << 10
MAX_URL_BYTES = 8 << 10
REASONS = {
    100: "Continue", 200: "OK", 400: "Bad Request", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 413: "Content Too Large",
    414: "URI Too Long", 415: "Unsupported Media Type", 422: "Unprocessable Content",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error", 503: "Service Unavailable",
}
_STATUS_LINES = {
    code: f"HTTP/1.1 {code} {reason}\r\n".encode() for code, reason in REASONS.items()
}


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    received: float  # perf_counter() when the request was complete


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: bytes = b"application/json"
    headers: bytes = b""  # extra raw header lines, each ending in CRLF
    close: bool = False


Finisher = Callable[[asyncio.Future[Any]], Response]
Deferred = tuple[asyncio.Future[Any], Finisher]
Handler = Callable[[Request], Response | Deferred]


def error_response(status: int, message: str, close: bool = False) -> Response:
    body = ('{"error":' + _json_str(message) + "}").encode()
    return Response(status, body, close=close)


def _json_str(text: str) -> str:
    import json

    return json.dumps(text)


def render(resp: Response, keep_alive: bool, extra: bytes) -> bytes:
    head = _STATUS_LINES.get(resp.status) or f"HTTP/1.1 {resp.status} Status\r\n".encode()
    return b"".join((
        head,
        b"content-type: ", resp.content_type, b"\r\ncontent-length: ",
        str(len(resp.body)).encode(), b"\r\n", extra, resp.headers,
        b"" if keep_alive else b"connection: close\r\n", b"\r\n", resp.body,
    ))


class HttpServer:
    """Owns the listening socket and the open connections; ``handler`` answers requests."""

    def __init__(self, handler: Handler, *, max_body: int, keepalive_timeout: float = 75.0,
                 request_timeout: float = 30.0, budget: Budget | None = None) -> None:
        self.handler = handler
        self.max_body = max_body
        self.budget = budget
        self.keepalive_timeout = keepalive_timeout
        self.request_timeout = request_timeout
        self.extra_headers = b""  # set once the model is known (its digest)
        self.draining = False
        self.connections: set[HttpProtocol] = set()
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: HttpProtocol(self), host, port,
                                                backlog=2048, reuse_address=True)
        self._sweeper = loop.call_later(1.0, self._sweep)
        sock = self._server.sockets[0]
        return int(sock.getsockname()[1])

    def _sweep(self) -> None:
        now = time.monotonic()
        for conn in list(self.connections):
            conn.check_timeouts(now)
        self._sweeper = asyncio.get_running_loop().call_later(1.0, self._sweep)

    async def stop_accepting(self) -> None:
        """Close the listening socket; open connections are closed as they become idle.

        Connections the kernel has already completed but the loop has not accepted yet (a busy
        loop accepts late) are taken first: their clients' connect succeeded and their requests
        are sent, so they are answered like any in-flight request instead of being reset when
        the listening socket closes."""
        self.draining = True
        if self._server is None:
            return
        queued = [conn for listener in self._server.sockets for conn in _accept_queued(listener)]
        self._server.close()
        loop = asyncio.get_running_loop()
        for conn in queued:
            try:
                await loop.connect_accepted_socket(lambda: HttpProtocol(self), conn)
            except OSError:  # the client gave up in the meantime
                conn.close()

    def close_idle(self) -> None:
        for conn in list(self.connections):
            conn.close_if_idle()

    @property
    def in_flight(self) -> int:
        """Requests not answered yet, counting one still arriving: sent before a drain began,
        it is finished too (a fast model can leave no request pending while others are still in
        the kernel's buffer, unread)."""
        return sum(len(c.pending) + c.arriving() for c in self.connections)

    def close_all(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.connections):
            conn.abort()


def _accept_queued(listener: Any, limit: int = 4096) -> list[socket.socket]:
    """Every connection waiting in ``listener``'s accept queue, without blocking."""
    sock = socket.socket(fileno=os.dup(listener.fileno()))
    accepted: list[socket.socket] = []
    try:
        sock.setblocking(False)  # it is already: the flag belongs to the shared file
        while len(accepted) < limit:
            try:
                conn, _ = sock.accept()
            except OSError:  # BlockingIOError: the queue is empty
                break
            conn.setblocking(False)
            accepted.append(conn)
    finally:
        sock.close()
    return accepted


class HttpProtocol(asyncio.Protocol):
    """One client connection. httptools calls the ``on_*`` methods while parsing."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.pending: deque[list[Any]] = deque()  # [Response | None, keep_alive]
        self.url = b""
        self.headers: dict[str, str] = {}
        self.header_bytes = 0
        self.body: list[bytes] = []
        self.body_size = 0
        self.too_large = False
        self.over_budget = False
        self.reserved = 0  # bytes of the budget held by the request being received
        self.reject: Response | None = None
        self.closing = False
        self.paused_writing = False
        self.last_active = time.monotonic()
        self.request_started: float | None = None

    # -------------------------------------------------------------- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.closing = True
        self._release()
        self.body = []  # the protocol and its parser form a cycle: drop the chunks now
        for slot in self.pending:
            fut = slot[2] if len(slot) > 2 else None
            if fut is not None and not fut.done():
                fut.cancel()
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            if self.reject is not None:
                self._fail(self.reject.status, "", self.reject)
            else:
                self._fail(400, f"malformed HTTP request: {exc}")

    def pause_writing(self) -> None:
        self.paused_writing = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused_writing = False
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()

    # -------------------------------------------------------------- httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = {}
        self.header_bytes = 0
        self.body = []
        self.body_size = 0
        self.too_large = False
        self.over_budget = False
        self.reject = None
        self.request_started = time.monotonic()

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > MAX_URL_BYTES:
            self.reject = error_response(414, "request URL is too long", close=True)
            raise httptools.HttpParserError("URL too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > MAX_HEADER_BYTES:
            self.reject = error_response(431, "request headers are too large", close=True)
            raise httptools.HttpParserError("headers too large")
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        length = self.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.server.max_body:
            self.too_large = True
            if self.headers.get("expect", "").lower() == "100-continue":
                # the client waits for our word before sending the body: refuse now, close
                self.reject = self._too_large()
                raise httptools.HttpParserError("body too large")
            return
        budget = self.server.budget
        if budget is not None and length is not None and length.isdigit() and int(length):
            if budget.take(int(length)):
                self.reserved = int(length)
            else:
                self.over_budget = True
                if self.headers.get("expect", "").lower() == "100-continue":
                    self.reject = self._busy(close=True)
                    raise httptools.HttpParserError("over the memory budget")
                return
        if self.headers.get("expect", "").lower() == "100-continue" and self.transport:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.over_budget and not self.too_large:
            if self.body_size > self.server.max_body:
                self.too_large = True  # drained as a 413 instead
            return
        if self.too_large:
            if self.body_size > 16 * self.server.max_body:  # stop draining a flood
                self.reject = self._too_large()
                raise httptools.HttpParserError("body far too large")
            return
        if self.body_size > self.server.max_body:
            self.too_large = True
            self.body = []
            self._release()
            return
        budget = self.server.budget
        if budget is not None and self.body_size > self.reserved:  # a body without a length
            extra = self.body_size - self.reserved
            if not budget.take(extra):
                self.over_budget = True
                self.body = []
                self._release()
                return
            self.reserved += extra
        self.body.append(body)

    def _release(self) -> None:
        if self.reserved and self.server.budget is not None:
            self.server.budget.give(self.reserved)
        self.reserved = 0

    def _busy(self, close: bool = False) -> Response:
        budget = self.server.budget
        limit = budget.max_bytes if budget is not None else 0
        resp = error_response(503, f"server busy: the requests in flight are at the budget of "
                                   f"{limit} bytes (SEAWAY_MAX_INFLIGHT_BYTES); retry later",
                              close=close)
        resp.headers = b"retry-after: 1\r\n"
        return resp

    def _too_large(self) -> Response:
        return error_response(413, f"request body is larger than {self.server.max_body} bytes "
                                   "(SEAWAY_MAX_BODY_BYTES)", close=True)

    def on_message_complete(self) -> None:
        self.request_started = None
        keep_alive = self.parser.should_keep_alive() and not self.server.draining
        if self.too_large:
            self._enqueue(self._too_large(), False)
            return
        if self.over_budget:
            self._enqueue(self._busy(), keep_alive)
            return
        held, self.reserved = self.reserved, 0
        budget = self.server.budget
        raw_url = self.url.decode("latin-1")
        path, _, query = raw_url.partition("?")
        request = Request(
            method=self.parser.get_method().decode("latin-1"), path=path, query=query,
            headers=self.headers, body=b"".join(self.body) if len(self.body) != 1
            else self.body[0], received=time.perf_counter())
        self.body = []  # the chunks: not kept alive by an idle connection until its next request
        try:
            result = self.server.handler(request)
        except Exception:
            log.exception("Failed to handle %s %s", request.method, request.path)
            result = error_response(500, "internal error")
        if isinstance(result, Response):
            if held and budget is not None:
                budget.give(held)
            self._enqueue(result, keep_alive)
            return
        fut, finish = result
        slot: list[Any] = [None, keep_alive, fut]
        self.pending.append(slot)

        def done(f: asyncio.Future[Any], slot: list[Any] = slot) -> None:
            if held and budget is not None:
                budget.give(held)
            if self.closing or f.cancelled():
                return
            try:
                slot[0] = finish(f)
            except Exception:
                log.exception("Failed to finish %s %s", request.method, request.path)
                slot[0] = error_response(500, "internal error")
            self._flush()

        fut.add_done_callback(done)

    # -------------------------------------------------------------- writing
    def _enqueue(self, resp: Response, keep_alive: bool) -> None:
        if not self.pending:
            self._write(resp, keep_alive)
        else:
            self.pending.append([resp, keep_alive])

    def _flush(self) -> None:
        while self.pending and self.pending[0][0] is not None:
            slot = self.pending.popleft()
            self._write(slot[0], slot[1])
            if self.closing:
                return

    def _write(self, resp: Response, keep_alive: bool) -> None:
        transport = self.transport
        if transport is None or self.closing:
            return
        keep = keep_alive and not resp.close and not self.server.draining
        transport.write(render(resp, keep, self.server.extra_headers))
        self.last_active = time.monotonic()
        if not keep:
            self.closing = True
            transport.close()

    def _fail(self, status: int, message: str, resp: Response | None = None) -> None:
        self.pending.clear()
        self._write(resp or error_response(status, message, close=True), False)

    # -------------------------------------------------------------- lifecycle
    def check_timeouts(self, now: float) -> None:
        if self.closing or self.transport is None:
            return
        if self.request_started is not None:
            if now - self.request_started > self.server.request_timeout and not self.pending:
                self._fail(408, "request not received in time")
        elif not self.pending and now - self.last_active > self.server.keepalive_timeout:
            self.abort()

    def close_if_idle(self) -> None:
        if not self.pending and not self.arriving():
            self.abort()

    def arriving(self) -> int:
        """1 while a request is partly read or bytes wait unread in the socket, else 0."""
        if self.request_started is not None:
            return 1
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is None or self.closing:
            return 0
        unread = array.array("i", [0])
        try:
            fcntl.ioctl(sock.fileno(), termios.FIONREAD, unread)
        except (OSError, ValueError):
            return 0
        return 1 if unread[0] > 0 else 0

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()
