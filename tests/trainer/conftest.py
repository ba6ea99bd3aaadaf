"""Fixtures for the trainer tests: generated datasets and ``seaway-train`` as a real process.

Every run is ``python -m seaway_serving.trainer`` in a fresh process with only the
``SEAWAY_TRAIN_*`` variables the test gives (the caller's are dropped), its termination-message
file in the test's directory, and stdout and stderr captured separately: stdout's last line must
be the result document, stderr carries the progress lines.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification, make_regression

from seaway_serving.trainer import result as results

REPO = Path(__file__).resolve().parents[2]
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAYS = 60
FEATURES = ["f0", "f1", "f2", "f3", "f4", "f5"]


def classification_frame(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """Six numeric features, a 0/1 ``label`` and an ``event_time`` spread evenly over 60 days."""
    x, y = make_classification(n_samples=rows, n_features=6, n_informative=4, n_redundant=1,
                               random_state=seed)
    frame = pd.DataFrame(x, columns=FEATURES)
    frame["label"] = y
    step = dt.timedelta(days=DAYS) / rows
    frame["event_time"] = [(START + i * step).isoformat().replace("+00:00", "Z")
                           for i in range(rows)]
    return frame


def regression_frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    x, y = make_regression(n_samples=rows, n_features=6, n_informative=4, noise=5.0,
                           random_state=seed)
    frame = pd.DataFrame(x, columns=FEATURES)
    frame["price"] = y
    return frame


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    termination: str | None

    @property
    def result(self) -> results.TrainResult:
        return results.parse(results.last_line(self.stdout))

    @property
    def doc(self) -> dict[str, Any]:
        import json

        parsed: dict[str, Any] = json.loads(results.last_line(self.stdout))
        return parsed

    def check_one_line_failure(self, exit_code: int) -> str:
        """A failed run: exit code, one-line reason everywhere, no traceback; the reason."""
        assert self.returncode == exit_code, self.stderr
        assert "Traceback" not in self.stderr and "Traceback" not in self.stdout
        res = self.result
        assert res.status == "Failed" and res.exit_code == exit_code
        assert res.message and "\n" not in res.message
        assert self.termination == res.message + "\n"
        assert self.stderr.rstrip("\n").splitlines()[-1].endswith("Failed: " + res.message)
        return res.message


@pytest.fixture
def train(tmp_path: Path) -> Any:
    """``train(env, *args)``: run the trainer to completion and return a :class:`Run`."""
    counter = iter(range(1000))

    def run(env: Mapping[str, str], *args: str, timeout: float = 120.0) -> Run:
        n = next(counter)
        term = tmp_path / f"termination-{n}.log"
        full_env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("SEAWAY_", "AWS_"))}
        full_env.update({"SEAWAY_TRAIN_TERMINATION_LOG": str(term),
                         "SEAWAY_TRAIN_WORK_DIR": str(tmp_path / "work"),
                         "PYTHONUNBUFFERED": "1"})
        full_env.update(env)
        proc = subprocess.run([sys.executable, "-m", "seaway_serving.trainer", *args],
                              env=full_env, cwd=REPO, capture_output=True, text=True,
                              timeout=timeout, check=False)
        return Run(proc.returncode, proc.stdout, proc.stderr,
                   term.read_text() if term.exists() else None)

    return run


def write(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def as_float(frame: pd.DataFrame, columns: list[str] = FEATURES) -> np.ndarray:
    return np.asarray(frame[columns].to_numpy(dtype=np.float64), dtype=np.float64)
