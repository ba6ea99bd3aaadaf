"""The image archives ``make node`` and ``make images`` build, checked as the real node uses them.

* The catalog (``images/manifest.json``) lists every archive with the references it carries.
* Each archive is a valid OCI layout (every blob's size and digest checked).
* The references are the chart's and the operator's defaults, tagged with Seaway's version, so
  Pods start offline with ``imagePullPolicy: IfNotPresent``.
* The image configs carry the Dockerfiles' user, entrypoints and labels; the root file systems
  are lean (no pip, no docs, no apt lists) and hold the three server commands.
* The archives import into a throwaway containerd with the node's own ``ctr``, which is then
  stopped and removed with everything it made.

Like the plane's tests, these FAIL with the reason when ``CI`` is set and the archives or
binaries are missing, and are skipped otherwise.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

import seaway
from seaway.handlers.modeldeployment import Settings
from seaway.localplane import nodeconfig, oci

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = nodeconfig.node_dir(os.environ)
IMAGES = NODE_DIR / "images"
ARCHIVES = {
    "server": IMAGES / "seaway-server.oci.tar",
    "operator": IMAGES / "seaway-operator.oci.tar",
    "pause": IMAGES / "pause.oci.tar",
}


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"the built images are required when CI is set: {reason}", pytrace=False)
    pytest.skip(f"the built images are unavailable: {reason}")


@pytest.fixture(scope="module")
def built() -> dict[str, Path]:
    absent = [str(path) for path in ARCHIVES.values() if not path.is_file()]
    if absent or not (IMAGES / "manifest.json").is_file():
        unavailable(f"missing {', '.join(absent) or IMAGES / 'manifest.json'}; run `make images`")
    return ARCHIVES


def chart_ref(key: str) -> str:
    values = yaml.safe_load((ROOT / "charts" / "seaway" / "values.yaml").read_text())
    chart = yaml.safe_load((ROOT / "charts" / "seaway" / "Chart.yaml").read_text())
    assert not values[key]["tag"], "the tag defaults to the chart's appVersion"
    return f"{values[key]['repository']}:{chart['appVersion']}"


def image_config(archive: Path) -> dict[str, Any]:
    with tarfile.open(archive) as tar:

        def read(name: str) -> Any:
            stream = tar.extractfile(name)
            assert stream is not None
            return json.loads(stream.read())

        index = read("index.json")
        manifest = read("blobs/sha256/" + index["manifests"][0]["digest"][7:])
        return dict(read("blobs/sha256/" + manifest["config"]["digest"][7:]))


@functools.cache
def rootfs(archive: Path) -> tuple[dict[str, tarfile.TarInfo], str]:
    """Every entry of the single layer (by path without ``./``), and its ``/etc/passwd``."""
    members: dict[str, tarfile.TarInfo] = {}
    passwd = ""
    with tarfile.open(archive) as outer:
        (layer,) = [m for m in outer.getmembers() if m.size > 1_000_000]
        stream = outer.extractfile(layer)
        assert stream is not None
        with tarfile.open(fileobj=stream, mode="r|") as inner:
            for member in inner:
                name = member.name.removeprefix("./")
                members[name] = member
                if name == "etc/passwd":
                    content = inner.extractfile(member)
                    assert content is not None
                    passwd = content.read().decode()
    return members, passwd


# -- catalog, references, configs ----------------------------------------------------------------


def test_catalog_lists_every_archive_and_its_refs(built: dict[str, Path]) -> None:
    listed = json.loads((IMAGES / "manifest.json").read_text())
    assert listed == oci.catalog(IMAGES)
    refs = {entry["archive"]: entry["refs"] for entry in listed["images"]}
    assert set(refs) == {path.name for path in built.values()}
    assert nodeconfig.PAUSE_IMAGE in refs["pause.oci.tar"]


def test_refs_are_the_defaults_of_the_chart_and_the_operator(built: dict[str, Path]) -> None:
    server = chart_ref("serverImage")
    assert server == f"ghcr.io/seaway-dev/seaway-server:{seaway.__version__}"
    assert Settings().router_image == Settings().trainer_image == server
    assert [image.refs for image in oci.read_index(built["server"])] == [[server]]
    operator = [image.refs for image in oci.read_index(built["operator"])]
    assert operator == [[chart_ref("image")]]


@pytest.mark.parametrize("name", ["server", "operator", "pause"])
def test_archive_blobs_match_their_digests(built: dict[str, Path], name: str) -> None:
    assert oci.read_index(built[name], verify=True)


def test_server_config_is_the_dockerfiles(built: dict[str, Path]) -> None:
    config = image_config(built["server"])["config"]
    assert config["Entrypoint"] == ["seaway-serve"]
    assert config["User"] == "10001:10001"
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == seaway.__version__
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", labels["org.opencontainers.image.revision"])
    pins = (ROOT / "serving" / "requirements-image.txt").read_text()
    sklearn = re.search(r"(?m)^scikit-learn==(\S+)", pins)
    assert sklearn and labels["dev.seaway.scikit-learn.version"] == sklearn[1]


def test_operator_config_is_the_dockerfiles(built: dict[str, Path]) -> None:
    config = image_config(built["operator"])["config"]
    assert (config["Entrypoint"], config["Cmd"]) == (["seaway"], ["operator", "run"])
    assert config["User"] == "10001:10001"


@pytest.mark.parametrize("name", ["server", "operator"])
def test_rootfs_is_lean_and_has_the_user_and_commands(built: dict[str, Path], name: str) -> None:
    members, passwd = rootfs(built[name])
    site = "opt/seaway/lib/python3.11/site-packages/"
    assert not [p for p in members if p.startswith((site + "pip/", site + "setuptools/"))]
    assert not [p for p in members if p.startswith("var/lib/apt/lists/") and members[p].size]
    assert not [p for p in members if p.startswith("var/cache/apt/") and p.endswith(".deb")]
    assert not [p for p in members if p.startswith("usr/share/man/") and members[p].isfile()]
    docs = [p for p in members if p.startswith("usr/share/doc/") and members[p].isfile()]
    assert all(p.endswith("/copyright") for p in docs)
    commands = {"server": ["seaway-serve", "seaway-router", "seaway-train"], "operator": ["seaway"]}
    for command in commands[name]:
        assert members[f"opt/seaway/bin/{command}"].mode & 0o111, command
    assert "seaway:x:10001:10001::/tmp:/usr/sbin/nologin" in passwd.splitlines()


# -- import into containerd ----------------------------------------------------------------------

CONTAINERD_CONFIG = """\
version = 3
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/containerd.sock"
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{d}/cni/bin"]
    conf_dir = "{d}/cni/net.d"
