"""The gate and the result document, as pure functions: table-driven, no process."""

from __future__ import annotations

import json

import pytest

from seaway_serving.trainer import gate
from seaway_serving.trainer import result as results

DIGEST = "sha256:" + "ab" * 32

# metric, candidate, incumbent, min_score, min_improvement, passed, reason, improvement
TABLE = [
    ("roc_auc", "0.843100", "0.841200", "0.80", "0.005", False,
     "Improvement 0.0019 is below minImprovement 0.005 (candidate 0.843100, incumbent 0.841200).",
     "0.0019"),
    ("roc_auc", "0.850000", "0.841200", "0.80", "0.005", True,
     "Score 0.850000 reaches minScore 0.80 and improves on the incumbent's 0.841200 by 0.0088 "
     "(minImprovement 0.005).", "0.0088"),
    ("roc_auc", "0.790000", None, "0.80", None, False,
     "Score 0.790000 is below minScore 0.80 (roc_auc: higher is better).", None),
    # unset minImprovement is 0: a worse candidate never passes
    ("accuracy", "0.900000", "0.910000", None, None, False,
     "Candidate 0.900000 is worse than the incumbent's 0.910000 (accuracy: higher is better).",
     "-0.01"),
    ("accuracy", "0.910000", "0.910000", None, None, True,
     "Improves on the incumbent's 0.910000 by 0.", "0"),
    # a negative minImprovement tolerates a small loss
    ("f1", "0.900000", "0.905000", None, "-0.01", True,
     "Improves on the incumbent's 0.905000 by -0.005 (minImprovement -0.01).", "-0.005"),
    # lower is better: minScore is a ceiling, the improvement is incumbent - candidate
    ("rmse", "4.500000", "5.000000", "4.8", "0.25", True,
     "Score 4.500000 reaches minScore 4.8 and improves on the incumbent's 5.000000 by 0.5 "
     "(minImprovement 0.25).", "0.5"),
    ("rmse", "4.900000", "5.000000", "4.8", "0.25", False,
     "Score 4.900000 is above minScore 4.8 (rmse: lower is better). Improvement 0.1 is below "
     "minImprovement 0.25 (candidate 4.900000, incumbent 5.000000).", "0.1"),
    ("log_loss", "0.310000", "0.300000", None, None, False,
     "Candidate 0.310000 is worse than the incumbent's 0.300000 (log_loss: lower is better).",
     "-0.01"),
    ("mae", "1.000000", None, "1.5", "0.1", True,
     "Score 1.000000 reaches minScore 1.5; no incumbent to compare with.", None),
    ("r2", "0.100000", None, None, None, True,
     "No threshold set and no incumbent to compare with.", None),
]


@pytest.mark.parametrize(("metric", "cand", "inc", "min_score", "min_imp", "passed", "reason",
                          "improvement"), TABLE)
def test_decide(metric: str, cand: str, inc: str | None, min_score: str | None,
                min_imp: str | None, passed: bool, reason: str, improvement: str | None) -> None:
    decision = gate.decide(metric, cand, incumbent=inc, incumbent_given=inc is not None,
                           min_score=min_score, min_improvement=min_imp)
    assert decision == gate.Decision(passed, reason, improvement)


def test_an_incumbent_that_cannot_be_scored_fails_the_gate() -> None:
    decision = gate.decide("roc_auc", "0.900000", incumbent=None, incumbent_given=True,
                           incumbent_problem="its input column 'tenure' not in the dataset",
                           min_score="0.8")
    assert decision == gate.Decision(
        False, "The incumbent could not be scored: its input column 'tenure' not in the "
        "dataset; without its score the candidate cannot be shown to be no worse.", None)


@pytest.mark.parametrize(("value", "text"), [
    (0.8412345, "0.841234"), (0.8412355, "0.841236"), (1.0, "1.000000"), (-1e-9, "0.000000"),
    (1234.56789049, "1234.567890"), (-0.25, "-0.250000"), (2.5e-7, "0.000000"),
])
def test_decimal_string(value: float, text: str) -> None:
    assert gate.decimal_string(value) == text
    assert results.SCORE_RE.match(text)


def _succeeded(reason: str) -> results.TrainResult:
    return results.TrainResult(
        status="Succeeded", bundle=results.BundleRef(uri="s3://m/churn/7/", digest=DIGEST),
        metric="f1", candidate=results.Candidate(score="0.700000"),
        incumbent=results.Incumbent(uri="s3://m/churn/6/", score="0.650000"),
        gate=results.Gate(passed=True, reason=reason))


def test_summary_fits_a_termination_message() -> None:
    short = json.loads(_succeeded("Fine.").summary())
    assert short == {"schema": results.SCHEMA, "status": "Succeeded",
                     "bundle": {"uri": "s3://m/churn/7/", "digest": DIGEST,
                                "format": "sklearn-joblib"},
                     "metric": "f1", "candidate_score": "0.700000",
                     "incumbent_score": "0.650000", "gate_passed": True, "gate_reason": "Fine."}
    long_reason = "é" * 5000  # two bytes each: the cut is by bytes, not characters
    text = _succeeded(long_reason).summary()
    assert len(text.encode()) <= results.TERMINATION_MESSAGE_MAX
    cut = json.loads(text)
    assert cut["gate_reason"].endswith("...") and cut["gate_reason"].startswith("é" * 100)
    assert cut["bundle"]["digest"] == DIGEST


@pytest.mark.parametrize(("doc", "error"), [
    ({"schema": results.SCHEMA, "status": "Succeeded", "metric": "f1",
      "candidate": {"score": "0.7"}}, "needs bundle, metric and candidate.score"),
    ({"schema": results.SCHEMA, "status": "Failed"}, "needs a message"),
    ({"schema": "seaway.dev/train-result/v9", "status": "Failed", "message": "x"}, "schema"),
    ({"schema": results.SCHEMA, "status": "Succeeded", "metric": "f1",
      "bundle": {"uri": "s3://m/1/", "digest": DIGEST}, "candidate": {"score": "0.7e1"}},
     "not a decimal string"),
])
def test_parse_refuses_incomplete_results(doc: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        results.parse(json.dumps(doc))


def test_minimal_custom_result_parses_and_ignores_unknown_fields() -> None:
    doc = {"schema": results.SCHEMA, "status": "Succeeded", "metric": "f1",
           "bundle": {"uri": "s3://m/1/", "digest": DIGEST}, "candidate": {"score": "0.7"},
           "mlflow_run": "abc"}
    parsed = results.parse(json.dumps(doc))
    assert parsed.bundle is not None and parsed.bundle.format == "sklearn-joblib"
    assert parsed.incumbent is None and parsed.gate is None
    assert results.last_line("progress\n" + json.dumps(doc) + "\n\n") == json.dumps(doc)
