"""``ModelDeployment``: a model served by revisions, rolled out by steps, reverted on failure."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from seaway.api.common import (
    CRON_RULE,
    AnnotationValue,
    Condition,
    Decimal,
    Duration,
    LabelKey,
    LabelValue,
    Message,
    Name,
    ObjectMeta,
    SecretRef,
    ShortText,
    Timestamp,
    Uri,
    WireModel,
    cel,
    validations,
)
from seaway_serving import contract

KIND = "ModelDeployment"
PLURAL = "modeldeployments"

ModelFormat = Literal["sklearn-joblib", "skops"]
Token = Annotated[
    str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
]
RATIO_PATTERN = r"^(0(\.[0-9]{1,6})?|1(\.0{1,6})?)$"
Ratio = Annotated[str, Field(min_length=1, max_length=8, pattern=RATIO_PATTERN)]
Percent = Annotated[int, Field(ge=0, le=100)]
Quantity = Annotated[
    str, Field(max_length=64, pattern=r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
]


class ModelSource(WireModel):
    """Where the model file comes from, and how to check it before anything is unpickled."""

    model_config: ClassVar = WireModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.uri) != has(self.fromRetrainJob)",
                message="set exactly one of model.uri or model.fromRetrainJob",
            ),
            cel(
                "!has(self.uri) || self.format != 'sklearn-joblib' || has(self.digest)"
                " || (has(self.allowUnverified) && self.allowUnverified)",
                message=(
                    "digest is required for format sklearn-joblib (loading a pickle runs code);"
                    " give sha256:<64 hex> or set allowUnverified: true"
                ),
                field_path=".digest",
                reason="FieldValueRequired",
            ),
        )
    }

    uri: Annotated[
        Uri | None,
        Field(
            description=(
                "What to serve, at file://, http(s):// or s3:// (S3-compatible): a bare model"
                " file ending in .joblib or .pkl (sklearn-joblib) or .skops (skops), made safe"
                " by the pinned digest; a bundle archive ending in .tar, .tar.gz or .tgz; or"
                " else a bundle directory holding manifest.json."
            )
        ),
    ] = None
    format: Annotated[
        ModelFormat, Field(description="How the model file is serialized: sklearn-joblib or skops.")
    ] = "sklearn-joblib"
    digest: Annotated[
        str | None,
        Field(
            max_length=71,
            pattern=r"^sha256:[0-9a-f]{64}$",
            description="sha256 of the model file's bytes, checked before loading.",
        ),
    ] = None
    allow_unverified: Annotated[
        bool | None,
        Field(
            description="Serve a sklearn-joblib model without a digest. Loading a pickle runs code."
        ),
    ] = None
    from_retrain_job: Annotated[
        Name | None,
        Field(description="Follow the bundle this RetrainJob promoted last, instead of a uri."),
    ] = None
    secret_ref: Annotated[
        SecretRef | None,
        Field(
            description="Credentials for the store (e.g. AWS_ACCESS_KEY_ID), passed as environment."
        ),
    ] = None


class EnvVar(WireModel):
    """A plain environment variable for the model server container."""

    name: Annotated[
        str, Field(min_length=1, max_length=256, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    ]
    value: Annotated[str, Field(max_length=4096)] = ""


class Resources(WireModel):
    """Container resource requests and limits, as Kubernetes quantities."""

    requests: Annotated[dict[str, Quantity] | None, Field(max_length=8)] = None
    limits: Annotated[dict[str, Quantity] | None, Field(max_length=8)] = None


class Autoscaling(WireModel):
    """A HorizontalPodAutoscaler per revision."""

    model_config: ClassVar = WireModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.minReplicas <= self.maxReplicas",
                message="autoscaling.minReplicas must not exceed maxReplicas",
                field_path=".minReplicas",
            )
        )
    }

    min_replicas: Annotated[int, Field(ge=1, le=1000)] = 1
    max_replicas: Annotated[int, Field(ge=1, le=1000)]
    target_cpu_utilization_percentage: Annotated[
        int, Field(alias="targetCPUUtilizationPercentage", ge=1, le=100)
    ] = 80


_RESERVED_ENV = ", ".join(f"'{name}'" for name in contract.RESERVED_SERVER_VARIABLES)


class Server(WireModel):
    """The model server Pods of every revision.

    Every field except ``replicas`` and ``autoscaling`` is part of a revision: changing it makes
    a new revision, and each revision keeps the template it was created with.
    """

    model_config: ClassVar = WireModel.model_config | {
        "json_schema_extra": validations(
            cel(
                f"!has(self.env) || self.env.all(e, !(e.name in [{_RESERVED_ENV}]))",
                message=(
                    "server.env may not set a variable the operator sets for each revision: "
                    + ", ".join(contract.RESERVED_SERVER_VARIABLES)
                ),
                field_path=".env",
            )
        )
    }

    image: Annotated[str, Field(min_length=1, max_length=512, description="Model server image.")]
    replicas: Annotated[int, Field(ge=0, le=1000, description="Pods per revision.")] = 1
    resources: Resources | None = None
    env: Annotated[list[EnvVar] | None, Field(max_length=64)] = None
    pod_annotations: Annotated[dict[LabelKey, AnnotationValue] | None, Field(max_length=64)] = None
    pod_labels: Annotated[dict[LabelKey, LabelValue] | None, Field(max_length=64)] = None
    autoscaling: Autoscaling | None = None


class Pause(WireModel):
    """Hold the rollout: for ``duration``, or until a promote when no duration is given."""

    duration: Annotated[Duration | None, Field(description="e.g. 60s, 5m, 1h.")] = None


class Step(WireModel):
    """One canary step: exactly one of ``setWeight`` or ``pause``."""

    model_config: ClassVar = WireModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.setWeight) != has(self.pause)",
                message="each step sets exactly one of setWeight or pause",
            )
        )
    }

    set_weight: Annotated[
        Percent | None, Field(description="Percent of traffic for the canary.")
    ] = None
    pause: Pause | None = None


class Prometheus(WireModel):
    """A Prometheus server reachable from the operator."""

    address: Annotated[
        str,
        Field(
            min_length=1,
            max_length=2048,
            # no user info, query or fragment: the operator appends /api/v1/query to the path
            pattern=r"^https?://[^/?#@\s]+(/[^?#\s]*)?$",
            description=(
                "e.g. http://prometheus:9090 (a path prefix may follow; no query, fragment or"
                " user info). Its host must be on the operator's --allow-prometheus-host list."
            ),
        ),
    ]


class MetricsProvider(WireModel):
    prometheus: Prometheus | None = None


class Analysis(WireModel):
    """Metric checks while a canary holds traffic; a failure reverts like a readiness failure."""

    model_config: ClassVar = WireModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.maxErrorRatio) || has(self.maxLatencyP99Ms)",
                message="analysis needs at least one threshold: maxErrorRatio or maxLatencyP99Ms",
            )
        )
    }

    interval: Annotated[Duration, Field(description="How often metrics are judged.")] = "30s"
    max_error_ratio: Annotated[
        Ratio | None, Field(description='Highest 5xx ratio, e.g. "0.01".')
    ] = None
    max_latency_p99_ms: Annotated[
        int | None, Field(ge=1, le=600000, description="Highest p99 latency.")
    ] = None
    min_requests: Annotated[
        int, Field(ge=0, le=100000000, description="Requests needed before judging.")
    ] = 100
    failure_limit: Annotated[
        int, Field(ge=1, le=100, description="Failed intervals before revert.")
    ] = 2
    no_data_limit: Annotated[
        int,
        Field(
            ge=1, le=1000, description="Intervals without enough data before the rollout aborts."
        ),
    ] = 10
    comparison: Annotated[
        Literal["Absolute", "Relative"],
        Field(description="Absolute thresholds, or canary minus stable (Relative)."),
    ] = "Absolute"
    provider: MetricsProvider | None = None


class Rollout(WireModel):
    """How a new revision takes over from the stable one."""

    model_config: ClassVar = WireModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.strategy != 'Canary' || (has(self.steps) && size(self.steps) > 0)",
                message="a Canary rollout needs at least one step",
                field_path=".steps",
                reason="FieldValueRequired",
            )
        )
    }

    strategy: Annotated[
        Literal["Canary", "BlueGreen", "Immediate"],
        Field(description="Canary: follow steps; BlueGreen: switch when fully ready; Immediate."),
    ]
    steps: Annotated[list[Step] | None, Field(max_length=32)] = None
    progress_deadline_seconds: Annotated[
        int, Field(ge=10, le=86400, description="Time a new revision has to become ready.")
    ] = 600
    analysis: Analysis | None = None


class ParentRef(WireModel):
    """A Gateway (or other parent) the HTTPRoute attaches to."""

    name: Name
    namespace: Name | None = None
    section_name: Annotated[str | None, Field(max_length=253)] = None


class GatewayTraffic(WireModel):
    parent_refs: Annotated[list[ParentRef], Field(min_length=1, max_length=16)]
    hostnames: Annotated[
        list[Annotated[str, Field(max_length=253)]] | None, Field(max_length=16)
    ] = None


class Variant(WireModel):
    revision: Annotated[int, Field(ge=1, description="A revision number from status.revisions.")]
    weight: Annotated[Percent | None, Field(description="Fixed A/B share (ABTest only).")] = None


class Sticky(WireModel):
    """Assign a caller to the same variant every time, by a header or a cookie value."""

    model_config: ClassVar = WireModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.header) != has(self.cookie)",
                message="sticky sets exactly one of header or cookie",
            )
        )
    }

    header: Annotated[str | None, Field(max_length=256)] = None
    cookie: Annotated[str | None, Field(max_length=256)] = None


class Bandit(WireModel):
    algorithm: Literal["ThompsonSampling", "EpsilonGreedy"] = "ThompsonSampling"
    exploration_floor_percent: Annotated[int, Field(ge=0, le=50)] = 5
    epsilon: Annotated[Ratio | None, Field(description='EpsilonGreedy only, e.g. "0.1".')] = None


class PromoteWinner(WireModel):
    confidence: Annotated[
        Ratio, Field(description='Probability the best variant is best, e.g. "0.95".')
    ]


class Experiment(WireModel):
    """A/B/N split with fixed weights, or a bandit that learns the weights from rewards."""

    model_config: ClassVar = WireModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.type != 'ABTest' || self.variants.all(v, has(v.weight))",
                message="every ABTest variant needs a weight",
                field_path=".variants",
            ),
            cel(
                "self.type != 'ABTest'"
                " || self.variants.map(v, has(v.weight) ? v.weight : 0).sum() == 100",
                message="ABTest variant weights must sum to 100",
                field_path=".variants",
            ),
            cel(
                "self.type != 'Bandit' || !has(self.bandit)"
                " || self.bandit.explorationFloorPercent * size(self.variants) <= 100",
                message="bandit.explorationFloorPercent times the number of variants exceeds 100",
                field_path=".bandit.explorationFloorPercent",
            ),
            cel(
                "self.variants.all(v, self.variants.exists_one(w, w.revision == v.revision))",
                message="each revision appears in at most one variant",
                field_path=".variants",
            ),
        )
    }

    type: Literal["ABTest", "Bandit"]
    variants: Annotated[list[Variant], Field(min_length=2, max_length=8)]
    sticky: Sticky | None = None
    bandit: Bandit | None = None
    promote_winner: PromoteWinner | None = None
    feedback_token_secret_ref: Annotated[
        SecretRef | None,
        Field(
            description=(
                "A Secret whose key `token` (16 or more characters) the router then requires as"
                " `Authorization: Bearer <token>` on /feedback and /experiment, so only those who"
                " hold it can reward variants. Read when the router starts."
            )
        ),
    ] = None


class Mirror(WireModel):
    revision: Annotated[int, Field(ge=1)]
    percent: Annotated[int, Field(ge=1, le=100)]


class Traffic(WireModel):
    """How requests are split between revisions."""

    model_config: ClassVar = WireModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.router != 'gateway-api' || has(self.gateway)",
                message="router gateway-api needs gateway.parentRefs",
                field_path=".gateway",
                reason="FieldValueRequired",
            )
        )
    }

    router: Annotated[
        Literal["builtin", "gateway-api"],
        Field(description="builtin: Seaway's router; gateway-api: an HTTPRoute for your Gateway."),
    ] = "builtin"
    gateway: GatewayTraffic | None = None
    experiment: Experiment | None = None
    mirror: Mirror | None = None


class Summary(WireModel):
    """The model report's JSON summary (docs/report.md), posted to webhookURL on a schedule."""

    schedule: Annotated[
        str,
        Field(
            max_length=128,
            description=(
                'Cron in UTC: five fields such as "0 9 * * 1" (Mondays 09:00), or @daily,'
                " @weekly. The first summary goes out at the first time after this is set."
            ),
            json_schema_extra=validations(CRON_RULE),
        ),
    ]
    window: Annotated[
        Duration | None,
        Field(
            description=(
                "How far back traffic and drift go (at least 1m). Default: the schedule's"
                " period, the time since the previous due time (7d for @weekly)."
            )
        ),
    ] = None
    prometheus: Annotated[
        Prometheus | None,
        Field(
            description=(
                "Default: rollout.analysis.provider.prometheus, else the operator's"
                " --prometheus-url. Without one the summary holds status and history only."
            )
        ),
    ] = None


