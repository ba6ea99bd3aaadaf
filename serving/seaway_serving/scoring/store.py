"""Every byte the scorer reads or writes outside its own memory: files, HTTP(S) and S3.

Reading is by ranges, never whole objects: a pod that scores one row-group range of a 50 GB
Parquet file fetches its footer and its row groups, nothing else (S3 ``Range`` GETs; a web
server that ignores ``Range`` is spooled to local disk once). Writing is whole or nothing: a
local part is written under a temporary name and renamed; an S3 part is spooled to local disk,
then PUT as one object (a multipart upload above :data:`MULTIPART_BYTES`), so a pod killed at
any moment leaves no partial part under its final name.

S3 requests are signed with the server's SigV4 code (``sources.sign_v4``) from the standard
``AWS_*`` variables and ``SEAWAY_S3_ENDPOINT``; stdlib only, like the server's fetcher.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from seaway_serving import errors as serving_errors
from seaway_serving import sources

CHUNK = 1 << 20
#: Parts larger than this go up as a multipart upload of parts this size (S3's minimum part is
#: 5 MiB); smaller ones as one PUT.
MULTIPART_BYTES = 16 << 20
#: Remote reads fetch at least this much at a time (pyarrow reads in small pieces too).
READ_AHEAD = 4 << 20
ATTEMPTS = 3
_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class StoreError(Exception):
    """A request failed; ``status`` is the HTTP status (0: no answer), ``message`` one line."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status

    @property
    def permanent(self) -> bool:
        """A 4xx: the address or the keys are wrong, asking again cannot help."""
        return 400 <= self.status < 500


def local_path(uri: str) -> Path | None:
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path))
    if parsed.scheme == "":
        return Path(uri)
    return None


def redact(uri: str) -> str:
    """A URI fit for logs and messages: no query string (a signature), no user info."""
    return uri if local_path(uri) is not None else sources._redact(uri)


# -- S3 -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class S3Object:
    key: str
    size: int


