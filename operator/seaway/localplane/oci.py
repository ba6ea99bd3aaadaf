"""Write OCI image archives from a root file system tar: Seaway's images without Docker.

The real node runs Seaway's own images, and no Docker engine, BuildKit or registry is on the
machines that build them. ``hack/build-images.sh`` makes the root file system with mmdebstrap and
hands it to this module, which wraps it as an OCI image layout in one tar: ``oci-layout``,
``index.json``, the config, the manifest and the rootfs as ONE uncompressed layer, all under
``blobs/sha256/``. It also writes Docker's ``manifest.json`` beside them, so the same archive loads
with ``ctr images import``, ``kind load image-archive``, ``podman load`` and ``docker load``.

Why our own writer: buildah (vfs driver, ``from scratch; add; commit; push oci-archive:``) did the
same in 49 s against about 1 s here, and needs its storage set up on the host; the format is a
few JSON documents and content digests, which the standard library writes.

Why one uncompressed layer: the archive is imported on the machine that built it, where gzip
would cost 27 s of one core per build of the server image (756 MB down to 231 MB) and containerd
would only unpack it again.

The image config comes from the final stage of the image's Dockerfile
(:func:`config_from_dockerfile`: ENV, LABEL, USER, WORKDIR, EXPOSE, ENTRYPOINT, CMD), so the
archive and a ``docker build`` of the same Dockerfile carry the same entrypoint, user and labels.

Pure except for :func:`write`, :func:`read_index` and :func:`catalog`, which touch the files they
are given. Only the standard library is used: the build scripts run this file with any python3.
"""

from __future__ import annotations

import argparse
import calendar
import hashlib
import io
import json
import os
import re
import shlex
import sys
import tarfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

OCI_LAYOUT_VERSION = "1.0.0"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
#: The name containerd (``ctr images import``, ``kind load``) gives the imported image.
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
#: The OCI layout's own reference name (podman, skopeo); we put the full reference there too.
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
#: The environment a Debian root file system starts with (the Dockerfiles' base images set the
#: same PATH and LANG), so ``ENV PATH=/opt/seaway/bin:$PATH`` expands as it does in Docker.
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
_CHUNK = 1 << 20


class DockerfileError(ValueError):
    """The Dockerfile uses something the image config cannot be read from."""


