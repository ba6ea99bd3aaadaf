"""``seaway-score``: score this pod's share of a dataset with a model bundle (a ScoringJob's pod).

Configured only by the environment the operator renders (``contract.score_env`` and the model
variables of ``contract.server_env``; the names and the output layout are in ``contract.py`` and
docs/scoring.md). Whatever happens, the pod ends by writing one JSON object (the contract's
termination message) to ``SEAWAY_TERMINATION_LOG`` and as the last line on stdout, and exits 0
on success, 3/4/5 for a refused model, bad input or a refused output (the whole job fails: a retry
cannot help), 2 for settings it cannot parse and 1 for anything else (the index is retried).
Progress goes to stderr.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from seaway_serving.scoring import plan
from seaway_serving.scoring import settings as score_settings
from seaway_serving.scoring.errors import ScoreFailed

log = logging.getLogger("seaway_score")
#: The kubelet keeps this much of a termination message.
TERMINATION_CAP = 4096


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if level in logging.getLevelNamesMapping() else "INFO")
    logging.captureWarnings(True)


def termination_text(doc: dict[str, Any]) -> str:
    """The message as one JSON line within the kubelet's cap.

    Too long, the unit lists are left out first (the operator counts a succeeded index's units
    from the sharding rule), then the ``message`` is shortened.
    """
    text = json.dumps(doc, separators=(",", ":"))
    if len(text.encode()) > TERMINATION_CAP:
        doc = {k: v for k, v in doc.items() if k not in ("unitsDone", "unitsSkipped")}
        text = json.dumps(doc, separators=(",", ":"))
    over = len(text.encode()) - TERMINATION_CAP
    if over > 0 and doc.get("message"):
        message = str(doc["message"])
        doc = {**doc, "message": message[: max(0, len(message) - over - 3)] + "..."}
        text = json.dumps(doc, separators=(",", ":"))
    return text


def emit(doc: dict[str, Any], path: Path | None) -> None:
    text = termination_text(doc)
    if path is not None and path.parent.is_dir():
        with contextlib.suppress(OSError):
            path.write_text(text + "\n", encoding="utf-8")
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def run(environ: Mapping[str, str]) -> int:
    from seaway_serving.scoring import run as runner  # pyarrow and scikit-learn: only now

    t0 = time.monotonic()
    termination = score_settings.termination_path(environ)
    outcome = runner.Outcome()
    index = 0
    try:
        settings = score_settings.parse(environ)
        index = settings.index
        configure_logging(settings.log_level)
        runner.score(settings, environ, outcome)
        reason, message, code = "Succeeded", "", 0
    except ScoreFailed as exc:
        reason, message, code = exc.reason, str(exc), exc.exit_code
    except Exception as exc:  # a bug or the machine (memory, disk): still say why, in one line
        log.debug("Unexpected error", exc_info=True)
        reason, code = "Failed", 1
        message = " ".join(f"unexpected error: {type(exc).__name__}: {exc}".split())[:1024]
    seconds = time.monotonic() - t0
    if code:
        log.error("Failed (%s): %s", reason, message)
    else:
        message = (f"scored {outcome.rows} rows of {len(outcome.done) - len(outcome.skipped)} "
                   f"units ({len(outcome.skipped)} recorded already) in {seconds:.1f}s")
        log.info("Done: %s", message)
    emit(plan.termination(index=index, units_total=outcome.units_total, done=outcome.done,
                          skipped=outcome.skipped, rows=outcome.rows,
                          rows_skipped=outcome.rows_skipped, seconds=seconds,
                          model=outcome.model, reason=reason, message=message), termination)
    return code


def main() -> None:
    """Entry point of the ``seaway-score`` console script (no arguments: the environment)."""
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0)
    configure_logging("INFO")
    sys.exit(run(os.environ))


if __name__ == "__main__":
    main()
