"""Progress of the run on stderr: one line when a step starts, a heartbeat while it lasts.

stdout is reserved for the result (its last line is the result JSON), so everything a person
watches with ``kubectl logs -f`` goes to stderr: plain text by default, or the server's JSON log
lines for a log pipeline. A step that runs longer than the heartbeat interval (fetching a large
file, fitting a forest) says it is still alive, so a quiet Job is never mistaken for a hung one.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Iterator

from seaway_serving import logs

log = logging.getLogger("seaway_train")


def configure(level: str, fmt: str) -> None:
    if fmt == "json":
        logs.configure(level, component="seaway-train")
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)


@contextlib.contextmanager
def step(what: str, interval_s: float) -> Iterator[None]:
    """Log ``what`` now, ``still <what> (Ns)`` every ``interval_s``, and the time it took."""
    log.info("%s...", what)
    t0 = time.monotonic()
    done = threading.Event()

    def beat() -> None:
        while not done.wait(interval_s):
            log.info("Still %s (%.0fs so far)", what[0].lower() + what[1:],
                     time.monotonic() - t0)

    thread = threading.Thread(target=beat, name="seaway-train-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
    # only reached when the step did not raise: a failure is reported once, by the caller
    log.info("Done %s in %.2fs", what[0].lower() + what[1:], time.monotonic() - t0)
