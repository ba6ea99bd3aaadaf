"""The OCI image writer: the config read from a Dockerfile, the archive's layout and digests."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

import seaway
from seaway.localplane import oci

ROOT = Path(__file__).resolve().parents[2]
CREATED = "2026-01-02T03:04:05Z"
REF = "ghcr.io/seaway-dev/seaway-server:0.1.0"

DOCKERFILE = """\
# syntax=docker/dockerfile:1
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim AS build
ENV IGNORED=1
ENTRYPOINT ["build-stage"]

FROM python:${PYTHON_VERSION}-slim
ARG VERSION=0.1.0
ARG REVISION
LABEL org.opencontainers.image.version="${VERSION}" \\
      org.opencontainers.image.revision="$REVISION" \\
      dev.example.spaced="two words"
ENV PATH=/opt/app/bin:$PATH \\
    HOME=/tmp
ENV LEGACY value with spaces
# a comment between instructions
USER 10001:10001
WORKDIR /srv
EXPOSE 8080 9090/udp
CMD ["dropped"]
ENTRYPOINT ["serve"]
"""


def rootfs(tmp_path: Path, files: dict[str, bytes] | None = None) -> Path:
    path = tmp_path / "rootfs.tar"
    with tarfile.open(path, "w") as archive:
        for name, data in (files or {"bin/hello": b"#!/bin/sh\necho hello\n"}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            archive.addfile(info, io.BytesIO(data))
    return path


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as archive:
        out = {}
        for info in archive.getmembers():
            stream = archive.extractfile(info)
            out[info.name] = stream.read() if stream else b""
        return out


def blob(files: dict[str, bytes], digest: str) -> bytes:
    return files["blobs/sha256/" + digest.removeprefix("sha256:")]


def written(tmp_path: Path, refs: list[str] | None = None) -> tuple[Path, oci.Image]:
    config = oci.config_from_dockerfile(DOCKERFILE, {"REVISION": "abc123"})
    out = tmp_path / "image.oci.tar"
    image = oci.write(out, rootfs(tmp_path), config, refs or [REF], created=CREATED)
    return out, image


# -- the config from a Dockerfile ----------------------------------------------------------------


def test_config_is_the_final_stages() -> None:
    config = oci.config_from_dockerfile(DOCKERFILE, {"REVISION": "abc123"})
    assert config.entrypoint == ["serve"]
    assert config.cmd == []  # a later ENTRYPOINT drops the CMD, as in Docker
    assert config.user == "10001:10001"
    assert config.working_dir == "/srv"
    assert config.exposed_ports == ["8080/tcp", "9090/udp"]
    assert config.labels == {
        "org.opencontainers.image.version": "0.1.0",
        "org.opencontainers.image.revision": "abc123",
        "dev.example.spaced": "two words",
    }
    assert config.env == {
        "PATH": "/opt/app/bin:" + oci.BASE_ENV["PATH"],
        "LANG": "C.UTF-8",
        "HOME": "/tmp",
        "LEGACY": "value with spaces",
    }
    assert "IGNORED" not in config.env


def test_build_args_override_defaults_and_unset_args_are_empty() -> None:
    config = oci.config_from_dockerfile(DOCKERFILE, {"VERSION": "9.9.9"})
    assert config.labels["org.opencontainers.image.version"] == "9.9.9"
    assert config.labels["org.opencontainers.image.revision"] == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("RUN true\n", "no FROM"),
        ("FROM scratch\nENTRYPOINT serve --port 1\n", "JSON"),
        ("FROM scratch\nCMD [1, 2]\n", "JSON"),
        ("FROM scratch\nLABEL a=1 b\n", "KEY=VALUE"),
        ("FROM scratch\nENV ALONE\n", "no value"),
    ],
)
def test_unsupported_dockerfiles_are_refused(text: str, message: str) -> None:
    with pytest.raises(oci.DockerfileError, match=message):
        oci.config_from_dockerfile(text)


def test_the_server_dockerfile_gives_the_server_config() -> None:
    text = (ROOT / "serving" / "Dockerfile").read_text()
    config = oci.config_from_dockerfile(text, {"SOURCE_REVISION": "r1"})
    assert config.entrypoint == ["seaway-serve"]
    assert config.user == "10001:10001"
    assert config.env["PATH"].startswith("/opt/seaway/bin:")
    assert config.env["SEAWAY_WORK_DIR"] == "/tmp/seaway"
    assert config.labels["org.opencontainers.image.version"] == seaway.__version__
    assert config.labels["org.opencontainers.image.revision"] == "r1"
    assert "dev.seaway.scikit-learn.version" in config.labels


def test_the_operator_dockerfile_gives_the_operator_config() -> None:
    text = (ROOT / "operator" / "Dockerfile").read_text()
    config = oci.config_from_dockerfile(text, {"SOURCE_REVISION": "r1"})
    assert (config.entrypoint, config.cmd) == (["seaway"], ["operator", "run"])
    assert config.user == "10001:10001"
    assert config.labels["org.opencontainers.image.revision"] == "r1"


# -- the archive ---------------------------------------------------------------------------------


def test_archive_is_an_oci_layout_with_valid_digests(tmp_path: Path) -> None:
    out, image = written(tmp_path)
    files = members(out)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for name, data in files.items():
        if name.startswith("blobs/sha256/") and data:
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1], name

    index = json.loads(files["index.json"])
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == oci.MEDIA_INDEX
    (descriptor,) = index["manifests"]
    assert descriptor["digest"] == image.manifest_digest
    assert descriptor["platform"] == {"architecture": "amd64", "os": "linux"}
    assert descriptor["annotations"] == {
        "io.containerd.image.name": REF,
        "org.opencontainers.image.ref.name": REF,
    }

    manifest_blob = blob(files, image.manifest_digest)
    assert len(manifest_blob) == descriptor["size"]
    manifest = json.loads(manifest_blob)
    assert manifest["mediaType"] == oci.MEDIA_MANIFEST
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == oci.MEDIA_LAYER
    assert blob(files, layer["digest"]) == (tmp_path / "rootfs.tar").read_bytes()

    config: dict[str, Any] = json.loads(blob(files, manifest["config"]["digest"]))
    assert config["rootfs"] == {"type": "layers", "diff_ids": [layer["digest"]]}
    assert config["created"] == CREATED
    assert config["config"]["Entrypoint"] == ["serve"]
    assert config["config"]["User"] == "10001:10001"
    assert config["config"]["ExposedPorts"] == {"8080/tcp": {}, "9090/udp": {}}


def test_archive_also_carries_dockers_manifest(tmp_path: Path) -> None:
    out, image = written(tmp_path)
    files = members(out)
    (entry,) = json.loads(files["manifest.json"])
    assert entry["RepoTags"] == [REF]
    manifest = json.loads(blob(files, image.manifest_digest))
    assert entry["Config"] == "blobs/sha256/" + manifest["config"]["digest"][7:]
    assert entry["Layers"] == ["blobs/sha256/" + manifest["layers"][0]["digest"][7:]]


def test_members_are_owned_by_root_and_dated_created(tmp_path: Path) -> None:
    out, _ = written(tmp_path)
    with tarfile.open(out) as archive:
        for info in archive.getmembers():
            assert (info.uid, info.gid, info.mtime) == (0, 0, 1767323045), info.name


def test_same_input_gives_the_same_image(tmp_path: Path) -> None:
    _, first = written(tmp_path)
    _, second = written(tmp_path)
    assert first.manifest_digest == second.manifest_digest


def test_several_refs_name_one_manifest(tmp_path: Path) -> None:
    refs = ["localhost/pause:3.10", "localhost/pause:3.10.1"]
    out, _ = written(tmp_path, refs)
    (image,) = oci.read_index(out, verify=True)
    assert image.refs == refs


def test_read_index_verifies_digests(tmp_path: Path) -> None:
    out, image = written(tmp_path)
    assert oci.read_index(out, verify=True) == [image]
    data = bytearray(out.read_bytes())
    offset = data.index(b"echo hello")
    data[offset : offset + 4] = b"ECHO"
    out.write_bytes(bytes(data))
    assert oci.read_index(out) == [image]  # without verify only index.json is read
    with pytest.raises(oci.ArchiveError, match="content digest"):
        oci.read_index(out, verify=True)


def test_read_index_refuses_what_is_not_a_layout(tmp_path: Path) -> None:
    with pytest.raises(oci.ArchiveError, match="oci-layout is missing"):
        oci.read_index(rootfs(tmp_path))
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"not a tar")
    with pytest.raises(oci.ArchiveError):
        oci.read_index(garbage)


def test_a_failed_write_leaves_no_archive(tmp_path: Path) -> None:
    out = tmp_path / "image.oci.tar"
    with pytest.raises(ValueError, match="at least one reference"):
        oci.write(out, rootfs(tmp_path), oci.ImageConfig(), [])
    assert list(tmp_path.iterdir()) == [tmp_path / "rootfs.tar"]


def test_catalog_lists_each_archive_and_its_refs(tmp_path: Path) -> None:
    out, image = written(tmp_path)
    (tmp_path / "other.txt").write_text("ignored")
    assert oci.catalog(tmp_path) == {
        "images": [
            {
                "archive": out.name,
                "refs": [REF],
                "digest": image.manifest_digest,
                "bytes": out.stat().st_size,
            }
        ]
    }


# -- command line --------------------------------------------------------------------------------


def test_command_line_write_verify_catalog(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(DOCKERFILE)
    out = tmp_path / "images" / "app.oci.tar"
    out.parent.mkdir()
    write = ["write", "--rootfs", str(rootfs(tmp_path)), "--out", str(out), "--ref", REF]
    write += ["--dockerfile", str(dockerfile), "--build-arg", "VERSION=2.0", "--label", "x=y"]
    assert oci.main([*write, "--created", CREATED, "--architecture", "arm64"]) == 0
    assert oci.main(["verify", str(out)]) == 0
    assert oci.main(["catalog", str(out.parent)]) == 0
    assert f"{out}: ok {REF} sha256:" in capsys.readouterr().out
    listed = json.loads((out.parent / "manifest.json").read_text())
    assert listed["images"][0]["refs"] == [REF]
    files = members(out)
    manifest = json.loads(blob(files, json.loads(files["index.json"])["manifests"][0]["digest"]))
    config = json.loads(blob(files, manifest["config"]["digest"]))
    assert config["architecture"] == "arm64"
    assert config["config"]["Labels"]["x"] == "y"
    assert config["config"]["Labels"]["org.opencontainers.image.version"] == "2.0"


def test_command_line_reports_a_bad_archive_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert oci.main(["verify", str(rootfs(tmp_path))]) == 1
    assert capsys.readouterr().err.startswith("error: ")
