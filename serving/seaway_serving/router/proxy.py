"""The request handler: route, forward, answer; plus the router's own endpoints.

Plugged into the model server's transport (``seaway_serving.httpserver``), which parses requests,
enforces the body limit and timeouts, and writes answers in order. For a proxied request this
module picks a backend from the :class:`~seaway_serving.router.split.Split` in force, writes the
request to a pooled backend connection and returns the future of the answer; nothing awaits.

Own endpoints (every other path is forwarded unchanged):

``GET /healthz``      200 while the process serves
``GET /readyz``       200 once a route document is in force, 503 before and while draining
``GET /metrics``      Prometheus exposition
``POST /feedback``    rewards for experiment variants, by request id
``GET /experiment``   per-variant requests, rewards, allocation and best variant (JSON)

The last two steer or reveal the experiment, so they can be kept from the traffic's clients:
behind a bearer token (``SEAWAY_FEEDBACK_TOKEN_FILE``) and/or on a port of their own
(``SEAWAY_CONTROL_PORT``), where the traffic port answers 404 for them. Rewards count only for
request ids this router issued (:class:`~seaway_serving.router.bandit.Tickets`), once each.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from seaway_serving.httpserver import Deferred, Request, Response, error_response
from seaway_serving.router import split as splitting
from seaway_serving.router.bandit import Experiment, Tickets
from seaway_serving.router.config import Backend, Routes
from seaway_serving.router.metrics import RouterMetrics
from seaway_serving.router.upstream import Pool, UpstreamError, UpstreamResponse

log = logging.getLogger("seaway_serving.router")
access = logging.getLogger("seaway_serving.router.access")

#: Request headers that describe one hop, not the request (RFC 9110 7.6.1), or that the router
#: writes itself.
HOP_REQUEST = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length", "expect", "x-request-id",
})
HOP_RESPONSE = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
    b"upgrade", b"content-length", b"content-type", b"x-request-id",
})
REQUEST_ID = "x-request-id"
MAX_REQUEST_ID = 128
MAX_FEEDBACK_ITEMS = 1000
#: How often the bandit's allocation may be recomputed while feedback keeps arriving.
REALLOCATE_EVERY_S = 0.2


@dataclass(frozen=True)
class Limits:
    backend_timeout: float = 30.0
    connect_timeout: float = 3.0
    max_connections: int = 256
    max_queue: int = 1024
    max_response: int = 64 << 20
    max_mirror_in_flight: int = 64
    feedback_capacity: int = 200_000
    feedback_ttl: float = 900.0


@dataclass
class Live:
    """Everything one route document decides, swapped as a whole on a config change."""

    routes: Routes
    split: splitting.Split
    backends: dict[str, Backend]
    variant_of: dict[str, int]  # backend name -> revision, for experiment variants
    sticky_header: str | None
    sticky_cookie: str | None
    mirror: Backend | None
    mirror_ratio: float


class Router:
    def __init__(self, metrics: RouterMetrics, limits: Limits, *, access_log: bool = False,
                 rng: random.Random | None = None, seed: int | None = None,
                 control_token: str | None = None, control_port: bool = False) -> None:
        self.metrics = metrics
        self.limits = limits
        self.access_log = access_log
        self.random = (rng or random.Random(seed)).random
        self.live: Live | None = None
        self.pools: dict[str, Pool] = {}
        self.experiment = Experiment(seed)
        self.allocation: dict[int, float] = {}
        self.tickets = Tickets(limits.feedback_capacity, limits.feedback_ttl)
        self.control_token = control_token
        self.draining = False
        self.mirror_in_flight = 0
        self._realloc: asyncio.TimerHandle | None = None
        self._control: dict[str, Callable[[Request], Response]] = {
            "/feedback": self._guarded(self._feedback),
            "/experiment": self._guarded(self._experiment),
        }
        self._own: dict[str, Callable[[Request], Response]] = {
            "/healthz": self._healthz, "/readyz": self._readyz, "/metrics": self._metrics,
        }
        if not control_port:
            self._own.update(self._control)
        else:  # on the traffic port they are not the router's: 404, never forwarded
            self._own.update(dict.fromkeys(self._control, _not_here))

    # ------------------------------------------------------------------ configuration
    @property
    def ready(self) -> bool:
        return self.live is not None and not self.draining

    def apply(self, routes: Routes) -> None:
        """Put a checked route document in force (atomically: one attribute swap)."""
        experiment = routes.experiment
        if experiment is not None:
            self.experiment.forget_except(experiment.revisions)
        else:
            self.experiment.forget_except(())
        self.allocation = self._allocate(routes)
        shares = splitting.shares(routes, self.allocation)
        pools: dict[str, Pool] = {}
        for b in routes.backends:
            old = self.pools.get(b.name)
            if old is not None and (old.host, old.port) == (b.host, b.port):
                pools[b.name] = old
            else:
                pools[b.name] = Pool(b.name, b.host, b.port, self.limits.backend_timeout,
                                     self.limits.connect_timeout, self.limits.max_connections,
                                     self.limits.max_queue, self.limits.max_response)
        for name, pool in self.pools.items():
            if pools.get(name) is not pool:
                pool.close()
        # The mirror target usually has live weight 0 (a shadow): weight is about live traffic.
        # The operator leaves `mirror` out of the routes for a revision that failed.
        mirror = routes.by_revision(routes.mirror.revision) if routes.mirror is not None else None
        sticky = experiment.sticky if experiment is not None else None
        self.pools = pools
        self.live = Live(
            routes=routes,
            split=splitting.Split.of(shares),
            backends={b.name: b for b in routes.backends},
            variant_of=({routes.by_revision(r).name: r for r in experiment.revisions}
                        if experiment is not None else {}),
            sticky_header=sticky.header if sticky is not None else None,
            sticky_cookie=sticky.cookie if sticky is not None else None,
            mirror=mirror,
            mirror_ratio=routes.mirror.percent / 100 if routes.mirror is not None else 0.0,
        )
        self.metrics.use_backends(routes.model_deployment, routes.backends, shares)

    def _allocate(self, routes: Routes) -> dict[int, float]:
        experiment = routes.experiment
        if experiment is None or experiment.bandit is None:
            return {}
        return self.experiment.allocation(experiment.bandit, splitting.eligible_variants(routes))

    def _reallocate(self) -> None:
        """Feedback arrived: recompute the bandit's allocation and the split."""
        self._realloc = None
        live = self.live
        if live is None or live.routes.experiment is None or live.routes.experiment.bandit is None:
            return
        self.allocation = self._allocate(live.routes)
        shares = splitting.shares(live.routes, self.allocation)
        live.split = splitting.Split.of(shares)
        self.metrics.use_backends(live.routes.model_deployment, live.routes.backends, shares)

    def close(self) -> None:
        if self._realloc is not None:
            self._realloc.cancel()
        for pool in self.pools.values():
            pool.close()

    # ------------------------------------------------------------------ requests
    def __call__(self, req: Request) -> Response | Deferred:
        own = self._own.get(req.path)
        if own is not None:
            return own(req)
        live = self.live
        if live is None:
            self.metrics.unrouted.labels("503").inc()
            return error_response(503, "no routes yet: the router has not loaded a valid route "
                                  "document")
        headers = req.headers
        key = None
        if live.sticky_header is not None:
            key = headers.get(live.sticky_header) or None
        elif live.sticky_cookie is not None:
            key = splitting.sticky_value(None, headers.get("cookie"), live.sticky_cookie)
        name = (live.split.pick_sticky(key.encode()) if key is not None
                else live.split.pick(self.random()))
        pool = self.pools[name]
        variant = live.variant_of.get(name)
        if variant is not None:  # an id that can be rewarded: always the router's own
            rid = self.tickets.issue(variant)
            self.experiment.arm(variant).requests += 1
        else:
            rid = headers.get(REQUEST_ID) or ""
            if not rid or len(rid) > MAX_REQUEST_ID or not rid.isprintable():
                rid = secrets.token_hex(12)
        raw = _request_bytes(req, rid, None)
        fut = pool.request(raw, req.method == "HEAD")
        mirror = live.mirror
        if mirror is not None and mirror.name != name and self.random() < live.mirror_ratio:
            self._send_mirror(req, rid, mirror.name)
        revision = str(live.backends[name].revision)
        started = req.received

        def finish(f: asyncio.Future[UpstreamResponse]) -> Response:
            elapsed = time.perf_counter() - started
            exc = f.exception()
            if exc is None:
                up = f.result()
                resp = _client_response(up)
            elif isinstance(exc, UpstreamError):
                self.metrics.upstream_error(name, "live", exc.reason)
                log.warning("Failed to reach %s: %s", name, exc,
                            extra={"backend": name, "request_id": rid, "reason": exc.reason})
                resp = error_response(exc.status, str(exc))
            else:
                raise exc
            resp.headers += f"x-request-id: {rid}\r\nseaway-revision: {revision}\r\n".encode()
            self.metrics.observe(name, "live", resp.status, elapsed)
            if self.access_log:
                access.info("Routed %s %s to %s", req.method, req.path, name,
                            extra={"status": resp.status, "request_id": rid, "backend": name,
                                   "duration_ms": round(elapsed * 1e3, 3)})
            return resp

        fut.add_done_callback(self._count_abandoned(name))
        return fut, finish

    def _count_abandoned(self, name: str) -> Callable[[asyncio.Future[Any]], None]:
        """The client left before the answer (``finish`` never runs): count it as nginx does,
        499, so requests_total still adds up."""
        def done(f: asyncio.Future[Any]) -> None:
            if f.cancelled():
                self.metrics.observe(name, "live", 499, 0.0)
        return done

    def _send_mirror(self, req: Request, rid: str, name: str) -> None:
        if self.mirror_in_flight >= self.limits.max_mirror_in_flight:
            self.metrics.mirror_drop(name)
            return
        self.mirror_in_flight += 1
        fut = self.pools[name].request(_request_bytes(req, rid, b"seaway-mirror: 1\r\n"),
                                       req.method == "HEAD")
        started = time.perf_counter()

        def done(f: asyncio.Future[UpstreamResponse]) -> None:
            self.mirror_in_flight -= 1
            if f.cancelled():
                return
            exc = f.exception()
            if isinstance(exc, UpstreamError):
                self.metrics.upstream_error(name, "mirror", exc.reason)
                status = exc.status
            elif exc is not None:
                log.error("Mirror copy to %s failed: %r", name, exc)
                return
            else:
                status = f.result().status
            if name in self.pools:  # still configured (labels exist)
                self.metrics.observe(name, "mirror", status, time.perf_counter() - started)

        fut.add_done_callback(done)

    # ------------------------------------------------------------------ own endpoints
    def control(self, req: Request) -> Response:
        """The handler of the control port: /feedback and /experiment only."""
        own = self._control.get(req.path)
        return own(req) if own is not None else error_response(404, f"no route for {req.path}")

    def _guarded(self, endpoint: Callable[[Request], Response]) -> Callable[[Request], Response]:
        token = self.control_token
        if token is None:
            return endpoint
        expected = f"Bearer {token}".encode()

        def guarded(req: Request) -> Response:
            given = req.headers.get("authorization", "").encode("latin-1")
            if not hmac.compare_digest(given, expected):
                resp = error_response(401, f"{req.path} needs the router's bearer token "
                                      "(SEAWAY_FEEDBACK_TOKEN_FILE)")
                resp.headers = b'www-authenticate: Bearer realm="seaway-router"\r\n'
                return resp
            return endpoint(req)

        return guarded

    def _healthz(self, req: Request) -> Response:
        return _json(200, {"live": True})

    def _readyz(self, req: Request) -> Response:
        if self.ready:
            return _json(200, {"ready": True})
        reason = "draining" if self.draining else "no valid route document loaded yet"
        return _json(503, {"ready": False, "reason": reason})

    def _metrics(self, req: Request) -> Response:
        self.metrics.ready.set(1 if self.ready else 0)
        live = self.live
        if live is not None and live.routes.experiment is not None:
            revisions = splitting.eligible_variants(live.routes)
            best = self.experiment.best_probabilities(revisions)
            self.metrics.experiment(live.routes.model_deployment, self.experiment.arms,
                                    self._variant_shares(live), best)
        return Response(200, self.metrics.exposition(),
                        content_type=b"text/plain; version=0.0.4; charset=utf-8")

    def _variant_shares(self, live: Live) -> dict[int, float]:
        """Each variant's share of the experiment's traffic now (0..1)."""
        probs = live.split.as_dict()
        by_rev = {rev: probs.get(name, 0.0) for name, rev in live.variant_of.items()}
        total = sum(by_rev.values())
        return {r: (p / total if total else 0.0) for r, p in by_rev.items()}

    def _experiment(self, req: Request) -> Response:
        if req.method != "GET":
            return error_response(405, "use GET for /experiment")
        live = self.live
        if live is None or live.routes.experiment is None:
            return error_response(404, "no experiment in the routes in force")
        exp = live.routes.experiment
        eligible = splitting.eligible_variants(live.routes)
        best = self.experiment.best_probabilities(eligible)
        shares = self._variant_shares(live)
        variants = []
        for rev in exp.revisions:
            arm = self.experiment.arm(rev)
            variants.append({
                "revision": rev, "backend": live.routes.by_revision(rev).name,
                "requests": arm.requests, "feedback": arm.feedback,
                "rewardSum": round(arm.reward_sum, 6), "meanReward": round(arm.mean, 6),
                "share": round(shares.get(rev, 0.0), 6),
                "bestProbability": round(best.get(rev, 0.0), 6),
            })
        best_revision = max(best, key=lambda r: best[r]) if best else None
        doc: dict[str, Any] = {
            "modelDeployment": live.routes.model_deployment, "type": exp.type,
            "variants": variants, "bestRevision": best_revision,
            "confidence": round(best[best_revision], 6) if best_revision is not None else None,
        }
        if exp.bandit is not None:
            doc["algorithm"] = exp.bandit.algorithm
            doc["explorationFloorPercent"] = exp.bandit.exploration_floor_percent
        return _json(200, doc)

    def _feedback(self, req: Request) -> Response:
        """``{"requestId": "...", "reward": 0.0-1.0}``, or a list of those (at most 1000).

        The request id may also come in the ``X-Request-Id`` header for a single reward."""
        if req.method != "POST":
            return error_response(405, "use POST for /feedback")
        try:
            doc = json.loads(req.body)
        except ValueError as exc:
            return error_response(400, f"feedback is not valid JSON: {exc}")
        single = isinstance(doc, dict)
        items = [doc] if single else doc
        if not isinstance(items, list) or not items or len(items) > MAX_FEEDBACK_ITEMS:
            return error_response(400, "feedback must be an object or a list of 1 to "
                                  f"{MAX_FEEDBACK_ITEMS} objects")
        parsed: list[tuple[str, float]] = []
        for i, item in enumerate(items):
            where = "feedback" if single else f"feedback[{i}]"
            if not isinstance(item, dict):
                return error_response(400, f"{where} must be an object")
            rid = item.get("requestId")
            if rid is None and single:
                rid = req.headers.get(REQUEST_ID)
            reward = item.get("reward")
            if not isinstance(rid, str) or not rid:
                return error_response(400, f"{where}.requestId must be the X-Request-Id the "
                                      "router returned")
            if isinstance(reward, bool) or not isinstance(reward, int | float) or \
                    not 0 <= reward <= 1:
                return error_response(400, f"{where}.reward must be a number from 0 to 1")
            parsed.append((rid, float(reward)))
        accepted = 0
        unknown: list[str] = []
        why = ""
        for rid, reward in parsed:
            revision, why = self.tickets.redeem(rid)
            if revision is not None and revision not in self.experiment.arms:
                revision, why = None, "its variant is no longer in the experiment"
            if revision is None:
                unknown.append(rid[:MAX_REQUEST_ID])
                self.metrics.feedback_unknown.inc()
                continue
            self.experiment.reward(revision, reward)
            accepted += 1
        if accepted and self._realloc is None:
            self._realloc = asyncio.get_running_loop().call_later(REALLOCATE_EVERY_S,
                                                                  self._reallocate)
        if single and unknown:
            return error_response(404, f"request id {unknown[0]!r} cannot be rewarded: {why}")
        return _json(200, {"accepted": accepted, "unknown": unknown})


