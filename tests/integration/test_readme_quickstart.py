"""README's "In 60 seconds" and the commands "Set up" gives after the demo, followed as a new user
would, on the local plane with the operator running (simulated node).

The user's namespace is the kubeconfig context's (a copy of the plane's kubeconfig pointing at
a fresh namespace), so the commands run exactly as written, without ``-n``.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
OPERATOR = ["seaway.handlers.operator"]


def section(title: str) -> str:
    return README.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def user_kubeconfig(plane: Any, namespace: str, tmp_path: Path) -> Path:
    copy = tmp_path / "kubeconfig"
    shutil.copy(plane.kubeconfig, copy)
    plane.kubectl(f"--kubeconfig={copy}", "config", "set-context", "--current",
                  f"--namespace={namespace}")  # fmt: skip
    return copy


class Shell:
    """Runs a README line: kubectl is the plane's, seaway is this checkout's CLI."""

    def __init__(self, plane: Any, kubeconfig: Path) -> None:
        self.plane = plane
        self.env = {**plane.env(), "KUBECONFIG": str(kubeconfig)}

    def run(self, argv: list[str], input: str | None = None) -> subprocess.CompletedProcess[str]:
        program = {"kubectl": [str(self.plane.bins["kubectl"])],
                   "seaway": [sys.executable, "-m", "seaway.cli.main"]}[argv[0]]  # fmt: skip
        return subprocess.run([*program, *argv[1:]], env=self.env, cwd=ROOT, input=input,
                              capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def test_in_60_seconds(
    run_operator: Any, control_plane: Any, seaway_crds: list[str], namespace: str,
    eventually: Any, tmp_path: Path,
) -> None:  # fmt: skip
    text = section("In 60 seconds")
    manifest = blocks(text, "yaml")[0]
    shell = Shell(control_plane, user_kubeconfig(control_plane, namespace, tmp_path))

    def get_md() -> list[str]:
        result = shell.run(["kubectl", "get", "md"])
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    with run_operator(OPERATOR, namespace=namespace):
        applied = shell.run(["kubectl", "apply", "-f", "-"], input=manifest)
        assert applied.returncode == 0, applied.stderr
        eventually(lambda: get_md()[1].split()[:2] == ["churn", "1"], timeout=60)
        # "Change uri and digest, apply again, and watch revision 2 take over"
        doc = yaml.safe_load(manifest)
        doc["spec"]["model"]["uri"] = "s3://models/churn/2026-11-27/model.joblib"
        doc["spec"]["model"]["digest"] = "sha256:" + "2" * 64
        again = shell.run(["kubectl", "apply", "-f", "-"], input=yaml.safe_dump(doc))
        assert again.returncode == 0, again.stderr
        promised = blocks(text, "console")[0].splitlines()
        header, row = promised[1], promised[2]
        eventually(lambda: get_md()[1].split()[:6] == row.split()[:6], timeout=60,
                   what=f"kubectl get md shows {row!r}")  # fmt: skip
        assert get_md()[0].split() == header.split()


def test_mistakes_are_refused_with_the_field(
    control_plane: Any, seaway_crds: list[str], namespace: str, tmp_path: Path
) -> None:
    text = section("In 60 seconds")
    doc = yaml.safe_load(blocks(text, "yaml")[0])
    del doc["spec"]["model"]["digest"]
    shell = Shell(control_plane, user_kubeconfig(control_plane, namespace, tmp_path))
    result = shell.run(["kubectl", "apply", "-f", "-"], input=yaml.safe_dump(doc))
    assert result.returncode != 0
    promised = blocks(text, "console")[1].splitlines()[1:]
    assert " ".join(" ".join(promised).split()) in " ".join(result.stderr.split())


def test_set_up_commands_after_the_demo(
    run_operator: Any, control_plane: Any, seaway_crds: list[str], namespace: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    block = blocks(section("Set up"), "bash")[1]
    shell = Shell(control_plane, user_kubeconfig(control_plane, namespace, tmp_path))
    ran = []
    with run_operator(OPERATOR, namespace=namespace):
        for line in block.splitlines():
            argv = shlex.split(line, comments=True)
            if not argv or argv[0] in ("export", "make"):  # the shell setup, and the end
                continue
            result = shell.run(argv)
            assert result.returncode == 0, f"{line}\n{result.stderr}"
            ran.append((argv, result.stdout))
    assert [a[:2] for a, _ in ran] == [["kubectl", "apply"], ["kubectl", "wait"],
                                       ["kubectl", "get"], ["seaway", "status"],
                                       ["seaway", "history"]]  # fmt: skip
    status = dict((a[1], out) for a, out in ran if a[0] == "seaway")
    assert "stable revision: 1" in status["status"]
    assert re.search(r"(?m)^1 +Stable ", status["history"]), status["history"]
