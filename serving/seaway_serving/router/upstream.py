"""HTTP/1.1 client side of the proxy: a keep-alive connection pool per backend.

Built on asyncio protocols and httptools' response parser, like the server side, and without
coroutines on the hot path: a request on an idle pooled connection is one ``write`` and a future
that the parser resolves. New connections, the queue when a backend's connection limit is
reached, and the timeout are the only extra machinery.

Failures become :class:`UpstreamError` with the status the client should see: 502 when the
backend refuses or breaks the connection or answers garbage, 503 when the pool's queue is full,
504 when the backend does not answer in time. A request that failed on a *reused* keep-alive
connection before any byte of answer arrived is retried once on a fresh connection: the backend
may have closed that idle connection just as the request was written, which is not a failure
of the backend. A connection *refused* is tried again on the same backend, up to four times
within 2 s: no byte was sent, and a Service whose first endpoint just became ready may refuse
until the node's proxy rules catch up (seen for over 0.4 s on a busy node). A backend that
stays down still answers 502 (never another backend: that would hide a failing canary).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections import deque
from dataclasses import dataclass, field

import httptools

log = logging.getLogger("seaway_serving.router")


class UpstreamError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason  # metric label: connect, reset, timeout, protocol, overload


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


#: Delays before connecting again after a refused connection (one per retry).
REFUSED_RETRY_DELAYS = (0.1, 0.3, 0.6, 1.0)


@dataclass(slots=True, eq=False)
class Exchange:
    """One request in flight to a backend, across a possible retry."""

    raw: bytes
    head: bool
    future: asyncio.Future[UpstreamResponse]
    conn: UpstreamConnection | None = None
    timer: asyncio.TimerHandle | None = None
    retried: bool = False
    refused: int = 0  # connections refused so far


class UpstreamConnection(asyncio.Protocol):
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.reused = False
        self.received = False
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.headers_done = False
        self.framed = False  # the response says where it ends (length or chunked)
        self.closed = False

    # asyncio -----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        ex = self.exchange
        self.exchange = None
        if ex is None or ex.future.done():
            return
        if self.headers_done and not self.framed:  # body delimited by the close: complete
            self._deliver(ex, False)
            return
        if not self.received and self.reused and not ex.retried:
            ex.retried = True
            self.pool.retry(ex)
            return
        text = "closed the connection" if exc is None else f"broke the connection: {exc}"
        self.pool.fail(ex, UpstreamError(502, "reset", f"backend {self.pool.name} {text}"))

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            ex = self.exchange
            self.exchange = None
            self.abort()
            if ex is not None:
                self.pool.fail(ex, UpstreamError(
                    502, "protocol", f"backend {self.pool.name} sent an invalid response: {exc}"))

    # httptools ---------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.headers = []
        self.body = []
        self.size = 0
        self.headers_done = False
        self.framed = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        lower = name.lower()
        if lower in (b"content-length", b"transfer-encoding"):
            self.framed = True

    def on_headers_complete(self) -> None:
        self.headers_done = True
        ex = self.exchange
        status = self.parser.get_status_code()
        if ex is not None and (ex.head or status in (204, 304)):
            # no body follows: answer now; the parser cannot be told, so the connection goes
            self.exchange = None
            self.pool.succeed(ex, UpstreamResponse(status, self.headers, b""))
            self.abort()

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.pool.max_response:
            ex = self.exchange
            self.exchange = None
            self.abort()
            if ex is not None:
                self.pool.fail(ex, UpstreamError(
                    502, "protocol", f"backend {self.pool.name} answered more than "
                    f"{self.pool.max_response} bytes"))
            raise httptools.HttpParserCallbackError("answer too large")
        self.body.append(body)

    def on_message_complete(self) -> None:
        ex = self.exchange
        if ex is None:
            return
        self._deliver(ex, self.parser.should_keep_alive())

    def _deliver(self, ex: Exchange, keep_alive: bool) -> None:
        self.exchange = None
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        response = UpstreamResponse(self.parser.get_status_code(), self.headers, body)
        self.pool.succeed(ex, response)
        if keep_alive and not self.closed:
            self.pool.release(self)
        else:
            self.abort()

    # pool --------------------------------------------------------------------------------
    def send(self, ex: Exchange, reused: bool) -> None:
        assert self.transport is not None
        self.exchange = ex
        ex.conn = self
        self.reused = reused
        self.received = False
        self.transport.write(ex.raw)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


@dataclass(eq=False)
class Pool:
    """Connections to one backend (``host:port``)."""

    name: str
    host: str
    port: int
    timeout: float
    connect_timeout: float
    max_connections: int
    max_queue: int
    max_response: int = 64 << 20
    idle: list[UpstreamConnection] = field(default_factory=list)
    waiting: deque[Exchange] = field(default_factory=deque)
    connections: set[UpstreamConnection] = field(default_factory=set)
    connecting: int = 0
    closed: bool = False

    def request(self, raw: bytes, head: bool = False) -> asyncio.Future[UpstreamResponse]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[UpstreamResponse] = loop.create_future()
        ex = Exchange(raw, head, fut)
        ex.timer = loop.call_later(self.timeout, self._expire, ex)
        self._dispatch(ex)
        return fut

    def _dispatch(self, ex: Exchange) -> None:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                conn.send(ex, reused=True)
                return
        if len(self.connections) + self.connecting < self.max_connections:
            self._connect(ex)
        elif len(self.waiting) < self.max_queue:
            self.waiting.append(ex)
        else:
            self.fail(ex, UpstreamError(
                503, "overload", f"backend {self.name} is saturated: {self.max_connections} "
                f"connections busy and {self.max_queue} requests queued"))

    def retry(self, ex: Exchange) -> None:
        if ex.future.done():
            return
        self._connect(ex)

    def _connect(self, ex: Exchange) -> None:
        self.connecting += 1
        asyncio.get_running_loop().create_task(self._open(ex))

    async def _open(self, ex: Exchange) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: UpstreamConnection(self), self.host, self.port),
                self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            self.connecting -= 1
            if (isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED
                    and ex.refused < len(REFUSED_RETRY_DELAYS) and not self.closed
                    and not ex.future.done()):
                delay = REFUSED_RETRY_DELAYS[ex.refused]
                ex.refused += 1
                self.connecting += 1  # still on its way: queued requests must not give up
                loop.call_later(delay, self._reconnect, ex)
                return
            detail = ("timed out" if isinstance(exc, TimeoutError)
                      else exc.strerror or str(exc) or type(exc).__name__)
            self.fail(ex, UpstreamError(
                502, "connect", f"backend {self.name} ({self.host}:{self.port}) is "
                f"unreachable: {detail}"))
            self._fail_waiting_if_no_connections(detail)
            return
        self.connecting -= 1
        if self.closed:
            conn.abort()
            self.fail(ex, UpstreamError(502, "reset", f"backend {self.name} was removed"))
            return
        self.connections.add(conn)
        if ex.future.done():  # timed out or cancelled while connecting
            self.release(conn)
        else:
            conn.send(ex, reused=False)

    def _reconnect(self, ex: Exchange) -> None:
        self.connecting -= 1
        if ex.future.done():  # timed out or the client left meanwhile
            return
        self._connect(ex)

    def _fail_waiting_if_no_connections(self, detail: str) -> None:
        """Requests queued behind a backend that cannot be reached would only time out."""
        if self.connections or self.connecting:
            return
        while self.waiting:
            ex = self.waiting.popleft()
            self.fail(ex, UpstreamError(502, "connect", f"backend {self.name} ({self.host}:"
                                        f"{self.port}) is unreachable: {detail}"))

    def release(self, conn: UpstreamConnection) -> None:
        while self.waiting:
            ex = self.waiting.popleft()
            if not ex.future.done():
                conn.send(ex, reused=True)
                return
        if self.closed:
            conn.abort()
        else:
            self.idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        self.connections.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        if self.waiting and not self.closed and len(self.connections) + self.connecting < \
                self.max_connections:
            ex = self.waiting.popleft()
            self._connect(ex)

    def succeed(self, ex: Exchange, response: UpstreamResponse) -> None:
        if ex.timer is not None:
            ex.timer.cancel()
        if not ex.future.done():
            ex.future.set_result(response)

    def fail(self, ex: Exchange, error: UpstreamError) -> None:
        if ex.timer is not None:
            ex.timer.cancel()
        if not ex.future.done():
            ex.future.set_exception(error)

    def _expire(self, ex: Exchange) -> None:
        # also for a future already cancelled (the client left): its connection is still busy
        conn = ex.conn
        if conn is not None and conn.exchange is ex:
            conn.exchange = None  # its answer, if it comes, is no one's: drop the connection
            conn.abort()
        with contextlib.suppress(ValueError):
            self.waiting.remove(ex)
        self.fail(ex, UpstreamError(504, "timeout", f"backend {self.name} did not answer "
                                    f"within {self.timeout:g} s"))

    def close(self) -> None:
        """Stop using this pool (its backend left the config); in-flight requests finish."""
        self.closed = True
        for conn in self.idle:
            conn.abort()
        self.idle.clear()
        while self.waiting:
            self.fail(self.waiting.popleft(), UpstreamError(
                502, "reset", f"backend {self.name} was removed from the routes"))