class Notifications(WireModel):
    webhook_url: Annotated[
        str,
        Field(
            alias="webhookURL",
            min_length=1,
            max_length=2048,
            pattern=r"^https?://.+",
            description="Called with a JSON body on revert, failure and promotion.",
        ),
    ]


class ModelNotifications(Notifications):
    """A ModelDeployment's webhook, and the model report it may receive on a schedule."""

    summary: Summary | None = None


class Actions(WireModel):
    """Declarative commands: each new token value is acted on once (and recorded in status)."""

    promote: Annotated[Token | None, Field(description="Advance the canary one step.")] = None
    promote_full: Annotated[Token | None, Field(description="Skip the remaining steps.")] = None
    abort: Annotated[
        Token | None, Field(description="Revert the canary to the stable revision.")
    ] = None
    retry: Annotated[Token | None, Field(description="Try a rejected template again.")] = None


class RollbackTo(WireModel):
    """Serve an earlier revision from history, whatever the template says."""

    revision: Annotated[int, Field(ge=1)]
    skip_steps: Annotated[bool, Field(description="Go straight to 100% once ready.")] = True


class ModelDeploymentSpec(WireModel):
    model_config: ClassVar = WireModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "(has(oldSelf.traffic) ? oldSelf.traffic.router : 'builtin')"
                " == (has(self.traffic) ? self.traffic.router : 'builtin')",
                message=(
                    "traffic.router cannot change on a live ModelDeployment; re-create it instead"
                ),
                field_path=".traffic",
            )
        )
    }

    model: ModelSource
    server: Server
    rollout: Annotated[Rollout | None, Field(description="Omitted: Immediate.")] = None
    traffic: Traffic | None = None
    notifications: ModelNotifications | None = None
    revision_history_limit: Annotated[int, Field(ge=1, le=100)] = 10
    paused: Annotated[
        bool, Field(description="Freeze the rollout: no step, promotion or revert until unset.")
    ] = False
    actions: Actions | None = None
    rollback_to: RollbackTo | None = None


