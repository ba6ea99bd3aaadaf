"""Why a scoring pod stopped, as one line, with the exit code the Job's podFailurePolicy reads.

The contract (``contract.SCORE_PERMANENT_EXIT_CODES``) fails the whole ScoringJob at once on a
refused model, bad input or a refused output, because retrying cannot help; any other failure
(the network, the store, the node) retries only this pod's index.
"""

from __future__ import annotations

from seaway_serving import contract

MAX_CHARS = 1024


class ScoreFailed(Exception):
    """The pod cannot finish its units; the message is one line and names the cause."""

    exit_code = 1
    reason = "Failed"

    def __init__(self, message: str) -> None:
        line = " ".join(message.split())
        super().__init__(line if len(line) <= MAX_CHARS else line[: MAX_CHARS - 3] + "...")


class InvalidSettings(ScoreFailed):
    """A variable is missing or malformed: the operator's rendering, never the user's data."""

    exit_code = 2


class ModelRefused(ScoreFailed):
    """The bundle failed a check of the server's loader (digest, versions, types, self-check)."""

    exit_code = contract.SCORE_EXIT_MODEL_REFUSED
    reason = "ModelRefused"


class BadInput(ScoreFailed):
    """The input cannot be scored: not found, unreadable, a feature or key column missing."""

    exit_code = contract.SCORE_EXIT_BAD_INPUT
    reason = "BadInput"


class OutputRefused(ScoreFailed):
    """The output holds another run's results, or the store refuses to be written."""

    exit_code = contract.SCORE_EXIT_OUTPUT_REFUSED
    reason = "OutputRefused"