class ArchiveError(ValueError):
    """An archive is not a valid OCI image layout, or a digest does not match."""


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an OCI image config a container runtime acts on, plus its labels."""

    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    user: str = ""
    working_dir: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Env": [f"{k}={v}" for k, v in self.env.items()]}
        if self.user:
            out["User"] = self.user
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.entrypoint:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            out["Cmd"] = list(self.cmd)
        if self.labels:
            out["Labels"] = dict(self.labels)
        if self.exposed_ports:
            out["ExposedPorts"] = {port: {} for port in self.exposed_ports}
        return out


@dataclass(frozen=True)
class Image:
    """One image in an archive: its references and the manifest that names it."""

    refs: list[str]
    manifest_digest: str
    manifest_size: int


# -- Dockerfile ---------------------------------------------------------------------------------

_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def _expand(text: str, scope: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        return scope.get(match.group(1) or match.group(2), "")

    return _VAR.sub(one, text)


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comment lines dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    if pending.strip():
        lines.append(pending)
    found = []
    for line in lines:
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def _pairs(rest: str, scope: Mapping[str, str], instruction: str) -> dict[str, str]:
    words = shlex.split(rest)
    if words and "=" not in words[0]:  # legacy form: ENV NAME value with spaces
        if len(words) < 2:
            raise DockerfileError(f"{instruction} {rest}: no value")
        return {words[0]: _expand(" ".join(words[1:]), scope)}
    pairs = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise DockerfileError(f"{instruction} {rest}: {word!r} is not KEY=VALUE")
        pairs[key] = _expand(value, scope)
    return pairs


def _exec_form(rest: str, instruction: str) -> list[str]:
    try:
        value = json.loads(rest)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DockerfileError(f"{instruction} {rest}: only the JSON (exec) form is supported")
    return value


def config_from_dockerfile(
    text: str,
    build_args: Mapping[str, str] | None = None,
    base_env: Mapping[str, str] | None = None,
) -> ImageConfig:
    """The config a ``docker build`` of ``text`` gives its final stage, minus the base image's.

    ``build_args`` play ``--build-arg``; ``base_env`` is the environment of the root file system
    the archive is built on (:data:`BASE_ENV` by default). Instructions that change files (RUN,
    COPY) are the build script's business and ignored here.
    """
    args = dict(build_args or {})
    steps = _instructions(text)
    starts = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    if not starts:
        raise DockerfileError("no FROM instruction")
    env = dict(BASE_ENV if base_env is None else base_env)
    arg_scope: dict[str, str] = {}
    labels: dict[str, str] = {}
    entrypoint: list[str] = []
    cmd: list[str] = []
    user = working_dir = ""
    ports: list[str] = []
    for word, rest in steps[starts[-1] + 1 :]:
        scope = {**arg_scope, **env}
        if word == "ARG":
            name, sep, default = rest.partition("=")
            value = args.get(name, _expand(default.strip('"'), scope) if sep else "")
            arg_scope[name] = value
        elif word == "ENV":
            env.update(_pairs(rest, scope, word))
        elif word == "LABEL":
            labels.update(_pairs(rest, scope, word))
        elif word == "USER":
            user = _expand(rest, scope)
        elif word == "WORKDIR":
            working_dir = _expand(rest, scope)
        elif word == "EXPOSE":
            for port in _expand(rest, scope).split():
                ports.append(port if "/" in port else f"{port}/tcp")
        elif word == "ENTRYPOINT":
            entrypoint = _exec_form(rest, word)
            cmd = []  # as in Docker: a new ENTRYPOINT drops the CMD inherited so far
        elif word == "CMD":
            cmd = _exec_form(rest, word)
    return ImageConfig(
        entrypoint=entrypoint,
        cmd=cmd,
        env=env,
        user=user,
        working_dir=working_dir,
        labels=labels,
        exposed_ports=ports,
    )


# -- documents ----------------------------------------------------------------------------------


def _json_bytes(document: Mapping[str, Any] | Sequence[Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _blob_path(digest: str) -> str:
    return "blobs/" + digest.replace(":", "/", 1)


def config_document(
    config: ImageConfig, layer_digest: str, created: str, architecture: str = "amd64"
) -> dict[str, Any]:
    return {
        "architecture": architecture,
        "os": "linux",
        "created": created,
        "config": config.to_json(),
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": created, "created_by": "seaway.localplane.oci"}],
    }


def manifest_document(config_blob: bytes, layer_digest: str, layer_size: int) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {
            "mediaType": MEDIA_CONFIG,
            "digest": _digest(config_blob),
            "size": len(config_blob),
        },
        "layers": [{"mediaType": MEDIA_LAYER, "digest": layer_digest, "size": layer_size}],
    }


def index_document(
    manifest_blob: bytes, refs: Sequence[str], architecture: str = "amd64"
) -> dict[str, Any]:
    """One descriptor per reference, each carrying the name under both annotations."""
    if not refs:
        raise ValueError("an image needs at least one reference")
    return {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [
            {
                "mediaType": MEDIA_MANIFEST,
                "digest": _digest(manifest_blob),
                "size": len(manifest_blob),
                "platform": {"architecture": architecture, "os": "linux"},
                "annotations": {ANNOTATION_IMAGE_NAME: ref, ANNOTATION_REF_NAME: ref},
            }
            for ref in refs
        ],
    }


def docker_manifest(config_digest: str, layer_digest: str, refs: Sequence[str]) -> list[Any]:
    """``manifest.json`` of ``docker save``: what Docker engines before 25 load."""
    return [
        {
            "Config": _blob_path(config_digest),
            "RepoTags": list(refs),
            "Layers": [_blob_path(layer_digest)],
        }
    ]


# -- files --------------------------------------------------------------------------------------


def stream_digest(stream: IO[bytes]) -> tuple[str, int]:
    """The sha256 digest and size of what ``stream`` yields, read a MiB at a time."""
    hasher = hashlib.sha256()
    size = 0
    while chunk := stream.read(_CHUNK):
        hasher.update(chunk)
        size += len(chunk)
    return "sha256:" + hasher.hexdigest(), size


def _member(name: str, size: int, mtime: int, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.mtime = mtime
    info.mode = 0o755 if directory else 0o644
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.uname = info.gname = "root"
    return info


def write(
    out: Path,
    rootfs: Path,
    config: ImageConfig,
    refs: Sequence[str],
    *,
    created: str | None = None,
    architecture: str = "amd64",
) -> Image:
    """Write the archive ``out`` (atomically: a temporary file renamed into place)."""
    created = created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    mtime = calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ"))
    with rootfs.open("rb") as stream:
        layer_digest, layer_size = stream_digest(stream)
    config_blob = _json_bytes(config_document(config, layer_digest, created, architecture))
    manifest_blob = _json_bytes(manifest_document(config_blob, layer_digest, layer_size))
    small = {
        "oci-layout": _json_bytes({"imageLayoutVersion": OCI_LAYOUT_VERSION}),
        "index.json": _json_bytes(index_document(manifest_blob, refs, architecture)),
        "manifest.json": _json_bytes(docker_manifest(_digest(config_blob), layer_digest, refs)),
        _blob_path(_digest(config_blob)): config_blob,
        _blob_path(_digest(manifest_blob)): manifest_blob,
    }
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as archive:
            for directory in ("blobs", "blobs/sha256"):
                archive.addfile(_member(directory, 0, mtime, directory=True))
            for name, data in small.items():
                archive.addfile(_member(name, len(data), mtime), io.BytesIO(data))
            with rootfs.open("rb") as layer:
                archive.addfile(_member(_blob_path(layer_digest), layer_size, mtime), layer)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return Image(list(refs), _digest(manifest_blob), len(manifest_blob))


def _read(archive: tarfile.TarFile, name: str) -> bytes:
    try:
        stream = archive.extractfile(name)
    except KeyError:
        stream = None
    if stream is None:
        raise ArchiveError(f"{name} is missing")
    return stream.read()


def _check_blob(archive: tarfile.TarFile, digest: str, size: int) -> None:
    name = _blob_path(digest)
    try:
        info = archive.getmember(name)
    except KeyError:
        raise ArchiveError(f"blob {digest} is missing") from None
    if info.size != size:
        raise ArchiveError(f"blob {digest}: {info.size} bytes, the descriptor says {size}")
    stream = archive.extractfile(info)
    if stream is None:
        raise ArchiveError(f"blob {digest} is not a file")
    actual, _ = stream_digest(stream)
    if actual != digest:
        raise ArchiveError(f"blob {digest}: content digest is {actual}")


def _verify_image(archive: tarfile.TarFile, digest: str, size: int) -> None:
    _check_blob(archive, digest, size)
    manifest = json.loads(_read(archive, _blob_path(digest)))
    config_desc = manifest["config"]
    _check_blob(archive, config_desc["digest"], config_desc["size"])
    config = json.loads(_read(archive, _blob_path(config_desc["digest"])))
    layers = [layer["digest"] for layer in manifest["layers"]]
    for layer in manifest["layers"]:
        _check_blob(archive, layer["digest"], layer["size"])
    if config["rootfs"]["diff_ids"] != layers:
        raise ArchiveError(f"diff_ids {config['rootfs']['diff_ids']} are not the layers {layers}")


def read_index(path: Path, *, verify: bool = False) -> list[Image]:
    """The images an archive names; with ``verify``, every blob's size and digest is checked."""
    try:
        with tarfile.open(path) as archive:
            return _images(archive, path, verify)
    except (OSError, tarfile.TarError) as error:
        raise ArchiveError(f"{path}: {error}") from None
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise ArchiveError(f"{path}: malformed layout ({error!r})") from None


