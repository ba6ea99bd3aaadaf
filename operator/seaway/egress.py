"""Outbound HTTP from the operator: only to hosts an administrator allowed, never redirected.

The operator runs inside the cluster with a network view no spec author has, and it fetches
URLs that spec authors write (``analysis.provider.prometheus.address``,
``notifications.webhookURL``). Without limits that turns anyone allowed to create a
ModelDeployment into a scanner of the cluster's internal network, reading internal pages back
through ``status`` and Events. So every outbound request goes through :class:`Client`:

* the URL's host must match the administrator's allowlist (operator flags, chart values);
* a redirect is never followed (a 3xx from an allowed host could point anywhere);
* the response body is read up to a bound and never reaches a user-visible text: failures are
  described by :class:`EgressError` messages written here, from a short fixed vocabulary
  ("could not be reached", "answered HTTP 404"), never by the peer's own words.

The details an administrator needs to debug (the exception text) go to the operator's log,
which only the administrator reads.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

#: Bound on a response body (a Prometheus instant query answers a few hundred bytes).
MAX_RESPONSE_BYTES = 1 << 20


class EgressError(Exception):
    """A request was refused or failed; ``str()`` is safe to show users (no peer text)."""


class NotAllowed(EgressError):
    """The URL's host is not on the allowlist, or the URL is not a plain http(s) URL."""


@dataclass(frozen=True)
class Allowlist:
    """Hosts an administrator allows outbound requests to.

    Entries: ``host`` (any port), ``host:port``, ``*.example.com`` (any subdomain, not the apex
    itself), ``[::1]:9090`` for IPv6, and ``*`` for any host at all (an explicit opt-out). Names
    compare case-insensitively; no entry means nothing is allowed.
    """

    entries: tuple[str, ...] = ()
    #: What administrators set to extend it, named in refusals (e.g. "--allow-webhook-host").
    setting: str = "the operator's allowlist"

    @classmethod
    def parse(cls, text: str | None, *, setting: str) -> Allowlist:
        """From a comma- or space-separated list (an environment variable)."""
        items = (text or "").replace(",", " ").split()
        return cls(tuple(item.strip().lower() for item in items if item.strip()), setting)

    def extended(self, *urls: str | None) -> Allowlist:
        """This list plus the host:port of each URL (e.g. the operator's own default)."""
        extra = []
        for url in urls:
            if url and describe(url) != INVALID:
                extra.append(describe(url))
        return Allowlist(self.entries + tuple(extra), self.setting)

    def permits(self, url: str) -> bool:
        try:
            host, port = host_and_port(url)
        except NotAllowed:
            return False
        return any(_matches(entry, host, port) for entry in self.entries)


def host_and_port(url: str) -> tuple[str, int]:
    """Host (lowercase, IPv6 without brackets) and port of a plain http(s) URL."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise NotAllowed("is not a valid URL") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NotAllowed("is not an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise NotAllowed("must not carry user info (user:password@)")
    return parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


def _matches(entry: str, host: str, port: int) -> bool:
    if entry == "*":
        return True
    try:
        parsed = urllib.parse.urlsplit("//" + entry)
        want_port = parsed.port
    except ValueError:
        return False
    want = (parsed.hostname or "").lower()
    if want_port is not None and want_port != port:
        return False
    if entry.startswith("*."):
        return host.endswith(want[1:]) and len(host) > len(want) - 1
    return host == want


INVALID = "an invalid URL"


def describe(url: str) -> str:
    """The host:port of a URL, for messages (never its path, query or user info)."""
    try:
        host, port = host_and_port(url)
    except NotAllowed:
        return INVALID
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


@dataclass(frozen=True)
class Client:
    """HTTP to allowed hosts only; see the module docstring for what it guarantees."""

    allow: Allowlist
    timeout: float = 5.0

    def request(
        self,
        url: str,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        method: str = "GET",
    ) -> tuple[int, bytes]:
        """(status, body) of a 2xx answer; raise :class:`EgressError` on anything else."""
        where = describe(url)
        if not self.allow.permits(url):
            host_and_port(url)  # a malformed URL says so instead
            raise NotAllowed(f"host {where} is not allowed by {self.allow.setting}")
        opener = urllib.request.build_opener(_NoRedirects)
        request = urllib.request.Request(
            url,
            data=data,
            headers={"User-Agent": "seaway-operator", **(headers or {})},
            method=method,
        )
        try:
            with opener.open(request, timeout=self.timeout) as response:
                body = response.read(MAX_RESPONSE_BYTES + 1)
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            if 300 <= exc.code < 400:
                raise EgressError(
                    f"{where} answered a redirect ({exc.code}), not followed"
                ) from None
            raise EgressError(f"{where} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            logger.info("Request to %s failed: %s", where, exc)
            raise EgressError(f"{where} could not be reached") from None
        if len(body) > MAX_RESPONSE_BYTES:
            raise EgressError(f"{where} answered more than {MAX_RESPONSE_BYTES} bytes")
        return status, body


@dataclass(frozen=True)
class Policy:
    """The operator's two allowlists: Prometheus servers and notification webhooks."""

    prometheus: Allowlist = Allowlist(setting="--allow-prometheus-host")
    webhooks: Allowlist = Allowlist(setting="--allow-webhook-host")

    @classmethod
    def from_env(cls, environ: dict[str, str] | Any, *, default_prometheus: str | None) -> Policy:
        prometheus = Allowlist.parse(
            environ.get(PROMETHEUS_HOSTS_ENV), setting="the operator's --allow-prometheus-host"
        )
        webhooks = Allowlist.parse(
            environ.get(WEBHOOK_HOSTS_ENV), setting="the operator's --allow-webhook-host"
        )
        return cls(prometheus.extended(default_prometheus), webhooks)


PROMETHEUS_HOSTS_ENV = "SEAWAY_ALLOWED_PROMETHEUS_HOSTS"
WEBHOOK_HOSTS_ENV = "SEAWAY_ALLOWED_WEBHOOK_HOSTS"
