"""README's "Install with Helm" section, run as written on the local plane.

The plane already holds Seaway's CRDs (installed like `seaway cluster up` does, by the
``seaway_crds`` fixture), which is what made the section fail there before: the commands must
work on such a cluster as well as on a fresh one. Each line of the section's first ``bash``
block is run from the clone's root with the plane's kubeconfig; ``helm`` and ``kubectl`` are the
binaries the control-plane build provides.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from seaway import localplane
from tests.chart.conftest import ROOT, run

SECTION = "## Install with Helm"


def helm_section_commands(readme: str) -> list[list[str]]:
    """The commands of the section's first bash block: continuations joined, comments dropped."""
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, f"no bash block under {SECTION!r}"
    text = re.sub(r"\\[ \t]*(#[^\n]*)?\n", " ", block.group(1))  # a comment after a backslash
    return [shlex.split(line, comments=True) for line in text.splitlines() if line.strip()]


def test_the_section_is_parsed_as_a_user_would_type_it() -> None:
    commands = helm_section_commands((ROOT / "README.md").read_text())
    assert [c[:2] for c in commands] == [["helm", "install"], ["kubectl", "-n"]]
    assert "--take-ownership" in commands[0]


def test_readme_helm_section_on_the_local_plane(
    helm: Path, control_plane: localplane.Plane, seaway_crds: list[str]
) -> None:
    env = {**control_plane.env(dict(os.environ)), "KUBECONFIG": str(control_plane.kubeconfig)}
    kubectl = control_plane.bins["kubectl"]
    commands = helm_section_commands((ROOT / "README.md").read_text())
    namespace = commands[0][commands[0].index("--namespace") + 1]
    try:
        for argv in commands:
            binary = {"helm": helm, "kubectl": kubectl}[argv[0]]
            result = run([binary, *argv[1:]], env=env, timeout=360, check=False)
            assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stderr}{result.stdout}"
    finally:
        run([helm, "uninstall", "seaway", "--namespace", namespace, "--wait=false"], env=env,
            check=False, timeout=120)  # fmt: skip
        control_plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
