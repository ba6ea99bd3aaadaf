"""Seaway's images on the real node: read the build's catalog, import the archives offline.

``make images`` (``hack/build-images.sh``) writes OCI archives and ``images/manifest.json``
(:func:`seaway.localplane.oci.catalog`) listing each archive and the references it carries. The
node imports every archive into containerd and makes sure each reference exists, so a Pod naming
``ghcr.io/seaway-dev/seaway-server:<version>`` (the chart's and the operator's default) starts
with ``imagePullPolicy: IfNotPresent`` and no registry: "already present on machine".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from seaway.localplane import nodeconfig

CATALOG = "manifest.json"


class CatalogError(ValueError):
    """The catalog is missing, unreadable, or names an archive that is not there."""


@dataclass(frozen=True)
class Archive:
    path: Path
    refs: tuple[str, ...]


def parse_catalog(text: str, directory: Path) -> list[Archive]:
    """The archives ``manifest.json`` lists, with absolute paths (PURE)."""
    try:
        document = json.loads(text)
        entries = document["images"]
        archives = [
            Archive(directory / str(entry["archive"]), tuple(str(r) for r in entry["refs"]))
            for entry in entries
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise CatalogError(f"{directory / CATALOG} is not a valid image catalog ({exc})") from None
    if not archives:
        raise CatalogError(f"{directory / CATALOG} lists no image")
    return archives


def problems(directory: Path) -> list[str]:
    """One line per reason the images cannot be imported ([] when they can)."""
    catalog = directory / CATALOG
    if not catalog.is_file():
        return [f"image catalog {catalog} is missing (build the images with `make images`)"]
    try:
        archives = parse_catalog(catalog.read_text(), directory)
    except (OSError, CatalogError) as exc:
        return [f"{exc} (rebuild the images with `make images`)"]
    lines = []
    absent = [a.path.name for a in archives if not a.path.is_file()]
    if absent:
        lines.append(
            f"image archives missing in {directory}: {', '.join(absent)} "
            "(build the images with `make images`)"
        )
    refs = {ref for archive in archives for ref in archive.refs}
    if nodeconfig.PAUSE_IMAGE not in refs:
        lines.append(
            f"no archive in {catalog} carries the sandbox image {nodeconfig.PAUSE_IMAGE} "
            "(build it with `make node`)"
        )
    return lines


def load(directory: Path) -> list[Archive]:
    """The archives to import; raises :class:`CatalogError`."""
    catalog = directory / CATALOG
    try:
        text = catalog.read_text()
    except OSError as exc:
        raise CatalogError(f"cannot read {catalog}: {exc.strerror}") from None
    return parse_catalog(text, directory)


def missing_refs(archives: list[Archive], present: set[str]) -> list[tuple[str, str]]:
    """(source, target) tags still to make: each reference an archive names but containerd
    does not list after the import (PURE)."""
    tags = []
    for archive in archives:
        have = [ref for ref in archive.refs if ref in present]
        if not have:
            continue
        for ref in archive.refs:
            if ref not in present:
                tags.append((have[0], ref))
    return tags
