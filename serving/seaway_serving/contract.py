"""The contract between the operator and Seaway's pods: every setting it passes, named once.

The operator (package ``seaway``) renders the model-server, router and trainer containers with
the names and helpers below; ``seaway-serve``, ``seaway-router`` and ``seaway-train`` read the
same names. Both sides import this module, so a name cannot drift on one side only: the model
server refuses to start on a ``SEAWAY_*`` variable it does not know, and the tests start the real
processes with exactly the environment the operator renders.

Standard library only: the operator image imports it without the serving dependencies.
"""

from __future__ import annotations

from collections.abc import Mapping

PREFIX = "SEAWAY_"
TRAIN_PREFIX = "SEAWAY_TRAIN_"

# -- seaway-serve ---------------------------------------------------------------------------
#: Where the bundle is: a path, file://, http(s):// or s3:// URI (bundle dir, archive or file).
BUNDLE = "SEAWAY_BUNDLE"
#: The model format the spec names; the bundle's manifest must say the same.
MODEL_FORMAT = "SEAWAY_MODEL_FORMAT"
#: The sha256 pinned in the spec; the model file's bytes must hash to it.
MODEL_DIGEST = "SEAWAY_MODEL_DIGEST"
#: ``true`` only when the user wrote ``model.allowUnverified: true``.
ALLOW_UNVERIFIED = "SEAWAY_ALLOW_UNVERIFIED"
MODEL_NAME = "SEAWAY_MODEL_NAME"
REVISION = "SEAWAY_REVISION"
HOST = "SEAWAY_HOST"
PORT = "SEAWAY_PORT"
#: Where a refusal is written for ``kubectl describe`` (the kubelet's termination-message file).
TERMINATION_LOG = "SEAWAY_TERMINATION_LOG"
#: Read by the bundle fetcher for s3:// URIs (beside the AWS_* variables).
S3_ENDPOINT = "SEAWAY_S3_ENDPOINT"

#: The variables the operator sets on every model-server container. A user's ``server.env`` may
#: not set them: they carry what the revision is (its model, digest and format) and where it
#: listens, and a second value would silently override the operator's.
RESERVED_SERVER_VARIABLES: tuple[str, ...] = (
    BUNDLE, MODEL_FORMAT, MODEL_DIGEST, ALLOW_UNVERIFIED, MODEL_NAME, REVISION, HOST, PORT,
    TERMINATION_LOG,
)

#: Model formats a server loads.
FORMATS: tuple[str, ...] = ("sklearn-joblib", "skops")

#: The termination-message path the kubelet reads (``terminationMessagePath``'s default).
KUBE_TERMINATION_LOG = "/dev/termination-log"


def server_env(
    *,
    bundle: str,
    model_format: str,
    digest: str | None,
    allow_unverified: bool,
    model_name: str,
    revision: int,
    port: int,
    host: str = "0.0.0.0",
) -> list[tuple[str, str]]:
    """The operator's part of a model-server container's environment, in a stable order.

    The pinned digest always travels with the model; ``allow_unverified`` is passed only when
    true (it is never inferred from a missing digest).
    """
    if model_format not in FORMATS:
        raise ValueError(f"unknown model format {model_format!r}; expected one of {FORMATS}")
    env = [
        (BUNDLE, bundle),
        (MODEL_FORMAT, model_format),
        (MODEL_NAME, model_name),
        (REVISION, str(revision)),
        (PORT, str(port)),
        (HOST, host),
        (TERMINATION_LOG, KUBE_TERMINATION_LOG),
    ]
    if digest:
        env.append((MODEL_DIGEST, digest))
    if allow_unverified:
        env.append((ALLOW_UNVERIFIED, "true"))
    return env


def unknown_variables(environ: Mapping[str, str], known: frozenset[str],
                      prefix: str = PREFIX) -> list[str]:
    """``prefix`` variables in ``environ`` that are not in ``known``, sorted."""
    return sorted(k for k in environ if k.startswith(prefix) and k not in known)


# -- seaway-router --------------------------------------------------------------------------
#: A file holding the bearer token /feedback and /experiment require (a mounted Secret key).
FEEDBACK_TOKEN_FILE = "SEAWAY_FEEDBACK_TOKEN_FILE"


def router_args(*, configmap: str, port: int) -> list[str]:
    """The router's arguments: the ``<namespace>/<name>`` of its routes ConfigMap and its port."""
    return ["--configmap", configmap, "--port", str(port)]


# -- seaway-train ---------------------------------------------------------------------------
def train_variable(field: str) -> str:
    """``dataset_uri`` -> ``SEAWAY_TRAIN_DATASET_URI`` (the trainer's settings field names)."""
    return TRAIN_PREFIX + field.upper()


