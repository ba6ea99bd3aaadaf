"""A unit of the input as a stream of Arrow tables of at most ``batch_rows`` rows.

Memory is bounded by the batch (and a Parquet row group), never by the file: Parquet is read
with ``ParquetFile.iter_batches`` one row group at a time and only the columns needed, CSV with
pyarrow's streaming reader over the unit's byte range (the header, then the range's lines), and
both are re-cut to exactly ``batch_rows`` rows so the model sees the same batch size whatever
the source's block or row-group size.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from typing import BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from seaway_serving.scoring import plan
from seaway_serving.scoring.store import ReadAt

#: pyarrow's CSV reader block: rows are parsed this many bytes at a time.
CSV_BLOCK = 1 << 20
HEADER_CAP = 1 << 20


class _Concat(io.RawIOBase):
    """``header`` then the bytes ``[first, stop)`` of ``source``: one unit's CSV as a file."""

    def __init__(self, header: bytes, source: BinaryIO, first: int, stop: int) -> None:
        self._header = header
        self._source = source
        self._left = stop - first
        source.seek(first)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._header:
            n = min(len(buffer), len(self._header))
            buffer[:n] = self._header[:n]
            self._header = self._header[n:]
            return n
        if self._left <= 0:
            return 0
        data = self._source.read(min(len(buffer), self._left))
        if not data:
            self._left = 0
            return 0
        buffer[: len(data)] = data
        self._left -= len(data)
        return len(data)

    def close(self) -> None:
        self._source.close()
        super().close()


def rebatch(tables: Iterable[pa.Table], rows: int) -> Iterator[pa.Table]:
    """The same rows in the same order, cut into tables of exactly ``rows`` (the last: fewer)."""
    pending: list[pa.Table] = []
    held = 0
    for table in tables:
        if table.num_rows == 0:
            continue
        pending.append(table)
        held += table.num_rows
        while held >= rows:
            merged = pa.concat_tables(pending)
            yield merged.slice(0, rows)
            rest = merged.slice(rows)
            pending = [rest] if rest.num_rows else []
            held = rest.num_rows
    if held:
        yield pa.concat_tables(pending)


def parquet_columns(source: BinaryIO | str) -> tuple[list[str], int]:
    """A Parquet file's column names and row-group count, from its footer."""
    meta = pq.ParquetFile(source).metadata
    return [meta.schema.column(i).name for i in range(meta.num_columns)], meta.num_row_groups


def csv_header(read_at: ReadAt) -> tuple[bytes, list[str]]:
    """A CSV file's header line and its column names."""
    end = plan.line_start_at_or_after(read_at, read_at.size, 1)
    if end > HEADER_CAP:
        raise ValueError(f"the header line is longer than {HEADER_CAP} bytes")
    header = read_at(0, end)
    if not header.strip():
        return header, []
    names = pacsv.read_csv(io.BytesIO(header if header.endswith(b"\n") else header + b"\n"),
                           read_options=pacsv.ReadOptions(autogenerate_column_names=False)
                           ).column_names
    return header, [str(n) for n in names]


def unit_tables(unit: plan.Unit, read_at: ReadAt, columns: Sequence[str],
                features: Sequence[str], batch_rows: int) -> Iterator[pa.Table]:
    """The unit's rows, ``columns`` only (features as float64), ``batch_rows`` at a time."""
    if unit.format == "parquet":
        source = read_at.open()
        try:
            pf = pq.ParquetFile(source, pre_buffer=True)
            groups = (range(pf.metadata.num_row_groups) if unit.kind == "file"
                      else range(unit.start or 0, unit.end or 0))
            # one row group at a time: pre_buffer fetches what it reads in few large ranged
            # reads, but holds everything it was asked for (all groups at once: the file)
            batches = (pa.Table.from_batches([b]) for g in groups
                       for b in pf.iter_batches(batch_size=batch_rows, row_groups=[g],
                                                columns=list(columns)))
            yield from rebatch(batches, batch_rows)
        finally:
            source.close()
        return
    size = read_at.size
    start, end = (0, size) if unit.kind == "file" else (unit.start or 0, unit.end or 0)
    header_end, first, stop = plan.csv_span(read_at, size, start, end)
    if first >= stop:
        return
    header = read_at(0, header_end)
    if not header.endswith(b"\n"):
        header += b"\n"
    stream = io.BufferedReader(_Concat(header, read_at.open(), first, stop),
                               buffer_size=CSV_BLOCK)
    reader = pacsv.open_csv(
        stream,
        read_options=pacsv.ReadOptions(block_size=CSV_BLOCK, use_threads=False),
        convert_options=pacsv.ConvertOptions(
            include_columns=list(columns),
            column_types={f: pa.float64() for f in features}),
    )
    try:
        yield from rebatch((pa.Table.from_batches([b]) for b in reader), batch_rows)
    finally:
        stream.close()
