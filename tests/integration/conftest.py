"""Integration tests run against the real local control plane (fixtures in tests/conftest.py).

Every test here is marked ``cluster``. Two polling helpers replace sleeps: ``eventually`` retries
a check until it passes or a deadline expires; ``consistently`` requires a check to keep passing
for a while (to show that something does NOT happen). A check is a function that returns a value
or raises AssertionError (returning False counts as a failure too); the last failure is what a
timed-out test reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
from tests.support import polling

T = TypeVar("T")
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.cluster)


class Eventually(Protocol):
    def __call__(self, check: Callable[[], T], *, timeout: float = ..., what: str = ...) -> T: ...


class Consistently(Protocol):
    def __call__(self, check: Callable[[], Any], *, duration: float = ...) -> None: ...


def _eventually(check: Callable[[], T], *, timeout: float = 30.0, what: str = "") -> T:
    return polling.eventually(check, timeout=timeout, what=what)


def _consistently(check: Callable[[], Any], *, duration: float = 3.0) -> None:
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        result = check()
        assert result is not False, f"{check} stopped holding"
        time.sleep(0.2)


@pytest.fixture
def eventually() -> Eventually:
    return _eventually


@pytest.fixture
def consistently() -> Consistently:
    return _consistently