def _images(archive: tarfile.TarFile, path: Path, verify: bool) -> list[Image]:
    layout = json.loads(_read(archive, "oci-layout"))
    if layout.get("imageLayoutVersion") != OCI_LAYOUT_VERSION:
        raise ArchiveError(f"{path}: oci-layout {layout}")
    index = json.loads(_read(archive, "index.json"))
    by_digest: dict[str, Image] = {}
    for descriptor in index.get("manifests", []):
        digest, size = descriptor["digest"], descriptor["size"]
        if verify and digest not in by_digest:
            _verify_image(archive, digest, size)
        image = by_digest.setdefault(digest, Image([], digest, size))
        ref = descriptor.get("annotations", {}).get(ANNOTATION_IMAGE_NAME)
        if ref:
            image.refs.append(ref)
    if not by_digest:
        raise ArchiveError(f"{path}: index.json lists no image")
    return list(by_digest.values())


def catalog(directory: Path) -> dict[str, Any]:
    """What ``images/manifest.json`` says: each archive in ``directory`` and its references."""
    entries = []
    for path in sorted(directory.glob("*.oci.tar")):
        for image in read_index(path):
            entries.append(
                {
                    "archive": path.name,
                    "refs": image.refs,
                    "digest": image.manifest_digest,
                    "bytes": path.stat().st_size,
                }
            )
    return {"images": entries}


