"""The batch scorer's pure logic: units, ranges, records, manifest, settings, messages."""

from __future__ import annotations

import itertools
import json
import random

import pyarrow as pa
import pytest

from seaway_serving import contract
from seaway_serving.scoring import main as score_main
from seaway_serving.scoring import plan, reading, settings
from seaway_serving.scoring.errors import InvalidSettings

MODEL = plan.Model(name="churn", revision=2, digest="sha256:" + "a" * 64)


def test_split_covers_the_range_once_in_near_equal_pieces() -> None:
    assert plan.split(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert plan.split(2, 4) == [(0, 0), (0, 1), (1, 1), (1, 2)]
    for total, shards in [(0, 3), (1, 1), (97, 7), (1000, 64)]:
        ranges = plan.split(total, shards)
        assert len(ranges) == shards and ranges[0][0] == 0 and ranges[-1][1] == total
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
        lengths = [b - a for a, b in ranges]
        assert max(lengths) - min(lengths) <= 1


def test_select_files_sorts_by_name_and_skips_markers() -> None:
    listing = [("s3://b/d/y.parquet", "y.parquet", 5), ("s3://b/d/_SUCCESS", "_SUCCESS", 0),
               ("s3://b/d/a/x.csv", "a/x.csv", 7), ("s3://b/d/.x.csv.crc", ".x.csv.crc", 1),
               ("s3://b/d/README.md", "README.md", 3), ("s3://b/d/_tmp/z.csv", "_tmp/z.csv", 2)]
    files = plan.select_files(listing, None)
    assert [(f.name, f.format) for f in files] == [("a/x.csv", "csv"), ("y.parquet", "parquet")]
    assert [f.format for f in plan.select_files(listing, "parquet")] == ["parquet", "parquet"]


def test_units_of_several_files_are_the_files() -> None:
    files = [plan.SourceFile(f"/d/{n}", n, 10, "csv") for n in ("a.csv", "b.csv", "c.csv")]
    units = plan.plan_units(files, shards=2)
    assert [(u.number, u.uri, u.kind) for u in units] == [
        (0, "/d/a.csv", "file"), (1, "/d/b.csv", "file"), (2, "/d/c.csv", "file")]
    assert [u.number for u in plan.units_of_index(units, 2, 0)] == [0, 2]
    assert [u.number for u in plan.units_of_index(units, 2, 1)] == [1]
    assert units[0].source() == {"uri": "/d/a.csv", "format": "csv", "kind": "file"}


def test_a_single_file_is_split_in_as_many_units_as_shards() -> None:
    csv = [plan.SourceFile("/d/big.csv", "big.csv", 1000, "csv")]
    units = plan.plan_units(csv, shards=3)
    assert [(u.kind, u.start, u.end) for u in units] == [
        ("bytes", 0, 333), ("bytes", 333, 666), ("bytes", 666, 1000)]
    parquet = [plan.SourceFile("/d/big.parquet", "big.parquet", 1000, "parquet")]
    units = plan.plan_units(parquet, shards=4, row_groups=6)
    assert [(u.kind, u.start, u.end) for u in units] == [
        ("rowGroups", 0, 1), ("rowGroups", 1, 3), ("rowGroups", 3, 4), ("rowGroups", 4, 6)]
    with pytest.raises(ValueError, match="row groups"):
        plan.plan_units(parquet, shards=2)


class Bytes:
    """``read_at`` over bytes, counting what was read."""

    def __init__(self, data: bytes) -> None:
        self.data, self.size, self.read = data, len(data), 0

    def __call__(self, offset: int, n: int) -> bytes:
        self.read += n
        return self.data[offset:offset + n]


def _lines_of_ranges(data: bytes, shards: int) -> list[bytes]:
    read_at = Bytes(data)
    got: list[bytes] = []
    for start, end in plan.split(len(data), shards):
        header_end, first, stop = plan.csv_span(read_at, len(data), start, end)
        assert data[:header_end] == data.split(b"\n", 1)[0] + b"\n" or header_end == len(data)
        got += data[first:stop].splitlines()
    return got


@pytest.mark.parametrize("seed", range(20))
def test_csv_ranges_hold_every_line_exactly_once(seed: int) -> None:
    rng = random.Random(seed)
    rows = [",".join(str(rng.randint(0, 10 ** rng.randint(0, 6))) for _ in range(3))
            for _ in range(rng.randint(0, 40))]
    data = ("a,b,c\n" + "\n".join(rows) + ("\n" if rng.random() < 0.7 else "")).encode()
    if not rows:
        data = b"a,b,c\n"
    for shards in (1, 2, 3, 7, 64):
        assert _lines_of_ranges(data, shards) == [r.encode() for r in rows]


def test_csv_range_edge_on_a_line_start_and_crlf() -> None:
    data = b"h1,h2\r\n1,2\r\n3,4\r\n5,6\r\n"
    read_at = Bytes(data)
    # a range starting exactly at a line start owns that line; the one before does not
    assert plan.csv_span(read_at, len(data), 0, 12) == (7, 7, 12)
    assert plan.csv_span(read_at, len(data), 12, len(data)) == (7, 12, len(data))
    # a range inside the header owns nothing before the first data line
    assert plan.csv_span(read_at, len(data), 0, 3) == (7, 7, 7)
    # a file without a newline is a header and no rows
    assert plan.csv_span(Bytes(b"a,b"), 3, 0, 3) == (3, 3, 3)


def test_csv_span_reads_near_its_edges_only() -> None:
    data = b"a\n" + b"1234567\n" * 100_000
    read_at = Bytes(data)
    plan.csv_span(read_at, len(data), 400_000, 500_000)
    assert read_at.read <= 4 * plan.SCAN_CHUNK


def test_rebatch_cuts_exact_batches_in_order() -> None:
    tables = [pa.table({"x": list(range(a, b))}) for a, b in
              [(0, 3), (3, 3), (3, 10), (10, 11), (11, 25)]]
    out = list(reading.rebatch(tables, 4))
    assert [t.num_rows for t in out] == [4, 4, 4, 4, 4, 4, 1]
    assert [v for t in out for v in t.column("x").to_pylist()] == list(range(25))
    assert list(reading.rebatch([], 4)) == []


def test_output_columns_and_clashes() -> None:
    assert plan.prediction_columns(1) == ["prediction"]
    assert plan.prediction_columns(2) == ["prediction_0", "prediction_1"]
    assert plan.proba_columns([0, 1]) == ["proba_0", "proba_1"]
    assert plan.proba_columns(["no", "yes"]) == ["proba_no", "proba_yes"]
    added = ["prediction", "proba_0"]
    assert plan.clashing_keys(["id", "prediction", "seaway_digest", "prediction_date"],
                              added) == ["prediction", "seaway_digest"]


def test_record_names() -> None:
    assert plan.part_name(7, "parquet") == "part-00007.parquet"
    assert plan.record_name(7) == "_units/00007.json"
    assert plan.unit_of_record("_units/00007.json") == 7
    assert plan.unit_of_record("_units/123456.json") == 123456
    assert plan.unit_of_record("_units/x.json") is None
    assert plan.unit_of_record("part-00007.parquet") is None


def _record(unit: plan.Unit, run_id: str = "run-1", rows: int = 10) -> dict[str, object]:
    return plan.unit_record(run_id=run_id, unit=unit, index=unit.number % 2, model=MODEL,
                            rows=rows, part=plan.part_name(unit.number, "parquet") if rows
                            else None, sha256="sha256:" + "b" * 64 if rows else None,
                            size=100 if rows else 0,
                            started=f"2026-01-01T00:00:0{unit.number}.000Z",
                            finished=f"2026-01-01T00:01:0{unit.number}.000Z")


def test_records_round_trip_and_are_checked() -> None:
    unit = plan.Unit(3, "/d/a.csv", "csv", "bytes", 10, 20)
    doc = json.loads(json.dumps(_record(unit)))
    assert plan.check_record(doc, "_units/00003.json") == doc
    assert doc["source"] == {"uri": "/d/a.csv", "format": "csv", "kind": "bytes",
                             "start": 10, "end": 20}
    with pytest.raises(plan.RecordInvalid, match="not a seaway-score unit record"):
        plan.check_record({"unit": 3}, "_units/00003.json")
    with pytest.raises(plan.RecordInvalid, match="no rows"):
        plan.check_record({**doc, "rows": "10"}, "_units/00003.json")


def test_foreign_runs_and_changed_inputs() -> None:
    units = [plan.Unit(i, f"/d/{i}.csv", "csv") for i in range(3)]
    mine = {0: _record(units[0]), 2: _record(units[2])}
    assert plan.foreign_run("run-1", mine, None) is None
    assert plan.foreign_run("run-1", mine, {"runId": "run-1"}) is None
    assert plan.foreign_run("run-1", {**mine, 1: _record(units[1], "run-0")}, None) == "run-0"
    assert plan.foreign_run("run-1", mine, {"runId": "old"}) == "old"
    moved = {0: _record(plan.Unit(0, "/d/other.csv", "csv"))}
    assert plan.changed_units(units, mine) == []
    assert plan.changed_units(units, moved) == [0]


def test_manifest_is_built_from_the_records_alone() -> None:
    units = [plan.Unit(i, "/d/big.csv", "csv", "bytes", i * 10, i * 10 + 10) for i in range(3)]
    records = {0: _record(units[0]), 1: _record(units[1], rows=0), 2: _record(units[2])}
    kwargs = {"run_id": "run-1", "model": MODEL, "input_uri": "/d/big.csv",
              "output_uri": "s3://b/out", "output_format": "parquet", "key_columns": ["id"],
              "methods": ["predict"], "units": units}
    manifest = plan.build_manifest(records=records, **kwargs)  # type: ignore[arg-type]
    assert manifest["totals"] == {"units": 3, "rows": 20, "parts": 2, "bytes": 200}
    assert manifest["startedAt"] == "2026-01-01T00:00:00.000Z"
    assert manifest["finishedAt"] == "2026-01-01T00:01:02.000Z"
    assert [u["part"] for u in manifest["units"]] == ["part-00000.parquet", None,
                                                      "part-00002.parquet"]
    assert (manifest["runId"], manifest["revision"], manifest["digest"]) == (
        "run-1", 2, MODEL.digest)
    # two pods that both find every unit recorded write the same manifest
    assert plan.build_manifest(records=dict(reversed(records.items())), **kwargs) == manifest
    with pytest.raises(KeyError):
        plan.build_manifest(records={0: records[0]}, **kwargs)  # type: ignore[arg-type]


def test_termination_message_follows_the_contract() -> None:
    doc = plan.termination(index=1, units_total=7, done=[4, 1], skipped=[1], rows=99,
                           rows_skipped=40, seconds=1.23456, model=MODEL, reason="Succeeded",
                           message="")
    assert doc == {"index": 1, "unitsTotal": 7, "unitsDone": [1, 4], "unitsSkipped": [1],
                   "rows": 99, "rowsSkipped": 40, "seconds": 1.235, "revision": 2,
                   "digest": MODEL.digest, "reason": "Succeeded", "message": ""}
    assert set(contract.SCORE_REASONS) >= {"ModelRefused", "BadInput", "OutputRefused"}
    with pytest.raises(ValueError):
        plan.termination(index=0, units_total=0, done=[], skipped=[], rows=0, seconds=0,
                         model=None, reason="Oops", message="")
    long = plan.termination(index=0, units_total=0, done=[], skipped=[], rows=0, seconds=0,
                            model=None, reason="Failed", message="x" * 10_000)
    text = score_main.termination_text(long)
    assert len(text.encode()) <= score_main.TERMINATION_CAP
    assert json.loads(text)["message"].endswith("...")


def test_unit_lists_too_long_for_the_cap_are_left_out_counts_kept() -> None:
    mine = list(range(2, 30_000, 3))  # index 2 of 3 over 30,000 files
    doc = plan.termination(index=2, units_total=30_000, done=mine, skipped=mine[:50],
                           rows=10**9, rows_skipped=5000, seconds=99.0, model=MODEL,
                           reason="Succeeded", message="scored")
    back = json.loads(score_main.termination_text(doc))
    assert len(json.dumps(back, separators=(",", ":")).encode()) <= score_main.TERMINATION_CAP
    assert "unitsDone" not in back and "unitsSkipped" not in back
    assert (back["unitsTotal"], back["rows"], back["rowsSkipped"], back["message"]) == (
        30_000, 10**9, 5000, "scored")


def test_progress_line() -> None:
    assert plan.progress_line(index=2, done=1, total=3, rows=150_000, seconds=2.0) == (
        "Index 2: 1/3 units done, 150,000 rows scored in 2.0s (75,000 rows/s)")


def _env(**extra: str) -> dict[str, str]:
    env = dict(contract.score_env(input_uri="s3://d/in/", output_uri="s3://d/out/", shards=3,
                                  run_id="uid-1", key_columns=("id", "day"),
                                  methods=("predict", "predict_proba"), batch_rows=500))
    env.update(contract.server_env(bundle="s3://m/b/", model_format="sklearn-joblib",
                                   digest="sha256:" + "c" * 64, allow_unverified=False,
                                   model_name="churn", revision=4, port=8080))
    env.update(extra)
    return env


def test_settings_from_the_operators_environment() -> None:
    s = settings.parse(_env(JOB_COMPLETION_INDEX="2"))
    assert (s.input_uri, s.output_uri, s.shards, s.index, s.run_id) == (
        "s3://d/in/", "s3://d/out/", 3, 2, "uid-1")
    assert s.key_columns == ("id", "day") and s.methods == ("predict", "predict_proba")
    assert (s.batch_rows, s.output_format, s.input_format) == (500, "parquet", None)
    assert (s.bundle, s.model_digest, s.revision, s.model_name) == (
        "s3://m/b/", "sha256:" + "c" * 64, 4, "churn")
    assert str(s.termination_log) == contract.KUBE_TERMINATION_LOG


@pytest.mark.parametrize(("extra", "message"), [
    ({"SEAWAY_SCORE_SHARD": "3"}, "unknown setting SEAWAY_SCORE_SHARD"),
    ({"JOB_COMPLETION_INDEX": "3"}, "JOB_COMPLETION_INDEX=3 is not below SEAWAY_SCORE_SHARDS=3"),
    ({}, "JOB_COMPLETION_INDEX is not set"),
    ({"JOB_COMPLETION_INDEX": "x"}, "JOB_COMPLETION_INDEX='x' is not a whole number"),
    ({"JOB_COMPLETION_INDEX": "0", "SEAWAY_SCORE_METHODS": "predict_proba"},
     "expected predict or predict,predict_proba"),
    ({"JOB_COMPLETION_INDEX": "0", "SEAWAY_MODEL_DIGEST": "sha256:XY"},
     "SEAWAY_MODEL_DIGEST must look like"),
    ({"JOB_COMPLETION_INDEX": "0", "SEAWAY_SCORE_OUTPUT_FORMAT": "json"},
     "SEAWAY_SCORE_OUTPUT_FORMAT='json': expected one of parquet, csv"),
    ({"JOB_COMPLETION_INDEX": "0", "SEAWAY_SCORE_BATCH_ROWS": "0"},
     "SEAWAY_SCORE_BATCH_ROWS=0 must be at least 1"),
    ({"JOB_COMPLETION_INDEX": "0", "SEAWAY_SCORE_RUN_ID": "a b"}, "SEAWAY_SCORE_RUN_ID='a b'"),
])
def test_settings_refusals_name_the_variable(extra: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidSettings) as info:
        settings.parse(_env(**extra))
    assert message in str(info.value)


def test_settings_defaults_for_a_single_shard_run_by_hand() -> None:
    s = settings.parse({"SEAWAY_SCORE_INPUT": "in.csv", "SEAWAY_SCORE_OUTPUT": "out",
                        "SEAWAY_SCORE_RUN_ID": "r1", "SEAWAY_BUNDLE": "b/"})
    assert (s.shards, s.index, s.methods, s.revision, s.termination_log) == (
        1, 0, ("predict",), None, None)
    with pytest.raises(InvalidSettings, match="SEAWAY_SCORE_INPUT is not set"):
        settings.parse({"SEAWAY_SCORE_OUTPUT": "out", "SEAWAY_SCORE_RUN_ID": "r1",
                        "SEAWAY_BUNDLE": "b/"})
