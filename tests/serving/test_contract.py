"""The operator and the model server, run together: the pod template's environment is the contract.

Each test renders the Pod template the operator would give a revision (``children.pod_template``)
and starts a real ``seaway-serve`` with exactly that container's environment. Only two values
are changed, never a name: the port (a free one instead of 8080) and the termination-message
path (a file of the test instead of the kubelet's ``/dev/termination-log``).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from seaway.api.modeldeployment import Server as ServerSpec
from seaway.planning import children
from seaway.planning.revisions import ResolvedModel
from seaway_serving import contract
from seaway_serving.settings import known_variables
from tests.serving.conftest import HOST, REPO, Client, Data, Server, v2_body


class Payload:
    """A pickle that, when loaded, writes a marker file: what an attacker puts in the store."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (Path(self.marker), "owned"))


def digest_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def swapped_bundle(honest: Path, out: Path, marker: Path) -> Path:
    """``honest``'s manifest with the model replaced by a payload and its own correct sha256."""
    out.mkdir(parents=True)
    joblib.dump(Payload(str(marker)), out / "model.joblib")
    manifest = json.loads((honest / "manifest.json").read_text())
    manifest["sha256"] = digest_of(out / "model.joblib")
    manifest["size_bytes"] = (out / "model.joblib").stat().st_size
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def rendered_env(model: ResolvedModel, server: ServerSpec | None = None) -> dict[str, str]:
    template = children.pod_template(
        md_name="churn",
        number=3,
        model=model,
        server=server or ServerSpec(image="ghcr.io/seaway-dev/seaway-server:0.1.0"),
    )
    (container,) = template["spec"]["containers"]
    assert container["command"] == ["seaway-serve"]
    return {e["name"]: e["value"] for e in container["env"]}


def start_as_operator(env: dict[str, str], tmp_path: Path) -> Server:
    """``seaway-serve`` with the rendered environment (port and termination path moved)."""
    assert env[contract.PORT] == str(children.SERVER_PORT)
    assert env[contract.TERMINATION_LOG] == contract.KUBE_TERMINATION_LOG
    term = tmp_path / "termination-log"
    full = {k: v for k, v in os.environ.items() if not k.startswith(contract.PREFIX)}
    full.update(env)
    full.update({contract.PORT: "0", contract.TERMINATION_LOG: str(term),
                 contract.HOST: HOST, "PYTHONUNBUFFERED": "1"})
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "seaway_serving"], env=full,
                                stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    return Server(proc, log_path, term)


@pytest.fixture
def honest_digest(logreg_bundle: Path) -> str:
    return digest_of(logreg_bundle / "model.joblib")


def test_every_variable_the_operator_sets_is_one_the_server_reads() -> None:
    env = rendered_env(ResolvedModel(uri="s3://m/b.tgz", format="sklearn-joblib",
                                     digest="sha256:" + "a" * 64, allow_unverified=True,
                                     secret_name=None))
    assert set(env) <= known_variables()
    assert set(contract.RESERVED_SERVER_VARIABLES) <= known_variables()
    assert env[contract.MODEL_DIGEST] == "sha256:" + "a" * 64
    assert env[contract.MODEL_FORMAT] == "sklearn-joblib"


def test_allow_unverified_only_when_the_user_wrote_it() -> None:
    skops = rendered_env(ResolvedModel(uri="s3://m/b.tgz", format="skops", digest=None,
                                       allow_unverified=False, secret_name=None))
    assert contract.ALLOW_UNVERIFIED not in skops
    assert contract.MODEL_DIGEST not in skops
    written = rendered_env(ResolvedModel(uri="s3://m/b.tgz", format="sklearn-joblib",
                                         digest=None, allow_unverified=True, secret_name=None))
    assert written[contract.ALLOW_UNVERIFIED] == "true"


def test_a_swapped_bundle_is_refused_and_its_pickle_never_runs(
    tmp_path: Path, logreg_bundle: Path, honest_digest: str
) -> None:
    marker = tmp_path / "marker"
    evil = swapped_bundle(logreg_bundle, tmp_path / "evil", marker)
    env = rendered_env(ResolvedModel(uri=str(evil), format="sklearn-joblib",
                                     digest=honest_digest, allow_unverified=False,
                                     secret_name=None))
    server = start_as_operator(env, tmp_path)
    code = server.wait_exit(timeout=60)
    assert code != 0
    assert not marker.exists(), "the swapped pickle was deserialized"
    message = server.termination_log.read_text()
    assert "digest mismatch: pinned (SEAWAY_MODEL_DIGEST)" in message
    assert honest_digest in message
    assert not server.ever_ready


def test_the_honest_bundle_serves_what_scikit_learn_predicts(
    tmp_path: Path, logreg_bundle: Path, honest_digest: str, logreg: Any, data: Data
) -> None:
    env = rendered_env(ResolvedModel(uri=str(logreg_bundle), format="sklearn-joblib",
                                     digest=honest_digest, allow_unverified=False,
                                     secret_name=None))
    server = start_as_operator(env, tmp_path).wait_ready()
    try:
        client = Client(server.port)
        reply = client.post("/v2/models/churn/infer", v2_body(data.x_test[:20]))
        client.close()
        assert reply.status == 200, reply.body
        doc = reply.json()
        assert doc["model_version"] == "3"
        got = np.asarray(doc["outputs"][0]["data"])
        assert got.tolist() == logreg.predict(data.x_test[:20]).tolist()
    finally:
        server.stop()


def test_the_manifest_cannot_change_the_format_the_spec_names(
    tmp_path: Path, logreg_bundle: Path
) -> None:
    """A spec that says skops (no digest needed) gets no pickle by a manifest that says joblib."""
    marker = tmp_path / "marker"
    evil = swapped_bundle(logreg_bundle, tmp_path / "evil", marker)
    env = rendered_env(ResolvedModel(uri=str(evil), format="skops", digest=None,
                                     allow_unverified=False, secret_name=None))
    server = start_as_operator(env, tmp_path)
    assert server.wait_exit(timeout=60) != 0
    assert not marker.exists()
    assert "format mismatch: the spec says skops" in server.termination_log.read_text()


def test_an_unknown_seaway_variable_is_refused(tmp_path: Path, logreg_bundle: Path,
                                                honest_digest: str) -> None:
    """The old misspelling: a digest under a name the server does not read is not ignored."""
    env = rendered_env(ResolvedModel(uri=str(logreg_bundle), format="sklearn-joblib",
                                     digest=honest_digest, allow_unverified=False,
                                     secret_name=None))
    del env[contract.MODEL_DIGEST]
    env["SEAWAY_DIGEST"] = honest_digest
    server = start_as_operator(env, tmp_path)
    assert server.proc.wait(timeout=60) == 2
    assert "unknown setting SEAWAY_DIGEST" in server.termination_log.read_text()


def test_the_server_writes_no_termination_file_unless_told(tmp_path: Path) -> None:
    """Run by hand (as root, outside a pod) a refusal goes to the log only, not /dev."""
    before = Path(contract.KUBE_TERMINATION_LOG).exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith(contract.PREFIX)}
    env.update({contract.BUNDLE: str(tmp_path / "missing"), contract.PORT: "0",
                contract.HOST: HOST})
    result = subprocess.run([sys.executable, "-m", "seaway_serving"], env=env, cwd=REPO,
                            capture_output=True, timeout=60, check=False)
    assert result.returncode != 0
    assert Path(contract.KUBE_TERMINATION_LOG).exists() == before