# -- seaway-score ---------------------------------------------------------------------------
# A ScoringJob runs as an Indexed Job of ``SCORE_SHARDS`` completions; the pod with completion
# index ``i`` (Kubernetes sets ``JOB_COMPLETION_INDEX``) scores every work unit ``u`` of the
# input with ``u % SCORE_SHARDS == i``. The units are derived from the input alone, the same in
# every pod: the input's files sorted by name, one unit per file, or, when the input is a single
# file, ``SCORE_SHARDS`` ranges of it (Parquet row groups, CSV byte ranges cut at line ends).
# The model comes from the same variables as ``seaway-serve`` (BUNDLE, MODEL_FORMAT,
# MODEL_DIGEST, ALLOW_UNVERIFIED, MODEL_NAME, REVISION, TERMINATION_LOG, S3_ENDPOINT).
#
# Output layout beneath ``SCORE_OUTPUT`` (a folder or an s3:// prefix):
#   part-<unit:05d>.<parquet|csv>   the unit's rows: key columns, prediction column(s),
#                                   ``seaway_revision`` and ``seaway_digest``; written whole
#                                   (a temporary name then a rename, or one S3 object), so a
#                                   killed pod leaves no partial part
#   _units/<unit:05d>.json          written after its part: the unit's rows and source; a unit
#                                   with a record is never scored again
#   _manifest.json                  written last, by the pod that finds every unit recorded
# A record or manifest of another run (``SCORE_RUN_ID``) makes the scorer refuse the output.
SCORE_PREFIX = "SEAWAY_SCORE_"
#: The input: a file, or a folder / s3:// prefix (every .csv and .parquet file beneath it).
SCORE_INPUT = "SEAWAY_SCORE_INPUT"
#: ``csv`` or ``parquet``; unset: from each file's extension.
SCORE_INPUT_FORMAT = "SEAWAY_SCORE_INPUT_FORMAT"
#: Where parts, unit records and the manifest go (see the layout above).
SCORE_OUTPUT = "SEAWAY_SCORE_OUTPUT"
#: ``parquet`` (default) or ``csv``.
SCORE_OUTPUT_FORMAT = "SEAWAY_SCORE_OUTPUT_FORMAT"
#: Comma-separated input columns copied to the output beside each prediction.
SCORE_KEY_COLUMNS = "SEAWAY_SCORE_KEY_COLUMNS"
#: ``predict`` (default) or ``predict,predict_proba``.
SCORE_METHODS = "SEAWAY_SCORE_METHODS"
#: The Indexed Job's completions: how many indexes share the units.
SCORE_SHARDS = "SEAWAY_SCORE_SHARDS"
#: Rows read, scored and written at a time: the memory bound.
SCORE_BATCH_ROWS = "SEAWAY_SCORE_BATCH_ROWS"
#: The run's identity (the ScoringJob's uid), written in every record and the manifest.
SCORE_RUN_ID = "SEAWAY_SCORE_RUN_ID"
#: Set by Kubernetes on an Indexed Job's pods.
JOB_COMPLETION_INDEX = "JOB_COMPLETION_INDEX"

#: Exit codes the operator's podFailurePolicy reads: these fail the whole job at once (retrying
#: cannot help); any other non-zero code retries the index (``backoffLimitPerIndex``).
SCORE_EXIT_MODEL_REFUSED = 3
SCORE_EXIT_BAD_INPUT = 4
SCORE_EXIT_OUTPUT_REFUSED = 5
SCORE_PERMANENT_EXIT_CODES: tuple[int, ...] = (
    SCORE_EXIT_MODEL_REFUSED, SCORE_EXIT_BAD_INPUT, SCORE_EXIT_OUTPUT_REFUSED,
)

#: The termination message a scoring pod writes (one JSON object), success or failure:
#: {"index": 0, "unitsTotal": 7, "unitsDone": [0, 3, 6], "unitsSkipped": [3],
#:  "rows": 123456, "seconds": 12.5, "revision": 2, "digest": "sha256:...",
#:  "reason": "Succeeded" | "ModelRefused" | "BadInput" | "OutputRefused" | "Failed",
#:  "message": "..."}
#: ``unitsSkipped`` are units found recorded already (scored by an earlier attempt);
#: ``rows`` counts only the rows this attempt scored. Optional (additive):
#: ``"rowsSkipped": 4567``, the rows of ``unitsSkipped`` as their records say, so the operator
#: counts an index's rows from its last attempt even when an earlier pod was deleted unseen.
#: ``unitsDone`` and ``unitsSkipped`` are left out when they would not fit the kubelet's 4 KiB
#: (thousands of files): a succeeded index did every unit ``u % SCORE_SHARDS == index``.
SCORE_REASONS: tuple[str, ...] = ("Succeeded", "ModelRefused", "BadInput", "OutputRefused",
                                  "Failed")


def score_env(
    *,
    input_uri: str,
    output_uri: str,
    shards: int,
    run_id: str,
    input_format: str | None = None,
    output_format: str = "parquet",
    key_columns: tuple[str, ...] = (),
    methods: tuple[str, ...] = ("predict",),
    batch_rows: int | None = None,
) -> list[tuple[str, str]]:
    """The scoring part of a ``seaway-score`` container's environment (beside ``server_env``'s
    model variables, without HOST and PORT), in a stable order."""
    env = [
        (SCORE_INPUT, input_uri),
        (SCORE_OUTPUT, output_uri),
        (SCORE_OUTPUT_FORMAT, output_format),
        (SCORE_SHARDS, str(shards)),
        (SCORE_RUN_ID, run_id),
        (SCORE_METHODS, ",".join(methods)),
    ]
    if input_format:
        env.append((SCORE_INPUT_FORMAT, input_format))
    if key_columns:
        env.append((SCORE_KEY_COLUMNS, ",".join(key_columns)))
    if batch_rows:
        env.append((SCORE_BATCH_ROWS, str(batch_rows)))
    return env