"""


def mounts_under(directory: Path) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == str(directory) or point.startswith(f"{directory}/"):
            found.append(point)
    return found


@pytest.fixture
def containerd(built: dict[str, Path]) -> Iterator[list[str]]:
    """A containerd of its own in a temporary directory; yields the ``ctr`` command prefix."""
    bin_dir = NODE_DIR / "bin"
    if os.geteuid() != 0:
        unavailable("containerd needs root")
    for binary in ("containerd", "ctr"):
        if not os.access(bin_dir / binary, os.X_OK):
            unavailable(f"{bin_dir / binary} is missing; run `make node`")
    directory = Path(tempfile.mkdtemp(prefix="seaway-ctr-"))
    (directory / "config.toml").write_text(CONTAINERD_CONFIG.format(d=directory))
    log = (directory / "containerd.log").open("wb")
    process = subprocess.Popen(
        [str(bin_dir / "containerd"), "--config", str(directory / "config.toml")],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    ctr = [str(bin_dir / "ctr"), "--address", str(directory / "containerd.sock"), "-n", "k8s.io"]
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([*ctr, "version"], capture_output=True, check=False).returncode:
            assert process.poll() is None, (directory / "containerd.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "containerd did not answer in 30 s"
            time.sleep(0.2)
        yield ctr
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        for point in reversed(mounts_under(directory)):
            subprocess.run(["umount", "--lazy", point], check=False)
        left = mounts_under(directory)
        shutil.rmtree(directory, ignore_errors=True)
        assert not left, f"mounts left behind: {left}"
        assert not directory.exists()


def test_archives_import_with_the_nodes_ctr(built: dict[str, Path], containerd: list[str]) -> None:
    want = {ref for path in built.values() for image in oci.read_index(path) for ref in image.refs}
    for path in built.values():
        result = subprocess.run(
            [*containerd, "images", "import", str(path)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr
    listed = subprocess.run(
        [*containerd, "images", "list", "-q"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert want <= set(listed), f"not imported: {sorted(want - set(listed))}"
