"""Finding the control-plane binaries and the script that builds them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from seaway.localplane import binaries, config

ROOT = Path(__file__).resolve().parents[2]


def fake_bins(directory: Path, names: tuple[str, ...]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = directory / name
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)


def test_missing_lists_absent_and_non_executable_binaries(tmp_path: Path) -> None:
    fake_bins(tmp_path, ("etcd", "kube-apiserver", "kwok"))
    (tmp_path / "kwok").chmod(0o644)
    (tmp_path / "kubectl").mkdir()
    assert binaries.missing(tmp_path) == [
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
        "kubectl",
    ]


def test_paths_are_absolute_when_all_are_present(tmp_path: Path) -> None:
    fake_bins(tmp_path, config.REQUIRED_BINARIES)
    found = binaries.paths(tmp_path)
    assert set(found) == set(config.REQUIRED_BINARIES)
    assert all(p.is_absolute() and os.access(p, os.X_OK) for p in found.values())


def test_paths_name_what_is_missing_and_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(
        binaries.BinariesMissing, match=r"missing in .*: etcd, .*make control-plane"
    ):
        binaries.paths(tmp_path)


def test_the_build_script_of_this_checkout_is_found() -> None:
    assert binaries.find_build_script(cwd=Path("/")) == ROOT / "hack" / "build-control-plane.sh"


def test_an_explicit_bin_dir_is_never_built_into(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "SEAWAY_CONTROL_PLANE_BIN": str(tmp_path / "empty")}
    with pytest.raises(binaries.BinariesMissing, match="set by SEAWAY_CONTROL_PLANE_BIN"):
        binaries.ensure(env)


def test_ensure_returns_cached_binaries_without_building(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    fake_bins(config.default_bin_dir(env), config.REQUIRED_BINARIES)
    assert binaries.ensure(env)["kwok"] == config.default_bin_dir(env) / "kwok"
