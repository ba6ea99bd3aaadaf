"""Fetch a bundle from where it lives into a local directory, bounded in size and in paths.

Sources: a local path or ``file://`` URI (a bundle directory, its ``manifest.json``, a
``.tar.gz`` of it, or a bare model file), ``http(s)://`` and ``s3://`` (S3-compatible stores,
requests signed with AWS Signature Version 4 from the standard ``AWS_*`` variables). A URI ending
in ``.tar``, ``.tar.gz`` or ``.tgz`` is an archive; one ending in ``.joblib``, ``.pkl`` or
``.skops`` is a bare model file (a one-file bundle: the loader derives its manifest); any other is
a directory holding ``manifest.json`` and the model file it names. :func:`materialize` returns a
directory for a bundle and the file itself for a bare model. Nothing here deserializes anything:
that is the loader's job, after the digest check.

The S3 client is a few dozen lines of stdlib on purpose: the server image stays free of boto3
(~100 MB and a slow import) for the two GET requests it needs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.client
import json
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

from seaway_serving import bundle
from seaway_serving.errors import BundleRefused, FetchFailed

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")
#: A URI ending in one of these is a bare model file, served as a one-file bundle.
MODEL_SUFFIXES = (".joblib", ".pkl", ".skops")
MANIFEST_CAP = 16 << 20
#: A bundle is a manifest and a model file or two; an archive of more entries than this is
#: refused before anything is written (a 940 KB archive can hold 200,000 empty directories).
MAX_ARCHIVE_ENTRIES = 1000
CHUNK = 1 << 20
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    timeout_s: float = 60.0
    attempts: int = 3


def materialize(uri: str, work_dir: Path, limits: Limits,
                env: Mapping[str, str] | None = None) -> Path:
    """Return a local directory holding the bundle at ``uri`` (fetched or extracted if needed),
    or the local path of the model file when ``uri`` names a bare one (see :func:`is_model_file`).
    """
    env = os.environ if env is None else env
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme in ("", "file"):
        return _local(Path(urllib.parse.unquote(parsed.path) if parsed.scheme else uri),
                      work_dir, limits)
    if parsed.scheme in ("http", "https"):
        return _remote(uri, _Getter(limits), work_dir, limits)
    if parsed.scheme == "s3":
        return _remote(uri, _S3Getter(parsed.netloc, limits, env), work_dir, limits)
    raise FetchFailed(f"unsupported bundle URI scheme {parsed.scheme!r} in {uri} "
                      "(use a path, file://, http(s):// or s3://)")


def _is_archive(name: str) -> bool:
    return name.endswith(ARCHIVE_SUFFIXES)


def is_model_file(name: str) -> bool:
    """Whether a path or URI path names a bare model file rather than a bundle."""
    return name.lower().endswith(MODEL_SUFFIXES)


def _local(path: Path, work_dir: Path, limits: Limits) -> Path:
    if path.is_dir():
        return path
    if path.name == bundle.MANIFEST_FILE and path.is_file():
        return path.parent
    if path.is_file() and _is_archive(path.name):
        return extract(path, work_dir / "bundle", limits.max_bytes)
    if path.is_file() and is_model_file(path.name):
        return path
    raise FetchFailed(f"no bundle at {path}: expected a directory with {bundle.MANIFEST_FILE}, "
                      f"a .tar.gz of one, or a model file ({', '.join(MODEL_SUFFIXES)})")


def _remote(uri: str, getter: _Getter, work_dir: Path, limits: Limits) -> Path:
    work_dir.mkdir(parents=True, exist_ok=True)
    path = urllib.parse.urlsplit(uri).path
    if _is_archive(path):
        archive = work_dir / ("download" + "".join(PurePosixPath(path).suffixes[-2:]))
        with archive.open("wb") as out:
            getter.get(uri, out, limits.max_bytes)
        try:
            return extract(archive, work_dir / "bundle", limits.max_bytes)
        finally:
            archive.unlink(missing_ok=True)
    if is_model_file(path):
        return _remote_model_file(uri, getter, work_dir, limits)
    base = uri if uri.endswith("/") else uri + "/"
    target = work_dir / "bundle"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    manifest_path = target / bundle.MANIFEST_FILE
    with manifest_path.open("wb") as out:
        getter.get(base + bundle.MANIFEST_FILE, out, MANIFEST_CAP)
    try:
        model_file = json.loads(manifest_path.read_bytes())["model_file"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleRefused(f"{bundle.MANIFEST_FILE} at {base} is not a bundle manifest: "
                            f"{exc}") from None
    rel = _safe_relative(str(model_file))
    if rel is None:
        raise BundleRefused(f"manifest model_file {model_file!r} escapes the bundle directory")
    dest = target.joinpath(*rel.parts)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") as out:
        getter.get(base + urllib.parse.quote(rel.as_posix()), out, limits.max_bytes)
    return target


def _remote_model_file(uri: str, getter: _Getter, work_dir: Path, limits: Limits) -> Path:
    target = work_dir / "model"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    # the file keeps its name (its suffix says what it is), never its path
    dest = target / (PurePosixPath(urllib.parse.unquote(urllib.parse.urlsplit(uri).path)).name)
    with dest.open("wb") as out:
        getter.get(uri, out, limits.max_bytes)
    return dest


def _safe_relative(name: str) -> PurePosixPath | None:
    """``name`` as a relative path that stays inside its directory, or None if it would not."""
    if not name or "\\" in name or "\x00" in name:
        return None
    p = PurePosixPath(name)
    if p.is_absolute() or any(part == ".." for part in p.parts):
        return None
    parts = [part for part in p.parts if part not in ("", ".")]
    return PurePosixPath(*parts) if parts else None


def extract(archive: Path, dest: Path, max_bytes: int) -> Path:
    """Extract a tar archive into ``dest``, refusing any entry that could land outside it.

    Refused: absolute names, ``..`` components, links of any kind, devices and FIFOs, and a total
    size above ``max_bytes``. Only regular files and directories are written, by this code, with
    fresh permissions: nothing of the archive's metadata is trusted.
    """
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            return _extract_members(tar, dest, max_bytes)
    except (tarfile.TarError, OSError) as exc:
        raise BundleRefused(f"bundle archive {archive.name} cannot be read: {exc}") from None


def _extract_members(tar: tarfile.TarFile, dest: Path, max_bytes: int) -> Path:
    members = []
    total = 0
    for count, m in enumerate(tar, start=1):
        if count > MAX_ARCHIVE_ENTRIES:
            raise BundleRefused(f"bundle archive has more than {MAX_ARCHIVE_ENTRIES} entries; "
                                "a bundle holds a manifest and a few files")
        rel = _safe_relative(m.name)
        if rel is None and m.name.strip("./") == "":
            continue  # the archive's own "." entry
        if rel is None:
            raise BundleRefused(f"archive entry {m.name!r} escapes the bundle directory")
        if m.issym() or m.islnk():
            raise BundleRefused(f"archive entry {m.name!r} is a link (to {m.linkname!r}); "
                                "bundles hold regular files only")
        if not (m.isfile() or m.isdir()):
            raise BundleRefused(f"archive entry {m.name!r} is not a regular file")
        total += m.size
        if total > max_bytes:
            raise BundleRefused(f"bundle archive unpacks to more than {max_bytes} bytes, "
                                "over the cap (SEAWAY_MAX_BUNDLE_BYTES)")
        members.append((m, rel))
    for m, rel in members:
        target = dest.joinpath(*rel.parts)
        if m.isdir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        src = tar.extractfile(m)
        if src is None:
            raise BundleRefused(f"archive entry {m.name!r} has no data")
        with src, target.open("wb") as out:
            _copy_capped(src, out, m.size, f"archive entry {m.name!r}")
    # an archive of a directory: the bundle is that directory
    if not (dest / bundle.MANIFEST_FILE).exists():
        subdirs = [p for p in dest.iterdir() if p.is_dir()]
        if len(subdirs) == 1 and (subdirs[0] / bundle.MANIFEST_FILE).exists():
            return subdirs[0]
    return dest


def _copy_capped(src: IO[bytes], out: IO[bytes], cap: int, what: str) -> int:
    n = 0
    while chunk := src.read(CHUNK):
        n += len(chunk)
        if n > cap:
            raise BundleRefused(f"{what} is larger than {cap} bytes, over the cap "
                                "(SEAWAY_MAX_BUNDLE_BYTES)")
        out.write(chunk)
    return n


class _Getter:
    """GET a URL into a file, at most ``cap`` bytes, retrying transient failures."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    def request(self, url: str) -> urllib.request.Request:
        return urllib.request.Request(url, method="GET")

    def get(self, url: str, out: BinaryIO, cap: int) -> int:
        delay = 0.5
        for attempt in range(1, self.limits.attempts + 1):
            try:
                with open_url(self.request(url), timeout=self.limits.timeout_s) as resp:
                    length = resp.headers.get("Content-Length")
                    if length is not None and length.isdigit() and int(length) > cap:
                        raise BundleRefused(f"{_redact(url)} is {length} bytes, over the cap of "
                                            f"{cap} bytes (SEAWAY_MAX_BUNDLE_BYTES)")
                    out.seek(0)
                    out.truncate()
                    return _copy_capped(resp, out, cap, _redact(url))
            except urllib.error.HTTPError as exc:
                detail = _s3_error_code(exc)
                if exc.code < 500 or attempt == self.limits.attempts:
                    raise FetchFailed(f"could not fetch {_redact(url)}: HTTP {exc.code}"
                                      f"{' ' + detail if detail else ''}") from None
            except (urllib.error.URLError, OSError) as exc:
                if attempt == self.limits.attempts:
                    reason = getattr(exc, "reason", exc)
                    raise FetchFailed(f"could not fetch {_redact(url)}: {reason}") from None
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")


