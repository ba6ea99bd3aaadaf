"""How ``seaway-router`` refuses to start: one line in the log, the termination message, and an
exit code (2 for settings it cannot use, 1 for the rest)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.router.conftest import HOST, REPO, _child_env


def run_router(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seaway_serving.router", *args], capture_output=True, text=True,
        cwd=REPO, timeout=30, check=False,
        env=_child_env({"SEAWAY_TERMINATION_LOG": str(tmp_path / "term"), **env}))


@pytest.mark.parametrize(("args", "env", "message"), [
    ((), {}, "give exactly one of --config FILE or --configmap NAMESPACE/NAME"),
    (("--config", "r.json", "--configmap", "ml/churn-router"), {},
     "give exactly one of --config FILE or --configmap NAMESPACE/NAME"),
    (("--configmap", "churn-router"), {}, "invalid setting configmap: Value error, must be "
     "<namespace>/<name>"),
    (("--configmap", "ml/churn-router"), {"KUBERNETES_SERVICE_HOST": "127.0.0.1",
                                          "KUBERNETES_SERVICE_PORT": "1",
                                          "SEAWAY_KUBE_SERVICEACCOUNT_DIR": "/nonexistent"},
     "no ServiceAccount token and CA in /nonexistent: the router Pod needs a ServiceAccount"),
    (("--configmap", "ml/churn-router"), {},
     "not running in a cluster (KUBERNETES_SERVICE_HOST/PORT unset): give --kubeconfig"),
    (("--configmap", "ml/churn-router", "--kube-api", "http://127.0.0.1:1"), {},
     "API server URL 'http://127.0.0.1:1' must be https://host[:port]"),
    (("--configmap", "ml/churn-router", "--kubeconfig", "/nonexistent/kubeconfig"), {},
     "cannot read kubeconfig /nonexistent/kubeconfig"),
])
def test_unusable_settings_exit_2_with_the_reason(tmp_path, args, env, message):
    result = run_router(tmp_path, *args, **env)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert message in (tmp_path / "term").read_text()


def test_a_bad_backend_url_option_is_a_usage_error(tmp_path):
    result = run_router(tmp_path, "--config", "r.json", "--backend-url", "churn-r1")
    assert result.returncode == 2
    assert "'churn-r1' is not NAME=URL" in result.stderr


def test_a_taken_port_exits_1(tmp_path):
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run_router(tmp_path, "--config", str(tmp_path / "r.json"), "--host", HOST,
                            "--port", str(port))
    assert result.returncode == 1
    assert f"cannot listen on {HOST}:{port}" in result.stderr