class S3:
    """Path-style S3 requests to one bucket, signed as the server's fetcher signs them."""

    def __init__(self, bucket: str, env: Mapping[str, str], timeout_s: float) -> None:
        if not bucket:
            raise StoreError("s3:// URI without a bucket", 400)
        self._store = sources._S3Getter(bucket, sources.Limits(max_bytes=1, timeout_s=timeout_s),
                                        env)
        self.bucket = bucket
        self.timeout_s = timeout_s

    def url(self, key: str, query: str = "") -> str:
        base = f"{self._store.endpoint}/{self.bucket}/{urllib.parse.quote(key, safe='/-_.~')}"
        return base + ("?" + query if query else "")

    def request(self, method: str, key: str, *, query: str = "", body: bytes = b"",
                headers: Mapping[str, str] | None = None) -> tuple[int, Mapping[str, str], bytes]:
        """One signed request, retried on 5xx and network errors; raises StoreError."""
        url = self.url(key, query)
        payload = hashlib.sha256(body).hexdigest()
        delay = 0.5
        for attempt in range(1, ATTEMPTS + 1):
            req = urllib.request.Request(url, data=body if method in ("PUT", "POST") else None,
                                         method=method)
            for name, value in (headers or {}).items():
                req.add_header(name, value)
            if method in ("PUT", "POST"):
                req.add_header("Content-Length", str(len(body)))
                req.add_header("Content-Type", "application/octet-stream")
            self._store.sign(req, method, url, payload)
            try:
                with sources.open_url(req, timeout=self.timeout_s) as resp:
                    return resp.status, dict(resp.headers.items()), resp.read()
            except urllib.error.HTTPError as exc:
                detail = sources._s3_error_code(exc)
                if exc.code < 500 or attempt == ATTEMPTS:
                    raise StoreError(f"{method} {sources._redact(url)}: HTTP {exc.code}"
                                     f"{' ' + detail if detail else ''}", exc.code) from None
            except (urllib.error.URLError, OSError) as exc:
                if attempt == ATTEMPTS:
                    reason = getattr(exc, "reason", exc)
                    raise StoreError(f"{method} {sources._redact(url)}: {reason}") from None
            except serving_errors.StartupError as exc:  # a redirect to another origin
                raise StoreError(str(exc), 400) from None
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def size(self, key: str) -> int | None:
        """The object's size, None if there is none."""
        try:
            _, headers, _ = self.request("HEAD", key)
        except StoreError as exc:
            if exc.status == 404:
                return None
            raise
        return int({k.lower(): v for k, v in headers.items()}.get("content-length", "0"))

    def get(self, key: str) -> bytes | None:
        try:
            return self.request("GET", key)[2]
        except StoreError as exc:
            if exc.status == 404:
                return None
            raise

    def get_range(self, key: str, start: int, length: int) -> bytes:
        status, _, body = self.request("GET", key,
                                       headers={"Range": f"bytes={start}-{start + length - 1}"})
        if status != 206 and start > 0:
            raise StoreError(f"GET {self.url(key)} ignored the Range header", status)
        return body[:length]

    def list(self, prefix: str) -> list[S3Object]:
        out: list[S3Object] = []
        token: str | None = None
        while True:
            params = {"list-type": "2", "prefix": prefix}
            if token:
                params["continuation-token"] = token
            query = urllib.parse.urlencode(sorted(params.items()), quote_via=urllib.parse.quote)
            _, _, body = self.request("GET", "", query=query)
            root = ET.fromstring(body)
            for item in root.iter(f"{_S3_NS}Contents"):
                key = item.findtext(f"{_S3_NS}Key") or ""
                out.append(S3Object(key, int(item.findtext(f"{_S3_NS}Size") or 0)))
            if (root.findtext(f"{_S3_NS}IsTruncated") or "false").lower() != "true":
                return out
            token = root.findtext(f"{_S3_NS}NextContinuationToken")
            if not token:
                return out

    def put(self, key: str, data: bytes) -> None:
        self.request("PUT", key, body=data)

    def put_file(self, key: str, path: Path) -> None:
        """One PUT, or a multipart upload for a file above MULTIPART_BYTES (memory: one part)."""
        size = path.stat().st_size
        if size <= MULTIPART_BYTES:
            self.put(key, path.read_bytes())
            return
        _, _, body = self.request("POST", key, query="uploads=")
        upload = ET.fromstring(body).findtext(f"{_S3_NS}UploadId")
        if not upload:
            raise StoreError(f"POST {self.url(key)}?uploads: no UploadId in the answer")
        quoted = urllib.parse.quote(upload, safe="")
        try:
            etags = []
            with path.open("rb") as fh:
                number = 0
                while chunk := fh.read(MULTIPART_BYTES):
                    number += 1
                    _, headers, _ = self.request(
                        "PUT", key, query=f"partNumber={number}&uploadId={quoted}", body=chunk)
                    etag = {k.lower(): v for k, v in headers.items()}.get("etag", "")
                    etags.append(f"<Part><PartNumber>{number}</PartNumber><ETag>{etag}</ETag>"
                                 "</Part>")
            done = ("<CompleteMultipartUpload>" + "".join(etags)
                    + "</CompleteMultipartUpload>").encode()
            self.request("POST", key, query=f"uploadId={quoted}", body=done)
        except BaseException:
            with contextlib.suppress(StoreError):
                self.request("DELETE", key, query=f"uploadId={quoted}")
            raise


def split_s3(uri: str) -> tuple[str, str]:
    parsed = urllib.parse.urlsplit(uri)
    return parsed.netloc, urllib.parse.unquote(parsed.path).lstrip("/")


# -- reading --------------------------------------------------------------------------------
class _RangedRaw(io.RawIOBase):
    """A seekable read-only file over ranged reads of a remote object of known size."""

    def __init__(self, read_at: ReadAt, size: int) -> None:
        self._read_at = read_at
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        data = self._read_at(self._pos, n)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


