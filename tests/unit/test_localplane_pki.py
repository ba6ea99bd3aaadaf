"""The plane's certificates work for a real mutual-TLS handshake on 127.0.0.1, strictly verified."""

from __future__ import annotations

import socket
import ssl
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from seaway.localplane import config, pki


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> config.Layout:
    layout = config.Layout(tmp_path_factory.mktemp("plane"))
    pki.create(layout)
    return layout


def test_every_file_the_components_need_exists_and_keys_are_private(
    layout: config.Layout,
) -> None:
    needed = [
        layout.ca_cert(),
        layout.ca_key(),
        layout.serving_cert(),
        layout.serving_key(),
        layout.admin_cert(),
        layout.admin_key(),
        layout.sa_key(),
        layout.sa_pub(),
    ]
    for path in needed:
        assert path.is_file(), path
    for key in layout.pki.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert not list(layout.pki.glob("*.csr")), "signing requests are removed"


def test_openssl_verifies_both_certificates_against_the_ca(layout: config.Layout) -> None:
    result = subprocess.run(
        ["openssl", "verify", "-x509_strict", "-CAfile", str(layout.ca_cert()),
         str(layout.serving_cert()), str(layout.admin_cert())],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": OK") == 2


def test_admin_is_in_system_masters(layout: config.Layout) -> None:
    subject = subprocess.run(
        ["openssl", "x509", "-noout", "-subject", "-in", str(layout.admin_cert())],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "O = system:masters" in subject


def test_mutual_tls_handshake_with_strict_verification(layout: config.Layout) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(layout.ca_cert()))
    server_ctx.load_cert_chain(str(layout.serving_cert()), str(layout.serving_key()))
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    client_ctx = ssl.create_default_context(cafile=str(layout.ca_cert()))
    client_ctx.load_cert_chain(str(layout.admin_cert()), str(layout.admin_key()))
    # Python 3.13 turns this on by default; the CA must carry keyUsage for it to pass.
    client_ctx.verify_flags |= ssl.VERIFY_X509_STRICT

    seen: dict[str, object] = {}
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                seen["client"] = tls.getpeercert()
                tls.sendall(b"ok")

        thread = threading.Thread(target=serve)
        thread.start()
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.recv(2) == b"ok"
        thread.join(timeout=10)
    subject = dict(item[0] for item in seen["client"]["subject"])  # type: ignore[index]
    assert subject == {"organizationName": "system:masters", "commonName": "seaway-admin"}


def test_create_replaces_an_old_pki(layout: config.Layout, tmp_path: Path) -> None:
    other = config.Layout(tmp_path)
    other.pki.mkdir()
    (other.pki / "stale.crt").write_text("old")
    pki.create(other)
    assert not (other.pki / "stale.crt").exists()
    assert other.ca_cert().read_bytes() != layout.ca_cert().read_bytes()
