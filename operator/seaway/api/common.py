"""Building blocks shared by both kinds: wire conventions, bounded types and conditions.

Every string and list carries an explicit bound. The API server estimates the cost of each CEL
rule from these bounds; without them a rule over a list of strings is refused as too expensive.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "seaway.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

#: Go-style durations as users write them (``30s``, ``2m``, ``1h30m``, ``28d``).
DURATION_PATTERN = r"^([0-9]{1,6}(ms|s|m|h|d))+$"
#: Decimals written as strings (e.g. "0.80", "-0.01"): floats do not belong in a spec.
DECIMAL_PATTERN = r"^-?[0-9]{1,12}([.][0-9]{1,12})?$"
#: A DNS-1123 subdomain-ish name of a Kubernetes object in the same namespace.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"

Name = Annotated[str, Field(min_length=1, max_length=253, pattern=NAME_PATTERN)]
Duration = Annotated[
    str,
    Field(
        min_length=2,
        max_length=32,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"self.matches('{DURATION_PATTERN}')",
                    "messageExpression": (
                        "'invalid duration ' + self + ': use a number and a unit (ms, s, m, h, d),"
                        " e.g. 30s, 5m, 1h30m, 28d'"
                    ),
                }
            ]
        },
    ),
]
Decimal = Annotated[
    str,
    Field(
        min_length=1,
        max_length=26,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"self.matches('{DECIMAL_PATTERN}')",
                    "messageExpression": (
                        "'invalid decimal ' + self + ': write a number as a string, e.g. \"0.80\"'"
                    ),
                }
            ]
        },
    ),
]
ShortText = Annotated[str, Field(max_length=256)]
Message = Annotated[str, Field(max_length=4096)]
Timestamp = Annotated[str, Field(max_length=64, json_schema_extra={"format": "date-time"})]
LabelKey = Annotated[str, Field(max_length=317)]
LabelValue = Annotated[str, Field(max_length=63)]
AnnotationValue = Annotated[str, Field(max_length=8192)]

ConditionStatus = Literal["True", "False", "Unknown"]


class WireModel(BaseModel):
    """A model that speaks camelCase on the wire and refuses fields it does not know."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, unset fields omitted."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class Condition(WireModel):
    """A standard Kubernetes condition (``metav1.Condition``)."""

    type: Annotated[
        str,
        Field(
            min_length=1, max_length=64, description="Ready, Progressing, Degraded or Succeeded."
        ),
    ]
    status: Annotated[ConditionStatus, Field(description="True, False or Unknown.")]
    reason: Annotated[
        str,
        Field(
            min_length=1,
            max_length=128,
            pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
            description="One CamelCase word saying why, e.g. RolloutComplete.",
        ),
    ]
    message: Annotated[Message, Field(description="What happened, for a human.")] = ""
    last_transition_time: Annotated[
        Timestamp, Field(description="When the status last changed (RFC 3339).")
    ]
    observed_generation: Annotated[
        int | None, Field(ge=0, description="The generation this condition was computed from.")
    ] = None


class ObjectMeta(BaseModel):
    """The part of ``metadata`` Seaway reads; everything else is kept but not typed."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, alias_generator=to_camel)

    name: str = ""
    namespace: str = ""
    generation: int = 0
    uid: str = ""
    resource_version: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


def cel(
    rule: str,
    *,
    message: str | None = None,
    message_expression: str | None = None,
    field_path: str | None = None,
    reason: str | None = None,
) -> dict[str, str]:
    """One ``x-kubernetes-validations`` entry, spelled the way the API server expects it."""
    entry = {"rule": rule}
    if message is not None:
        entry["message"] = message
    if message_expression is not None:
        entry["messageExpression"] = message_expression
    if field_path is not None:
        entry["fieldPath"] = field_path
    if reason is not None:
        entry["reason"] = reason
    return entry


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    """Schema extras that attach CEL rules to a model or a field."""
    return {"x-kubernetes-validations": list(rules)}


#: The shape of a cron expression: five fields, or one of the usual macros. The operator evaluates
#: it with a cron library (in UTC); this rule catches typos at apply time.
CRON_RULE = cel(
    "self.matches('^(@(yearly|annually|monthly|weekly|daily|hourly)"
    "|([0-9*?/,A-Za-z-]+[ \\t]+){4}[0-9*?/,A-Za-z-]+)$')",
    message_expression=(
        "'schedule ' + self + ' is not a cron expression: use five fields such as \"0 3 * * 1\"'"
        " + ' or a macro such as @daily'"
    ),
)

URI_SCHEMES_RULE = cel(
    "self.matches('^(file|https?|s3)://.+')",
    message_expression=("'unsupported URI ' + self + ': use file://, http://, https:// or s3://'"),
)

Uri = Annotated[
    str,
    Field(min_length=1, max_length=2048, json_schema_extra=validations(URI_SCHEMES_RULE)),
]


class SecretRef(WireModel):
    """A Secret in the same namespace whose keys are passed to the container as environment."""

    name: Annotated[Name, Field(description="Name of the Secret.")]
