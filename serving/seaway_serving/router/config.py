"""The router's input: the ``routes.json`` document (format version 1), parsed and checked once.

PURE: bytes in, a frozen :class:`Routes` or a :class:`ConfigError` out. The operator writes the
document (``docs/traffic.md``); the router refuses anything it cannot apply exactly (a version it
does not know, weights that do not sum to 100, a variant or mirror naming no backend, a URL it
cannot reach) and keeps the last good one. Refusing is safer than guessing: a guessed split can
send traffic to a revision the operator just took out of service.

Unknown fields are ignored (a newer operator may add optional ones within version 1); every
field this module reads is checked for type and range.
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import yaml

VERSION = 1
ROUTES_KEY = "routes.json"
MAX_BACKENDS = 64
MAX_VARIANTS = 8
#: Header names as HTTP allows them (RFC 9110 tokens); a cookie name is a token too.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_RATIO = re.compile(r"^[0-9]+([.][0-9]+)?$")


class ConfigError(ValueError):
    """A document the router refuses. ``reason`` is a short metric label, the text is for logs."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Backend:
    name: str
    revision: int
    url: str
    host: str
    port: int
    weight: int


@dataclass(frozen=True)
class Variant:
    revision: int
    weight: int | None


@dataclass(frozen=True)
class Sticky:
    header: str | None = None  # lower-case, as the HTTP server stores header names
    cookie: str | None = None


@dataclass(frozen=True)
class BanditSettings:
    algorithm: Literal["ThompsonSampling", "EpsilonGreedy"] = "ThompsonSampling"
    exploration_floor_percent: int = 5
    epsilon: float = 0.1


@dataclass(frozen=True)
class Experiment:
    type: Literal["ABTest", "Bandit"]
    variants: tuple[Variant, ...]
    sticky: Sticky | None
    bandit: BanditSettings | None

    @property
    def revisions(self) -> tuple[int, ...]:
        return tuple(v.revision for v in self.variants)


@dataclass(frozen=True)
class Mirror:
    revision: int
    percent: int


@dataclass(frozen=True)
class Routes:
    model_deployment: str
    backends: tuple[Backend, ...]
    experiment: Experiment | None = None
    mirror: Mirror | None = None

    def by_revision(self, revision: int) -> Backend:
        for backend in self.backends:
            if backend.revision == revision:
                return backend
        raise KeyError(revision)

    def summary(self) -> str:
        """One line for logs: ``churn-r1=90 churn-r2=10 +ABTest +mirror(r2 20%)``."""
        parts = [f"{b.name}={b.weight}" for b in self.backends]
        if self.experiment is not None:
            revisions = ",".join(map(str, self.experiment.revisions))
            parts.append(f"+{self.experiment.type}({revisions})")
        if self.mirror is not None:
            parts.append(f"+mirror(r{self.mirror.revision} {self.mirror.percent}%)")
        return " ".join(parts)


def routes_text(raw: bytes | str, *, yaml_allowed: bool = False) -> str:
    """The routes document inside ``raw``: either the document itself, or a ConfigMap manifest
    (as ``kubectl get cm -o json|yaml`` prints it) whose ``data`` holds it under ``routes.json``.

    Lets a demo point ``--config`` at a saved ConfigMap as well as at a bare document."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    try:
        doc = yaml.safe_load(text) if yaml_allowed else json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError("unparsable", f"not valid {'YAML' if yaml_allowed else 'JSON'}: "
                          f"{_one_line(exc)}") from None
    if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
        return configmap_routes(doc)
    return text


def configmap_routes(obj: Mapping[str, Any]) -> str:
    data = obj.get("data") or {}
    if not isinstance(data, dict) or not isinstance(data.get(ROUTES_KEY), str):
        name = (obj.get("metadata") or {}).get("name", "?")
        raise ConfigError("missing", f"ConfigMap {name} has no data key {ROUTES_KEY}")
    return str(data[ROUTES_KEY])


def parse(raw: bytes | str, overrides: Mapping[str, str] | None = None) -> Routes:
    """Parse and check a routes document; ``overrides`` maps backend names to URLs used instead
    of the document's (cluster DNS names are unreachable from a laptop or a test)."""
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ConfigError("unparsable", f"routes document is not valid JSON: {_one_line(exc)}"
                          ) from None
    if not isinstance(doc, dict):
        raise ConfigError("unparsable", "routes document must be a JSON object")
    version = doc.get("version")
    if version != VERSION or isinstance(version, bool):
        raise ConfigError("version", f"unknown routes format version {version!r}: this router "
                          f"reads version {VERSION}")
    owner = doc.get("modelDeployment", "")
    if not isinstance(owner, str):
        raise ConfigError("invalid", "modelDeployment must be a string")
    backends = _backends(doc.get("backends"), overrides or {})
    revisions = {b.revision for b in backends}
    experiment = _experiment(doc.get("experiment"), revisions)
    mirror = _mirror(doc.get("mirror"), revisions)
    return Routes(owner, backends, experiment, mirror)


