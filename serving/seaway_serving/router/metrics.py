"""The router's Prometheus metrics: per backend and revision, what canary analysis reads.

The operator's analysis queries ``seaway_router_requests_total`` (errors are ``code=~"5.."``)
and ``seaway_router_request_duration_seconds_bucket`` by ``model_deployment`` and ``revision``
(operator/seaway/metrics/prometheus.py): those names and labels are a contract. A request that
the router answers itself for a backend (502, 503, 504) is counted for that backend, so a
canary that is down shows up as errors of the canary. Mirrored copies carry
``traffic="mirror"``; live requests ``traffic="live"``.

Children of the labelled metrics are cached per (backend, traffic, code): a label lookup in
prometheus_client costs more than the increment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from seaway_serving.router.bandit import Arm
from seaway_serving.router.config import Backend

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0)
BACKEND_LABELS = ("model_deployment", "backend", "revision", "traffic")


class RouterMetrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "seaway_router_requests", "Requests answered, per backend, by HTTP status",
            [*BACKEND_LABELS, "code"], registry=registry)
        self.duration = Histogram(
            "seaway_router_request_duration_seconds",
            "Time from a complete request to the backend's complete answer",
            BACKEND_LABELS, buckets=LATENCY_BUCKETS, registry=registry)
        self.upstream_errors = Counter(
            "seaway_router_upstream_errors", "Requests the backend did not answer, by reason "
            "(connect, reset, timeout, protocol, overload)", [*BACKEND_LABELS, "reason"],
            registry=registry)
        self.unrouted = Counter(
            "seaway_router_unrouted_requests", "Requests answered by the router without a "
            "backend (no config yet, body too large ...), by HTTP status", ["code"],
            registry=registry)
        self.weight = Gauge(
            "seaway_router_backend_weight", "Share of live traffic in force, in percent",
            ["model_deployment", "backend", "revision"], registry=registry)
        self.mirror_dropped = Counter(
            "seaway_router_mirror_dropped", "Copies not sent because too many were in flight",
            ["model_deployment", "backend", "revision"], registry=registry)
        self.config_applied = Counter(
            "seaway_router_config_applied", "Route documents applied", registry=registry)
        self.config_refused = Counter(
            "seaway_router_config_refused", "Route documents refused (the last good one stayed)"
            ", by reason", ["reason"], registry=registry)
        self.config_valid = Gauge(
            "seaway_router_config_valid", "1 when the latest route document seen is in force",
            registry=registry)
        self.config_generation = Gauge(
            "seaway_router_config_generation", "Count of route documents applied since start",
            registry=registry)
        self.config_timestamp = Gauge(
            "seaway_router_config_last_applied_timestamp_seconds",
            "When the route document in force was applied", registry=registry)
        self.ready = Gauge("seaway_router_ready", "1 when routes are in force and not draining",
                           registry=registry)
        arm_labels = ["model_deployment", "revision"]
        self.bandit_allocation = Gauge(
            "seaway_router_experiment_allocation", "Share of the experiment's traffic each "
            "variant gets now (0-1)", arm_labels, registry=registry)
        self.bandit_best = Gauge(
            "seaway_router_experiment_best_probability", "Probability the variant is the best "
            "(Beta posteriors of its rewards)", arm_labels, registry=registry)
        self.bandit_requests = Gauge(
            "seaway_router_experiment_requests", "Requests the variant answered since start",
            arm_labels, registry=registry)
        self.bandit_feedback = Gauge(
            "seaway_router_experiment_feedback", "Rewards received for the variant since start",
            arm_labels, registry=registry)
        self.bandit_reward_sum = Gauge(
            "seaway_router_experiment_reward_sum", "Sum of the variant's rewards since start",
            arm_labels, registry=registry)
        self.feedback_unknown = Counter(
            "seaway_router_feedback_unknown", "Rewards for request ids unknown, expired or "
            "already rewarded", registry=registry)
        self._requests: dict[tuple[str, str, int], Counter] = {}
        self._durations: dict[tuple[str, str], Histogram] = {}
        self._labels: dict[str, tuple[str, str, str]] = {}  # backend -> (md, name, revision)
        self._weights: dict[str, tuple[str, str, str]] = {}  # label sets of the weight gauge

    def use_backends(self, model_deployment: str, backends: Iterable[Backend],
                     shares: Mapping[str, float]) -> None:
        """A new config: relabel, and publish the weights in force."""
        labels = {b.name: (model_deployment, b.name, str(b.revision)) for b in backends}
        for name, old in self._weights.items():
            if labels.get(name) != old:
                self.weight.remove(*old)
        if any(self._labels.get(name) != lab for name, lab in labels.items()):
            self._requests.clear()
            self._durations.clear()
        # labels of backends that left stay known: their in-flight answers are still counted
        self._labels.update(labels)
        self._weights = labels
        for name, lab in labels.items():
            self.weight.labels(*lab).set(round(shares.get(name, 0.0) * 100, 4))

    def observe(self, backend: str, traffic: str, code: int, seconds: float) -> None:
        key = (backend, traffic, code)
        counter = self._requests.get(key)
        if counter is None:
            md, name, revision = self._labels[backend]
            counter = self._requests[key] = self.requests.labels(md, name, revision, traffic,
                                                                 str(code))
        counter.inc()
        hkey = (backend, traffic)
        hist = self._durations.get(hkey)
        if hist is None:
            md, name, revision = self._labels[backend]
            hist = self._durations[hkey] = self.duration.labels(md, name, revision, traffic)
        hist.observe(seconds)

    def upstream_error(self, backend: str, traffic: str, reason: str) -> None:
        md, name, revision = self._labels[backend]
        self.upstream_errors.labels(md, name, revision, traffic, reason).inc()

    def mirror_drop(self, backend: str) -> None:
        self.mirror_dropped.labels(*self._labels[backend]).inc()

    def experiment(self, model_deployment: str, arms: Mapping[int, Arm],
                   allocation: Mapping[int, float], best: Mapping[int, float]) -> None:
        for metric in (self.bandit_allocation, self.bandit_best, self.bandit_requests,
                       self.bandit_feedback, self.bandit_reward_sum):
            metric.clear()
        for revision, arm in arms.items():
            lab = (model_deployment, str(revision))
            self.bandit_allocation.labels(*lab).set(allocation.get(revision, 0.0))
            self.bandit_best.labels(*lab).set(best.get(revision, 0.0))
            self.bandit_requests.labels(*lab).set(arm.requests)
            self.bandit_feedback.labels(*lab).set(arm.feedback)
            self.bandit_reward_sum.labels(*lab).set(arm.reward_sum)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
