"""Turn the pydantic API models into the structural CRD YAML the API server accepts.

Run through ``make generate`` (``python -m seaway.crdgen``); ``make verify-generated`` regenerates
and fails on any difference, so ``crds/`` never drifts from :mod:`seaway.api`.

The JSON Schema pydantic emits is close to, but not, a Kubernetes structural schema: it uses
``$ref``/``$defs``, ``anyOf [X, null]`` for optional fields, ``title``, ``const`` and
``additionalProperties: false``. :func:`structural` rewrites it, and :func:`check_bounds` refuses
to emit a schema with an unbounded string, list or map: the API server estimates each CEL rule's
cost from those bounds and refuses rules it cannot bound.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from seaway.api import common, modeldeployment, retrainjob, scoringjob

#: Keys pydantic emits that carry no meaning for the API server (or that it refuses).
DROPPED_KEYS = frozenset({"title", "const", "discriminator", "examples"})


@dataclass(frozen=True)
class Kind:
    """What the CRD says about one kind beyond its schema."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec_model: type[BaseModel]
    status_model: type[BaseModel]
    printer_columns: tuple[dict[str, str], ...]
    description: str
    list_map_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _ready(column: str, condition: str) -> dict[str, str]:
    return {
        "name": column,
        "type": "string",
        "jsonPath": f'.status.conditions[?(@.type=="{condition}")].status',
    }


def _reason(condition: str) -> dict[str, str]:
    return {
        "name": "Reason",
        "type": "string",
        "jsonPath": f'.status.conditions[?(@.type=="{condition}")].reason',
    }


AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}

