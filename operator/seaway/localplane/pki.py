"""The plane's certificates, made with the ``openssl`` command line.

One CA signs a serving certificate for 127.0.0.1/localhost (used by the API server, the controller
manager and the scheduler) and one client certificate in ``system:masters`` (the admin user of the
kubeconfig: controllers, kwok, kopf and tests all use it, as envtest does). A separate RSA key pair
signs ServiceAccount tokens. A real node gets its own client certificate (:func:`create_node`):
``O=system:nodes, CN=system:node:<name>``, the identity the Node authorizer and the NodeRestriction
admission plugin expect of a kubelet, so the kubelet can only touch its own Node and Pods.

The CA carries ``keyUsage=keyCertSign``: Python 3.13's default ``VERIFY_X509_STRICT`` refuses a CA
without it. ``openssl`` is on every machine these tests run on, so no Python dependency is needed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from seaway.localplane import config

DAYS = "3650"
_BASE_EXTENSIONS = (
    "basicConstraints=critical,CA:FALSE\n"
    "keyUsage=critical,digitalSignature,keyEncipherment\n"
    "authorityKeyIdentifier=keyid,issuer\n"
    "subjectKeyIdentifier=hash\n"
)


class PKIError(RuntimeError):
    """openssl is missing or refused to make a certificate."""


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise PKIError("openssl was not found on PATH; the plane needs it for its certificates")
    result = subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise PKIError(f"openssl {args[0]} failed: {detail[-1] if detail else 'no output'}")


def _sign(layout: config.Layout, name: str, subject: str, extensions: str) -> None:
    pki, ca_cert, ca_key = layout.pki, layout.ca_cert(), layout.ca_key()
    (pki / f"{name}.ext").write_text(extensions)
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
        "-out", f"{name}.csr", "-subj", subject,
        cwd=pki,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", DAYS, "-sha256", "-extfile", f"{name}.ext",
        "-out", f"{name}.crt",
        cwd=pki,
    )  # fmt: skip
    (pki / f"{name}.csr").unlink()
    (pki / f"{name}.ext").unlink()


def create(layout: config.Layout) -> None:
    """Write a fresh CA, serving, admin and ServiceAccount key material into ``layout.pki``."""
    pki = layout.pki
    if pki.exists():
        shutil.rmtree(pki)
    pki.mkdir(parents=True, mode=0o700)
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", DAYS, "-sha256", "-subj", "/CN=seaway-local-plane-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        cwd=pki,
    )  # fmt: skip
    _sign(
        layout, "serving", "/CN=seaway-local-plane",
        _BASE_EXTENSIONS + "extendedKeyUsage=serverAuth\n"
        # 10.96.0.1 is the kubernetes Service's ClusterIP and 10.88.0.1 the real node's
        # gateway: in-cluster clients (Pods on a real node) reach the API server there.
        "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,IP:10.88.0.1,DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc\n",
    )  # fmt: skip
    _sign(
        layout, "admin", "/O=system:masters/CN=seaway-admin",
        _BASE_EXTENSIONS + "extendedKeyUsage=clientAuth\n",
    )  # fmt: skip
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    for key in pki.glob("*.key"):
        key.chmod(0o600)


def create_node(layout: config.Layout, node_name: str) -> None:
    """Sign the kubelet's client certificate (``node.crt``/``node.key``) with the plane's CA."""
    _sign(
        layout, "node", f"/O=system:nodes/CN=system:node:{node_name}",
        _BASE_EXTENSIONS + "extendedKeyUsage=clientAuth\n",
    )  # fmt: skip
    layout.node_key().chmod(0o600)
