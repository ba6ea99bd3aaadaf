"""No silent stall on the real API server: a gateway-api ModelDeployment on a cluster without the
Gateway API CRDs says so in a condition and ONE Event, and the operator logs it once, with no
stack trace per pass; once the CRDs are installed it carries on by itself."""

from __future__ import annotations

import os
from typing import Any

import pytest
from tests.integration.mdtools import User, md_body

from seaway.localplane import config

OPERATOR = ["seaway.handlers.operator"]
HTTPROUTE_CRD = "httproutes.gateway.networking.k8s.io"


@pytest.fixture
def user(kube_api: Any, namespace: str, seaway_crds: list[str]) -> User:
    return User(kube_api, namespace)


def test_missing_gateway_api_crds(
    run_operator: Any, user: User, namespace: str, eventually: Any, consistently: Any,
    control_plane: Any,
) -> None:  # fmt: skip
    gateway_crds = config.bin_dir(os.environ).parent / "gateway-api"
    assert sorted(gateway_crds.glob("*.yaml")), f"no Gateway API CRDs in {gateway_crds}"
    control_plane.kubectl("delete", "crd", HTTPROUTE_CRD, "--ignore-not-found", "--wait=true")
    body = md_body("edge", 1, traffic={"router": "gateway-api",
                                       "gateway": {"parentRefs": [{"name": "public"}]}})
    try:
        with run_operator(OPERATOR, namespace=namespace) as runner:
            user.create(body)
            eventually(lambda: user.condition("edge", "Ready").get("reason")
                       == "GatewayAPIMissing", timeout=30)  # fmt: skip
            message = user.condition("edge", "Ready")["message"]
            assert "the Gateway API CRDs are not installed" in message, message
            assert "spec.traffic.router: builtin" in message
            # the operator retries, but says it once
            consistently(lambda: user.event_reasons("edge").count("GatewayAPIMissing") == 1,
                         duration=6)  # fmt: skip
            control_plane.install_crds(gateway_crds)
            eventually(lambda: user.status("edge").get("stableRevision") == 1, timeout=60,
                       what="serving once the CRDs exist")  # fmt: skip
            eventually(lambda: user.condition("edge", "Ready").get("status") == "True")
        output = runner.output
    finally:
        control_plane.install_crds(gateway_crds)  # other tests of this session use them
    assert "Traceback" not in output
    assert output.count("cannot progress") == 1, output