def _backends(raw: Any, overrides: Mapping[str, str]) -> tuple[Backend, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError("invalid", "backends must be a non-empty list")
    if len(raw) > MAX_BACKENDS:
        raise ConfigError("invalid", f"backends has {len(raw)} entries; at most {MAX_BACKENDS}")
    out: list[Backend] = []
    names: set[str] = set()
    revisions: set[int] = set()
    for i, item in enumerate(raw):
        where = f"backends[{i}]"
        if not isinstance(item, dict):
            raise ConfigError("invalid", f"{where} must be an object")
        name = item.get("name")
        if not isinstance(name, str) or not name or len(name) > 253:
            raise ConfigError("invalid", f"{where}.name must be a non-empty string")
        where = f"backend {name}"
        revision = _int(item.get("revision"), f"{where}: revision", 1, 2**31)
        weight = _int(item.get("weight"), f"{where}: weight", 0, 100)
        url = overrides.get(name, item.get("url"))
        if not isinstance(url, str):
            raise ConfigError("invalid", f"{where}: url must be a string")
        host, port = _http_url(url, where)
        if name in names:
            raise ConfigError("invalid", f"backend name {name} appears twice")
        if revision in revisions:
            raise ConfigError("invalid", f"revision {revision} appears in two backends")
        names.add(name)
        revisions.add(revision)
        out.append(Backend(name, revision, url, host, port, weight))
    total = sum(b.weight for b in out)
    if total != 100:
        split = ", ".join(f"{b.name}={b.weight}" for b in out)
        raise ConfigError("weights", f"backend weights sum to {total}, not 100 ({split})")
    return tuple(out)


def _http_url(url: str, where: str) -> tuple[str, int]:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or 80
    except ValueError as exc:
        raise ConfigError("invalid", f"{where}: url {url!r}: {exc}") from None
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError("invalid", f"{where}: url {url!r} must be http://host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError("invalid", f"{where}: url {url!r} must not have a path or query "
                          "(requests keep their own path)")
    return parts.hostname, port


def _experiment(raw: Any, revisions: set[int]) -> Experiment | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError("invalid", "experiment must be an object")
    kind = raw.get("type")
    if kind not in ("ABTest", "Bandit"):
        raise ConfigError("invalid", f"experiment.type {kind!r} is neither ABTest nor Bandit")
    items = raw.get("variants")
    if not isinstance(items, list) or not 2 <= len(items) <= MAX_VARIANTS:
        raise ConfigError("invalid", f"experiment.variants must list 2 to {MAX_VARIANTS} "
                          "variants")
    variants: list[Variant] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError("invalid", f"experiment.variants[{i}] must be an object")
        revision = _int(item.get("revision"), f"experiment.variants[{i}].revision", 1, 2**31)
        weight = item.get("weight")
        if weight is not None:
            weight = _int(weight, f"experiment.variants[{i}].weight", 0, 100)
        elif kind == "ABTest":
            raise ConfigError("invalid", f"experiment.variants[{i}] (revision {revision}) has "
                              "no weight; every ABTest variant needs one")
        if revision not in revisions:
            raise ConfigError("unknown_backend", f"experiment variant revision {revision} is "
                              "not among the backends")
        if any(v.revision == revision for v in variants):
            raise ConfigError("invalid", f"revision {revision} appears in two variants")
        variants.append(Variant(revision, weight))
    if kind == "ABTest":
        total = sum(v.weight or 0 for v in variants)
        if total != 100:
            raise ConfigError("weights", f"ABTest variant weights sum to {total}, not 100")
    sticky = _sticky(raw.get("sticky"))
    bandit = None
    if kind == "Bandit":
        bandit = _bandit(raw.get("bandit"), len(variants))
    return Experiment(kind, tuple(variants), sticky, bandit)


def _sticky(raw: Any) -> Sticky | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError("invalid", "experiment.sticky must be an object")
    header, cookie = raw.get("header"), raw.get("cookie")
    if (header is None) == (cookie is None):
        raise ConfigError("invalid", "experiment.sticky sets exactly one of header or cookie")
    value = header if header is not None else cookie
    if not isinstance(value, str) or not _TOKEN.match(value) or len(value) > 256:
        raise ConfigError("invalid", f"experiment.sticky: {value!r} is not a valid "
                          f"{'header' if header is not None else 'cookie'} name")
    if header is not None:
        return Sticky(header=value.lower())
    return Sticky(cookie=value)


def _bandit(raw: Any, variants: int) -> BanditSettings:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("invalid", "experiment.bandit must be an object")
    algorithm = raw.get("algorithm", "ThompsonSampling")
    if algorithm not in ("ThompsonSampling", "EpsilonGreedy"):
        raise ConfigError("invalid", f"experiment.bandit.algorithm {algorithm!r} is neither "
                          "ThompsonSampling nor EpsilonGreedy")
    floor = _int(raw.get("explorationFloorPercent", 5),
                 "experiment.bandit.explorationFloorPercent", 0, 50)
    if floor * variants > 100:
        raise ConfigError("invalid", f"experiment.bandit.explorationFloorPercent {floor} times "
                          f"{variants} variants exceeds 100")
    epsilon = 0.1
    raw_epsilon = raw.get("epsilon")
    if raw_epsilon is not None:
        if not isinstance(raw_epsilon, str) or not _RATIO.match(raw_epsilon):
            raise ConfigError("invalid", f"experiment.bandit.epsilon {raw_epsilon!r} must be a "
                              'decimal string such as "0.1"')
        epsilon = float(raw_epsilon)
        if not 0 <= epsilon <= 1:
            raise ConfigError("invalid", f"experiment.bandit.epsilon {raw_epsilon} is not "
                              "between 0 and 1")
    return BanditSettings(algorithm, floor, epsilon)


def _mirror(raw: Any, revisions: set[int]) -> Mirror | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError("invalid", "mirror must be an object")
    revision = _int(raw.get("revision"), "mirror.revision", 1, 2**31)
    percent = _int(raw.get("percent"), "mirror.percent", 1, 100)
    if revision not in revisions:
        raise ConfigError("unknown_backend", f"mirror revision {revision} is not among the "
                          "backends")
    return Mirror(revision, percent)


def _int(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError("invalid", f"{what} must be an integer, got {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ConfigError("invalid", f"{what} must be an integer, got {value!r}")
        value = int(value)
    if not low <= value <= high:
        raise ConfigError("invalid", f"{what} {value} is outside {low}..{high}")
    return int(value)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
