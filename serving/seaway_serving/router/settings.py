"""Router settings: environment variables with the ``SEAWAY_`` prefix, overridable on the CLI.

The same prefix and names as the model server where the knob is the same (host, port, body
limit, timeouts, log level): each runs in its own Pod, and one vocabulary is easier to operate.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from seaway_serving.router.kube import SERVICE_ACCOUNT_DIR, WATCH_SECONDS

_CONFIGMAP = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class RouterSettings(BaseSettings):
    """Everything ``seaway-router`` can be told. Field ``x`` is read from ``SEAWAY_X``."""

    model_config = SettingsConfigDict(env_prefix="SEAWAY_", extra="ignore")

    config: Path | None = Field(None, description="Routes file (JSON, or a ConfigMap manifest)")
    configmap: str | None = Field(None, description="<namespace>/<name> of the routes ConfigMap")
    backend_urls: dict[str, str] = Field(
        default_factory=dict, description="Backend name -> URL used instead of the document's")

    kubeconfig: Path | None = None
    kube_context: str | None = None
    kube_api: str | None = Field(None, description="API server URL, e.g. https://10.0.0.1:443")
    kube_token_file: Path | None = None
    kube_ca_file: Path | None = None
    kube_client_cert: Path | None = None
    kube_client_key: Path | None = None
    kube_serviceaccount_dir: Path = SERVICE_ACCOUNT_DIR
    kube_watch_seconds: int = Field(WATCH_SECONDS, ge=1, le=3600,
                                    description="How long one watch request lasts before it is "
                                    "renewed (from the last version seen)")

    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(16 << 20, gt=0, description="Request bodies above this get 413")
    max_inflight_bytes: int = Field(
        128 << 20, gt=0, description="Request bodies held at once by all requests in flight; "
        "beyond: 503 with Retry-After")
    keepalive_timeout_s: float = Field(75.0, gt=0)
    request_timeout_s: float = Field(30.0, gt=0, description="Time to receive one request")
    max_response_bytes: int = Field(64 << 20, gt=0, description="Larger backend answers: 502")
    backend_timeout_s: float = Field(30.0, gt=0, description="Time a backend has to answer")
    connect_timeout_s: float = Field(3.0, gt=0)
    max_backend_connections: int = Field(256, ge=1, description="Per backend")
    max_backend_queue: int = Field(1024, ge=0, description="Requests waiting for a connection")
    max_mirror_in_flight: int = Field(64, ge=1, description="Copies in flight beyond which "
                                      "copies are dropped")
    feedback_ttl_s: float = Field(900.0, gt=0, description="How long a request id can be "
                                  "rewarded")
    feedback_capacity: int = Field(200_000, ge=1, description="Rewarded request ids "
                                   "remembered (each can be rewarded once within the ttl)")
    feedback_token_file: Path | None = Field(
        None, description="File holding a bearer token that /feedback and /experiment require "
        "(e.g. from a Secret)")
    control_port: int | None = Field(
        None, ge=0, le=65535, description="Serve /feedback and /experiment on this port only "
        "(0: any free port), not on the traffic port")
    poll_interval_s: float = Field(0.1, gt=0, le=1.0, description="--config file poll period")
    shutdown_grace_s: float = Field(25.0, ge=0)
    log_level: str = "INFO"
    access_log: bool = False
    seed: int | None = Field(None, description="Seed of the router's random choices (tests)")

    @field_validator("configmap")
    @classmethod
    def _configmap_shape(cls, value: str | None) -> str | None:
        if value is not None and not _CONFIGMAP.match(value):
            raise ValueError("must be <namespace>/<name>")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> RouterSettings:
        if (self.config is None) == (self.configmap is None):
            raise ValueError("give exactly one of --config FILE or --configmap NAMESPACE/NAME")
        return self
