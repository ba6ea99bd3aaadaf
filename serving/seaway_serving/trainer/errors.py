"""Why a training run failed, as one line a user can act on, with an exit code per kind.

The operator shows the line in the RetrainJob's run status (it reaches it through the pod's
termination message); the exit code tells a script which kind of problem it was without parsing
text. A candidate that fails the gate is not an error: the run succeeded, the result says why the
candidate should not be promoted.
"""

from __future__ import annotations

MAX_CHARS = 1024


class TrainFailed(Exception):
    """The run cannot produce a candidate; the message is one line and names the cause."""

    exit_code = 1
    reason = "TrainingFailed"

    def __init__(self, message: str) -> None:
        # Kubernetes shows the termination message verbatim; keep it to one line, and short
        # enough for the run's status (library errors can quote whole arrays).
        line = " ".join(message.split())
        super().__init__(line if len(line) <= MAX_CHARS else line[: MAX_CHARS - 3] + "...")


class InvalidSettings(TrainFailed):
    """An option is missing or wrong (refused import path, bad parameters, bad duration...)."""

    exit_code = 2
    reason = "InvalidSettings"


class FetchFailed(TrainFailed):
    """The dataset or the incumbent bundle could not be fetched (network, permissions, 404)."""

    exit_code = 3
    reason = "FetchFailed"


class BadData(TrainFailed):
    """The dataset cannot train this estimator: missing column, empty, non-numeric, too few rows."""

    exit_code = 4
    reason = "BadData"


class FitFailed(TrainFailed):
    """The estimator raised while fitting or predicting (e.g. NaN it does not accept)."""

    exit_code = 5
    reason = "FitFailed"


class IncumbentRefused(TrainFailed):
    """The incumbent bundle failed a check of the server's loader (digest, versions, types)."""

    exit_code = 6
    reason = "IncumbentRefused"


class OutputFailed(TrainFailed):
    """The bundle or the result could not be written where they were asked to go."""

    exit_code = 7
    reason = "OutputFailed"
