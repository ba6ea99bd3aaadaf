"""The validation gate: does the candidate reach ``minScore`` and beat the incumbent enough?

Pure and exact: scores enter as the decimal strings the result reports (six decimal places), the
thresholds as the RetrainJob's decimal strings, and the comparison is done in ``decimal``, so
anyone holding the result JSON (the operator, a person) reaches the same decision.

Lower-is-better metrics (``log_loss``, ``rmse``, ``mae``) keep their natural values; only the
direction of each comparison turns:

- ``minScore`` is the worst acceptable value: higher-is-better ``candidate >= minScore``,
  lower-is-better ``candidate <= minScore`` (for rmse, "at most 0.5").
- the improvement is how much better the candidate is, positive when better:
  ``candidate - incumbent``, or ``incumbent - candidate`` for lower-is-better metrics; it must be
  at least ``minImprovement``. Unset, ``minImprovement`` is 0: never promote a model that scores
  worse than the one in production. A negative value tolerates a small loss.
- no incumbent (the first run): only ``minScore`` applies. An incumbent that was given but cannot
  be scored on these rows (other features, unknown labels) fails the gate: nothing says the
  candidate is not worse.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass

HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True, "f1": True, "precision": True, "recall": True, "roc_auc": True,
    "log_loss": False, "r2": True, "rmse": False, "mae": False,
}
PLACES = decimal.Decimal("0.000001")


def decimal_string(value: float) -> str:
    """A score as the result writes it: fixed point, six decimals, half-even, never ``-0``."""
    d = decimal.Decimal(repr(float(value))).quantize(PLACES, rounding=decimal.ROUND_HALF_EVEN)
    if d.is_zero():
        d = abs(d)
    return format(d, "f")


def _plain(d: decimal.Decimal) -> str:
    text = format(d.normalize(), "f")
    return "0" if text in ("-0", "0") else text


@dataclass(frozen=True)
class Decision:
    passed: bool
    reason: str
    improvement: str | None


def decide(metric: str, candidate: str, *, incumbent: str | None, incumbent_given: bool,
           incumbent_problem: str | None = None, min_score: str | None = None,
           min_improvement: str | None = None) -> Decision:
    higher = HIGHER_IS_BETTER[metric]
    sign = 1 if higher else -1
    cand = decimal.Decimal(candidate)
    failures: list[str] = []
    passes: list[str] = []
    if min_score is not None:
        floor = decimal.Decimal(min_score)
        if sign * (cand - floor) < 0:
            word = "below" if higher else "above"
            failures.append(f"Score {candidate} is {word} minScore {min_score} "
                            f"({metric}: {'higher' if higher else 'lower'} is better).")
        else:
            passes.append(f"score {candidate} reaches minScore {min_score}")
    improvement: str | None = None
    if incumbent_given and incumbent is None:
        failures.append(f"The incumbent could not be scored"
                        f"{': ' + incumbent_problem.rstrip('.') if incumbent_problem else ''}; "
                        "without its score the candidate cannot be shown to be no worse.")
    elif incumbent is not None:
        gain = sign * (cand - decimal.Decimal(incumbent))
        improvement = _plain(gain)
        required = decimal.Decimal(min_improvement) if min_improvement is not None else None
        if gain < (required if required is not None else 0):
            if required is not None:
                failures.append(f"Improvement {improvement} is below minImprovement "
                                f"{min_improvement} (candidate {candidate}, incumbent "
                                f"{incumbent}).")
            else:
                failures.append(f"Candidate {candidate} is worse than the incumbent's "
                                f"{incumbent} ({metric}: {'higher' if higher else 'lower'} is "
                                "better).")
        else:
            passes.append(f"improves on the incumbent's {incumbent} by {improvement}"
                          + (f" (minImprovement {min_improvement})" if required is not None
                             else ""))
    if failures:
        return Decision(False, " ".join(failures), improvement)
    if not passes:
        return Decision(True, "No threshold set and no incumbent to compare with.", improvement)
    text = " and ".join(passes)
    if not incumbent_given:
        text += "; no incumbent to compare with"
    return Decision(True, text[0].upper() + text[1:] + ".", improvement)
