"""What a scoring pod does, decided from the input's listing alone: pure functions, no I/O.

Every pod of a ScoringJob computes the same list of work units from the same listing, so no pod
needs to talk to another: pod ``i`` of ``n`` takes the units ``u`` with ``u % n == i``. A unit
is a whole file when the input holds several, or one of ``n`` ranges of a single file (Parquet
row groups, CSV byte ranges whose edges are moved to the next line start), so one large file
still spreads over every pod.

A unit's result is recorded in a small JSON file written after its part; the manifest is built
from those records only (times included), so two pods that both find every unit recorded write
the same manifest.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from seaway_serving import contract

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
RECORD_SCHEMA = "seaway.dev/scoring-unit/v1"
MANIFEST_SCHEMA = "seaway.dev/scoring-manifest/v1"
RECORDS_DIR = "_units"
MANIFEST_FILE = "_manifest.json"
#: Output columns the scorer adds; an input key column may not take one of these names.
PREDICTION = "prediction"
REVISION_COLUMN = "seaway_revision"
DIGEST_COLUMN = "seaway_digest"
PROBA_PREFIX = "proba_"
#: How far a line-end search reads at a time.
SCAN_CHUNK = 64 << 10

Kind = Literal["file", "bytes", "rowGroups"]


@dataclass(frozen=True)
class SourceFile:
    """One input file: where it is, its name relative to the input (the sort key), its size."""

    uri: str
    name: str
    size: int
    format: str


@dataclass(frozen=True)
class Unit:
    """A piece of the input scored at once into one part: a file, or a range of one file.

    ``start``/``end`` are a byte range (``bytes``, before the cut at line ends) or a range of
    row-group numbers (``rowGroups``), end excluded.
    """

    number: int
    uri: str
    format: str
    kind: Kind = "file"
    start: int | None = None
    end: int | None = None

    def source(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"uri": self.uri, "format": self.format, "kind": self.kind}
        if self.kind != "file":
            doc.update(start=self.start, end=self.end)
        return doc


def format_of(name: str, given: str | None) -> str | None:
    """A file's format: the one given, else from its name; None for a file that is not data."""
    lower = name.lower()
    if lower.endswith(CSV_SUFFIXES):
        return given or "csv"
    if lower.endswith(PARQUET_SUFFIXES):
        return given or "parquet"
    return None


def select_files(listing: Sequence[tuple[str, str, int]], given_format: str | None
                 ) -> list[SourceFile]:
    """The data files of a folder listing of ``(uri, relative name, size)``, sorted by name.

    Names with a part starting with ``_`` or ``.`` are markers and temporary files of the tools
    that write datasets (``_SUCCESS``, ``.crc``), never data.
    """
    out = []
    for uri, name, size in listing:
        if any(part.startswith(("_", ".")) for part in name.split("/")):
            continue
        fmt = format_of(name, given_format)
        if fmt is not None:
            out.append(SourceFile(uri=uri, name=name, size=size, format=fmt))
    return sorted(out, key=lambda f: f.name)


