"""Live traffic for the end-to-end tests: a bundle store pods can reach, and a steady client.

``BundleStore`` serves bundle archives over HTTP on the real node's bridge gateway, the one host
address Pods reach (docs/localplane.md); ``Traffic`` sends prediction requests to the router's
Service at a bounded rate from a background thread and keeps, for every answer, when it came,
its status, the revision that made it (the router's ``seaway-revision`` header) and the
prediction, so a test can check the split per revision, the failures and each answer.

Both are bounded: the store only serves files of its own directory, and the client stops after
``max_requests`` or ``max_seconds`` whichever comes first.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import json
import tarfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np


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
class Answer:
    at: float
    status: int
    revision: int | None
    row: int
    prediction: Any
    error: str = ""


@dataclass
class Traffic:
    """A steady stream of single-row predictions to ``host:port`` (the router's Service)."""

    host: str
    port: int
    model: str
    rows: np.ndarray
    rate: float = 40.0
    max_requests: int = 20_000
    max_seconds: float = 600.0
    sticky_header: str | None = None
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _body(self, row: int) -> bytes:
        values = np.asarray(self.rows[row], dtype=np.float64)
        return json.dumps({"inputs": [{"name": "input-0", "shape": [1, len(values)],
                                       "datatype": "FP64",
                                       "data": values.tolist()}]}).encode()

    def _run(self) -> None:
        started = time.monotonic()
        interval = 1.0 / self.rate
        conn: http.client.HTTPConnection | None = None
        n = 0
        while not self._stop.is_set() and n < self.max_requests:
            if time.monotonic() - started > self.max_seconds:
                break
            row = n % len(self.rows)
            sent = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                headers = {"Content-Type": "application/json"}
                if self.sticky_header:
                    headers[self.sticky_header] = f"user-{row}"
                conn.request("POST", f"/v2/models/{self.model}/infer", self._body(row), headers)
                resp = conn.getresponse()
                data = resp.read()
                revision = resp.getheader("seaway-revision")
                prediction = (json.loads(data)["outputs"][0]["data"][0]
                              if resp.status == 200 else None)
                answer = Answer(sent, resp.status, int(revision) if revision else None, row,
                                prediction, "" if resp.status == 200 else data[:200].decode())
            except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
                if conn is not None:
                    conn.close()
                conn = None
                answer = Answer(sent, 0, None, row, None, f"{type(exc).__name__}: {exc}")
            with self._lock:
                self.answers.append(answer)
            n += 1
            self._stop.wait(max(0.0, interval - (time.monotonic() - sent)))
        if conn is not None:
            conn.close()

    # -- reading what happened --------------------------------------------------------------
    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)

    def since(self, t0: float) -> list[Answer]:
        return [a for a in self.snapshot() if a.at >= t0]

    def failures(self, answers: list[Answer] | None = None) -> list[Answer]:
        return [a for a in (self.snapshot() if answers is None else answers) if a.status != 200]

    @staticmethod
    def shares(answers: list[Answer]) -> dict[int, float]:
        counted = Counter(a.revision for a in answers if a.status == 200 and a.revision)
        total = sum(counted.values())
        return {rev: 100.0 * n / total for rev, n in sorted(counted.items())} if total else {}

    def wait_for(self, count: int, timeout: float = 60.0, after: float = 0.0) -> list[Answer]:
        """Until ``count`` answers were sent after ``after`` (monotonic); those answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.since(after)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"only {len(self.since(after))} of {count} answers in {timeout}s")
