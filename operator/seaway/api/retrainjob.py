"""``RetrainJob``: retrain on a schedule, backtest against the live model, promote or hold."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from seaway.api.common import (
    CRON_RULE,
    Condition,
    Decimal,
    Duration,
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
from seaway.api.modeldeployment import EnvVar, Ratio, Resources, Token

KIND = "RetrainJob"
PLURAL = "retrainjobs"

Metric = Literal[
    "accuracy", "f1", "precision", "recall", "roc_auc", "log_loss", "r2", "rmse", "mae"
]
ColumnName = Annotated[str, Field(min_length=1, max_length=256)]


class Dataset(WireModel):
    """Training data for the built-in trainer."""

    uri: Annotated[Uri, Field(description="CSV or Parquet: file://, http(s):// or s3://.")]
    format: Annotated[
        Literal["csv", "parquet"] | None, Field(description="Default: from the file extension.")
    ] = None
    target: Annotated[ColumnName, Field(description="The column to predict.")]
    features: Annotated[
        list[ColumnName] | None, Field(max_length=512, description="Default: every other column.")
    ] = None
    timestamp_column: Annotated[
        ColumnName | None, Field(description="Orders rows for a Backtest split.")
    ] = None
    secret_ref: SecretRef | None = None


class Estimator(WireModel):
    """A scikit-learn estimator or Pipeline, by import path, with its constructor parameters."""

    import_path: Annotated[
        str,
        Field(
            min_length=3,
            max_length=256,
            pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$",
            description="e.g. sklearn.ensemble.RandomForestClassifier.",
        ),
    ]
    params: Annotated[
        dict[str, Any] | None,
        Field(
            description="Keyword arguments for the constructor.",
            json_schema_extra={"maxProperties": 64},
        ),
    ] = None


class CustomTrainer(WireModel):
    """Your own training image; it must write the same result contract as the built-in trainer."""

    image: Annotated[str, Field(min_length=1, max_length=512)]
    command: Annotated[
        list[Annotated[str, Field(max_length=4096)]], Field(min_length=1, max_length=32)
    ]
    args: Annotated[list[Annotated[str, Field(max_length=4096)]] | None, Field(max_length=64)] = (
        None
    )
    env: Annotated[list[EnvVar] | None, Field(max_length=64)] = None


class Validation(WireModel):
    """The gate a candidate must pass, scored on the same holdout as the live model."""

    model_config: ClassVar = WireModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.split != 'Backtest' || has(self.cutoff)",
                message="a Backtest split needs cutoff (e.g. 28d: train before, score after)",
                field_path=".cutoff",
                reason="FieldValueRequired",
            )
        )
    }

    split: Annotated[
        Literal["Holdout", "Backtest"],
        Field(description="Holdout: random rows; Backtest: train before the cutoff, score after."),
    ] = "Holdout"
    test_fraction: Annotated[Ratio, Field(description="Holdout share of rows.")] = "0.2"
    cutoff: Annotated[
        Duration | None, Field(description="Backtest window before the newest row.")
    ] = None
    windows: Annotated[int, Field(ge=1, le=12, description="Rolling backtest windows.")] = 1
    metric: Metric = "accuracy"
    min_score: Annotated[
        Decimal | None, Field(description='Lowest acceptable score, e.g. "0.80".')
    ] = None
    min_improvement: Annotated[
        Decimal | None, Field(description='Required gain over the live model, e.g. "0.005".')
    ] = None


class Output(WireModel):
    """Where runs write their bundles (one folder per run beneath this prefix)."""

    uri: Annotated[
        Uri,
        Field(
            description="file:// (a shared volume) or s3:// prefix.",
            json_schema_extra=validations(
                cel(
                    "self.matches('^(file|s3)://.+')",
                    message_expression="'output.uri ' + self + ' must be file:// or s3://'",
                )
            ),
        ),
    ]
    secret_ref: SecretRef | None = None


class Approval(WireModel):
    """A human decision about a run's candidate (promotion: Manual)."""

    run: Annotated[int, Field(ge=1)]
    decision: Literal["Approve", "Reject"]
    approver: Annotated[str, Field(min_length=1, max_length=256, description="Must be you.")]
    reason: Annotated[str | None, Field(max_length=1024)] = None


