"""Bytes in and out of storage: fetch the dataset, publish the bundle folder.

Reading reuses the model server's fetchers (``seaway_serving.sources``): the same retries, size
caps, URL redaction and AWS Signature Version 4 signing from the standard ``AWS_*`` variables and
``SEAWAY_S3_ENDPOINT``/``AWS_ENDPOINT_URL_S3``, so one set of store credentials works for both
the trainer and the server. Writing is new here: a signed S3 ``PUT`` per file (again stdlib, no
boto3) or a copy onto a mounted volume. HTTP(S) is read-only: there is no standard way to write a
folder to a web server.

A bundle folder is published model file first, manifest second, result last: a reader that sees
the manifest finds the model it names, and ``train-result.json`` marks a finished run.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from seaway_serving import errors as serving_errors
from seaway_serving import sources
from seaway_serving.trainer.errors import FetchFailed, OutputFailed

CHUNK = 1 << 20
#: Variables that say how to reach a store. ``SEAWAY_TRAIN_<ROLE>_<NAME>`` overrides ``<NAME>``
#: for one role (DATASET, INCUMBENT, OUTPUT): the operator passes each secretRef with
#: ``envFrom.prefix``, so a dataset store and a model store may use different keys.
STORE_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                   "AWS_REGION", "AWS_DEFAULT_REGION", "SEAWAY_S3_ENDPOINT",
                   "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
ROLES = ("DATASET", "INCUMBENT", "OUTPUT")


def env_for(role: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment with ``role``'s store variables in place of the shared ones."""
    base = dict(os.environ if env is None else env)
    for name in STORE_VARIABLES:
        value = base.get(f"SEAWAY_TRAIN_{role}_{name}")
        if value is not None:
            base[name] = value
    return base


@dataclass(frozen=True)
class Fetched:
    path: Path
    sha256: str
    size: int


def _local_path(uri: str) -> Path | None:
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path))
    if parsed.scheme == "":
        return Path(uri)
    return None


def _hash_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            n += len(chunk)
    return "sha256:" + h.hexdigest(), n


def fetch(uri: str, work_dir: Path, *, cap: int, timeout_s: float,
          env: Mapping[str, str] | None = None) -> Fetched:
    """A local file holding the object at ``uri`` (downloaded into ``work_dir`` if remote)."""
    env = os.environ if env is None else env
    local = _local_path(uri)
    if local is not None:
        if not local.is_file():
            what = "a directory, not a file" if local.is_dir() else "not found"
            raise FetchFailed(f"dataset {local} is {what}")
        try:
            digest, size = _hash_file(local)
        except OSError as exc:
            raise FetchFailed(f"dataset {local} cannot be read: {exc.strerror or exc}") from None
        if size > cap:
            raise FetchFailed(f"dataset {local} is {size} bytes, over the cap of {cap} bytes "
                              "(SEAWAY_TRAIN_MAX_DATASET_BYTES)")
        return Fetched(local, digest, size)
    parsed = urllib.parse.urlsplit(uri)
    limits = sources.Limits(max_bytes=cap, timeout_s=timeout_s)
    getter: sources._Getter
    try:
        if parsed.scheme in ("http", "https"):
            getter = sources._Getter(limits)
        elif parsed.scheme == "s3":
            getter = sources._S3Getter(parsed.netloc, limits, env)
        else:
            raise FetchFailed(f"unsupported dataset URI scheme {parsed.scheme!r} in {uri} "
                              "(use a path, file://, http(s):// or s3://)")
        work_dir.mkdir(parents=True, exist_ok=True)
        suffix = "".join(Path(parsed.path).suffixes[-2:])
        dest = work_dir / ("dataset" + suffix)
        with dest.open("wb") as out:
            getter.get(uri, out, cap)
    except serving_errors.BundleRefused:  # the fetcher's words for "over the cap"
        raise FetchFailed(f"dataset {sources._redact(uri)} is larger than the cap of {cap} "
                          "bytes (SEAWAY_TRAIN_MAX_DATASET_BYTES)") from None
    except serving_errors.StartupError as exc:
        raise FetchFailed(str(exc)) from None
    except OSError as exc:
        raise FetchFailed(f"cannot store the dataset in {work_dir}: "
                          f"{exc.strerror or exc}") from None
    digest, size = _hash_file(dest)
    return Fetched(dest, digest, size)


def publish(files: Sequence[tuple[str, bytes]], output_uri: str, run_id: str, *,
            timeout_s: float = 60.0, env: Mapping[str, str] | None = None) -> str:
    """Write ``files`` (name, bytes), in order, to ``output_uri/run_id/``; return that URI."""
    env = os.environ if env is None else env
    local = _local_path(output_uri)
    if local is not None:
        return _publish_local(files, local / run_id)
    parsed = urllib.parse.urlsplit(output_uri)
    if parsed.scheme == "s3":
        return _publish_s3(files, parsed.netloc, parsed.path, run_id, timeout_s, env)
    raise OutputFailed(f"cannot write a bundle to {sources._redact(output_uri)}: the built-in "
                       "trainer writes to file:// (a mounted volume) or s3:// only")


def _publish_local(files: Sequence[tuple[str, bytes]], folder: Path) -> str:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files:
            # write beside, then rename: a reader never sees half a file
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, folder / name)
    except OSError as exc:
        raise OutputFailed(f"cannot write the bundle to {folder}: "
                           f"{exc.strerror or exc}") from None
    return folder.resolve().as_uri() + "/"


def _publish_s3(files: Sequence[tuple[str, bytes]], bucket: str, prefix: str, run_id: str,
                timeout_s: float, env: Mapping[str, str]) -> str:
    if not bucket:
        raise OutputFailed("s3:// output URI without a bucket")
    limits = sources.Limits(max_bytes=1, timeout_s=timeout_s)
    store = sources._S3Getter(bucket, limits, env)  # endpoint, region and keys as for reading
    base = "/".join(p for p in (prefix.strip("/"), run_id) if p)
    for name, data in files:
        key = f"{base}/{name}"
        url = f"{store.endpoint}/{bucket}/{urllib.parse.quote(key, safe='/-_.~')}"
        _put(url, data, store, limits)
    return f"s3://{bucket}/{base}/"


def _put(url: str, data: bytes, store: sources._S3Getter, limits: sources.Limits) -> None:
    payload = hashlib.sha256(data).hexdigest()
    delay = 0.5
    for attempt in range(1, limits.attempts + 1):
        req = urllib.request.Request(url, data=data, method="PUT")
        req.add_header("Content-Length", str(len(data)))
        # urllib would send form encoding, which some stores parse (and so lose) as a form
        req.add_header("Content-Type", "application/json" if url.endswith(".json")
                       else "application/octet-stream")
        store.sign(req, "PUT", url, payload)
        try:
            with sources.open_url(req, timeout=limits.timeout_s) as resp:
                resp.read()
            return
        except urllib.error.HTTPError as exc:
            detail = sources._s3_error_code(exc)
            if exc.code < 500 or attempt == limits.attempts:
                raise OutputFailed(f"could not write {sources._redact(url)}: HTTP {exc.code}"
                                   f"{' ' + detail if detail else ''}") from None
        except (urllib.error.URLError, OSError) as exc:
            if attempt == limits.attempts:
                reason = getattr(exc, "reason", exc)
                raise OutputFailed(f"could not write {sources._redact(url)}: {reason}") from None
        except serving_errors.StartupError as exc:  # a redirect to another origin
            raise OutputFailed(str(exc)) from None
        time.sleep(delay)
        delay *= 2

