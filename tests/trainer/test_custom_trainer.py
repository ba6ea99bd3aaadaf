"""A user's own training image honours the same contract: docs/trainer.md's example, run.

The example script is the one shown in the docs (the test checks they are the same text), run as
a real process with the contract variables the operator sets, and its result is checked the way
the operator will check it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sklearn.datasets import load_wine
from sklearn.dummy import DummyClassifier
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

from seaway_serving import bundle, loader
from seaway_serving.trainer import gate
from seaway_serving.trainer import result as results

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE / "custom_trainer_example.py"
DOCS = HERE.parents[1] / "docs" / "trainer.md"


def run_example(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SEAWAY_")}
    full.update({"SEAWAY_TRAIN_TERMINATION_LOG": str(tmp_path / "termination.log"), **env})
    return subprocess.run([sys.executable, str(EXAMPLE)], env=full, cwd=HERE.parents[1],
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_docs_show_the_tested_example() -> None:
    assert EXAMPLE.read_text().strip() in DOCS.read_text()


def test_custom_trainer_writes_the_same_contract(tmp_path: Path) -> None:
    x, y = load_wine(return_X_y=True, as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=1)
    live = DummyClassifier().fit(x_train.to_numpy(), y_train.to_numpy())
    manifest = bundle.create_from_estimator(live, tmp_path / "live", name="wine",
                                            feature_names=list(x.columns))
    assert manifest.sha256 is not None
    proc = run_example({
        "SEAWAY_TRAIN_OUTPUT_URI": (tmp_path / "models").as_uri(), "SEAWAY_TRAIN_RUN_ID": "4",
        "SEAWAY_TRAIN_RESULT_PATH": str(tmp_path / "result.json"),
        "SEAWAY_TRAIN_METRIC": "f1", "SEAWAY_TRAIN_MIN_SCORE": "0.5",
        "SEAWAY_TRAIN_MIN_IMPROVEMENT": "0.2",
        "SEAWAY_TRAIN_INCUMBENT_URI": str(tmp_path / "live"),
        "SEAWAY_TRAIN_INCUMBENT_DIGEST": manifest.sha256,
    }, tmp_path)
    assert proc.returncode == 0, proc.stderr
    res = results.parse(results.last_line(proc.stdout))
    assert results.parse((tmp_path / "result.json").read_text()) == res
    assert res.bundle is not None and res.candidate is not None and res.gate is not None
    assert res.incumbent is not None and res.split is not None and res.split.kind == "Custom"
    assert res.bundle.uri == (tmp_path / "models" / "4").as_uri() + "/"
    model = loader.load(tmp_path / "models" / "4",
                        loader.Policy(max_bytes=1 << 30, pinned_digest=res.bundle.digest))
    assert res.candidate.score == gate.decimal_string(
        f1_score(y_test, model.estimator.predict(x_test.to_numpy()), average="macro"))
    assert res.incumbent.score == gate.decimal_string(
        f1_score(y_test, live.predict(x_test.to_numpy()), average="macro"))
    assert res.gate.passed, res.gate.reason
    summary = json.loads((tmp_path / "termination.log").read_text())
    assert summary["bundle"]["digest"] == res.bundle.digest and summary["gate_passed"] is True


def test_custom_trainer_failure_is_one_line(tmp_path: Path) -> None:
    proc = run_example({"SEAWAY_TRAIN_OUTPUT_URI": (tmp_path / "models").as_uri(),
                        "SEAWAY_TRAIN_METRIC": "roc_auc"}, tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    res = results.parse(results.last_line(proc.stdout))
    assert res.status == "Failed"
    assert res.message == "ValueError: this trainer scores macro f1, not roc_auc"
    assert (tmp_path / "termination.log").read_text() == res.message + "\n"
