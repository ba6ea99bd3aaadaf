"""A custom trainer honouring Seaway's result contract (docs/trainer.md shows this file).

Run in a user's image as the RetrainJob's ``customTrainer.command``; the operator sets the
``SEAWAY_TRAIN_*`` contract variables. It trains its own way, then writes a bundle, scores the
incumbent on the same rows, and hands back a ``seaway.dev/train-result/v1`` document.
"""

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from sklearn.datasets import load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

from seaway_serving import bundle
from seaway_serving.trainer import gate, incumbent, result, store


def f1(model: Any, x: Any, y: Any) -> float:
    return float(f1_score(y, model.predict(x), average="macro"))


def hand_over(doc: result.TrainResult, message: str) -> None:
    """The result file, the termination message, and the LAST line of stdout."""
    env = os.environ
    if env.get("SEAWAY_TRAIN_RESULT_PATH"):
        Path(env["SEAWAY_TRAIN_RESULT_PATH"]).write_text(doc.to_json(indent=2) + "\n")
    if env.get("SEAWAY_TRAIN_TERMINATION_LOG"):  # set in the operator's Job only
        Path(env["SEAWAY_TRAIN_TERMINATION_LOG"]).write_text(message + "\n")
    sys.stdout.write(doc.to_json() + "\n")


def train() -> result.TrainResult:
    env = os.environ
    work = Path(tempfile.mkdtemp())
    metric = env.get("SEAWAY_TRAIN_METRIC", "f1")
    if metric != "f1":  # the gate compares like with like: say so rather than mislabel
        raise ValueError(f"this trainer scores macro f1, not {metric}")
    x, y = load_wine(return_X_y=True, as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=1)
    model = RandomForestClassifier(n_estimators=50, random_state=0)
    model.fit(x_train.to_numpy(), y_train.to_numpy())
    score = gate.decimal_string(f1(model, x_test.to_numpy(), y_test))

    live_score: str | None = None
    problem: str | None = None
    live_uri = env.get("SEAWAY_TRAIN_INCUMBENT_URI")
    if live_uri:  # verified exactly as a model pod would verify it, then scored on x_test
        live = incumbent.load(live_uri, work / "incumbent",
                              digest=env.get("SEAWAY_TRAIN_INCUMBENT_DIGEST"),
                              allow_unverified=False, trusted_types=(), max_bytes=1 << 30,
                              timeout_s=60)
        columns = incumbent.columns_for(live, list(x_test.columns), list(x.columns))
        if isinstance(columns, str):
            problem = columns
        else:
            live_score = gate.decimal_string(f1(live.estimator, x_test[columns].to_numpy(),
                                                y_test))

    out = work / "bundle"
    manifest = bundle.create_from_estimator(
        model, out, name=env.get("SEAWAY_TRAIN_NAME", "wine"), data=x_train.to_numpy(),
        feature_names=list(x.columns), metrics={metric: float(score)},
        code_version=env.get("GIT_COMMIT", "example"))
    files = [(name, (out / name).read_bytes()) for name in (manifest.model_file,
                                                           bundle.MANIFEST_FILE)]
    uri = store.publish(files, env["SEAWAY_TRAIN_OUTPUT_URI"],
                        env.get("SEAWAY_TRAIN_RUN_ID", manifest.version))
    decision = gate.decide(metric, score, incumbent=live_score,
                           incumbent_given=bool(live_uri), incumbent_problem=problem,
                           min_score=env.get("SEAWAY_TRAIN_MIN_SCORE"),
                           min_improvement=env.get("SEAWAY_TRAIN_MIN_IMPROVEMENT"))
    return result.TrainResult(
        status="Succeeded",
        bundle=result.BundleRef(uri=uri, digest=manifest.sha256, format=manifest.format),
        metric=metric, higher_is_better=gate.HIGHER_IS_BETTER[metric],
        candidate=result.Candidate(score=score),
        incumbent=result.Incumbent(uri=live_uri, score=live_score, problem=problem)
        if live_uri else None,
        gate=result.Gate(min_score=env.get("SEAWAY_TRAIN_MIN_SCORE"),
                         min_improvement=env.get("SEAWAY_TRAIN_MIN_IMPROVEMENT"),
                         improvement=decision.improvement, passed=decision.passed,
                         reason=decision.reason),
        split=result.SplitInfo(kind="Custom"),
    )


def main() -> None:
    try:
        doc = train()
    except Exception as exc:  # one line, never a traceback: it becomes the run's reason
        message = " ".join(f"{type(exc).__name__}: {exc}".split())[:1024]
        print(f"Failed: {message}", file=sys.stderr)
        hand_over(result.TrainResult(status="Failed", reason="TrainingFailed", message=message,
                                     exit_code=1), message)
        sys.exit(1)
    hand_over(doc, doc.summary())


if __name__ == "__main__":
    main()
