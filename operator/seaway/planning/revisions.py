"""Revision identity: which template a revision runs, and how numbers are handed out."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from seaway.api.modeldeployment import ModelDeploymentSpec, RevisionStatus, Server


@dataclass(frozen=True)
class ResolvedModel:
    """The concrete model a revision serves (a RetrainJob reference already resolved)."""

    uri: str
    format: str
    digest: str | None
    allow_unverified: bool
    secret_name: str | None
    created_by: str = "user"


def resolve_model(spec: ModelDeploymentSpec) -> ResolvedModel | None:
    """The model of a spec with a fixed ``uri``; ``None`` when it follows a RetrainJob."""
    model = spec.model
    if model.uri is None:
        return None
    return ResolvedModel(
        uri=model.uri,
        format=model.format,
        digest=model.digest,
        allow_unverified=bool(model.allow_unverified),
        secret_name=model.secret_ref.name if model.secret_ref else None,
    )


def redact_uri(uri: str) -> str:
    """``uri`` without user info, query string and fragment, for status, Events and logs.

    A presigned URL carries its signature and session token in the query; ``user:password@``
    carries a password. Status is readable by everyone who may read the ModelDeployment, so
    neither is stored there (credentials belong in ``model.secretRef``). The Pod still gets the
    URI as written. Pure string work: this layer imports no URL library.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep:
        scheme, rest = "", uri
    for mark in ("?", "#"):
        rest = rest.partition(mark)[0]
    if sep:
        authority, slash, path = rest.partition("/")
        rest = authority.rpartition("@")[2] + slash + path
    return f"{scheme}{sep}{rest}"


def template_hash(model: ResolvedModel, server: Server) -> str:
    """A short, stable hash of everything that makes a revision's Pods what they are.

    ``created_by`` is left out: the same bundle promoted by a RetrainJob and written by hand is the
    same revision. Replicas and autoscaling are left out too: scaling is not a new revision.
    """
    pod_template = server.model_dump(
        mode="json", by_alias=True, exclude_none=True, exclude={"replicas", "autoscaling"}
    )
    payload = {
        "model": {
            "uri": model.uri,
            "format": model.format,
            "digest": model.digest,
            "allowUnverified": model.allow_unverified,
            "secret": model.secret_name,
        },
        "server": pod_template,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def find_by_hash(revisions: list[RevisionStatus], hash_: str) -> RevisionStatus | None:
    return next((r for r in revisions if r.template_hash == hash_), None)


def find_by_number(revisions: list[RevisionStatus], number: int) -> RevisionStatus | None:
    return next((r for r in revisions if r.number == number), None)


def next_number(revisions: list[RevisionStatus], floor: int = 0) -> int:
    """One more than any revision ever recorded (``floor`` carries numbers of pruned entries)."""
    return max([floor, *(r.number for r in revisions)]) + 1


def ensure_revision(
    revisions: list[RevisionStatus],
    model: ResolvedModel,
    server: Server,
    *,
    now: str,
    floor: int = 0,
) -> tuple[list[RevisionStatus], RevisionStatus, bool]:
    """The revision for this template: the existing one with the same hash, or a new one.

    Returns the (possibly extended) list, the revision, and whether it was created.
    """
    hash_ = template_hash(model, server)
    existing = find_by_hash(revisions, hash_)
    if existing is not None:
        return revisions, existing, False
    created = RevisionStatus(
        number=next_number(revisions, floor),
        template_hash=hash_,
        model_uri=redact_uri(model.uri),
        digest=model.digest,
        format=model.format,
        image=server.image,
        created_at=now,
        created_by=model.created_by,
        fate="Pending",
    )
    return [*revisions, created], created, True


def prune(
    revisions: list[RevisionStatus], limit: int, keep: set[int]
) -> tuple[list[RevisionStatus], list[int]]:
    """Drop the oldest finished revisions beyond ``limit``; never one in ``keep``.

    Returns the kept entries and the numbers whose children may be deleted.
    """
    removable = [
        r for r in revisions if r.number not in keep and r.fate not in ("Stable", "Canary")
    ]
    excess = len(revisions) - limit
    dropped = {r.number for r in sorted(removable, key=lambda r: r.number)[: max(excess, 0)]}
    return [r for r in revisions if r.number not in dropped], sorted(dropped)
