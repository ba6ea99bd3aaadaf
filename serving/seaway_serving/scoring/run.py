"""One scoring pod, from settings to its last unit: observe the output, load, score, record.

Order is chosen so a pod that must refuse does so before it writes anything: the output is
checked for another run's results, the model is loaded with the server's loader (digest,
versions, self-check), and every unit of this index is checked for its feature and key columns
(from Parquet footers and CSV headers, cheap) before the first row is scored.

The model is called directly (``estimator.predict`` on float64 rows in the bundle's feature
order, as the server hands them over), not through the server's tree fast path: that path wins
on small online batches, while a batch of tens of thousands of rows is already where
scikit-learn is at its best, and a scoring run must equal ``predict`` to the bit.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from seaway_serving import errors as serving_errors
from seaway_serving import loader, sources
from seaway_serving.scoring import plan, reading
from seaway_serving.scoring.errors import BadInput, ModelRefused, OutputRefused, ScoreFailed
from seaway_serving.scoring.settings import ScoreSettings
from seaway_serving.scoring.store import (
    Output,
    ReadAt,
    StoreError,
    list_input,
    local_path,
    redact,
    sha256_file,
)

log = logging.getLogger("seaway_score")
#: Seconds between progress lines while a unit is being scored.
HEARTBEAT_S = 10.0
#: What scikit-learn says when a model fitted on a DataFrame gets plain rows.
FEATURE_NAMES_WARNING = "X does not have valid feature names"


@dataclass
class Outcome:
    """What the pod did, for the termination message (filled in as it goes)."""

    units_total: int = 0
    done: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    rows: int = 0
    #: the rows of ``skipped`` as their records say (scored by an earlier attempt)
    rows_skipped: int = 0
    model: plan.Model | None = None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _input_error(exc: StoreError) -> ScoreFailed:
    return BadInput(f"cannot read the input: {exc}") if exc.permanent else ScoreFailed(
        f"cannot read the input: {exc}")


def _output_error(exc: StoreError) -> ScoreFailed:
    return OutputRefused(f"cannot use the output: {exc}") if exc.permanent else ScoreFailed(
        f"cannot use the output: {exc}")


# -- the model --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scorer:
    """The loaded model and what the output says about it."""

    estimator: Any
    features: list[str]
    model: plan.Model
    proba: bool
    classes: list[Any]

    def score(self, table: pa.Table, keys: Sequence[str]) -> pa.Table:
        x = np.column_stack([table.column(f).to_numpy(zero_copy_only=False)
                             for f in self.features]).astype(np.float64, copy=False)
        with warnings.catch_warnings():
            # a model fitted on a DataFrame warns on plain rows; the server passes plain rows too
            warnings.filterwarnings("ignore", message=FEATURE_NAMES_WARNING)
            try:
                pred = np.asarray(self.estimator.predict(x))
                proba = np.asarray(self.estimator.predict_proba(x)) if self.proba else None
            except (ValueError, TypeError) as exc:
                raise BadInput(f"the model refused the rows: {type(exc).__name__}: {exc}"
                               ) from None
        arrays: list[pa.Array | pa.ChunkedArray] = [table.column(k) for k in keys]
        names = list(keys)
        columns = pred.reshape(len(pred), -1)
        names += plan.prediction_columns(columns.shape[1])
        arrays += [pa.array(columns[:, i]) for i in range(columns.shape[1])]
        if proba is not None:
            names += plan.proba_columns(self.classes)
            arrays += [pa.array(proba[:, i], type=pa.float64()) for i in range(proba.shape[1])]
        n = table.num_rows
        names += [plan.REVISION_COLUMN, plan.DIGEST_COLUMN]
        arrays += [pa.array(np.full(n, -1 if self.model.revision is None
                                    else self.model.revision, dtype=np.int64),
                            mask=np.full(n, self.model.revision is None)),
                   pa.repeat(pa.scalar(self.model.digest, pa.string()), n)]
        return pa.Table.from_arrays(arrays, names=names)


def load_model(settings: ScoreSettings) -> Scorer:
    """Fetch and load the bundle exactly as ``seaway-serve`` does (same fetcher, same checks)."""
    work = Path(tempfile.mkdtemp(prefix="bundle-", dir=_work_dir(settings)))
    try:
        limits = sources.Limits(max_bytes=settings.max_bundle_bytes,
                                timeout_s=settings.fetch_timeout_s)
        policy = loader.Policy(max_bytes=settings.max_bundle_bytes,
                               pinned_digest=settings.model_digest,
                               allow_unverified=settings.allow_unverified,
                               trusted_types=settings.trusted_types,
                               expected_format=settings.model_format)
        try:
            location = sources.materialize(settings.bundle, work, limits)
            with warnings.catch_warnings():  # the self-check's rows are plain, like ours
                warnings.filterwarnings("ignore", message=FEATURE_NAMES_WARNING)
                loaded = loader.load(location, policy)
        except serving_errors.BundleRefused as exc:
            raise ModelRefused(str(exc)) from None
        except serving_errors.StartupError as exc:  # fetching: the network, the store
            raise ScoreFailed(f"cannot fetch the model: {exc}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    estimator = loaded.estimator
    wants_proba = "predict_proba" in settings.methods
    if wants_proba and not hasattr(estimator, "predict_proba"):
        raise BadInput(f"predict_proba was asked for, but the model ({loaded.manifest.estimator})"
                       " has no predict_proba")
    classes = list(getattr(estimator, "classes_", [])) if wants_proba else []
    model = plan.Model(name=settings.model_name or loaded.manifest.name,
                       revision=settings.revision, digest=loaded.digest)
    log.info("Loaded model %s (%s, %s)", model.name, loaded.manifest.estimator, loaded.digest)
    return Scorer(estimator=estimator, features=[f.name for f in loaded.manifest.inputs],
                  model=model, proba=wants_proba, classes=classes)


def _work_dir(settings: ScoreSettings) -> Path:
    try:
        settings.work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ScoreFailed(f"cannot create the work directory {settings.work_dir}: "
                          f"{exc.strerror or exc} (mount a writable volume there, e.g. an "
                          "emptyDir on /tmp)") from None
    return settings.work_dir


# -- the input --------------------------------------------------------------------------------
def plan_input(settings: ScoreSettings, env: Mapping[str, str], spool: Path
               ) -> tuple[list[plan.Unit], dict[str, int]]:
    """The units of the input and each file's size; raises BadInput for an empty input."""
    try:
        folder, listing = list_input(settings.input_uri, env, settings.fetch_timeout_s)
    except StoreError as exc:
        raise _input_error(exc) from None
    files = plan.select_files(listing, settings.input_format)
    if not folder and not files:  # one file named otherwise: the format must be given
        if not settings.input_format:
            raise BadInput(f"cannot tell the format of {redact(settings.input_uri)} from its "
                           "name: set the input format (csv or parquet)")
        uri, name, size = listing[0]
        files = [plan.SourceFile(uri=uri, name=name, size=size, format=settings.input_format)]
    if not files:
        raise BadInput(f"the input {redact(settings.input_uri)} holds no .csv or .parquet file")
    sizes = {f.uri: f.size for f in files}
    row_groups = None
    if len(files) == 1 and files[0].format == "parquet":
        read_at = ReadAt(files[0].uri, files[0].size, env, settings.fetch_timeout_s, spool)
        with read_at.open() as fh:
            try:
                _, row_groups = reading.parquet_columns(fh)
            except (pa.ArrowException, OSError) as exc:
                raise BadInput(f"{redact(files[0].uri)} is not readable as Parquet: {exc}"
                               ) from None
    return plan.plan_units(files, settings.shards, row_groups), sizes


