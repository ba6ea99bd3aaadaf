"""What ``seaway-score`` is told: the contract's variables, parsed once, before any I/O.

Not pydantic-settings like the server: the scorer reads two families of names (the model's
``SEAWAY_*`` ones, shared with ``seaway-serve``, and ``SEAWAY_SCORE_*``) plus Kubernetes'
``JOB_COMPLETION_INDEX``, and every refusal must name the variable. A plain function over a
mapping does that in a few lines and is tested without touching the process environment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from seaway_serving import contract
from seaway_serving.scoring.errors import InvalidSettings

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
RUN_ID_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$")
METHODS = ("predict", "predict_proba")
DEFAULT_BATCH_ROWS = 65_536

#: The server's loading knobs, read by the scorer too: a ScoringJob loads the bundle exactly as
#: a model server of the same revision does.
MAX_BUNDLE_BYTES = "SEAWAY_MAX_BUNDLE_BYTES"
TRUSTED_TYPES = "SEAWAY_TRUSTED_TYPES"
FETCH_TIMEOUT_S = "SEAWAY_FETCH_TIMEOUT_S"
WORK_DIR = "SEAWAY_WORK_DIR"
LOG_LEVEL = "SEAWAY_LOG_LEVEL"
#: Rendered by ``contract.server_env`` for a model server; meaningless here and ignored, so a
#: pod template built from the server's environment still starts.
IGNORED = (contract.HOST, contract.PORT)


def known_variables() -> frozenset[str]:
    return frozenset({
        contract.SCORE_INPUT, contract.SCORE_INPUT_FORMAT, contract.SCORE_OUTPUT,
        contract.SCORE_OUTPUT_FORMAT, contract.SCORE_KEY_COLUMNS, contract.SCORE_METHODS,
        contract.SCORE_SHARDS, contract.SCORE_BATCH_ROWS, contract.SCORE_RUN_ID,
        contract.BUNDLE, contract.MODEL_FORMAT, contract.MODEL_DIGEST,
        contract.ALLOW_UNVERIFIED, contract.MODEL_NAME, contract.REVISION,
        contract.TERMINATION_LOG, contract.S3_ENDPOINT, MAX_BUNDLE_BYTES, TRUSTED_TYPES,
        FETCH_TIMEOUT_S, WORK_DIR, LOG_LEVEL, *IGNORED,
    })


@dataclass(frozen=True)
class ScoreSettings:
    input_uri: str
    output_uri: str
    run_id: str
    bundle: str
    shards: int = 1
    index: int = 0
    input_format: str | None = None
    output_format: str = "parquet"
    key_columns: tuple[str, ...] = ()
    methods: tuple[str, ...] = ("predict",)
    batch_rows: int = DEFAULT_BATCH_ROWS
    model_format: str | None = None
    model_digest: str | None = None
    allow_unverified: bool = False
    model_name: str | None = None
    revision: int | None = None
    termination_log: Path | None = None
    max_bundle_bytes: int = 1 << 30
    trusted_types: tuple[str, ...] = ()
    fetch_timeout_s: float = 60.0
    work_dir: Path = Path("/tmp/seaway")
    log_level: str = "INFO"


def termination_path(environ: Mapping[str, str]) -> Path | None:
    """Where the termination message goes, readable even when nothing else parses."""
    value = environ.get(contract.TERMINATION_LOG)
    return Path(value) if value else None


def _required(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise InvalidSettings(f"{name} is not set")
    return value


def _int(environ: Mapping[str, str], name: str, default: int | None, minimum: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        if default is None:
            raise InvalidSettings(f"{name} is not set")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidSettings(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise InvalidSettings(f"{name}={value} must be at least {minimum}")
    return value


def _choice(environ: Mapping[str, str], name: str, choices: tuple[str, ...],
            default: str | None) -> str | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if raw not in choices:
        raise InvalidSettings(f"{name}={raw!r}: expected one of {', '.join(choices)}")
    return raw


def _bool(environ: Mapping[str, str], name: str) -> bool:
    raw = environ.get(name, "").strip().lower()
    if raw in ("", "false", "0", "no"):
        return False
    if raw in ("true", "1", "yes"):
        return True
    raise InvalidSettings(f"{name}={raw!r}: expected true or false")


def _names(raw: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in raw.split(",") if n.strip())


def parse(environ: Mapping[str, str]) -> ScoreSettings:
    """The settings from ``environ``; raises InvalidSettings naming the variable at fault."""
    unknown = contract.unknown_variables(environ, known_variables())
    if unknown:
        # a misspelt name would otherwise be ignored (a misspelt digest: an unverified model)
        raise InvalidSettings(f"unknown setting {', '.join(unknown)}: seaway-score reads "
                              f"{', '.join(sorted(known_variables()))}")
    shards = _int(environ, contract.SCORE_SHARDS, 1, 1)
    index = _int(environ, contract.JOB_COMPLETION_INDEX, 0 if shards == 1 else None, 0)
    if index >= shards:
        raise InvalidSettings(f"{contract.JOB_COMPLETION_INDEX}={index} is not below "
                              f"{contract.SCORE_SHARDS}={shards}")
    run_id = _required(environ, contract.SCORE_RUN_ID)
    if not RUN_ID_RE.match(run_id):
        raise InvalidSettings(f"{contract.SCORE_RUN_ID}={run_id!r}: use letters, digits, '.', "
                              "'_' and '-' (a ScoringJob's uid)")
    methods = _names(environ.get(contract.SCORE_METHODS, "")) or ("predict",)
    wrong = [m for m in methods if m not in METHODS]
    if wrong or "predict" not in methods or len(set(methods)) != len(methods):
        raise InvalidSettings(f"{contract.SCORE_METHODS}={','.join(methods)!r}: expected "
                              "predict or predict,predict_proba")
    digest = environ.get(contract.MODEL_DIGEST, "").strip() or None
    if digest is not None and not DIGEST_RE.match(digest):
        raise InvalidSettings(f"{contract.MODEL_DIGEST} must look like sha256:<64 lowercase "
                              "hex digits>")
    revision_raw = environ.get(contract.REVISION, "").strip()
    revision = _int(environ, contract.REVISION, None, 0) if revision_raw else None
    trusted_raw = environ.get(TRUSTED_TYPES, "").strip()
    trusted: tuple[str, ...] = ()
    if trusted_raw:
        try:
            parsed = json.loads(trusted_raw)
        except ValueError:
            parsed = None
        if not isinstance(parsed, list) or not all(isinstance(t, str) for t in parsed):
            raise InvalidSettings(f'{TRUSTED_TYPES} must be a JSON list of type names, e.g. '
                                  '["numpy.float64"]')
        trusted = tuple(parsed)
    timeout_raw = environ.get(FETCH_TIMEOUT_S, "").strip()
    try:
        timeout = float(timeout_raw) if timeout_raw else 60.0
    except ValueError:
        raise InvalidSettings(f"{FETCH_TIMEOUT_S}={timeout_raw!r} is not a number") from None
    if timeout <= 0:
        raise InvalidSettings(f"{FETCH_TIMEOUT_S} must be above 0")
    return ScoreSettings(
        input_uri=_required(environ, contract.SCORE_INPUT),
        output_uri=_required(environ, contract.SCORE_OUTPUT),
        run_id=run_id,
        bundle=_required(environ, contract.BUNDLE),
        shards=shards,
        index=index,
        input_format=_choice(environ, contract.SCORE_INPUT_FORMAT, ("csv", "parquet"), None),
        output_format=_choice(environ, contract.SCORE_OUTPUT_FORMAT, ("parquet", "csv"),
                              "parquet") or "parquet",
        key_columns=_names(environ.get(contract.SCORE_KEY_COLUMNS, "")),
        methods=methods,
        batch_rows=_int(environ, contract.SCORE_BATCH_ROWS, DEFAULT_BATCH_ROWS, 1),
        model_format=_choice(environ, contract.MODEL_FORMAT, contract.FORMATS, None),
        model_digest=digest,
        allow_unverified=_bool(environ, contract.ALLOW_UNVERIFIED),
        model_name=environ.get(contract.MODEL_NAME, "").strip() or None,
        revision=revision,
        termination_log=termination_path(environ),
        max_bundle_bytes=_int(environ, MAX_BUNDLE_BYTES, 1 << 30, 1),
        trusted_types=trusted,
        fetch_timeout_s=timeout,
        work_dir=Path(environ.get(WORK_DIR, "").strip() or "/tmp/seaway"),
        log_level=environ.get(LOG_LEVEL, "").strip().upper() or "INFO",
    )
