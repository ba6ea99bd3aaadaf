"""Seaway's model server: the bundle format, its verified loader and the V2 inference server.

This package is what runs inside every model pod. It deliberately imports nothing of the
operator (``seaway``), kopf or the Kubernetes client, so the server image stays small and a bug
in the control plane can never reach the data plane; an import-linter contract enforces it.

Layers, from the wire inwards: ``http`` (asyncio + httptools transport) -> ``rest`` (routes,
thin) -> ``dataplane`` (request decoding, batching, responses) -> ``batching`` -> the loaded
model from ``loader``, which reads what ``sources`` fetched and ``bundle`` described.
"""

from __future__ import annotations

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("seaway")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
