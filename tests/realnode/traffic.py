"""Live traffic for the end-to-end tests: a bundle store pods can reach, and a steady client.

``BundleStore`` serves bundle archives over HTTP on the real node's bridge gateway, the one host
address Pods reach (docs/localplane.md); ``Traffic`` is the demo's client
(``seaway.cli.traffic``): prediction requests to the router's Service at a bounded rate, keeping
for every answer when it came, its status, the revision that made it and the prediction.
"""

from __future__ import annotations

import functools
import hashlib
import json
import tarfile
import threading
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from seaway.cli import traffic


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *_: Any) -> None:
        pass


class BundleStore:
    """An HTTP file server on ``host`` serving ``root`` (archives of bundles)."""

    def __init__(self, root: Path, host: str) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        handler = functools.partial(_Quiet, directory=str(root))
        self.server = ThreadingHTTPServer((host, 0), handler)
        self.host = host
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, bundle_dir: Path, name: str) -> tuple[str, str]:
        """Archive ``bundle_dir`` as ``<name>.tar.gz``; its URI and its model file's digest."""
        archive = self.root / f"{name}.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for path in sorted(bundle_dir.iterdir()):
                tar.add(path, arcname=path.name)
        model = json.loads((bundle_dir / "manifest.json").read_text())["model_file"]
        digest = "sha256:" + hashlib.sha256((bundle_dir / model).read_bytes()).hexdigest()
        return f"http://{self.host}:{self.port}/{archive.name}", digest

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Traffic(traffic.Traffic):
    """The demo's client (``seaway.cli.traffic``), taking a numpy array of rows too."""

    def __post_init__(self) -> None:
        self.rows = np.asarray(self.rows, dtype=np.float64).tolist()

    shares = staticmethod(traffic.shares)


Answer = traffic.Answer
