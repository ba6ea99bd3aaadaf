"""The model report's pure layers: assembly, figures, escaping, SVG charts, the JSON summary."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from click.testing import CliRunner

from seaway import egress
from seaway.cli.main import main
from seaway.metrics import report as prom
from seaway.report import assemble, fmt, model, queries, render, summary, svg
from tests.support import reportpage

NOW = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script>&'
DIGEST = "sha256:" + "ab" * 32


def md_body(**status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "seaway.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "churn", "namespace": "ml", "generation": 3},
        "spec": {
            "model": {"uri": "s3://models/churn/v3/", "digest": DIGEST},
            "server": {"image": "seaway/server:1"},
        },
        "status": {
            "stableRevision": 2,
            "weights": [{"revision": 2, "weight": 100}],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Available",
                    "lastTransitionTime": "2026-11-19T10:00:00Z",
                }
            ],
            "revisions": [
                {
                    "number": 1,
                    "templateHash": "a1",
                    "modelURI": "s3://models/churn/v1/",
                    "digest": DIGEST,
                    "createdAt": "2026-11-18T09:00:00Z",
                    "readyAt": "2026-11-18T09:01:00Z",
                    "finishedAt": "2026-11-19T10:00:00Z",
                    "fate": "Superseded",
                },
                {
                    "number": 2,
                    "templateHash": "a2",
                    "modelURI": f"s3://models/churn/{HOSTILE}/",
                    "digest": DIGEST,
                    "createdAt": "2026-11-19T09:58:00Z",
                    "createdBy": "retrainjob/churn-weekly#4",
                    "readyAt": "2026-11-19T09:59:00Z",
                    "fate": "Stable",
                },
                {
                    "number": 3,
                    "templateHash": "a3",
                    "modelURI": "s3://models/churn/v3/",
                    "createdAt": "2026-11-20T08:00:00Z",
                    "finishedAt": "2026-11-20T08:05:00Z",
                    "fate": "Failed",
                    "reason": "AnalysisFailed",
                    "message": f"error ratio 0.31 > maxErrorRatio 0.1 {HOSTILE}",
                },
            ],
            **status,
        },
    }


RETRAIN_JOB = {
    "apiVersion": "seaway.dev/v1alpha1",
    "kind": "RetrainJob",
    "metadata": {"name": "churn-weekly", "namespace": "ml"},
    "spec": {
        "modelDeployment": "churn",
        "schedule": "0 3 * * 1",
        "dataset": {"uri": "s3://data/churn.csv", "target": "churned"},
        "estimator": {"importPath": "sklearn.linear_model.LogisticRegression"},
        "validation": {"metric": "roc_auc", "minScore": "0.8", "minImprovement": "0.005"},
        "output": {"uri": "s3://models/churn/runs/"},
    },
    "status": {
        "runs": [
            {
                "number": 4,
                "jobName": "churn-weekly-4",
                "trigger": "schedule",
                "startedAt": "2026-11-19T09:00:00Z",
                "finishedAt": "2026-11-19T09:50:00Z",
                "result": "Succeeded",
                "candidateScore": "0.9125",
                "incumbentScore": "0.8875",
                "decision": "Promoted",
            },
            {
                "number": 3,
                "jobName": "churn-weekly-3",
                "trigger": "schedule",
                "startedAt": "2026-11-12T09:00:00Z",
                "finishedAt": "2026-11-12T09:40:00Z",
                "result": "Succeeded",
                "candidateScore": "0.88",
                "incumbentScore": "0.8875",
                "decision": "NotPromoted",
            },
        ]
    },
}
OTHER_JOB = {**RETRAIN_JOB, "metadata": {"name": "other"}, "spec": {
    **RETRAIN_JOB["spec"], "modelDeployment": "fraud"}}  # fmt: skip

EVENTS = [
    {
        "involvedObject": {"kind": "ModelDeployment", "name": "churn"},
        "type": "Warning",
        "reason": "RolledBack",
        "message": f"Reverted r3: AnalysisFailed {HOSTILE}",
        "lastTimestamp": "2026-11-20T08:05:00Z",
    },
    {
        "involvedObject": {"kind": "ModelDeployment", "name": "fraud"},
        "type": "Normal",
        "reason": "Promoted",
        "message": "not ours",
        "lastTimestamp": "2026-11-20T08:06:00Z",
    },
    {
        "involvedObject": {"kind": "RetrainJob", "name": "churn-weekly"},
        "type": "Normal",
        "reason": "CandidatePromoted",
        "message": "run 4 promoted",
        "eventTime": "2026-11-19T09:50:00.123456Z",
    },
]


def sample(value: float, **labels: str) -> model.Sample:
    return model.Sample(labels, value)


def answers(**overrides: Any) -> model.Answers:
    start = NOW - timedelta(days=7)
    t0 = start.timestamp()
    ts = [t0 + 6048 * i for i in range(5)]
    instant = {
        "requests": (sample(1200.4, revision="2"), sample(99.6, revision="3")),
        "errors": (sample(3.0, revision="2"), sample(31.2, revision="3")),
        "p50": (sample(0.0042, revision="2"), sample(math.nan, revision="3")),
        "p99": (sample(0.0213, revision="2"), sample(0.25, revision="3")),
        "feature_now": (
            sample(0.05, revision="2", feature="tenure"),
            sample(0.31, revision="2", feature=HOSTILE),
            sample(0.12, revision="3", feature="tenure"),
        ),
        "feature_peak": (
            sample(0.09, revision="2", feature="tenure"),
            sample(0.4, revision="2", feature=HOSTILE),
        ),
        "prediction_now": (sample(0.02, revision="2"),),
        "prediction_peak": (sample(0.03, revision="2"),),
        "rows": (sample(4000, revision="2"),),
    }
    ranges = {
        "rate": (
            model.Curve({"revision": "2"}, tuple((t, 2.0) for t in ts)),
            model.Curve({"revision": "3"}, ((ts[3], 2.0), (ts[4], 0.0))),
        ),
        "error_rate": (model.Curve({"revision": "3"}, ((ts[3], 0.5),)),),
        "p99": (model.Curve({"revision": "2"}, tuple((t, 0.02) for t in ts)),),
    }
    values: dict[str, Any] = {
        "source_name": "router",
        "measured_at": NOW,
        "start": start,
        "step_seconds": 6048,
        "instant": instant,
        "ranges": ranges,
        "queries": (("window requests", 'sum by (revision) (x{a="b"})'),),
    }
    values.update(overrides)
    return model.Answers(**values)


def build(**kwargs: Any) -> model.Report:
    values: dict[str, Any] = {
        "now": NOW,
        "window_seconds": 7 * 86400,
        "retrain_job_bodies": [RETRAIN_JOB, OTHER_JOB],
        "event_bodies": EVENTS,
        "answers": answers(),
        "prometheus": "127.0.0.1:9090",
    }
    values.update(kwargs)
    return assemble.build(md_body(), **values)


@pytest.fixture
def page() -> reportpage.Page:
    return reportpage.parse(render.page(build()))


def test_every_revision_is_listed_with_its_fate_dates_and_weight(page: reportpage.Page) -> None:
    rows = page.rows("revisions-table")
    assert sorted(rows) == ["1", "2", "3"]
    r1, r2, r3 = rows["1"].cells, rows["2"].cells, rows["3"].cells
    assert (r1["fate"], r1["created"], r1["ended"]) == (
        "Superseded",
        "2026-11-18 09:00:00 UTC",
        "2026-11-19 10:00:00 UTC",
    )
    assert (r2["fate"], r2["role"], r2["weight"], r2["createdBy"]) == (
        "Stable",
        "stable",
        "100%",
        "retrainjob/churn-weekly#4",
    )
    assert (r3["fate"], r3["reason"], r3["weight"]) == ("Failed", "AnalysisFailed", "-")
    assert r2["digest"] == "sha256:" + "ab" * 6
    # newest first
    assert [r.attrs["data-revision"] for r in page.tables["revisions-table"][1:]] == [
        "3", "2", "1"
    ]  # fmt: skip


def test_every_user_string_is_escaped() -> None:
    text = render.page(build())
    assert "<script>" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in text
    parsed = reportpage.parse(text)
    # the escaped text reads back as written, in the model URI, a message and an Event
    assert parsed.rows("revisions-table")["2"].cells["model"] == f"s3://models/churn/{HOSTILE}/"
    assert HOSTILE in parsed.texts["revisions"]
    assert HOSTILE in parsed.texts["events"]
    assert "script" not in parsed.tags


def test_the_page_is_self_contained(page: reportpage.Page) -> None:
    assert page.links == []  # no href, no src: nothing to fetch
    assert "script" not in page.tags
    assert page.title == "Model report: ml/churn"


def test_traffic_figures_come_from_prometheus_and_are_formatted_once(
    page: reportpage.Page,
) -> None:
    rows = page.rows("traffic-table")
    assert rows["2"].cells == {
        "revision": "r2",
        "share": "92.3%",  # 1200.4 / 1300
        "requests": "1,200",
        "errors": "3",
        "errorRatio": "0.25%",
        "p50": "4.2 ms",
        "p99": "21 ms",
    }
    assert rows["3"].cells["p50"] == "-"  # NaN from histogram_quantile: no figure
    assert rows["3"].cells["errorRatio"] == "31.33%"
    assert page.queries == {"window requests": 'sum by (revision) (x{a="b"})'}
    assert page.ids["measured-at"]["data-unix"] == str(int(NOW.timestamp()))


def test_drift_cells_carry_the_psi_now_and_at_its_peak(page: reportpage.Page) -> None:
    rows = page.rows("drift-table", key="data-feature")
    assert sorted(rows) == [HOSTILE, "tenure"]
    tenure = rows["tenure"]
    assert tenure.cells["r2"] == "0.050 / 0.090"
    assert tenure.cell_attrs["r2"]["class"] == "n psi-none"
    assert tenure.cell_attrs["r3"]["class"] == "n psi-moderate"
    assert tenure.cells["r3"] == "0.120 / -"
    assert rows[HOSTILE].cell_attrs["r2"]["class"] == "n psi-significant"
    prediction = page.rows("drift-table", key="data-prediction")["true"]
    assert prediction.cells["r2"] == "0.020 / 0.030"


def test_retraining_runs_show_candidate_and_production_scores(page: reportpage.Page) -> None:
    runs = page.rows("runs-churn-weekly", key="data-run")
    assert runs["4"].cells["candidate"] == "0.9125"
    assert runs["4"].cells["incumbent"] == "0.8875"
    assert runs["4"].cells["improvement"] == "+0.025"
    assert runs["3"].cells["improvement"] == "-0.0075"
    assert runs["3"].cells["decision"] == "NotPromoted"
    assert "runs-other" not in page.tables  # trains for another ModelDeployment
    assert "gate: minScore 0.8, minImprovement 0.005" in page.texts["retraining"]


def test_the_summary_says_what_serves_what_changed_and_whether_the_new_one_is_better(
    page: reportpage.Page,
) -> None:
    text = page.texts["summary"]
    assert "Revision 2 is the stable revision with 100% of live traffic" in text
    assert "Revision 3, created 2026-11-20 08:00:00 UTC by user, was reverted (AnalysisFailed)" in (
        text
    )
    assert "1,300 requests, 34 server errors (2.63%)" in text
    assert (
        "RetrainJob churn-weekly run 4: the candidate scored 0.9125 roc_auc against the model in"
        " production's 0.8875 (+0.025); decision: Promoted."
    ) in text
    assert f"feature {HOSTILE} on revision 2, PSI 0.310 (significant shift)" in text


def test_events_are_the_subjects_own_newest_first(page: reportpage.Page) -> None:
    rows = page.tables["events-table"][1:]
    assert [r.cells["reason"] for r in rows] == ["RolledBack", "CandidatePromoted"]
    assert rows[1].cells["time"] == "2026-11-19 09:50:00 UTC"


def test_without_prometheus_the_page_says_what_is_missing() -> None:
    note = "Prometheus not given (--prometheus URL): traffic, errors, latency and drift omitted."
    text = render.page(build(answers=None, missing=[note], retrain_job_bodies=[]))
    page = reportpage.parse(text)
    assert note in page.texts["missing"]
    assert "Not available" in page.texts["traffic"] and "Not available" in page.texts["drift"]
    assert "traffic-table" not in page.tables and "drift-table" not in page.tables
    assert sorted(page.rows("revisions-table")) == ["1", "2", "3"]
    assert "No RetrainJob trains for churn" in page.texts["notes"]
    assert "retraining" not in page.texts


def test_empty_prometheus_answers_are_named_as_missing() -> None:
    empty = answers(instant={}, ranges={})
    report = build(answers=empty)
    assert report.traffic is None and report.drift is None and report.charts == ()
    assert any("no requests of churn over the last 7d" in m for m in report.missing)
    assert any("no drift series" in m for m in report.missing)


def test_experiment_section_reports_the_leader_and_its_confidence() -> None:
    experiment = {
        "variants": [
            {"revision": 1, "requests": 400, "rewards": "40", "weight": 30,
             "bestProbability": "0.03"},
            {"revision": 2, "requests": 600, "rewards": "90", "weight": 70,
             "bestProbability": "0.97"},
        ],
        "bestRevision": 2,
        "confidence": "0.97",
        "measuredAt": "2026-11-20T11:59:00Z",
    }  # fmt: skip
    report = assemble.build(md_body(experiment=experiment), now=NOW, window_seconds=3600)
    page = reportpage.parse(render.page(report))
    rows = page.rows("experiment-table")
    assert rows["2"].cells == {
        "revision": "r2",
        "weight": "70%",
        "requests": "600",
        "rewards": "90",
        "meanReward": "0.15",
        "bestProbability": "97.0%",
    }
    assert (
        "Revision 2 leads; the probability that it is the best is 97.0%"
        in (page.texts["experiment"])
    )
    assert "revision 2 leads (probability it is best: 97.0%)" in page.texts["summary"]


def _svg(text: str) -> ET.Element:
    return ET.fromstring(text)


NS = "{http://www.w3.org/2000/svg}"


def test_line_chart_draws_a_line_per_series_and_breaks_it_at_gaps() -> None:
    nan = math.nan
    chart = model.Chart(
        "Share of requests",
        "%",
        (
            model.Series("r1", ((0, 100.0), (10, 80.0), (20, nan), (30, 50.0), (40, 40.0))),
            model.Series("r2", ((30, 50.0),)),
        ),
        start=0,
        end=40,
        y_floor_max=100,
    )
    root = _svg(svg.line_chart(chart))
    lines = root.findall(f"{NS}polyline")
    assert len(lines) == 2  # r1 broken at the NaN
    assert all(line.get("stroke") == svg.colour("r1") for line in lines)
    dots = root.findall(f"{NS}circle")
    assert len(dots) == 1 and dots[0].get("fill") == svg.colour("r2")
    first = [tuple(map(float, p.split(","))) for p in lines[0].get("points", "").split()]
    # y axis 0..100 over the plot's 162 px: 100% at the top (y 28), 80% 32.4 px lower
    assert first[0] == (56.0, 28.0) and first[1][1] == pytest.approx(28 + 0.2 * 162, abs=0.1)
    labels = [t.text for t in root.findall(f"{NS}text")]
    assert "Share of requests (%)" in labels and "r1" in labels and "100" in labels


def test_line_chart_without_data_says_so() -> None:
    chart = model.Chart("p99 latency", "ms", (), start=0, end=60)
    root = _svg(svg.line_chart(chart))
    assert "no data over the window" in [t.text for t in root.findall(f"{NS}text")]
    assert root.findall(f"{NS}polyline") == []


def test_every_chart_of_the_page_is_well_formed_svg() -> None:
    text = render.page(build())
    charts = text.split("<svg")[1:]
    assert len(charts) == 6  # timeline, three traffic charts, drift, retraining scores
    for chunk in charts:
        root = _svg("<svg" + chunk.split("</svg>")[0] + "</svg>")
        assert root.get("role") == "img" and root.find(f"{NS}title") is not None


def test_timeline_and_bar_chart_escape_labels() -> None:
    revisions = assemble.revisions(assemble.ModelDeployment.parse(md_body()))
    root = _svg(svg.timeline(revisions, NOW.timestamp()))
    assert len(root.findall(f"{NS}rect")) == 1 + 3  # background + one bar per revision
    bars = svg.bar_chart(HOSTILE, [(HOSTILE, [("r1", 0.3), ("r2", None)])], [("0.25", 0.25)])
    root = _svg(bars)
    assert root.find(f"{NS}title") is not None and root.find(f"{NS}title").text == HOSTILE  # type: ignore[union-attr]
    assert len(root.findall(f"{NS}line")) == 1


@pytest.mark.parametrize(
    ("value", "top"),
    [(0.0, 1.0), (0.3, 0.5), (1.0, 1.0), (1.2, 2.0), (2.2, 2.5), (7.0, 10.0), (120.0, 200.0)],
)
def test_nice_max(value: float, top: float) -> None:
    assert svg.nice_max(value) == pytest.approx(top)


@pytest.mark.parametrize(
    ("function", "value", "text"),
    [
        (fmt.count, 1234.5, "1,234"),
        (fmt.count, None, "-"),
        (fmt.count, math.nan, "-"),
        (fmt.percent, 0.125, "12.5%"),
        (fmt.error_ratio, 0.00123, "0.12%"),
        (fmt.latency, 0.0042, "4.2 ms"),
        (fmt.latency, 0.25, "250 ms"),
        (fmt.latency, 1.5, "1,500 ms"),
        (fmt.psi, 0.1234, "0.123"),
        (fmt.psi_level, 0.05, "none"),
        (fmt.psi_level, 0.1, "moderate"),
        (fmt.psi_level, 0.25, "significant"),
        (fmt.psi_level, None, "unknown"),
        (fmt.score, Decimal("0.9100"), "0.91"),
        (fmt.score, Decimal("12"), "12"),
        (fmt.signed, Decimal("-0.0075"), "-0.0075"),
        (fmt.signed, Decimal("0"), "0"),
        (fmt.when, "2026-11-20T08:00:00.5Z", "2026-11-20 08:00:00 UTC"),
        (fmt.when, "yesterday", "yesterday"),
        (fmt.duration, 604800, "7d"),
        (fmt.duration, 5400, "90m"),
        (fmt.duration, 61, "61s"),
    ],
)
def test_figure_formats(function: Any, value: Any, text: str) -> None:
    assert function(value) == text


def test_queries_select_one_model_deployment_and_quote_values() -> None:
    window = queries.window_queries(queries.ROUTER, "churn", 3600, (("namespace", 'm"l'),))
    assert window["requests"] == (
        "sum by (revision) (increase(seaway_router_requests_total"
        '{model_deployment="churn",traffic="live",namespace="m\\"l"}[3600s]))'
    )
    assert 'code=~"5.."' in window["errors"]
    server = queries.window_queries(queries.SERVER, "churn", 60)
    assert server["p99"] == (
        "histogram_quantile(0.99, sum by (revision, le)"
        ' (rate(seaway_request_duration_seconds_bucket{model="churn"}[60s])))'
    )
    assert queries.range_step(604800) == 6048 and queries.range_step(120) == 5
    assert "[60s]" in queries.range_queries(queries.ROUTER, "churn", 5)["rate"]
    drift = queries.drift_queries("churn", 600)
    assert drift["feature_peak"] == (
        'max by (revision, feature) (max_over_time(seaway_feature_drift_psi{model="churn"}[600s]))'
    )


def test_summary_document_is_json_with_text_for_chat_tools() -> None:
    document = summary.document(build())
    encoded = json.loads(json.dumps(document))
    assert encoded["kind"] == "SeawayModelReport" and encoded["version"] == 1
    assert encoded["text"].startswith("Model report ml/churn (last 7d): Revision 2 is the stable")
    assert [r["number"] for r in encoded["revisions"]] == [1, 2, 3]
    assert encoded["traffic"][0] == {
        "revision": 2,
        "requests": 1200.4,
        "errors": 3.0,
        "errorRatio": pytest.approx(3.0 / 1200.4),
        "share": pytest.approx(1200.4 / 1300),
        "p50Ms": pytest.approx(4.2),
        "p99Ms": pytest.approx(21.3),
    }
    assert encoded["drift"]["largestFeaturePSI"] == {
        "revision": 2, "feature": HOSTILE, "psi": 0.31
    }  # fmt: skip
    assert encoded["retraining"] == [
        {
            "retrainJob": "churn-weekly",
            "run": 4,
            "result": "Succeeded",
            "decision": "Promoted",
            "metric": "roc_auc",
            "candidateScore": 0.9125,
            "incumbentScore": 0.8875,
            "finishedAt": "2026-11-19T09:50:00Z",
        }
    ]
    bare = summary.document(build(answers=None, missing=["no Prometheus"]))
    assert bare["traffic"] is None and bare["drift"] is None
    assert bare["missing"] == ["no Prometheus"]


class FakeReader:
    """Answers instant queries from a table (the HTTP side is tested on a real Prometheus)."""

    def __init__(self, table: dict[str, tuple[model.Sample, ...]]) -> None:
        self.table = table
        self.asked: list[str] = []

    def instant(self, promql: str, at: datetime) -> tuple[model.Sample, ...]:
        self.asked.append(promql)
        return self.table.get(promql, ())

    def series(self, promql: str, *_: Any) -> tuple[model.Curve, ...]:
        self.asked.append(promql)
        return ()


def test_gather_falls_back_to_the_servers_series_without_a_router() -> None:
    server = queries.window_queries(queries.SERVER, "churn", 3600)["requests"]
    reader = FakeReader({server: (sample(10.0, revision="1"),)})
    got = prom.gather(reader, name="churn", window_seconds=3600, at=NOW)  # type: ignore[arg-type]
    assert got.source_name == "server"
    assert got.instant["requests"] == (sample(10.0, revision="1"),)
    assert dict(got.queries)["window requests"] == server
    nothing = prom.gather(FakeReader({}), name="churn", window_seconds=3600, at=NOW)  # type: ignore[arg-type]
    assert nothing.source_name == "router" and nothing.ranges == {}


def test_api_url_keeps_a_path_prefix_and_refuses_a_query() -> None:
    assert prom.api_url("http://p:9090/prom/", "query", {"query": "up", "time": "1"}) == (
        "http://p:9090/prom/api/v1/query?query=up&time=1"
    )
    with pytest.raises(egress.NotAllowed):
        prom.api_url("http://p:9090/?x=1", "query", {})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["report", "churn", "--window", "a week"], "is not a duration like 30m, 24h or 7d"),
        (["report", "churn", "--window", "30s"], "the window must be at least 1m"),
        (["report", "churn", "--match", "namespace"], "use LABEL=VALUE"),
        (["report", "churn", "--prometheus", "prometheus:9090"], "give e.g. http://"),
    ],
)
def test_report_options_refuse_mistakes_in_one_line(argv: list[str], message: str) -> None:
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_report_without_a_kubeconfig_is_a_one_line_error() -> None:
    result = CliRunner(env={"KUBECONFIG": "/nonexistent/kubeconfig"}).invoke(
        main, ["report", "churn"]
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot load the kubeconfig")


def test_charts_begin_at_the_first_measurement_of_the_window() -> None:
    first = NOW.timestamp() - 300
    young = answers(
        ranges={"rate": (model.Curve({"revision": "1"}, ((first, 1.0), (NOW.timestamp(), 1.0))),)}
    )
    share, _, latency = assemble.charts(young)
    assert (share.start, share.end) == (first, NOW.timestamp())
    assert share.series[0].points == ((first, 100.0), (NOW.timestamp(), 100.0))
    assert latency.series == () and "no data over the window" in svg.line_chart(latency)
    assert assemble.charts(answers())[0].start == (NOW - timedelta(days=7)).timestamp()