def split(total: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` contiguous ranges covering ``[0, total)`` whose lengths differ by at most 1."""
    edges = [total * k // shards for k in range(shards + 1)]
    return list(itertools.pairwise(edges))


def plan_units(files: Sequence[SourceFile], shards: int, row_groups: int | None = None
               ) -> list[Unit]:
    """The units of an input: one per file, or ``shards`` ranges of a single file.

    ``row_groups`` is the row-group count of a single Parquet file (read from its footer).
    """
    if shards < 1:
        raise ValueError("shards must be at least 1")
    if len(files) != 1:
        return [Unit(number=i, uri=f.uri, format=f.format) for i, f in enumerate(files)]
    only = files[0]
    if only.format == "parquet":
        if row_groups is None:
            raise ValueError("a single Parquet file is split by row groups: count them first")
        ranges = split(row_groups, shards)
        kind: Kind = "rowGroups"
    else:
        ranges = split(only.size, shards)
        kind = "bytes"
    return [Unit(number=i, uri=only.uri, format=only.format, kind=kind, start=a, end=b)
            for i, (a, b) in enumerate(ranges)]


def units_of_index(units: Sequence[Unit], shards: int, index: int) -> list[Unit]:
    """The units pod ``index`` scores (the contract's ``u % shards == index``)."""
    return [u for u in units if u.number % shards == index]


# -- CSV byte ranges ------------------------------------------------------------------------
ReadAt = Callable[[int, int], bytes]


def line_start_at_or_after(read_at: ReadAt, size: int, pos: int) -> int:
    """The first position ``>= pos`` where a line starts (just after a newline), or ``size``."""
    if pos <= 0:
        return 0
    at = pos - 1
    while at < size:
        chunk = read_at(at, min(SCAN_CHUNK, size - at))
        if not chunk:
            break
        found = chunk.find(b"\n")
        if found >= 0:
            return at + found + 1
        at += len(chunk)
    return size


def csv_span(read_at: ReadAt, size: int, start: int, end: int) -> tuple[int, int, int]:
    """``(header_end, first, stop)``: a CSV range's data lines are the bytes ``[first, stop)``.

    A range owns every data line that STARTS inside ``[start, end)``: the edges move forward to
    the next line start, so consecutive ranges share no line and miss none. The header (the
    bytes ``[0, header_end)``) is owned by nobody and read by all. Assumes no quoted field holds
    a newline (the same assumption every byte-range CSV splitter makes).
    """
    header_end = line_start_at_or_after(read_at, size, 1)
    first = line_start_at_or_after(read_at, size, max(start, header_end))
    stop = max(first, line_start_at_or_after(read_at, size, end))
    return header_end, first, stop


# -- output columns -------------------------------------------------------------------------
def proba_columns(classes: Sequence[Any]) -> list[str]:
    """``proba_<class>`` for each class, in the model's class order."""
    return [PROBA_PREFIX + str(c) for c in classes]


def prediction_columns(width: int) -> list[str]:
    """``prediction``, or ``prediction_<i>`` for a model with several outputs per row."""
    return [PREDICTION] if width == 1 else [f"{PREDICTION}_{i}" for i in range(width)]


def clashing_keys(keys: Sequence[str], added: Sequence[str]) -> list[str]:
    """Key columns whose names the scorer's own output columns take."""
    taken = {*added, REVISION_COLUMN, DIGEST_COLUMN}
    return [k for k in keys if k in taken]


def missing_columns(wanted: Sequence[str], present: Sequence[str]) -> list[str]:
    have = set(present)
    return [c for c in wanted if c not in have]


def listing(columns: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(columns[:limit])
    return shown + (f", ... ({len(columns)} in all)" if len(columns) > limit else "")


# -- names, records, manifest ---------------------------------------------------------------
def part_name(unit: int, output_format: str) -> str:
    return f"part-{unit:05d}.{output_format}"


def record_name(unit: int) -> str:
    return f"{RECORDS_DIR}/{unit:05d}.json"


_RECORD_RE = re.compile(r"^_units/([0-9]{5,})\.json$")


def unit_of_record(name: str) -> int | None:
    """The unit number of a record's name (``_units/00007.json`` -> 7), None for other names."""
    m = _RECORD_RE.match(name)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class Model:
    """What every record and the manifest say about the model."""

    name: str
    revision: int | None
    digest: str


def unit_record(*, run_id: str, unit: Unit, index: int, model: Model, rows: int,
                part: str | None, sha256: str | None, size: int, started: str,
                finished: str) -> dict[str, Any]:
    """The record of a scored unit. ``part`` is None for a unit with no rows."""
    return {
        "schema": RECORD_SCHEMA, "runId": run_id, "unit": unit.number, "index": index,
        "source": unit.source(), "rows": rows, "part": part, "sha256": sha256, "bytes": size,
        "model": model.name, "revision": model.revision, "digest": model.digest,
        "startedAt": started, "finishedAt": finished,
    }


class RecordInvalid(ValueError):
    """A record or manifest that is not one of ours (hand-edited, truncated, another tool's)."""


def check_record(doc: Any, name: str) -> dict[str, Any]:
    if not isinstance(doc, dict) or doc.get("schema") != RECORD_SCHEMA:
        raise RecordInvalid(f"{name} is not a seaway-score unit record")
    for key, kind in (("runId", str), ("unit", int), ("rows", int), ("source", dict)):
        if not isinstance(doc.get(key), kind):
            raise RecordInvalid(f"{name} is not a seaway-score unit record (no {key})")
    return doc


def foreign_run(run_id: str, records: Mapping[int, Mapping[str, Any]],
                manifest: Mapping[str, Any] | None) -> str | None:
    """The id of another run found in the output, if any."""
    if manifest is not None and manifest.get("runId") != run_id:
        return str(manifest.get("runId"))
    for number in sorted(records):
        other = records[number].get("runId")
        if other != run_id:
            return str(other)
    return None


def changed_units(units: Sequence[Unit], records: Mapping[int, Mapping[str, Any]]) -> list[int]:
    """Recorded units whose source is not the one planned now (the input changed under the run)."""
    planned = {u.number: u.source() for u in units}
    return sorted(n for n, r in records.items() if planned.get(n) != r.get("source"))


def build_manifest(*, run_id: str, model: Model, input_uri: str, output_uri: str,
                   output_format: str, key_columns: Sequence[str], methods: Sequence[str],
                   units: Sequence[Unit], records: Mapping[int, Mapping[str, Any]]
                   ) -> dict[str, Any]:
    """The run's manifest from every unit's record; raises KeyError if one is missing."""
    entries = []
    for unit in units:
        r = records[unit.number]
        entries.append({"unit": unit.number, "source": r["source"], "rows": r["rows"],
                        "part": r.get("part"), "sha256": r.get("sha256"),
                        "bytes": r.get("bytes", 0), "index": r.get("index"),
                        "startedAt": r.get("startedAt"), "finishedAt": r.get("finishedAt")})
    starts = [str(e["startedAt"]) for e in entries if e["startedAt"]]
    ends = [str(e["finishedAt"]) for e in entries if e["finishedAt"]]
    return {
        "schema": MANIFEST_SCHEMA, "runId": run_id, "model": model.name,
        "revision": model.revision, "digest": model.digest, "input": input_uri,
        "output": output_uri, "outputFormat": output_format, "keyColumns": list(key_columns),
        "methods": list(methods), "units": entries,
        "totals": {"units": len(entries), "rows": sum(int(e["rows"]) for e in entries),
                   "parts": sum(1 for e in entries if e["part"]),
                   "bytes": sum(int(e["bytes"] or 0) for e in entries)},
        # ISO 8601 UTC strings of one format sort as times
        "startedAt": min(starts) if starts else None,
        "finishedAt": max(ends) if ends else None,
    }


def termination(*, index: int, units_total: int, done: Sequence[int], skipped: Sequence[int],
                rows: int, seconds: float, model: Model | None, reason: str,
                message: str, rows_skipped: int = 0) -> dict[str, Any]:
    """The pod's termination message (the contract's JSON object)."""
    if reason not in contract.SCORE_REASONS:
        raise ValueError(f"unknown reason {reason!r}")
    return {"index": index, "unitsTotal": units_total, "unitsDone": sorted(done),
            "unitsSkipped": sorted(skipped), "rows": rows, "rowsSkipped": rows_skipped,
            "seconds": round(seconds, 3),
            "revision": model.revision if model else None,
            "digest": model.digest if model else None, "reason": reason, "message": message}


def progress_line(*, index: int, done: int, total: int, rows: int, seconds: float) -> str:
    rate = rows / seconds if seconds > 0 else 0.0
    return (f"Index {index}: {done}/{total} units done, {rows:,} rows scored in {seconds:.1f}s "
            f"({rate:,.0f} rows/s)")