# -- command line -------------------------------------------------------------------------------


def _key_values(items: Iterable[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"expected KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seaway.localplane.oci", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="rootfs tar + config -> OCI image archive")
    w.add_argument("--rootfs", type=Path, required=True, help="the root file system, a tar")
    w.add_argument("--out", type=Path, required=True)
    w.add_argument("--ref", action="append", required=True, help="image reference (repeatable)")
    w.add_argument("--dockerfile", type=Path, help="take the config from its final stage")
    w.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE")
    w.add_argument("--entrypoint", help="JSON list (instead of or over the Dockerfile's)")
    w.add_argument("--cmd", help="JSON list")
    w.add_argument("--user")
    w.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    w.add_argument("--created", help="RFC 3339 UTC time (default: now)")
    w.add_argument("--architecture", default="amd64", help="GOARCH name (amd64, arm64)")
    v = sub.add_parser("verify", help="check layout, sizes and digests; print the references")
    v.add_argument("archives", type=Path, nargs="+")
    c = sub.add_parser("catalog", help="write DIR/manifest.json listing DIR/*.oci.tar")
    c.add_argument("directory", type=Path)
    args = parser.parse_args(argv)

    try:
        if args.command == "write":
            text = args.dockerfile.read_text() if args.dockerfile else "FROM scratch\n"
            config = config_from_dockerfile(text, _key_values(args.build_arg))
            config = ImageConfig(
                entrypoint=json.loads(args.entrypoint) if args.entrypoint else config.entrypoint,
                cmd=json.loads(args.cmd) if args.cmd else config.cmd,
                env=config.env,
                user=args.user if args.user is not None else config.user,
                working_dir=config.working_dir,
                labels={**config.labels, **_key_values(args.label)},
                exposed_ports=config.exposed_ports,
            )
            image = write(
                args.out,
                args.rootfs,
                config,
                args.ref,
                created=args.created,
                architecture=args.architecture,
            )
            print(f"{args.out}: {' '.join(image.refs)} {image.manifest_digest}")
        elif args.command == "verify":
            for path in args.archives:
                for image in read_index(path, verify=True):
                    print(f"{path}: ok {' '.join(image.refs)} {image.manifest_digest}")
        else:
            out = args.directory / "manifest.json"
            tmp = out.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(catalog(args.directory), indent=2) + "\n")
            tmp.replace(out)
            print(f"{out}: {len(json.loads(out.read_text())['images'])} images")
    except (ArchiveError, DockerfileError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