Fate = Literal["Pending", "Canary", "Stable", "Superseded", "Failed", "RolledBack", "Retired"]


class RevisionStatus(WireModel):
    """One immutable revision of the model and server template."""

    number: Annotated[int, Field(ge=1)]
    template_hash: Annotated[str, Field(max_length=64)]
    model_uri: Annotated[str | None, Field(alias="modelURI", max_length=2048)] = None
    digest: Annotated[str | None, Field(max_length=71)] = None
    format: Annotated[str | None, Field(max_length=32)] = None
    image: Annotated[str | None, Field(max_length=512)] = None
    created_at: Timestamp
    created_by: Annotated[ShortText, Field(description="user, or retrainjob/<name>#<run>.")] = (
        "user"
    )
    fate: Fate = "Pending"
    reason: Annotated[str | None, Field(max_length=128)] = None
    message: Message | None = None
    ready_at: Timestamp | None = None
    finished_at: Timestamp | None = None


class WeightStatus(WireModel):
    revision: Annotated[int, Field(ge=1)]
    weight: Percent


class HandledActions(WireModel):
    promote: Annotated[str | None, Field(max_length=63)] = None
    promote_full: Annotated[str | None, Field(max_length=63)] = None
    abort: Annotated[str | None, Field(max_length=63)] = None
    retry: Annotated[str | None, Field(max_length=63)] = None


