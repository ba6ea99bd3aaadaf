"""Polling with a deadline instead of sleeping: the one ``eventually`` every suite uses."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    check: Callable[[], T], *, timeout: float = 30.0, what: str = "", max_delay: float = 0.5
) -> T:
    """Call ``check`` until it neither raises AssertionError nor returns False; return its value.

    Only AssertionError is retried: any other exception is a bug in the test and fails at once.
    The delay between calls grows from 0.05 s to ``max_delay``.
    """
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            result = check()
        except AssertionError:
            if time.monotonic() >= deadline:
                raise
        else:
            if result is not False:
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(f"not reached within {timeout:.0f}s: {what or check}")
        time.sleep(delay)
        delay = min(delay * 1.5, max_delay)
