"""How the router finds the API server: the Pod's ServiceAccount, or a kubeconfig file."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
import yaml

from seaway_serving.router import kube


def test_in_cluster_reads_the_service_account(tmp_path):
    (tmp_path / "token").write_text("tok-1\n")
    (tmp_path / "ca.crt").write_text("ca")
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    access = kube.in_cluster(env, tmp_path)
    assert access.server == "https://10.96.0.1:443"
    assert access.host_port == ("10.96.0.1", 443)
    assert access.authorization() == "Bearer tok-1"
    (tmp_path / "token").write_text("tok-2")  # kubelet rotated it: the next connection sees it
    assert access.authorization() == "Bearer tok-2"
    v6 = kube.in_cluster({"KUBERNETES_SERVICE_HOST": "fd00::1",
                          "KUBERNETES_SERVICE_PORT": "6443"}, tmp_path)
    assert v6.server == "https://[fd00::1]:6443" and v6.host_port == ("fd00::1", 6443)


def test_kubeconfig_with_inline_credentials_and_relative_paths(tmp_path):
    config = {
        "current-context": "b",
        "contexts": [{"name": "a", "context": {"cluster": "one", "user": "u1"}},
                     {"name": "b", "context": {"cluster": "two", "user": "u2"}}],
        "clusters": [
            {"name": "one", "cluster": {"server": "https://one:6443",
                                        "certificate-authority": "pki/ca.crt"}},
            {"name": "two", "cluster": {
                "server": "https://127.0.0.1:1234",
                "certificate-authority-data": base64.b64encode(b"CA PEM").decode()}}],
        "users": [
            {"name": "u1", "user": {"token": "static"}},
            {"name": "u2", "user": {
                "client-certificate-data": base64.b64encode(b"CERT PEM").decode(),
                "client-key-data": base64.b64encode(b"KEY PEM").decode()}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))

    current = kube.from_kubeconfig(path)
    assert current.server == "https://127.0.0.1:1234" and current.authorization() is None
    assert current.ca_file and current.client_cert and current.client_key
    for file, content in ((current.ca_file, b"CA PEM"), (current.client_cert, b"CERT PEM"),
                          (current.client_key, b"KEY PEM")):
        assert Path(file).read_bytes() == content
        assert stat.S_IMODE(Path(file).stat().st_mode) == 0o600
    other = kube.from_kubeconfig(path, "a")
    assert other.ca_file == str(tmp_path / "pki" / "ca.crt")
    assert other.authorization() == "Bearer static"
    with pytest.raises(kube.KubeSetupError, match="has no context named 'c'"):
        kube.from_kubeconfig(path, "c")


def test_bad_access_is_explained():
    with pytest.raises(kube.KubeSetupError, match=r"must be https://host\[:port\]"):
        _ = kube.KubeAccess("http://127.0.0.1:80").host_port
    with pytest.raises(kube.KubeSetupError, match="cannot read the token file /nonexistent"):
        kube.KubeAccess("https://x", token_file="/nonexistent").authorization()
    with pytest.raises(kube.KubeSetupError, match="cannot load the API server's CA"):
        kube.KubeAccess("https://x", ca_file="/nonexistent").ssl_context()
