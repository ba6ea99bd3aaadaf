"""The demo installs nothing `seaway cluster up` already installed (it used to apply the CRDs a
second time); an outdated CRD, from a cluster left up by an older clone, is applied."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import click
import pytest

from seaway.cli import demo


class FakePlane:
    def __init__(self, diff_code: int) -> None:
        self.diff_code = diff_code
        self.calls: list[tuple[str, ...]] = []
        self.installed: list[Path] = []

    def kubectl(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        return subprocess.CompletedProcess(list(args), self.diff_code, "", "")

    def install_crds(self, path: Path) -> None:
        self.installed.append(path)


def run(diff_code: int) -> FakePlane:
    fake = FakePlane(diff_code)
    story = demo.Demo(fake, interactive=False, timeout=10)  # type: ignore[arg-type]
    story.install_crds()
    return fake


def test_current_crds_are_not_installed_again(capsys: pytest.CaptureFixture[str]) -> None:
    fake = run(0)
    files = sorted(demo.CRDS.glob("*.yaml"))
    assert files and [c[0] for c in fake.calls] == ["diff"] * len(files)
    assert fake.installed == []
    assert "installed by seaway cluster up" in capsys.readouterr().out


def test_outdated_crds_are_applied() -> None:
    assert run(1).installed == sorted(demo.CRDS.glob("*.yaml"))


def test_a_failing_diff_is_reported() -> None:
    assert demo.crds_outdated(0, "") is False and demo.crds_outdated(1, "") is True
    with pytest.raises(click.ClickException, match="kubectl diff failed: error: no server"):
        demo.crds_outdated(2, "error:\n no server\n")