class ReadAt:
    """``read_at(offset, n)`` on an input file wherever it is, plus a file object over it."""

    def __init__(self, uri: str, size: int, env: Mapping[str, str], timeout_s: float,
                 spool_dir: Path) -> None:
        self.uri = uri
        self.size = size
        self._local = local_path(uri)
        self._fh: BinaryIO | None = None
        self._s3: S3 | None = None
        self._key = ""
        self._timeout_s = timeout_s
        self._spool_dir = spool_dir
        scheme = urllib.parse.urlsplit(uri).scheme
        if scheme == "s3":
            bucket, self._key = split_s3(uri)
            self._s3 = S3(bucket, env, timeout_s)
        elif self._local is None and scheme not in ("http", "https"):
            raise StoreError(f"unsupported input URI scheme {scheme!r} in {redact(uri)} (use a "
                             "path, file://, http(s):// or s3://)", 400)

    def __call__(self, offset: int, n: int) -> bytes:
        if n <= 0 or offset >= self.size:
            return b""
        if self._local is not None:
            if self._fh is None:
                self._fh = self._local.open("rb")
            self._fh.seek(offset)
            return self._fh.read(n)
        if self._s3 is not None:
            return self._s3.get_range(self._key, offset, min(n, self.size - offset))
        return self._http_range(offset, n)

    def _http_range(self, offset: int, n: int) -> bytes:
        req = urllib.request.Request(self.uri, method="GET")
        req.add_header("Range", f"bytes={offset}-{offset + n - 1}")
        try:
            with sources.open_url(req, timeout=self._timeout_s) as resp:
                if resp.status == 206:
                    return bytes(resp.read(n))
                # the server ignores Range: keep the whole file on local disk, read it there
                self._local = self._spool_dir / ("input-" + hashlib.sha256(
                    self.uri.encode()).hexdigest()[:16])
                self._spool_dir.mkdir(parents=True, exist_ok=True)
                with self._local.open("wb") as out:
                    shutil.copyfileobj(resp, out, CHUNK)
        except urllib.error.HTTPError as exc:
            raise StoreError(f"GET {redact(self.uri)}: HTTP {exc.code}", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise StoreError(f"GET {redact(self.uri)}: {getattr(exc, 'reason', exc)}") from None
        except serving_errors.StartupError as exc:
            raise StoreError(str(exc), 400) from None
        return self(offset, n)

    def open(self) -> BinaryIO:
        """A buffered, seekable file object over the input (a local file is opened directly)."""
        if self._local is not None:
            return self._local.open("rb")
        return io.BufferedReader(_RangedRaw(self, self.size), buffer_size=READ_AHEAD)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _http_size(uri: str, timeout_s: float) -> int:
    req = urllib.request.Request(uri, method="HEAD")
    try:
        with sources.open_url(req, timeout=timeout_s) as resp:
            length = resp.headers.get("Content-Length")
    except urllib.error.HTTPError as exc:
        raise StoreError(f"HEAD {redact(uri)}: HTTP {exc.code}", exc.code) from None
    except (urllib.error.URLError, OSError) as exc:
        raise StoreError(f"HEAD {redact(uri)}: {getattr(exc, 'reason', exc)}") from None
    except serving_errors.StartupError as exc:
        raise StoreError(str(exc), 400) from None
    if length is None or not length.isdigit():
        raise StoreError(f"{redact(uri)} does not say its size (no Content-Length)", 400)
    return int(length)


def list_input(uri: str, env: Mapping[str, str], timeout_s: float
               ) -> tuple[bool, list[tuple[str, str, int]]]:
    """``(is_folder, [(uri, name relative to the input, size)])`` of the input's files.

    A local directory, or an s3:// URI not ending in a data file's suffix, is a folder: every
    file beneath it is listed. Anything else is one file. Raises StoreError (404: not found).
    """
    from seaway_serving.scoring import plan

    local = local_path(uri)
    if local is not None:
        if local.is_dir():
            files = sorted(p for p in local.rglob("*") if p.is_file())
            return True, [(str(p), p.relative_to(local).as_posix(), p.stat().st_size)
                          for p in files]
        if local.is_file():
            return False, [(str(local), local.name, local.stat().st_size)]
        raise StoreError(f"no input at {local}: not a file or a directory", 404)
    scheme = urllib.parse.urlsplit(uri).scheme
    if scheme == "s3":
        bucket, key = split_s3(uri)
        s3 = S3(bucket, env, timeout_s)
        if key and plan.format_of(key, None) is not None and not key.endswith("/"):
            size = s3.size(key)
            if size is None:
                raise StoreError(f"no input at {uri}: the object does not exist", 404)
            return False, [(uri, key.rsplit("/", 1)[-1], size)]
        prefix = key if not key or key.endswith("/") else key + "/"
        objects = s3.list(prefix)
        return True, [(f"s3://{bucket}/{o.key}", o.key[len(prefix):], o.size)
                      for o in objects if not o.key.endswith("/")]
    if scheme in ("http", "https"):
        name = urllib.parse.unquote(urllib.parse.urlsplit(uri).path).rsplit("/", 1)[-1]
        return False, [(uri, name, _http_size(uri, timeout_s))]
    raise StoreError(f"unsupported input URI scheme {scheme!r} in {redact(uri)} (use a path, "
                     "file://, http(s):// or s3://)", 400)


# -- writing --------------------------------------------------------------------------------
class Output:
    """The output folder or S3 prefix: parts, records and the manifest beneath it."""

    def __init__(self, uri: str, env: Mapping[str, str], timeout_s: float, scratch: Path
                 ) -> None:
        self.uri = uri
        self._local = local_path(uri)
        self._s3: S3 | None = None
        self._prefix = ""
        self._scratch = scratch
        if self._local is None:
            parsed = urllib.parse.urlsplit(uri)
            if parsed.scheme != "s3":
                raise StoreError(f"cannot write to {redact(uri)}: the output is a folder (a "
                                 "path or file://) or an s3:// prefix", 400)
            bucket, key = split_s3(uri)
            self._s3 = S3(bucket, env, timeout_s)
            self._prefix = key.rstrip("/") + "/" if key.strip("/") else ""

    def names(self, under: str = "") -> list[str]:
        """Names (relative to the output) of the objects beneath ``under``."""
        if self._local is not None:
            root = self._local / under
            if not root.is_dir():
                return []
            return sorted(p.relative_to(self._local).as_posix() for p in root.rglob("*")
                          if p.is_file())
        assert self._s3 is not None
        return sorted(o.key[len(self._prefix):] for o in self._s3.list(self._prefix + under))

    def read(self, name: str) -> bytes | None:
        if self._local is not None:
            try:
                return (self._local / name).read_bytes()
            except FileNotFoundError:
                return None
        assert self._s3 is not None
        return self._s3.get(self._prefix + name)

    @contextlib.contextmanager
    def new_file(self, name: str) -> Iterator[Path]:
        """A temporary local path to write ``name`` into; published whole when the block ends
        (unless it is still empty).

        Local output: a hidden file beside the final one, renamed over it (one file system, so
        the rename is atomic). S3: a file in the scratch folder, uploaded, then deleted.
        """
        if self._local is not None:
            final = self._local / name
            final.parent.mkdir(parents=True, exist_ok=True)
            for stale in final.parent.glob(f".{final.name}.*.tmp"):  # a killed attempt's
                stale.unlink(missing_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp",
                                       dir=final.parent)
            os.close(fd)
        else:
            self._scratch.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix="part-", dir=self._scratch)
            os.close(fd)
        path = Path(tmp)
        try:
            yield path
            if path.stat().st_size == 0:  # nothing was written: nothing to publish
                return
            if self._local is not None:
                path.chmod(0o644)  # mkstemp's 0600 would hide the results from their readers
                os.replace(path, self._local / name)
            else:
                assert self._s3 is not None
                self._s3.put_file(self._prefix + name, path)
        finally:
            path.unlink(missing_ok=True)

    def write(self, name: str, data: bytes) -> None:
        with self.new_file(name) as path:
            path.write_bytes(data)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()
