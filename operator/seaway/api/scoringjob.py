"""``ScoringJob``: score a dataset in batch with a model Seaway serves, as an Indexed Job.

The model is named, not copied: a ModelDeployment's stable revision, one of its revisions by
number, or the bundle a RetrainJob promoted last. The operator resolves that name once, when the
job starts, and freezes what it found (bundle, digest, format, image) into the Job's Pod template
and into ``status.model``: a later edit of the ModelDeployment cannot change a running job.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from seaway.api.common import (
    Condition,
    Message,
    Name,
    ObjectMeta,
    SecretRef,
    Timestamp,
    Uri,
    WireModel,
    cel,
    validations,
)
from seaway.api.modeldeployment import Notifications, Resources
from seaway.api.retrainjob import ColumnName

KIND = "ScoringJob"
PLURAL = "scoringjobs"


class ModelRef(WireModel):
    """Which model scores the rows: a ModelDeployment's revision or a RetrainJob's promoted
    bundle. Resolved once, when the job starts."""

    model_config: ClassVar = WireModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.modelDeployment) != has(self.retrainJob)",
                message="set exactly one of model.modelDeployment or model.retrainJob",
            ),
            cel(
                "!has(self.revision) || has(self.modelDeployment)",
                message="model.revision names a revision of model.modelDeployment; set it too",
                field_path=".revision",
            ),
        )
    }

    model_deployment: Annotated[
        Name | None,
        Field(description="Score with this ModelDeployment's model (same namespace)."),
    ] = None
    revision: Annotated[
        int | None,
        Field(ge=1, description="A revision number from its status.revisions; default: stable."),
    ] = None
    retrain_job: Annotated[
        Name | None,
        Field(description="Score with the bundle this RetrainJob promoted last."),
    ] = None


class ScoringInput(WireModel):
    """The rows to score: one file, or every .csv and .parquet file beneath a folder or prefix."""

    uri: Annotated[
        Uri,
        Field(description="file:// (a volume), http(s):// (one file) or s3:// (file or prefix)."),
    ]
    format: Annotated[
        Literal["csv", "parquet"] | None,
        Field(description="Default: from each file's extension."),
    ] = None
    key_columns: Annotated[
        list[ColumnName] | None,
        Field(
            max_length=32,
            description="Input columns copied beside each prediction (e.g. a customer id).",
            json_schema_extra={"x-kubernetes-list-type": "set"},
        ),
    ] = None
    secret_ref: Annotated[
        SecretRef | None,
        Field(
            description="Credentials for the store (e.g. AWS_ACCESS_KEY_ID, SEAWAY_S3_ENDPOINT)."
        ),
    ] = None


class ScoringOutput(WireModel):
    """Where the parts, the per-unit records and the manifest are written (docs/scoring.md)."""

    uri: Annotated[
        Uri,
        Field(
            description="file:// folder (a shared volume) or s3:// prefix.",
            json_schema_extra=validations(
                cel(
                    "self.matches('^(file|s3)://.+')",
                    message_expression="'output.uri ' + self + ' must be file:// or s3://'",
                )
            ),
        ),
    ]
    format: Literal["parquet", "csv"] = "parquet"
    probabilities: Annotated[
        bool,
        Field(description="Also write predict_proba's columns (classifiers only)."),
    ] = False
    secret_ref: Annotated[
        SecretRef | None,
        Field(description="Credentials for the store, when it is not the input's."),
    ] = None


class ScoringJobSpec(WireModel):
    model_config: ClassVar = WireModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self == oldSelf",
                message="a ScoringJob's spec cannot change once created; create another one",
            ),
            cel(
                "!has(self.shards) || self.shards >= self.parallelism",
                message="shards must be at least parallelism (a pod without a shard does nothing)",
                field_path=".shards",
            ),
        )
    }

    model: ModelRef
    input: ScoringInput
    output: ScoringOutput
    parallelism: Annotated[int, Field(ge=1, le=64, description="Pods scoring at once.")] = 1
    shards: Annotated[
        int | None,
        Field(
            ge=1,
            le=1000,
            description=(
                "Completion indexes of the Indexed Job; each scores every shards-th unit of the"
                " input. Default: parallelism."
            ),
        ),
    ] = None
    batch_rows: Annotated[
        int | None,
        Field(
            ge=100,
            le=10_000_000,
            description="Rows read, scored and written at a time: the memory bound per pod.",
        ),
    ] = None
    resources: Resources | None = None
    backoff_limit_per_index: Annotated[
        int,
        Field(ge=0, le=10, description="Retries of a shard whose pod failed or was lost."),
    ] = 3
    active_deadline_seconds: Annotated[
        int, Field(ge=60, le=604800, description="The whole job's time limit.")
    ] = 86400
    notifications: Annotated[
        Notifications | None,
        Field(description="Default: the webhook of the ModelDeployment the model comes from."),
    ] = None


class FrozenModel(WireModel):
    """The model the job scores with, as resolved when it started."""

    model_deployment: Annotated[str | None, Field(max_length=253)] = None
    retrain_job: Annotated[str | None, Field(max_length=253)] = None
    revision: Annotated[
        int | None,
        Field(ge=0, description="The ModelDeployment revision, or the RetrainJob run number."),
    ] = None
    uri: Annotated[str, Field(max_length=2048, description="The bundle (credentials removed).")]
    digest: Annotated[str | None, Field(max_length=71)] = None
    format: Annotated[str, Field(max_length=32)]
    image: Annotated[str, Field(max_length=512)]


class ScoringJobStatus(WireModel):
    observed_generation: Annotated[int | None, Field(ge=0)] = None
    conditions: Annotated[list[Condition], Field(max_length=16)] = Field(default_factory=list)
    job_name: Annotated[str | None, Field(max_length=253)] = None
    model: FrozenModel | None = None
    shards_total: Annotated[int | None, Field(ge=0)] = None
    shards_done: Annotated[int | None, Field(ge=0, description="Completed indexes.")] = None
    shards: Annotated[str | None, Field(max_length=16, description='"done/total", e.g. "2/3".')] = (
        None
    )
    units_total: Annotated[
        int | None, Field(ge=0, description="Work units of the input (files or ranges).")
    ] = None
    units_done: Annotated[int | None, Field(ge=0)] = None
    rows_scored: Annotated[int | None, Field(ge=0)] = None
    rows_per_second: Annotated[
        int | None, Field(ge=0, description="Rows scored per second of the job's wall time.")
    ] = None
    started_at: Timestamp | None = None
    completed_at: Timestamp | None = None
    message: Message | None = None


class ScoringJob(WireModel):
    """Scores a dataset in batch with a ModelDeployment's or RetrainJob's model."""

    model_config: ClassVar = WireModel.model_config | {"extra": "ignore"}

    api_version: Literal["seaway.dev/v1alpha1"] = "seaway.dev/v1alpha1"
    kind: Literal["ScoringJob"] = "ScoringJob"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ScoringJobSpec
    status: ScoringJobStatus = Field(default_factory=ScoringJobStatus)

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ScoringJob:
        """Parse an object as read from the API server (tolerates server-set fields)."""
        return cls.model_validate(body)
