"""A steady stream of predictions through a ModelDeployment's router, and what came back.

``seaway demo`` (on a real node) and the end-to-end tests use it to show what a user of a model
cares about while models are replaced: every request is answered, by which revision (the
router's ``seaway-revision`` header), and with which prediction. Standard library only; one
background thread; bounded by ``max_requests`` and ``max_seconds``.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

REVISION_HEADER = "seaway-revision"


@dataclass(frozen=True)
class Answer:
    at: float  # time.monotonic() when the request was sent
    status: int  # HTTP status, 0 when no answer came (connection refused, reset, timeout)
    revision: int | None
    row: int
    prediction: Any
    error: str = ""


@dataclass
class Traffic:
    """Single-row V2 inference requests to ``host:port`` at ``rate`` per second."""

    host: str
    port: int
    model: str
    rows: list[list[float]]
    rate: float = 40.0
    max_requests: int = 20_000
    max_seconds: float = 600.0
    #: Sent with the value ``user-<row>``, for sticky assignment.
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

    def body(self, row: int) -> bytes:
        values = [float(v) for v in self.rows[row]]
        document = {"inputs": [{"name": "input-0", "shape": [1, len(values)],
                                "datatype": "FP64", "data": values}]}
        return json.dumps(document).encode()

    def _send(self, conn: http.client.HTTPConnection, row: int) -> Answer:
        sent = time.monotonic()
        headers = {"Content-Type": "application/json"}
        if self.sticky_header:
            headers[self.sticky_header] = f"user-{row}"
        conn.request("POST", f"/v2/models/{self.model}/infer", self.body(row), headers)
        resp = conn.getresponse()
        data = resp.read()
        revision = resp.getheader(REVISION_HEADER)
        if resp.status != 200:
            return Answer(sent, resp.status, int(revision) if revision else None, row, None,
                          data[:200].decode(errors="replace"))
        prediction = json.loads(data)["outputs"][0]["data"][0]
        return Answer(sent, 200, int(revision) if revision else None, row, prediction)

    def _run(self) -> None:
        began = time.monotonic()
        interval = 1.0 / self.rate
        conn: http.client.HTTPConnection | None = None
        n = 0
        while not self._stop.is_set() and n < self.max_requests:
            if time.monotonic() - began > self.max_seconds:
                break
            row = n % len(self.rows)
            sent = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                answer = self._send(conn, row)
            except (OSError, http.client.HTTPException, ValueError, KeyError,
                    IndexError) as exc:
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

    # -- what happened ----------------------------------------------------------------------
    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)

    def since(self, t0: float) -> list[Answer]:
        return [a for a in self.snapshot() if a.at >= t0]

    def failures(self, answers: list[Answer] | None = None) -> list[Answer]:
        return [a for a in (self.snapshot() if answers is None else answers) if a.status != 200]

    def wait_for(self, count: int, timeout: float = 60.0, after: float = 0.0) -> list[Answer]:
        """Until ``count`` requests were sent after ``after`` (monotonic); their answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.since(after)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise TimeoutError(f"only {len(self.since(after))} of {count} answers in {timeout:.0f}s")


def shares(answers: list[Answer]) -> dict[int, float]:
    """Percent of the successful answers made by each revision."""
    counted = Counter(a.revision for a in answers if a.status == 200 and a.revision)
    total = sum(counted.values())
    return {rev: 100.0 * n / total for rev, n in sorted(counted.items())} if total else {}


def describe(answers: list[Answer]) -> str:
    """``r1 78% r2 22% of 80, 0 failed`` (for a line of the demo)."""
    split = " ".join(f"r{rev} {share:.0f}%" for rev, share in shares(answers).items())
    failed = sum(1 for a in answers if a.status != 200)
    return f"{split or 'no answers'} of {len(answers)}, {failed} failed"