class VariantStatus(WireModel):
    revision: Annotated[int, Field(ge=1)]
    requests: Annotated[int, Field(ge=0)] = 0
    rewards: Annotated[Decimal, Field(description="Sum of rewards received.")] = "0"
    weight: Percent = 0
    best_probability: Annotated[
        Decimal | None, Field(description="Probability this variant is the best one.")
    ] = None


class ExperimentStatus(WireModel):
    """What the router reports about the experiment (requests, rewards, the leader)."""

    variants: Annotated[list[VariantStatus], Field(max_length=8)] = Field(default_factory=list)
    best_revision: Annotated[int | None, Field(ge=1)] = None
    confidence: Decimal | None = None
    measured_at: Timestamp | None = None
    winner: Annotated[
        int | None,
        Field(ge=1, description="Set once promoteWinner's confidence was reached: serves 100%."),
    ] = None
    concluded_at: Timestamp | None = None


class AnalysisStatus(WireModel):
    """Metric analysis of the current canary (reset when a new canary starts)."""

    revision: Annotated[int, Field(ge=1)]
    runs: Annotated[int, Field(ge=0)] = 0
    failures: Annotated[int, Field(ge=0)] = 0
    no_data_in_a_row: Annotated[int, Field(ge=0)] = 0
    started_at: Annotated[Timestamp, Field(description="When the canary first had traffic.")]
    last_run_at: Timestamp | None = None
    last_result: Literal["Pass", "Fail", "NoData"] | None = None
    last_requests: Annotated[int | None, Field(ge=0)] = None
    last_error_ratio: Decimal | None = None
    last_latency_p99_ms: Annotated[int | None, Field(ge=0)] = None
    message: Message | None = None


