"""Errors that end the server's start, each with a one-line message a user can act on."""

from __future__ import annotations


class StartupError(Exception):
    """The server cannot start serving; the message is one line and names the cause."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        # Kubernetes shows the termination message verbatim; keep it to one line.
        super().__init__(" ".join(message.split()))


class BundleRefused(StartupError):
    """The bundle failed a safety check (digest, versions, types, paths, size, self-check).

    Raised before anything in the bundle is deserialized, except for the self-check, which by
    definition runs on the loaded model.
    """

    exit_code = 2


class FetchFailed(StartupError):
    """The bundle could not be fetched from its source (network, permissions, not found)."""

    exit_code = 3