def _request_bytes(req: Request, rid: str, extra: bytes | None) -> bytes:
    target = f"{req.path}?{req.query}" if req.query else req.path
    lines = [f"{req.method} {target} HTTP/1.1\r\n"]
    drop = HOP_REQUEST
    connection = req.headers.get("connection")
    if connection:  # headers named in Connection are hop-by-hop too
        drop = drop | {t.strip().lower() for t in connection.split(",")}
    for name, value in req.headers.items():
        if name not in drop:
            lines.append(f"{name}: {value}\r\n")
    lines.append(f"x-request-id: {rid}\r\ncontent-length: {len(req.body)}\r\n")
    head = "".join(lines).encode("latin-1")
    return b"".join((head, extra or b"", b"\r\n", req.body))


def _client_response(up: UpstreamResponse) -> Response:
    content_type = b"application/octet-stream"
    extra: list[bytes] = []
    for name, value in up.headers:
        lower = name.lower()
        if lower == b"content-type":
            content_type = value
        elif lower not in HOP_RESPONSE:
            extra.append(b"%s: %s\r\n" % (name, value))
    return Response(up.status, up.body, content_type=content_type, headers=b"".join(extra))


def _not_here(req: Request) -> Response:
    return error_response(404, f"{req.path} is served on the router's control port")


def _json(status: int, doc: Any) -> Response:
    return Response(status, json.dumps(doc, separators=(",", ":")).encode())