class RetrainJobSpec(WireModel):
    model_config: ClassVar = WireModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.estimator) != has(self.customTrainer)",
                message="set exactly one of estimator (built-in trainer) or customTrainer",
            ),
            cel(
                "!has(self.estimator) || has(self.dataset)",
                message="the built-in trainer needs a dataset",
                field_path=".dataset",
                reason="FieldValueRequired",
            ),
            cel(
                "!has(self.validation) || self.validation.split != 'Backtest'"
                " || has(self.customTrainer)"
                " || (has(self.dataset) && has(self.dataset.timestampColumn))",
                message="a Backtest split needs dataset.timestampColumn",
                field_path=".dataset",
            ),
        )
    }

    model_deployment: Annotated[
        Name,
        Field(
            description="The ModelDeployment this job trains for (same namespace).",
            json_schema_extra=validations(
                cel(
                    "self == oldSelf",
                    message="modelDeployment cannot change; create another RetrainJob",
                )
            ),
        ),
    ]
    schedule: Annotated[
        str | None,
        Field(
            max_length=128,
            description="Cron; omitted: runs only on runNow.",
            json_schema_extra=validations(CRON_RULE),
        ),
    ] = None
    suspend: bool = False
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = "Forbid"
    run_now: Annotated[Token | None, Field(description="Each new value starts one run.")] = None
    dataset: Dataset | None = None
    estimator: Estimator | None = None
    custom_trainer: CustomTrainer | None = None
    trainer_image: Annotated[
        str | None,
        Field(
            max_length=512, description="Image of the built-in trainer; default: the operator's."
        ),
    ] = None
    resources: Resources | None = None
    validation: Validation | None = None
    promotion: Literal["Auto", "Manual"] = "Manual"
    output: Output
    approvals: Annotated[list[Approval] | None, Field(max_length=32)] = None
    four_eyes: Annotated[
        bool,
        Field(
            description=(
                "Four-eyes approvals: an approval's approver must differ from the last editor of"
                " this spec, recorded in the annotation seaway.dev/spec-editor (the admission"
                " policy requires it on every spec change). Cannot be turned off once on."
                " Namespaces labelled seaway.dev/four-eyes=true enforce it for every RetrainJob."
            ),
            json_schema_extra=validations(
                cel("self || !oldSelf", message="fourEyes cannot be turned off once on")
            ),
        ),
    ] = False
    backoff_limit: Annotated[int, Field(ge=0, le=10)] = 2
    active_deadline_seconds: Annotated[int, Field(ge=60, le=604800)] = 3600
    history_limit: Annotated[int, Field(ge=1, le=50)] = 10


RunResult = Literal["Running", "Succeeded", "Failed"]
Decision = Literal["Pending", "Promoted", "AwaitingApproval", "Rejected", "NotPromoted"]


class Candidate(WireModel):
    uri: Annotated[str, Field(max_length=2048)]
    digest: Annotated[str, Field(max_length=71)]
    format: Annotated[str, Field(max_length=32)] = "sklearn-joblib"


class RunStatus(WireModel):
    number: Annotated[int, Field(ge=1)]
    job_name: Annotated[str, Field(max_length=253)]
    trigger: Annotated[ShortText, Field(description="schedule, runNow:<token> or cli.")]
    started_at: Timestamp
    finished_at: Timestamp | None = None
    result: RunResult = "Running"
    reason: Annotated[str | None, Field(max_length=128)] = None
    message: Message | None = None
    candidate: Candidate | None = None
    candidate_score: Decimal | None = None
    incumbent_score: Decimal | None = None
    decision: Decision = "Pending"
    decision_reason: Message | None = None
    decided_by: Annotated[str | None, Field(max_length=256)] = None
    decided_at: Timestamp | None = None


class Promoted(WireModel):
    run: Annotated[int, Field(ge=1)]
    uri: Annotated[str, Field(max_length=2048)]
    digest: Annotated[str, Field(max_length=71)]
    format: Annotated[str, Field(max_length=32)]
    promoted_at: Timestamp
    approved_by: Annotated[str | None, Field(max_length=256)] = None


class RetrainJobStatus(WireModel):
    observed_generation: Annotated[int | None, Field(ge=0)] = None
    conditions: Annotated[list[Condition], Field(max_length=16)] = Field(default_factory=list)
    runs: Annotated[list[RunStatus], Field(max_length=50)] = Field(default_factory=list)
    promoted: Promoted | None = None
    last_schedule_time: Timestamp | None = None
    next_schedule_time: Timestamp | None = None
    handled_run_now: Annotated[str | None, Field(max_length=63)] = None


class RetrainJob(WireModel):
    """Retrains on a schedule, gates the candidate against the live model, promotes or holds it."""

    model_config: ClassVar = WireModel.model_config | {"extra": "ignore"}

    api_version: Literal["seaway.dev/v1alpha1"] = "seaway.dev/v1alpha1"
    kind: Literal["RetrainJob"] = "RetrainJob"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: RetrainJobSpec
    status: RetrainJobStatus = Field(default_factory=RetrainJobStatus)

    @classmethod
    def parse(cls, body: dict[str, Any]) -> RetrainJob:
        """Parse an object as read from the API server (tolerates server-set fields)."""
        return cls.model_validate(body)
