"""A minimal HTTPS client for the few API calls the plane makes while it starts.

The plane only needs to probe health endpoints, create the simulated Node and read a Node and a
ServiceAccount. The standard library does that with the admin client certificate, so starting the
plane (and ``seaway cluster up``) does not need the ``kubernetes`` package. Only loopback
addresses are ever used here.
"""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from typing import Any

from seaway.localplane import config


class APIError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class Client:
    """Talks HTTPS to one ``127.0.0.1`` port, verifying the plane's CA."""

    def __init__(
        self,
        port: int,
        layout: config.Layout,
        *,
        client_cert: bool = True,
        timeout: float = 5.0,
    ) -> None:
        self.port = port
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=str(layout.ca_cert()))
        if client_cert:
            self.context.load_cert_chain(str(layout.admin_cert()), str(layout.admin_key()))

    def request(self, method: str, path: str, body: Any = None) -> Response:
        conn = http.client.HTTPSConnection(
            config.LOOPBACK, self.port, context=self.context, timeout=self.timeout
        )
        try:
            headers = {"Accept": "application/json"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            return Response(response.status, response.read())
        finally:
            conn.close()

    def get(self, path: str) -> Any:
        response = self.request("GET", path)
        if response.status != 200:
            raise APIError(response.status, response.body.decode("utf-8", "replace")[:200])
        return response.json()

    def create(self, path: str, body: dict[str, Any]) -> bool:
        """POST ``body``; True if created, False if it already existed."""
        response = self.request("POST", path, body)
        if response.status == 409:
            return False
        if response.status not in (200, 201):
            raise APIError(response.status, response.body.decode("utf-8", "replace")[:200])
        return True


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, str]:
    """Plain HTTP GET on 127.0.0.1 (etcd and kwok health)."""
    conn = http.client.HTTPConnection(config.LOOPBACK, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()
