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
