"""``seaway-train``: the built-in trainer's command line; every option is also an env variable.

Exit codes: 0 the run produced a candidate (whether or not it passed the gate: see the result),
1 unexpected error, 2 invalid settings, 3 fetch failed, 4 bad data, 5 fit failed, 6 incumbent
refused, 7 output failed. On any failure the one-line reason is the last line on stderr, the
content of the termination-message file, and the ``message`` of the result, which is still
written and printed, so the last stdout line is always a result document.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError
from pydantic_settings import SettingsError

from seaway_serving.trainer import progress
from seaway_serving.trainer import result as results
from seaway_serving.trainer.errors import TrainFailed
from seaway_serving.trainer.settings import ENV_PREFIX, TrainSettings

log = progress.log


def write_termination_message(path: Path | None, message: str) -> None:
    """Best effort, and only where told: the operator's Job sets SEAWAY_TRAIN_TERMINATION_LOG.

    Never by default: run by hand as root, ``/dev/termination-log`` would be created on the host.
    """
    if path is None or not path.parent.is_dir():
        return
    with contextlib.suppress(OSError):
        path.write_text(message + "\n", encoding="utf-8")


def emit(result: results.TrainResult, result_path: Path | None,
         termination_log: Path | None) -> None:
    """Hand the result over: the file, the termination message, then stdout's last line."""
    text = result.to_json()
    if result_path is not None:
        try:
            result_path.parent.mkdir(parents=True, exist_ok=True)
            result_path.write_text(result.to_json(indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            log.error("Could not write the result to %s: %s", result_path, exc.strerror or exc)
    message = result.summary() if result.status == "Succeeded" else (result.message or "")
    write_termination_message(termination_log, message)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def failed(reason: str, message: str, exit_code: int) -> results.TrainResult:
    return results.TrainResult(status="Failed", reason=reason, message=message,
                               exit_code=exit_code)


def run(settings: TrainSettings) -> int:
    from seaway_serving.trainer import run as runner  # scikit-learn and pandas: only now

    try:
        result = runner.train(settings)
    except TrainFailed as exc:
        result = failed(exc.reason, str(exc), exc.exit_code)
    except Exception as exc:  # a bug or the machine (memory, disk): still say why, in one line
        message = " ".join(f"unexpected error: {type(exc).__name__}: {exc}".split())[:1024]
        log.debug("Unexpected error", exc_info=True)
        result = failed("UnexpectedError", message, 1)
    finally:
        with contextlib.suppress(OSError):
            for child in settings.work_dir.glob("run-*"):
                shutil.rmtree(child, ignore_errors=True)
    if result.status == "Failed":
        log.error("Failed: %s", result.message)
    emit(result, settings.result_path, settings.termination_log)
    return result.exit_code


def _settings_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"]]
        msg = str(first["msg"]).removeprefix("Value error, ")
        if not loc:  # a rule across fields names its variables itself
            return f"invalid settings: {msg}"
        field = loc[0]
        if first["type"] in ("list_type", "dict_type"):  # the variable was not JSON
            msg += (' written as JSON, e.g. ["a", "b"]' if first["type"] == "list_type"
                    else ' written as JSON, e.g. {"n_estimators": 200}')
        return f"invalid setting {field} ({ENV_PREFIX}{field.upper()}): {msg}"
    return f"invalid settings: {exc}"


def _json_option(value: str | None, name: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError as exc:
        raise ValueError(f"{name} is not valid JSON: {exc}") from None


@click.command(context_settings={"help_option_names": ["-h", "--help"],
                                 "max_content_width": 100})
@click.option("--dataset", "dataset_uri",
              help="CSV or Parquet: path, file://, http(s):// or s3:// [DATASET_URI]")
@click.option("--format", "dataset_format", type=click.Choice(["csv", "parquet"]),
              help="Dataset format; default: from the name [DATASET_FORMAT]")
@click.option("--target", help="Column to predict [TARGET]")
@click.option("--feature", "features", multiple=True,
              help="Input column, repeatable; default: all others [FEATURES, a JSON list]")
@click.option("--timestamp-column", help="Orders rows for a backtest [TIMESTAMP_COLUMN]")
@click.option("--estimator", help="Estimator class import path [ESTIMATOR]")
@click.option("--params", help="Constructor arguments, a JSON object [PARAMS]")
@click.option("--allow-import-prefix", "allowed_import_prefixes", multiple=True,
              help="Allowed import prefix, repeatable; default sklearn. "
                   "[ALLOWED_IMPORT_PREFIXES, a JSON list]")
@click.option("--split", type=click.Choice(["Holdout", "Backtest"], case_sensitive=False),
              help="[SPLIT]")
@click.option("--test-fraction", help="Holdout share, e.g. 0.2 [TEST_FRACTION]")
@click.option("--cutoff", help="Backtest window, e.g. 28d [CUTOFF]")
@click.option("--windows", type=int, help="Rolling backtest windows [WINDOWS]")
@click.option("--metric", help="Gate metric [METRIC]")
@click.option("--min-score", help="Gate: worst acceptable score, a decimal [MIN_SCORE]")
@click.option("--min-improvement", help="Gate: required gain, a decimal [MIN_IMPROVEMENT]")
@click.option("--seed", type=int, help="Holdout split seed [SEED]")
@click.option("--refit/--no-refit", default=None, help="Refit on every row [REFIT]")
@click.option("--incumbent", "incumbent_uri", help="Bundle now in production [INCUMBENT_URI]")
@click.option("--incumbent-digest", help="Its sha256:<hex> [INCUMBENT_DIGEST]")
@click.option("--output", "output_uri", help="Bundle prefix: file:// or s3:// [OUTPUT_URI]")
@click.option("--run-id", help="Folder under the prefix [RUN_ID]")
@click.option("--name", help="Model name in the manifest [NAME]")
@click.option("--bundle-format", type=click.Choice(["sklearn-joblib", "skops"]),
              help="[BUNDLE_FORMAT]")
@click.option("--code-version", help="Training code version for the manifest [CODE_VERSION]")
@click.option("--result", "result_path", type=click.Path(path_type=Path),
              help="Write the result JSON here [RESULT_PATH]")
@click.option("--log-level", help="[LOG_LEVEL]")
def main(**options: Any) -> None:
    """Train a scikit-learn model, score it against the model in production, bundle it.

    Every option can also be set by the environment variable SEAWAY_TRAIN_<NAME in brackets>;
    the full list and the result contract are in docs/trainer.md.
    """
    overrides = {k: v for k, v in options.items() if v is not None and v != ()}
    for key in ("features", "allowed_import_prefixes"):
        if key in overrides:
            overrides[key] = list(overrides[key])
    try:
        if "params" in overrides:
            overrides["params"] = _json_option(overrides["params"], "--params")
        settings = TrainSettings(**overrides)
    except (ValidationError, SettingsError, ValueError) as exc:
        message = " ".join(_settings_error(exc).split())
        progress.configure("INFO", "text")
        log.error("Failed: %s", message)
        # the settings did not parse, so read where the result goes straight from the env
        termination = os.environ.get(f"{ENV_PREFIX}TERMINATION_LOG")
        result_path = options.get("result_path") or os.environ.get(f"{ENV_PREFIX}RESULT_PATH")
        emit(failed("InvalidSettings", message, 2), Path(result_path) if result_path else None,
             Path(termination) if termination else None)
        sys.exit(2)
    progress.configure(settings.log_level, settings.log_format)
    sys.exit(run(settings))


if __name__ == "__main__":
    main()
