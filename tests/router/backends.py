"""Minimal HTTP backends for the router tests: several named backends in one process.

``python -m tests.router.backends a b:500 c::200`` serves backend ``a`` (answers 200), ``b``
(answers 500) and ``c`` (answers 200 after 200 ms), each on its own 127.0.0.1 port, and prints
``{"ports": {"a": ..., "b": ..., "c": ...}}`` on one line once all listen. One process for all
backends keeps the test suite light on a busy 2-core machine.

Every answer names the backend and echoes what the router sent (request id, mirror marker,
method, path, body size), so a test sees exactly where each request went. ``GET /_stats`` gives
the counts a backend received (live and mirrored); ``POST /_set?status=..&delay_ms=..&pad=..``
changes its behaviour while it runs (``pad``: extra bytes in every answer). Built on the model
server's transport, like the router.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from seaway_serving.httpserver import Deferred, HttpServer, Request, Response

HOST = "127.0.0.1"


@dataclass
class Backend:
    name: str
    status: int = 200
    delay_ms: float = 0.0
    pad: int = 0  # extra bytes in every answer
    live: int = 0
    mirrored: int = 0
    headers_seen: dict[str, str] = field(default_factory=dict)

    def __call__(self, req: Request) -> Response | Deferred:
        if req.path == "/_stats":
            return _json(200, {"backend": self.name, "live": self.live,
                               "mirrored": self.mirrored})
        if req.path == "/_set":
            params = urllib.parse.parse_qs(req.query)
            self.status = int(params.get("status", [self.status])[0])
            self.delay_ms = float(params.get("delay_ms", [self.delay_ms])[0])
            self.pad = int(params.get("pad", [self.pad])[0])
            return _json(200, {"status": self.status, "delay_ms": self.delay_ms, "pad": self.pad})
        mirror = req.headers.get("seaway-mirror") == "1"
        if mirror:
            self.mirrored += 1
        else:
            self.live += 1
        self.headers_seen = dict(req.headers)
        doc = {"backend": self.name, "requestId": req.headers.get("x-request-id"),
               "mirror": mirror, "method": req.method, "path": req.path, "query": req.query,
               "bodyBytes": len(req.body), "host": req.headers.get("host"),
               "headers": self.headers_seen, "pad": "x" * self.pad}
        resp = _json(self.status, doc)
        resp.headers = f"x-backend: {self.name}\r\n".encode()
        if self.delay_ms <= 0:
            return resp
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        loop.call_later(self.delay_ms / 1000, lambda: fut.done() or fut.set_result(None))
        return fut, lambda f: resp


def _json(status: int, doc: Any) -> Response:
    return Response(status, json.dumps(doc).encode())


def parse(spec: str) -> Backend:
    name, _, rest = spec.partition(":")
    status, _, delay = rest.partition(":")
    return Backend(name, int(status or 200), float(delay or 0))


async def main(specs: list[str]) -> None:
    servers = []
    ports = {}
    for spec in specs:
        backend = parse(spec)
        server = HttpServer(backend, max_body=64 << 20)
        ports[backend.name] = await server.start(HOST, 0)
        servers.append(server)
    print(json.dumps({"ports": ports}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        await server.stop_accepting()
        server.close_all()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(sys.argv[1:]))
