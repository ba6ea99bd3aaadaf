"""Bad input for the real node: what is missing is said in one line each and nothing starts; a
component that fails halfway is one line and the host is left as it was.

Runs before test_real_node.py (file order), while no real node is up, on this session's turn at
the host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from seaway.localplane import config, nodeconfig
from tests.realnode.conftest import cli_env
from tests.realnode.hostview import HostView


@pytest.fixture
def short_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary directory with a short path: containerd's socket path must fit 107 bytes."""
    return tmp_path_factory.mktemp("f")


def seaway(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seaway.cli.main", *args],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def test_each_missing_prerequisite_is_one_line_and_nothing_starts(
    short_tmp: Path, host_turn: None
) -> None:
    empty = short_tmp / "no-node"
    env = cli_env(short_tmp / "cache", node_dir=empty)
    run_dir = config.cluster_dir("missing", env)
    before = HostView.capture(run_dir, empty)

    up = seaway(env, "cluster", "up", "--real-node", "--name", "missing")

    assert up.returncode == 1
    assert up.stdout == ""
    assert "Traceback" not in up.stderr
    assert up.stderr.splitlines() == [
        f"Error: node binaries missing in {empty / 'bin'}: "
        + ", ".join(nodeconfig.NODE_BINARIES)
        + " (build them with `make node`)",
        f"Error: image catalog {empty / 'images' / 'manifest.json'} is missing "
        "(build the images with `make images`)",
    ]
    assert not (run_dir / "state.json").exists()
    assert before.differences(HostView.capture(run_dir, empty)) == {}


def test_without_the_node_the_default_is_simulated_and_says_why(
    short_tmp: Path, host_turn: None
) -> None:
    env = cli_env(short_tmp / "cache", node_dir=short_tmp / "no-node")
    try:
        up = seaway(env, "cluster", "up", "--name", "fallback", "--no-operator")
        assert up.returncode == 0, up.stderr
        assert up.stderr.splitlines()[0] == (
            "Mode: simulated node, node binaries not built, images not built: pods are "
            "simulated (`seaway cluster up --real-node` lists what is missing)."
        )
        assert f"node {config.NODE_NAME} Ready" in up.stderr
    finally:
        seaway(env, "cluster", "down", "--name", "fallback")


def test_a_component_failing_halfway_is_one_line_and_the_host_is_left_as_it_was(
    short_tmp: Path, host_turn: None
) -> None:
    real = nodeconfig.node_dir(os.environ)
    broken = short_tmp / "node"
    (broken / "bin").mkdir(parents=True)
    for name in nodeconfig.NODE_BINARIES:
        (broken / "bin" / name).symlink_to(real / "bin" / name)
    (broken / "images").symlink_to(real / "images")
    kubelet = broken / "bin" / "kubelet"
    kubelet.unlink()
    kubelet.write_text(
        "#!/bin/sh\necho 'E0101 simulated kubelet failure: bad config' >&2\nexit 3\n"
    )
    kubelet.chmod(0o755)
    env = cli_env(short_tmp / "cache", node_dir=broken)
    run_dir = config.cluster_dir("broken", env)
    before = HostView.capture(run_dir, broken)

    up = seaway(env, "cluster", "up", "--real-node", "--name", "broken", "--no-operator")

    assert up.returncode == 1, up.stderr
    assert "Traceback" not in up.stderr
    errors = [line for line in up.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        "Error: kubelet exited with code 3 while waiting for kubelet /healthz; last log line: "
        "E0101 simulated kubelet failure: bad config "
        f"(log: {run_dir / 'logs' / 'kubelet.log'})"
    ]
    assert not (run_dir / "state.json").exists(), "a failed start stops what it started"
    differences = before.differences(HostView.capture(run_dir, broken))
    assert differences == {}, "\n".join(f"{k}: {v}" for k, v in differences.items())


def test_an_image_that_does_not_import_is_one_line_and_the_host_is_left_as_it_was(
    short_tmp: Path, host_turn: None
) -> None:
    real = nodeconfig.node_dir(os.environ)
    node_dir = short_tmp / "node"
    (node_dir / "bin").mkdir(parents=True)
    for name in nodeconfig.NODE_BINARIES:
        (node_dir / "bin" / name).symlink_to(real / "bin" / name)
    images = node_dir / "images"
    images.mkdir()
    (images / "pause.oci.tar").symlink_to(real / "images" / "pause.oci.tar")
    (images / "garbage.oci.tar").write_bytes(b"this is not an image archive\n" * 100)
    (images / "manifest.json").write_text(json.dumps({"images": [
        {"archive": "pause.oci.tar", "refs": [nodeconfig.PAUSE_IMAGE]},
        {"archive": "garbage.oci.tar", "refs": ["localhost/garbage:1"]},
    ]}))  # fmt: skip
    env = cli_env(short_tmp / "cache", node_dir=node_dir)
    run_dir = config.cluster_dir("garbage", env)
    before = HostView.capture(run_dir, node_dir)

    up = seaway(env, "cluster", "up", "--real-node", "--name", "garbage", "--no-operator")

    assert up.returncode == 1, up.stderr
    assert "Traceback" not in up.stderr
    errors = [line for line in up.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        "Error: the real node could not start: importing garbage.oci.tar failed with exit code 1 "
        f"(log: {run_dir / 'logs' / 'image-import.log'})"
    ]
    assert not (run_dir / "state.json").exists()
    differences = before.differences(HostView.capture(run_dir, node_dir))
    assert differences == {}, "\n".join(f"{k}: {v}" for k, v in differences.items())