def check_columns(unit: plan.Unit, read_at: ReadAt, features: Sequence[str],
                  keys: Sequence[str]) -> None:
    """Refuse a unit whose file lacks a feature or key column, naming them all."""
    try:
        if unit.format == "parquet":
            with read_at.open() as fh:
                columns, _ = reading.parquet_columns(fh)
        else:
            _, columns = reading.csv_header(read_at)
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise BadInput(f"{redact(unit.uri)} is not readable as {unit.format}: {exc}") from None
    except StoreError as exc:
        raise _input_error(exc) from None
    missing = plan.missing_columns(features, columns)
    if missing:
        raise BadInput(f"{redact(unit.uri)} lacks the feature column"
                       f"{'s' if len(missing) > 1 else ''} {', '.join(missing)} the model was "
                       f"trained with (its columns: {plan.listing(columns)})")
    missing = plan.missing_columns(keys, columns)
    if missing:
        raise BadInput(f"{redact(unit.uri)} lacks the key column"
                       f"{'s' if len(missing) > 1 else ''} {', '.join(missing)} (its columns: "
                       f"{plan.listing(columns)})")


# -- the output -------------------------------------------------------------------------------
def read_records(output: Output) -> dict[int, dict[str, Any]]:
    records: dict[int, dict[str, Any]] = {}
    for name in output.names(plan.RECORDS_DIR + "/"):
        number = plan.unit_of_record(name)
        if number is None:
            continue
        raw = output.read(name)
        if raw is None:  # removed between the listing and the read
            continue
        try:
            records[number] = plan.check_record(json.loads(raw), name)
        except (ValueError, plan.RecordInvalid) as exc:
            raise OutputRefused(f"the output {redact(output.uri)} holds {name}, which is not "
                                f"a record of seaway-score: {exc}") from None
    return records


