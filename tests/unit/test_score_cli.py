"""``seaway score`` without a cluster: the ScoringJob it writes, one-line errors for mistakes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner

from seaway.cli import score
from seaway.cli.main import main

BASE: dict[str, Any] = {
    "name": "churn-score-1", "model": "churn", "from_retrain_job": False, "revision": None,
    "input_uri": "s3://data/customers/", "output_uri": "s3://scores/churn/", "input_format": None,
    "output_format": "parquet", "key_columns": None, "parallelism": 1, "shards": None,
    "secret": None, "output_secret": None,
}  # fmt: skip


def test_the_manifest_is_the_one_a_user_would_apply() -> None:
    body = score.build(**{**BASE, "revision": 3, "key_columns": "id, day", "parallelism": 3,
                          "shards": 6, "secret": "store"})  # fmt: skip
    assert body["kind"] == "ScoringJob" and body["metadata"] == {"name": "churn-score-1"}
    spec = body["spec"]
    assert spec["model"] == {"modelDeployment": "churn", "revision": 3}
    assert spec["input"] == {"uri": "s3://data/customers/", "keyColumns": ["id", "day"],
                             "secretRef": {"name": "store"}}  # fmt: skip
    assert spec["output"]["secretRef"] == {"name": "store"}
    assert (spec["parallelism"], spec["shards"]) == (3, 6)


def test_a_retrainjobs_bundle() -> None:
    body = score.build(**{**BASE, "from_retrain_job": True})
    assert body["spec"]["model"] == {"retrainJob": "churn"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"output_uri": "https://scores.example/"}, "must be a file:// or s3:// URI"),
        ({"input_uri": "customers.csv"}, "is not a URI"),
        ({"input_uri": "ftp://data/x.csv"}, "must be a file://, http(s):// or s3:// URI"),
        ({"parallelism": 4, "shards": 2}, "fewer than --parallelism 4"),
        ({"key_columns": ",".join(f"c{i}" for i in range(40))}, "spec.input.keyColumns"),
    ],
)
def test_mistakes_are_named(change: dict[str, Any], message: str) -> None:
    import click

    with pytest.raises(click.ClickException) as caught:
        score.build(**{**BASE, **change})
    assert message in caught.value.format_message()


def test_default_names_fit_an_indexed_jobs_pod_names() -> None:
    now = datetime(2026, 11, 30, 9, 0, 0, tzinfo=UTC)
    assert score.default_name("churn", now) == "churn-score-20261130-090000"
    long = score.default_name("a" * 200, now)
    assert len(long) <= score.NAME_BUDGET and long.endswith("-score-20261130-090000")


def test_help_and_option_errors_are_one_line() -> None:
    runner = CliRunner()
    assert "Usage:" in runner.invoke(main, ["score", "--help"]).output
    result = runner.invoke(main, ["score", "churn", "--input", "s3://d/", "--output",
                                  "s3://o/", "--parallelism", "65"])  # fmt: skip
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--parallelism" in result.output
    both = runner.invoke(main, ["score", "churn", "--input", "s3://d/", "--output", "s3://o/",
                                "--revision", "2", "--from-retrainjob"])  # fmt: skip
    assert both.exit_code == 2 and "drop one of them" in both.output