def _origin(url: str) -> tuple[str, str, int | None]:
    p = urllib.parse.urlsplit(url)
    default = {"http": 80, "https": 443}.get(p.scheme)
    return p.scheme, (p.hostname or "").lower(), p.port or default


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to the same scheme, host and port.

    urllib re-sends a request's headers to wherever a redirect points, signed ``Authorization``
    and ``X-Amz-Security-Token`` included, and would follow https to plain http. A store (or
    whoever answers in its name) could so collect the credentials of every server pod. A
    presigned URL carries its signature in the query string, which a redirect elsewhere drops
    anyway, so refusing costs nothing a store needs.
    """

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int,
                         msg: str, headers: http.client.HTTPMessage,
                         newurl: str) -> urllib.request.Request | None:
        if _origin(newurl) != _origin(req.full_url):
            what = ("from https to http" if urllib.parse.urlsplit(req.full_url).scheme == "https"
                    and urllib.parse.urlsplit(newurl).scheme == "http" else "to another origin")
            raise FetchFailed(f"{_redact(req.full_url)} redirected {what} ({_redact(newurl)});"
                              " not followed, so no credentials go with it")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SameOriginRedirects)


def open_url(request: urllib.request.Request, *, timeout: float) -> http.client.HTTPResponse:
    """``urlopen`` for every store request: redirects only within the same origin."""
    response: http.client.HTTPResponse = _OPENER.open(request, timeout=timeout)
    return response


def _redact(url: str) -> str:
    p = urllib.parse.urlsplit(url)
    netloc = p.hostname or ""
    if p.port:
        netloc += f":{p.port}"
    return urllib.parse.urlunsplit((p.scheme, netloc, p.path, "", ""))


def _s3_error_code(exc: urllib.error.HTTPError) -> str:
    try:
        body = exc.read(4096).decode("utf-8", "replace")
    except OSError:
        return ""
    start, end = body.find("<Code>"), body.find("</Code>")
    return body[start + 6:end] if 0 <= start < end else ""


class _S3Getter(_Getter):
    """Path-style S3 GETs against ``SEAWAY_S3_ENDPOINT``/``AWS_ENDPOINT_URL_S3``/AWS itself."""

    def __init__(self, bucket: str, limits: Limits, env: Mapping[str, str]) -> None:
        super().__init__(limits)
        if not bucket:
            raise FetchFailed("s3:// URI without a bucket")
        self.bucket = bucket
        self.region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.endpoint = (env.get("SEAWAY_S3_ENDPOINT") or env.get("AWS_ENDPOINT_URL_S3")
                         or env.get("AWS_ENDPOINT_URL")
                         or f"https://s3.{self.region}.amazonaws.com").rstrip("/")
        self.access_key = env.get("AWS_ACCESS_KEY_ID")
        self.secret_key = env.get("AWS_SECRET_ACCESS_KEY")
        self.token = env.get("AWS_SESSION_TOKEN")

    def get(self, url: str, out: BinaryIO, cap: int) -> int:
        key = urllib.parse.urlsplit(url).path.lstrip("/")
        http_url = f"{self.endpoint}/{self.bucket}/{urllib.parse.quote(key, safe='/-_.~')}"
        return super().get(http_url, out, cap)

    def request(self, url: str) -> urllib.request.Request:
        req = urllib.request.Request(url, method="GET")
        if self.access_key and self.secret_key:
            self.sign(req, "GET", url)
        return req

    def sign(self, req: urllib.request.Request, method: str, url: str,
             payload_sha256: str | None = None) -> None:
        """Add Signature Version 4 headers (with these credentials) to ``req``; without keys,
        only the payload hash some stores require of a write."""
        if not (self.access_key and self.secret_key):
            if payload_sha256:
                req.add_header("x-amz-content-sha256", payload_sha256)
            return
        for name, value in sign_v4(
            method, url, region=self.region, service="s3", access_key=self.access_key,
            secret_key=self.secret_key, session_token=self.token, now=dt.datetime.now(dt.UTC),
            payload_sha256=payload_sha256 or EMPTY_SHA256,
        ).items():
            req.add_header(name, value)


def sign_v4(method: str, url: str, *, region: str, service: str, access_key: str,
            secret_key: str, session_token: str | None, now: dt.datetime,
            payload_sha256: str = EMPTY_SHA256,
            headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """Headers that authenticate a body-less request with AWS Signature Version 4.

    ``url`` must already be URI-encoded the way it goes on the wire (S3 does not re-encode).
    ``headers`` are extra request headers to sign (they are sent as given by the caller).
    """
    p = urllib.parse.urlsplit(url)
    host = p.hostname or ""
    if p.port and not ((p.scheme == "http" and p.port == 80)
                       or (p.scheme == "https" and p.port == 443)):
        host += f":{p.port}"
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    signed_headers = {k.lower(): v for k, v in (headers or {}).items()}
    signed_headers.update({"host": host, "x-amz-content-sha256": payload_sha256,
                           "x-amz-date": amz_date})
    if session_token:
        signed_headers["x-amz-security-token"] = session_token
    query = sorted(urllib.parse.parse_qsl(p.query, keep_blank_values=True))
    canonical_query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
        for k, v in query)
    signed = ";".join(sorted(signed_headers))
    canonical = "\n".join([
        method, p.path or "/", canonical_query,
        "".join(f"{k}:{signed_headers[k].strip()}\n" for k in sorted(signed_headers)),
        signed, payload_sha256,
    ])
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret_key).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    extra = {k.lower() for k in (headers or {})}
    out = {k: v for k, v in signed_headers.items() if k != "host" and k not in extra}
    out["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                            f"SignedHeaders={signed}, Signature={signature}")
    return out