def read_manifest(output: Output) -> dict[str, Any] | None:
    raw = output.read(plan.MANIFEST_FILE)
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise OutputRefused(f"the output {redact(output.uri)} holds a {plan.MANIFEST_FILE} that "
                            "is not one of seaway-score")
    return doc


def check_output(output: Output, settings: ScoreSettings, units: Sequence[plan.Unit]
                 ) -> dict[int, dict[str, Any]]:
    """This run's records so far; refuse an output that holds another run's."""
    records = read_records(output)
    other = plan.foreign_run(settings.run_id, records, read_manifest(output))
    if other is not None:
        raise OutputRefused(f"the output {redact(output.uri)} holds the results of another run "
                            f"({other}; this run is {settings.run_id}): write each run to its "
                            "own output, or empty it first")
    changed = plan.changed_units(units, records)
    if changed:
        raise OutputRefused(f"the output {redact(output.uri)} records unit(s) "
                            f"{', '.join(map(str, changed))} of this run from another input "
                            "than the one found now: the input changed during the run")
    return records


class _PartWriter:
    """Writes scored tables to one part file as they come; opened on the first table."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path, self.fmt = path, fmt
        self._writer: pq.ParquetWriter | pacsv.CSVWriter | None = None

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = (pq.ParquetWriter(self.path, table.schema) if self.fmt == "parquet"
                            else pacsv.CSVWriter(self.path, table.schema))
        elif table.schema != self._writer.schema:
            # a key column read from CSV may be typed from another block's values
            table = table.cast(self._writer.schema)
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def score_unit(unit: plan.Unit, read_at: ReadAt, scorer: Scorer, settings: ScoreSettings,
               output: Output, on_rows: Callable[[int], None]) -> dict[str, Any]:
    """Score one unit into its part and write its record; return the record."""
    started = _now()
    name = plan.part_name(unit.number, settings.output_format)
    columns = list(dict.fromkeys([*settings.key_columns, *scorer.features]))
    rows = 0
    sha = None
    size = 0
    with output.new_file(name) as tmp:
        writer = _PartWriter(tmp, settings.output_format)
        try:
            for table in reading.unit_tables(unit, read_at, columns, scorer.features,
                                             settings.batch_rows):
                writer.write(scorer.score(table, settings.key_columns))
                rows += table.num_rows
                on_rows(table.num_rows)
        except pa.ArrowInvalid as exc:
            raise BadInput(f"{redact(unit.uri)} cannot be read: {exc}") from None
        except StoreError as exc:
            raise _input_error(exc) from None
        finally:
            writer.close()
        if rows:
            sha = sha256_file(tmp)
            size = tmp.stat().st_size
        else:
            tmp.write_bytes(b"")  # an empty file is not published: a unit with no rows
    part = name if rows else None
    record = plan.unit_record(run_id=settings.run_id, unit=unit, index=settings.index,
                              model=scorer.model, rows=rows, part=part, sha256=sha, size=size,
                              started=started, finished=_now())
    output.write(plan.record_name(unit.number), json.dumps(record, indent=1).encode())
    return record


# -- the pod ----------------------------------------------------------------------------------
class _Progress:
    """Rows and units so far; a line on stderr per unit and every HEARTBEAT_S in between."""

    def __init__(self, index: int, total: int) -> None:
        self.index, self.total = index, total
        self.done = 0
        self.rows = 0
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="seaway-score-progress",
                                        daemon=True)

    def line(self) -> str:
        return plan.progress_line(index=self.index, done=self.done, total=self.total,
                                  rows=self.rows, seconds=time.monotonic() - self.t0)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            log.info("%s", self.line())

    def add_rows(self, n: int) -> None:
        self.rows += n

    def __enter__(self) -> _Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _inside(inner: str, outer: str) -> bool:
    """Whether the location ``inner`` is ``outer`` or lies beneath it (paths or URIs)."""
    def norm(uri: str) -> str:
        local = local_path(uri)
        return local.resolve().as_posix() if local is not None else uri.rstrip("/")

    a, b = norm(inner), norm(outer)
    return a == b or a.startswith(b + "/")


def score(settings: ScoreSettings, env: Mapping[str, str], outcome: Outcome) -> None:
    """Score this pod's units; fill ``outcome`` as it goes; raise ScoreFailed to refuse."""
    scratch = Path(tempfile.mkdtemp(prefix="score-", dir=_work_dir(settings)))
    try:
        _score(settings, env, outcome, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _score(settings: ScoreSettings, env: Mapping[str, str], outcome: Outcome,
           scratch: Path) -> None:
    if _inside(settings.output_uri, settings.input_uri):
        raise BadInput(f"the output {redact(settings.output_uri)} lies inside the input "
                       f"{redact(settings.input_uri)}: its parts would be read as input")
    units, sizes = plan_input(settings, env, scratch)
    outcome.units_total = len(units)
    mine = plan.units_of_index(units, settings.shards, settings.index)
    try:
        output = Output(settings.output_uri, env, settings.fetch_timeout_s, scratch)
        records = check_output(output, settings, units)
    except StoreError as exc:
        raise _output_error(exc) from None
    scorer = load_model(settings)
    outcome.model = scorer.model
    added = plan.prediction_columns(1) + (plan.proba_columns(scorer.classes)
                                          if scorer.proba else [])
    clash = plan.clashing_keys(settings.key_columns, added)
    if clash:
        raise BadInput(f"key column(s) {', '.join(clash)} would be overwritten by the scorer's "
                       f"own columns ({', '.join(added)}, {plan.REVISION_COLUMN}, "
                       f"{plan.DIGEST_COLUMN}): leave them out of the key columns")
    readers = {u.uri: ReadAt(u.uri, sizes[u.uri], env, settings.fetch_timeout_s, scratch)
               for u in mine}
    outcome.skipped = [u.number for u in mine if u.number in records]
    outcome.done = list(outcome.skipped)
    outcome.rows_skipped = sum(int(records[u].get("rows") or 0) for u in outcome.skipped)
    todo = [u for u in mine if u.number not in records]
    for unit in todo:
        check_columns(unit, readers[unit.uri], scorer.features, settings.key_columns)
    log.info("Index %d of %d: %d of %d units are this pod's, %d recorded already, %d to score",
             settings.index, settings.shards, len(mine), len(units), len(outcome.skipped),
             len(todo))
    with _Progress(settings.index, len(mine)) as progress:
        progress.done = len(outcome.skipped)
        for unit in todo:
            t0 = time.monotonic()
            try:
                record = score_unit(unit, readers[unit.uri], scorer, settings, output,
                                    progress.add_rows)
            except StoreError as exc:  # the input was read, so writing failed
                raise _output_error(exc) from None
            outcome.done.append(unit.number)
            outcome.rows += int(record["rows"])
            progress.done += 1
            log.info("Scored unit %d into %s: %d rows in %.2fs; %s", unit.number,
                     record["part"] or "no part (no rows)", record["rows"],
                     time.monotonic() - t0, progress.line())
    for reader in readers.values():
        reader.close()
    try:
        finish(output, settings, units, scorer.model)
    except StoreError as exc:
        raise _output_error(exc) from None


def finish(output: Output, settings: ScoreSettings, units: Sequence[plan.Unit],
           model: plan.Model) -> bool:
    """Write the manifest if every unit is recorded (by whichever pod finds so first)."""
    records = read_records(output)
    missing = [u.number for u in units if u.number not in records]
    if missing:
        log.info("Left the manifest to the last pod: %d of %d units not recorded yet",
                 len(missing), len(units))
        return False
    manifest = plan.build_manifest(
        run_id=settings.run_id, model=model, input_uri=redact(settings.input_uri),
        output_uri=redact(settings.output_uri), output_format=settings.output_format,
        key_columns=settings.key_columns, methods=settings.methods, units=units,
        records=records)
    output.write(plan.MANIFEST_FILE, (json.dumps(manifest, indent=1) + "\n").encode())
    log.info("Wrote %s: %d units, %d rows", plan.MANIFEST_FILE, manifest["totals"]["units"],
             manifest["totals"]["rows"])
    return True