KINDS = (
    Kind(
        kind=modeldeployment.KIND,
        plural=modeldeployment.PLURAL,
        short_names=("md",),
        spec_model=modeldeployment.ModelDeploymentSpec,
        status_model=modeldeployment.ModelDeploymentStatus,
        description=(
            "A scikit-learn model served by immutable revisions, rolled out step by step and"
            " reverted automatically when a revision fails."
        ),
        printer_columns=(
            {"name": "Stable", "type": "integer", "jsonPath": ".status.stableRevision"},
            {"name": "Canary", "type": "integer", "jsonPath": ".status.canaryRevision"},
            {"name": "Weight", "type": "integer", "jsonPath": ".status.canaryWeight"},
            _ready("Ready", "Ready"),
            _reason("Ready"),
            AGE,
        ),
        list_map_keys={"conditions": ("type",)},
    ),
    Kind(
        kind=retrainjob.KIND,
        plural=retrainjob.PLURAL,
        short_names=("rj",),
        spec_model=retrainjob.RetrainJobSpec,
        status_model=retrainjob.RetrainJobStatus,
        description=(
            "Retrains a ModelDeployment's model on a schedule, scores the candidate against the"
            " live model and promotes it automatically or after approval."
        ),
        printer_columns=(
            {"name": "Target", "type": "string", "jsonPath": ".spec.modelDeployment"},
            {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"},
            {"name": "Promotion", "type": "string", "jsonPath": ".spec.promotion"},
            {"name": "Last-Run", "type": "integer", "jsonPath": ".status.runs[-1].number"},
            {"name": "Decision", "type": "string", "jsonPath": ".status.runs[-1].decision"},
            _ready("Ready", "Ready"),
            AGE,
        ),
        list_map_keys={"conditions": ("type",)},
    ),
    Kind(
        kind=scoringjob.KIND,
        plural=scoringjob.PLURAL,
        short_names=("sj",),
        spec_model=scoringjob.ScoringJobSpec,
        status_model=scoringjob.ScoringJobStatus,
        description=(
            "Scores a dataset in batch with a ModelDeployment's revision or a RetrainJob's"
            " promoted bundle, as an Indexed Job whose pods each score their own shards."
        ),
        printer_columns=(
            {"name": "Model", "type": "string", "jsonPath": ".status.model.modelDeployment"},
            {"name": "Revision", "type": "integer", "jsonPath": ".status.model.revision"},
            {"name": "Shards", "type": "string", "jsonPath": ".status.shards"},
            {"name": "Rows", "type": "integer", "jsonPath": ".status.rowsScored"},
            _ready("Complete", "Complete"),
            _reason("Complete"),
            AGE,
        ),
        list_map_keys={"conditions": ("type",)},
    ),
)


class UnboundedSchemaError(ValueError):
    """A string, list or map without a bound: CEL cost estimation would refuse the CRD."""


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return _resolve({**target, **siblings}, defs)
    return {key: _resolve(value, defs) for key, value in node.items() if key != "$defs"}


def _merge_validations(into: dict[str, Any], extra: dict[str, Any]) -> None:
    rules = extra.pop("x-kubernetes-validations", [])
    into.update(extra)
    if rules:
        into.setdefault("x-kubernetes-validations", []).extend(rules)


def _rewrite(node: Any, *, keep_defaults: bool, keep_rules: bool = True) -> Any:
    if isinstance(node, list):
        return [_rewrite(item, keep_defaults=keep_defaults, keep_rules=keep_rules) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    options = node.pop("anyOf", None)
    if options is not None:
        real = [opt for opt in options if opt.get("type") != "null"]
        if len(real) != 1:
            raise ValueError(f"unions other than X | None have no structural form: {options}")
        outer = node
        node = dict(real[0])
        _merge_validations(node, outer)
    if "const" in node and "enum" not in node:
        node["enum"] = [node["const"]]
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in DROPPED_KEYS:
            continue
        if key == "default" and (value is None or not keep_defaults):
            continue
        if key == "x-kubernetes-validations" and not keep_rules:
            continue
        if key == "properties":
            out[key] = {
                name: _rewrite(prop, keep_defaults=keep_defaults, keep_rules=keep_rules)
                for name, prop in value.items()
            }
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _rewrite(value, keep_defaults=keep_defaults, keep_rules=keep_rules)
        else:
            out[key] = value
    names = out.pop("propertyNames", None)
    if names and "maxLength" in names:
        # Structural schemas have no propertyNames; a CEL rule bounds the keys instead.
        limit = names["maxLength"]
        out.setdefault("x-kubernetes-validations", []).append(
            {
                "rule": f"self.all(k, size(k) <= {limit})",
                "message": f"keys must be at most {limit} characters",
            }
        )
    if "properties" in out:
        out.pop("additionalProperties", None)
        out.setdefault("type", "object")
    elif out.get("type") == "object" and out.get("additionalProperties") in (None, True, {}):
        out.pop("additionalProperties", None)
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("enum") and "type" not in out:
        out["type"] = "string"
    if "exclusiveMinimum" in out and not isinstance(out["exclusiveMinimum"], bool):
        out["minimum"], out["exclusiveMinimum"] = out["exclusiveMinimum"], True
    if out.get("uniqueItems"):
        del out["uniqueItems"]
        out["x-kubernetes-list-type"] = "set"
    return out


def structural(model: type[BaseModel], *, spec: bool = True) -> dict[str, Any]:
    """The model's JSON Schema, rewritten into a Kubernetes structural schema.

    For a status (``spec=False``) defaults and CEL rules are dropped: only the operator writes
    status, and rules there would cost CEL budget for nothing.
    """
    raw = model.model_json_schema(by_alias=True, mode="validation")
    resolved = _resolve(raw, raw.get("$defs", {}))
    schema: dict[str, Any] = _rewrite(resolved, keep_defaults=spec, keep_rules=spec)
    return schema


def _walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, prop in node.get("properties", {}).items():
        yield from _walk(prop, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def check_bounds(schema: dict[str, Any], root: str) -> None:
    """Refuse any string, list or map in ``schema`` that has no upper bound."""
    problems = []
    for path, node in _walk(schema, root):
        kind = node.get("type")
        if kind == "string" and "maxLength" not in node and "enum" not in node:
            problems.append(f"{path}: string without maxLength")
        elif kind == "array" and "maxItems" not in node:
            problems.append(f"{path}: list without maxItems")
        elif kind == "object" and "additionalProperties" in node and "maxProperties" not in node:
            problems.append(f"{path}: map without maxProperties")
    if problems:
        raise UnboundedSchemaError("; ".join(problems))


def _add_list_map_keys(schema: dict[str, Any], keys: dict[str, tuple[str, ...]]) -> None:
    for name, prop in schema.get("properties", {}).items():
        if name in keys and prop.get("type") == "array":
            prop["x-kubernetes-list-type"] = "map"
            prop["x-kubernetes-list-map-keys"] = list(keys[name])


def crd(kind: Kind) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    spec = structural(kind.spec_model)
    status = structural(kind.status_model, spec=False)
    _add_list_map_keys(status, kind.list_map_keys)
    spec.pop("description", None)
    status.pop("description", None)
    spec["description"] = f"What the user wants: the desired state of the {kind.kind}."
    status["description"] = "What Seaway observed and did; written only by the operator."
    check_bounds(spec, ".spec")
    check_bounds(status, ".status")
    schema = {
        "type": "object",
        "description": kind.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{kind.plural}.{common.GROUP}",
            "labels": {"app.kubernetes.io/part-of": "seaway"},
        },
        "spec": {
            "group": common.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": list(kind.short_names),
                "categories": ["seaway"],
            },
            "versions": [
                {
                    "name": common.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": list(kind.printer_columns),
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


HEADER = "# Generated by `make generate` (python -m seaway.crdgen) from seaway.api. Do not edit.\n"


def render(kind: Kind) -> str:
    """The CRD as the YAML text written to ``crds/``."""
    body = yaml.safe_dump(crd(kind), sort_keys=False, width=100, allow_unicode=True)
    return HEADER + body


def file_name(kind: Kind) -> str:
    return f"{common.GROUP}_{kind.plural}.yaml"


APPROVAL_POLICY = "seaway-approvals"
APPROVAL_POLICY_FILE = "seaway.dev_approval-policy.yaml"
#: The annotation naming the last editor of a RetrainJob's spec (four-eyes approvals).
SPEC_EDITOR = "seaway.dev/spec-editor"
#: The namespace label that turns four-eyes approvals on for every RetrainJob in it.
FOUR_EYES_LABEL = "seaway.dev/four-eyes"


def approval_policy() -> list[dict[str, Any]]:
    """A ValidatingAdmissionPolicy (and its binding) that makes ``spec.approvals`` trustworthy.

    A new or changed approval entry must name the user who writes it, as the API server
    authenticated them; entries already present may stay as they are. Status writes (the
    operator's) go to the ``/status`` subresource and are not matched.

    Four-eyes (``spec.fourEyes``, or the namespace label ``seaway.dev/four-eyes=true`` that
    only a cluster administrator sets): every write that changes the spec other than its
    approvals must name its author in the annotation ``seaway.dev/spec-editor`` (the annotation
    may otherwise only stay as it is), and a new Approve entry must come from someone else. Only
    admission sees who writes, which is why this lives here and not in the operator.
    """
    rule = (
        "!has(object.spec.approvals) || object.spec.approvals.all(a,"
        " a.approver == request.userInfo.username"
        " || (oldObject != null && has(oldObject.spec.approvals)"
        " && oldObject.spec.approvals.exists(o, o.run == a.run && o.decision == a.decision"
        " && o.approver == a.approver)))"
    )
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": APPROVAL_POLICY, "labels": {"app.kubernetes.io/part-of": "seaway"}},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [common.GROUP],
                        "apiVersions": [common.VERSION],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": [retrainjob.PLURAL],
                    }
                ]
            },
            "variables": [
                {
                    "name": "fourEyes",
                    "expression": (
                        "(has(object.spec.fourEyes) && object.spec.fourEyes)"
                        " || (namespaceObject != null && has(namespaceObject.metadata.labels)"
                        f" && '{FOUR_EYES_LABEL}' in namespaceObject.metadata.labels"
                        f" && namespaceObject.metadata.labels['{FOUR_EYES_LABEL}'] == 'true')"
                    ),
                },
                {
                    "name": "editor",
                    "expression": (
                        "has(object.metadata.annotations)"
                        f" && '{SPEC_EDITOR}' in object.metadata.annotations"
                        f" ? object.metadata.annotations['{SPEC_EDITOR}'] : ''"
                    ),
                },
                {
                    "name": "oldEditor",
                    "expression": (
                        "oldObject != null && has(oldObject.metadata.annotations)"
                        f" && '{SPEC_EDITOR}' in oldObject.metadata.annotations"
                        f" ? oldObject.metadata.annotations['{SPEC_EDITOR}'] : ''"
                    ),
                },
                {
                    "name": "specChanged",
                    "expression": (
                        "oldObject == null"
                        " || object.spec.exists(k, k != 'approvals'"
                        " && (!(k in oldObject.spec) || oldObject.spec[k] != object.spec[k]))"
                        " || oldObject.spec.exists(k, k != 'approvals' && !(k in object.spec))"
                    ),
                },
            ],
            "validations": [
                {
                    "expression": (
                        "!variables.fourEyes || variables.editor == request.userInfo.username"
                        " || (!variables.specChanged && variables.editor == variables.oldEditor)"
                    ),
                    "messageExpression": (
                        f"'metadata.annotations[{SPEC_EDITOR}]: with four-eyes approvals a change"
                        " of the spec names its editor: set it to ' + request.userInfo.username"
                    ),
                    "reason": "Forbidden",
                },
                {
                    "expression": (
                        "!variables.fourEyes || !has(object.spec.approvals)"
                        " || object.spec.approvals.all(a, a.decision != 'Approve'"
                        " || (a.approver != variables.editor && variables.editor != '')"
                        " || (oldObject != null && has(oldObject.spec.approvals)"
                        " && oldObject.spec.approvals.exists(o, o.run == a.run"
                        " && o.decision == a.decision && o.approver == a.approver)))"
                    ),
                    "messageExpression": (
                        "'spec.approvals: four-eyes approvals: the approver must not be the last"
                        f" editor of the spec ({SPEC_EDITOR}=' + variables.editor + ')'"
                    ),
                    "reason": "Forbidden",
                },
                {
                    "expression": rule,
                    "messageExpression": (
                        "'spec.approvals: a new approval must name its author: approver must be '"
                        " + request.userInfo.username"
                    ),
                    "reason": "Forbidden",
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": APPROVAL_POLICY, "labels": {"app.kubernetes.io/part-of": "seaway"}},
        "spec": {"policyName": APPROVAL_POLICY, "validationActions": ["Deny"]},
    }
    return [policy, binding]


def render_policy() -> str:
    docs = [yaml.safe_dump(d, sort_keys=False, width=100) for d in approval_policy()]
    return HEADER + "---\n".join(docs)


def outputs(root: Path) -> dict[Path, str]:
    """Every generated file and its content, for both ``crds/`` and the chart's copy."""
    files = {}
    texts = {file_name(kind): render(kind) for kind in KINDS}
    texts[APPROVAL_POLICY_FILE] = render_policy()
    for name, text in texts.items():
        files[root / "crds" / name] = text
        files[root / "charts" / "seaway" / "files" / "crds" / name] = text
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m seaway.crdgen", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root")
    parser.add_argument("--check", action="store_true", help="fail if a file would change")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs(args.root).items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(str(path.relative_to(args.root)))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"Wrote {path.relative_to(args.root)}")
    if stale:
        print(
            "Generated files are out of date (run `make generate`): " + ", ".join(stale),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
