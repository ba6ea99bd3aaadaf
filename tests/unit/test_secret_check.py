"""A Secret the operator may not read is assumed to exist; one that is missing is reported."""

from __future__ import annotations

from typing import Any

import pytest

from seaway.handlers.modeldeployment import secret_may_exist
from seaway.k8s.kube import KubeError


class FakeKube:
    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome

    def get(self, kind: str, namespace: str, name: str) -> Any:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def test_present_missing_and_forbidden() -> None:
    assert secret_may_exist(FakeKube({"metadata": {}}), "ml", "creds") is True  # type: ignore[arg-type]
    assert secret_may_exist(FakeKube(None), "ml", "creds") is False  # type: ignore[arg-type]
    forbidden = KubeError(403, 'secrets "creds" is forbidden')
    assert secret_may_exist(FakeKube(forbidden), "ml", "creds") is True  # type: ignore[arg-type]
    with pytest.raises(KubeError):
        secret_may_exist(FakeKube(KubeError(500, "etcd is down")), "ml", "creds")  # type: ignore[arg-type]