class SummaryStatus(WireModel):
    """Where the scheduled summary stands: the due time lives here, never in memory."""

    schedule: Annotated[
        str, Field(max_length=128, description="The schedule nextAt was computed from.")
    ]
    next_at: Annotated[Timestamp | None, Field(description="When the next summary is due.")] = None
    last_due_at: Annotated[
        Timestamp | None,
        Field(
            description="The due time of the last send; due times missed while the operator"
            " was down are covered by that one send."
        ),
    ] = None
    last_sent_at: Annotated[
        Timestamp | None, Field(description="When a summary was last delivered.")
    ] = None
    last_result: Annotated[
        Literal["Sending", "Sent", "Failed", "InvalidSchedule"] | None,
        Field(
            description="Sending: the operator stopped during the send (not repeated);"
            " Failed: see message (not retried: the next due time sends again)."
        ),
    ] = None
    message: Message | None = None


class ModelDeploymentStatus(WireModel):
    observed_generation: Annotated[int | None, Field(ge=0)] = None
    conditions: Annotated[list[Condition], Field(max_length=16)] = Field(default_factory=list)
    stable_revision: Annotated[int | None, Field(ge=1)] = None
    canary_revision: Annotated[int | None, Field(ge=1)] = None
    canary_weight: Annotated[Percent | None, Field(description="Percent on the canary now.")] = None
    current_step_index: Annotated[int | None, Field(ge=0, le=32)] = None
    steps_hash: Annotated[str | None, Field(max_length=64)] = None
    step_started_at: Timestamp | None = None
    canary_started_at: Annotated[
        Timestamp | None, Field(description="When the canary's rollout (and its deadline) began.")
    ] = None
    pause_started_at: Annotated[
        Timestamp | None,
        Field(
            description="When the current pause began: the moment its weight was confirmed"
            " live, not when the pass that set it started."
        ),
    ] = None
    pause_ends_at: Annotated[
        Timestamp | None,
        Field(
            description="When the current timed pause ends: pauseStartedAt plus its duration,"
            " plus any time the operator could not reach the API server meanwhile."
        ),
    ] = None
    weights: Annotated[list[WeightStatus], Field(max_length=16)] = Field(default_factory=list)
    revisions: Annotated[list[RevisionStatus], Field(max_length=128)] = Field(default_factory=list)
    handled_actions: HandledActions | None = None
    experiment: ExperimentStatus | None = None
    analysis: AnalysisStatus | None = None
    summary: SummaryStatus | None = None
    message: Message | None = None


class ModelDeployment(WireModel):
    """A model served by revisions, rolled out step by step, reverted on failure."""

    model_config: ClassVar = WireModel.model_config | {"extra": "ignore"}

    api_version: Literal["seaway.dev/v1alpha1"] = "seaway.dev/v1alpha1"
    kind: Literal["ModelDeployment"] = "ModelDeployment"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus = Field(default_factory=ModelDeploymentStatus)

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ModelDeployment:
        """Parse an object as read from the API server (tolerates server-set fields)."""
        return cls.model_validate(body)
