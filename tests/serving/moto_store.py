"""A real S3-compatible store on 127.0.0.1 (moto's server mode) for the serving and trainer tests.

moto runs from its own virtualenv (its pins clash with the project's); s3_setup.py, run by that
venv's Python, creates a user, its key, the bucket and the objects. Every later request must
carry a valid AWS Signature Version 4 of that key.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.serving import s3_setup
from tests.serving.conftest import side_venv

HERE = Path(__file__).resolve().parent


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_store(work: Path, bucket: str, objects: list[str],
               host: str = "127.0.0.1") -> Iterator[dict[str, str]]:
    """Serve ``bucket`` with ``objects`` (``FILE=KEY``); yields the client environment.

    ``host`` is the address it listens on: loopback, or the real node's bridge gateway for Pods.
    """
    venv = side_venv("moto", ["moto[server]>=5", "boto3"])
    port = _free_port(host)
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(s3_setup.SETUP_CALLS + len(objects)))
    log = (work / "moto.log").open("wb")
    proc = subprocess.Popen([str(venv / "bin" / "moto_server"), "-H", host, "-p",
                             str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection((host, port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, (work / "moto.log").read_text()
                assert time.monotonic() < deadline, "moto did not start"
                time.sleep(0.05)
        out = subprocess.run([str(venv / "bin" / "python"), str(HERE / "s3_setup.py"), endpoint,
                              bucket, *objects], check=True, capture_output=True, timeout=120)
        key = json.loads(out.stdout)
        yield {"SEAWAY_S3_ENDPOINT": endpoint, "AWS_ACCESS_KEY_ID": key["id"],
               "AWS_SECRET_ACCESS_KEY": key["secret"], "AWS_REGION": "us-east-1"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
