"""A memory budget for requests in flight: bytes and rows, beyond which the server says 503.

Why: the queue bounds the *number* of requests, not their size. 32 clients sending 15 MiB bodies
pushed one server to 3.4 GB: every connection buffered its body, every queued request held its
decoded rows, and the memory stayed with the process after the burst. A pod limit turns that
into an OOM kill of every request at once. So the server keeps two counters, in the event
loop's thread (no lock):

* bytes: a request body is counted from the moment its ``Content-Length`` is known (or as a
  chunked body arrives) until its answer is written; its decoded rows (``x.nbytes``) are
  counted on top until the prediction is done;
* rows: decoded rows waiting for or in a ``predict`` call.

A request that would push either counter past its limit is answered 503 with ``Retry-After``,
its body drained but never stored. Per request, the body limit (413) and the row cap (400)
still apply first.

And the memory goes back: large buffers are allocated with ``mmap`` (a fixed ``mallopt``
threshold, so glibc does not raise it after the first big free and serve later bodies from a
heap it never shrinks), and when the bytes in flight fall back to zero after a burst the heap is
trimmed (``malloc_trim``). Both only where the C library is glibc; elsewhere they are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable

log = logging.getLogger(__name__)

#: glibc's mallopt parameter numbers (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Buffers above this come from mmap and go back to the system when freed.
MMAP_THRESHOLD = 256 << 10
#: A burst that held at least this much is followed by a trim once it is over.
TRIM_AFTER_BYTES = 8 << 20


class Budget:
    def __init__(self, max_bytes: int, max_rows: int,
                 on_idle: Callable[[], None] | None = None) -> None:
        self.max_bytes = max_bytes
        self.max_rows = max_rows
        self.bytes = 0
        self.rows = 0
        self.peak_bytes = 0  # since the last idle moment
        self.refused = 0
        self.on_idle = on_idle

    def take(self, nbytes: int, rows: int = 0) -> bool:
        """Reserve ``nbytes`` and ``rows`` if both fit; False (nothing reserved) if not."""
        if self.bytes + nbytes > self.max_bytes or self.rows + rows > self.max_rows:
            self.refused += 1
            return False
        self.bytes += nbytes
        self.rows += rows
        self.peak_bytes = max(self.peak_bytes, self.bytes)
        return True

    def give(self, nbytes: int, rows: int = 0) -> None:
        self.bytes -= nbytes
        self.rows -= rows
        if self.bytes == 0 and self.rows == 0 and self.peak_bytes >= TRIM_AFTER_BYTES:
            self.peak_bytes = 0
            if self.on_idle is not None:
                self.on_idle()


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


_LIBC = _libc()


def use_mmap_for_large_buffers() -> bool:
    """Fix glibc's mmap threshold (and trim threshold): large buffers return when freed."""
    if _LIBC is None:
        return False
    ok = bool(_LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    ok = bool(_LIBC.mallopt(M_TRIM_THRESHOLD, 4 * MMAP_THRESHOLD)) and ok
    return ok


def trim() -> tuple[int, int] | None:
    """Give the free heap memory of every arena back to the system (glibc ``malloc_trim``);
    the resident bytes before and after, where /proc tells them."""
    if _LIBC is None:
        return None
    before = resident_bytes()
    _LIBC.malloc_trim(0)
    after = resident_bytes()
    return (before, after) if before is not None and after is not None else None


def resident_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
