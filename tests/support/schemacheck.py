"""An offline stand-in for the API server's CRD validation, for fast tests of the schema.

It applies the generated ``openAPIV3Schema`` the way the API server does for a create or update
with strict field validation (``kubectl apply``'s default): types, enums, patterns, bounds,
required fields, unknown fields refused, defaults filled in, then every ``x-kubernetes-validations``
CEL rule (with ``oldSelf`` for transition rules on updates). Errors carry the field path the API
server would report. The integration suite proves the same corpus against the real API server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import celpy
import yaml
from celpy import celtypes

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class FieldError:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _cel_sum(values: Any) -> Any:
    """Kubernetes' CEL list library ``sum()``, which cel-python does not ship."""
    return celtypes.IntType(sum(int(v) for v in values))


class Checker:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.env = celpy.Environment()
        self._programs: dict[str, Any] = {}

    def _program(self, expr: str) -> Any:
        if expr not in self._programs:
            self._programs[expr] = self.env.program(
                self.env.compile(expr), functions={"sum": _cel_sum}
            )
        return self._programs[expr]

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[FieldError]:
        errors: list[FieldError] = []
        body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
        old_body = (
            None
            if old is None
            else {k: v for k, v in old.items() if k not in ("apiVersion", "kind", "metadata")}
        )
        self._node(body, old_body, self.schema, "", errors)
        return errors

    # -- structural part --------------------------------------------------------------------
    def _node(
        self, value: Any, old: Any, schema: dict[str, Any], path: str, errors: list[FieldError]
    ) -> Any:
        kind = schema.get("type")
        if not self._type_ok(value, kind):
            errors.append(
                FieldError(path, f"Invalid value: {type(value).__name__}: must be of type {kind}")
            )
            return value
        if "enum" in schema and value not in schema["enum"]:
            errors.append(
                FieldError(
                    path, f"Unsupported value: {value!r}: supported values: {schema['enum']}"
                )
            )
        if isinstance(value, str):
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                errors.append(
                    FieldError(path, f"Too long: may not be more than {schema['maxLength']} bytes")
                )
            if "minLength" in schema and len(value) < schema["minLength"]:
                errors.append(
                    FieldError(
                        path, f"Invalid value: should be at least {schema['minLength']} chars long"
                    )
                )
            if "pattern" in schema and not re.search(schema["pattern"], value):
                errors.append(
                    FieldError(
                        path, f"Invalid value: {value!r}: should match {schema['pattern']!r}"
                    )
                )
        if isinstance(value, int) and not isinstance(value, bool):
            if "minimum" in schema and value < schema["minimum"]:
                errors.append(
                    FieldError(
                        path,
                        f"Invalid value: {value}: should be >= {schema['minimum']}",
                    )
                )
            if "maximum" in schema and value > schema["maximum"]:
                errors.append(
                    FieldError(
                        path,
                        f"Invalid value: {value}: should be <= {schema['maximum']}",
                    )
                )
        if isinstance(value, list):
            if "maxItems" in schema and len(value) > schema["maxItems"]:
                errors.append(
                    FieldError(
                        path,
                        f"Too many: {len(value)}: must have at most {schema['maxItems']} items",
                    )
                )
            if "minItems" in schema and len(value) < schema["minItems"]:
                errors.append(
                    FieldError(
                        path, f"Invalid value: should have at least {schema['minItems']} items"
                    )
                )
            if schema.get("x-kubernetes-list-type") == "set":
                seen: list[Any] = []
                for i, item in enumerate(value):
                    if item in seen:
                        errors.append(FieldError(f"{path}[{i}]", f"Duplicate value: {item!r}"))
                    seen.append(item)
            items = schema.get("items", {})
            value = [
                self._node(item, None, items, f"{path}[{i}]", errors)
                for i, item in enumerate(value)
            ]
        if isinstance(value, dict):
            value = self._object(
                value, old if isinstance(old, dict) else None, schema, path, errors
            )
        self._rules(value, old, schema, path, errors)
        return value

    def _object(
        self,
        value: dict[str, Any],
        old: dict[str, Any] | None,
        schema: dict[str, Any],
        path: str,
        errors: list[FieldError],
    ) -> dict[str, Any]:
        props = schema.get("properties")
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            errors.append(
                FieldError(path, f"Too many: must have at most {schema['maxProperties']} items")
            )
        if props is not None:
            value = dict(value)
            for name, prop in props.items():
                if name not in value and "default" in prop:
                    value[name] = prop["default"]
            for name in schema.get("required", []):
                if name not in value:
                    errors.append(FieldError(_join(path, name), "Required value"))
            for name, item in list(value.items()):
                if name not in props:
                    if not schema.get("x-kubernetes-preserve-unknown-fields"):
                        errors.append(
                            FieldError(_join(path, name), f'unknown field "{_join(path, name)}"')
                        )
                    continue
                value[name] = self._node(
                    item, (old or {}).get(name), props[name], _join(path, name), errors
                )
        elif isinstance(schema.get("additionalProperties"), dict):
            for name, item in value.items():
                self._node(item, None, schema["additionalProperties"], _join(path, name), errors)
        return value

    @staticmethod
    def _type_ok(value: Any, kind: str | None) -> bool:
        if kind is None:
            return True
        return {
            "object": isinstance(value, dict),
            "array": isinstance(value, list),
            "string": isinstance(value, str),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, (int, float)) and not isinstance(value, bool),
            "boolean": isinstance(value, bool),
        }[kind]

    # -- CEL part ---------------------------------------------------------------------------
    def _rules(
        self, value: Any, old: Any, schema: dict[str, Any], path: str, errors: list[FieldError]
    ) -> None:
        for rule in schema.get("x-kubernetes-validations", []):
            transition = "oldSelf" in rule["rule"]
            if transition and old is None:
                continue
            activation = {"self": celpy.json_to_cel(value)}
            if transition:
                activation["oldSelf"] = celpy.json_to_cel(old)
            try:
                ok = bool(self._program(rule["rule"]).evaluate(activation))
            except Exception as exc:  # an evaluation error is a refusal too
                errors.append(
                    FieldError(path, f"Invalid value: rule {rule['rule']!r} failed: {exc}")
                )
                continue
            if ok:
                continue
            message = rule.get("message") or f"failed rule: {rule['rule']}"
            if "messageExpression" in rule:
                message = str(self._program(rule["messageExpression"]).evaluate(activation))
            where = path + rule.get("fieldPath", "") if rule.get("fieldPath") else path
            errors.append(FieldError(where.lstrip("."), f"Invalid value: {message}"))


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def load_crd_schema(kind: str) -> dict[str, Any]:
    plural = {
        "ModelDeployment": "modeldeployments",
        "RetrainJob": "retrainjobs",
        "ScoringJob": "scoringjobs",
    }[kind]
    crd = yaml.safe_load((ROOT / "crds" / f"seaway.dev_{plural}.yaml").read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def check_documents(docs: list[dict[str, Any]]) -> list[FieldError]:
    """Validate documents applied in order to one object: each later one is an update."""
    errors: list[FieldError] = []
    previous: dict[str, Any] | None = None
    for doc in docs:
        checker = Checker(load_crd_schema(doc["kind"]))
        errors = checker.validate(doc, previous)
        if errors:
            return errors
        previous = doc
    return errors
