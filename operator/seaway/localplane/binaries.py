"""Find the control-plane binaries, and build them with the project's script when missing.

The binaries live outside the clone (``${XDG_CACHE_HOME:-~/.cache}/seaway/control-plane/<k8s
version>/bin``, written by ``hack/build-control-plane.sh``); ``SEAWAY_CONTROL_PLANE_BIN`` points
elsewhere. The build script ships with the source tree, not with the wheel: it is found next to
the package (an editable install or a checkout) or in the current working tree.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from seaway.localplane import config

BUILD_SCRIPT = Path("hack") / "build-control-plane.sh"


class BinariesMissing(RuntimeError):
    """The plane cannot start: binaries are missing and cannot be built from here."""


def missing(bin_dir: Path) -> list[str]:
    return [
        name
        for name in config.REQUIRED_BINARIES
        if not os.access(bin_dir / name, os.X_OK) or not (bin_dir / name).is_file()
    ]


def paths(bin_dir: Path) -> dict[str, Path]:
    """Absolute paths of every required binary; raises :class:`BinariesMissing` if any is absent."""
    absent = missing(bin_dir)
    if absent:
        raise BinariesMissing(
            f"control-plane binaries missing in {bin_dir}: {', '.join(absent)} "
            "(build them with `bash hack/build-control-plane.sh` or `make control-plane`)"
        )
    return {name: (bin_dir / name).resolve() for name in config.REQUIRED_BINARIES}


def find_build_script(cwd: Path | None = None) -> Path | None:
    """``hack/build-control-plane.sh`` of the source tree this package runs from, or of ``cwd``."""
    here = Path(__file__).resolve()
    candidates = [here.parents[3]]  # <repo>/operator/seaway/localplane/binaries.py
    start = (cwd or Path.cwd()).resolve()
    candidates += [start, *start.parents]
    for root in candidates:
        script = root / BUILD_SCRIPT
        if script.is_file():
            return script
    return None


def ensure(env: Mapping[str, str], *, build: bool = True) -> dict[str, Path]:
    """The binary paths, running the build script first when they are missing.

    The script's progress goes straight to this process's stderr (the first build takes many
    minutes, the user must see it move). Only the default location is built into; an explicit
    ``SEAWAY_CONTROL_PLANE_BIN`` is taken as is.
    """
    bin_dir = config.bin_dir(env)
    absent = missing(bin_dir)
    if not absent:
        return paths(bin_dir)
    if env.get("SEAWAY_CONTROL_PLANE_BIN"):
        raise BinariesMissing(
            f"control-plane binaries missing in {bin_dir} (set by SEAWAY_CONTROL_PLANE_BIN): "
            + ", ".join(absent)
        )
    if not build:
        return paths(bin_dir)
    script = find_build_script()
    if script is None:
        raise BinariesMissing(
            f"control-plane binaries missing in {bin_dir} and {BUILD_SCRIPT} was not found; "
            "run `seaway cluster up` from a Seaway clone, or set SEAWAY_CONTROL_PLANE_BIN"
        )
    # stdout goes to fd 2 too: ``seaway cluster up`` keeps its stdout for the export line.
    result = subprocess.run(
        ["bash", str(script)], env=dict(env), stdin=subprocess.DEVNULL, stdout=2, check=False
    )
    if result.returncode != 0:
        raise BinariesMissing(
            f"{script} failed with exit code {result.returncode} (its output is above)"
        )
    return paths(bin_dir)
