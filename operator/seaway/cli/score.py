"""``seaway score``: start a ScoringJob from the command line, and follow it with ``--wait``.

It writes the same ScoringJob a user would apply (docs/scoring.md), checked first against the
API's own models so a mistake is one line naming the option, not a traceback or a long refusal
from the API server.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import click

from seaway.cli.rollout import _common, _connect, _read

KIND = "ScoringJob"
#: Indexed Job pods are named ``<job>-<index>-<suffix>``, and a Job's name goes into a label
#: (at most 63 characters): the generated name leaves room for both.
NAME_BUDGET = 40


def default_name(model: str, now: datetime) -> str:
    """``churn-score-20261130-090000``: the model, then when it was started."""
    stem = model[: NAME_BUDGET - len("-score-20261130-090000")].rstrip("-.")
    return f"{stem}-score-{now.strftime('%Y%m%d-%H%M%S')}"


def build(
    *,
    name: str,
    model: str,
    from_retrain_job: bool,
    revision: int | None,
    input_uri: str,
    output_uri: str,
    input_format: str | None,
    output_format: str,
    key_columns: str | None,
    parallelism: int,
    shards: int | None,
    secret: str | None,
    output_secret: str | None,
) -> dict[str, Any]:
    """The ScoringJob as a manifest, validated by the API's model (raises click errors)."""
    from pydantic import ValidationError

    from seaway.api.scoringjob import ScoringJobSpec

    ref: dict[str, Any] = {"retrainJob" if from_retrain_job else "modelDeployment": model}
    if revision is not None:
        ref["revision"] = revision
    spec: dict[str, Any] = {
        "model": ref,
        "input": {"uri": input_uri},
        "output": {"uri": output_uri, "format": output_format},
        "parallelism": parallelism,
    }
    if input_format:
        spec["input"]["format"] = input_format
    if key_columns:
        spec["input"]["keyColumns"] = [c.strip() for c in key_columns.split(",") if c.strip()]
    if shards is not None:
        spec["shards"] = shards
    if secret:
        spec["input"]["secretRef"] = {"name": secret}
    if output_secret or secret:
        spec["output"]["secretRef"] = {"name": output_secret or secret}
    try:
        checked = ScoringJobSpec.model_validate(spec)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise click.UsageError(f"spec.{where}: {first['msg']}") from exc
    for uri, option in ((input_uri, "--input"), (output_uri, "--output")):
        if "://" not in uri:
            raise click.BadParameter(
                f"{uri!r} is not a URI (file://, s3://, ...)", param_hint=option
            )
    # the CRD's CEL rules, said here before a round trip (pydantic does not run them)
    if not input_uri.startswith(("file://", "http://", "https://", "s3://")):
        raise click.BadParameter("must be a file://, http(s):// or s3:// URI", param_hint="--input")
    if not output_uri.startswith(("file://", "s3://")):
        raise click.BadParameter("must be a file:// or s3:// URI", param_hint="--output")
    if shards is not None and shards < parallelism:
        raise click.BadParameter(
            f"{shards} is fewer than --parallelism {parallelism}", param_hint="--shards"
        )
    return {
        "apiVersion": "seaway.dev/v1alpha1",
        "kind": KIND,
        "metadata": {"name": name},
        "spec": checked.to_wire(),
    }


def describe(status: dict[str, Any]) -> str:
    """One progress line: shards, units, rows, throughput."""
    parts = [f"shards {status.get('shards') or '0/?'}"]
    if status.get("unitsTotal") is not None:
        parts.append(f"units {status.get('unitsDone') or 0}/{status['unitsTotal']}")
    parts.append(f"{status.get('rowsScored') or 0} rows")
    if status.get("rowsPerSecond"):
        parts.append(f"{status['rowsPerSecond']} rows/s")
    return ", ".join(parts)


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    for condition in status.get("conditions") or []:
        if condition.get("type") == type_:
            return dict(condition)
    return {}


def follow(kube: Any, namespace: str, name: str, timeout: float) -> dict[str, Any]:
    """Print progress until the ScoringJob completes or fails; its last status."""
    deadline = time.monotonic() + timeout
    shown = ""
    while True:
        status = _read(kube, namespace, name, KIND).get("status") or {}
        line = describe(status) if status.get("jobName") else ""
        waiting = _condition(status, "Complete")
        if not status.get("jobName") and waiting.get("message"):
            line = f"pending: {waiting['message']}"
        if line and line != shown:
            click.echo(f"  {line}")
            shown = line
        if _condition(status, "Complete").get("status") == "True":
            return status
        if _condition(status, "Failed").get("status") == "True":
            return status
        if time.monotonic() > deadline:
            raise click.ClickException(
                f"{name} did not finish within {timeout:.0f}s; it goes on running"
                f" (kubectl get sj {name} -n {namespace})"
            )
        time.sleep(2.0)


@click.command("score")
@click.argument("model")
@click.option("--input", "input_uri", required=True, help="CSV/Parquet file or folder URI.")
@click.option("--output", "output_uri", required=True, help="file:// or s3:// folder URI.")
@click.option("--revision", type=click.IntRange(min=1), help="Default: the stable revision.")
@click.option(
    "--from-retrainjob",
    is_flag=True,
    help="MODEL is a RetrainJob: score with the bundle it promoted last.",
)
@click.option("--parallelism", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--shards", type=click.IntRange(1, 1000), help="Default: --parallelism.")
@click.option("--key-columns", help="Input columns copied beside each prediction, e.g. id,day.")
@click.option("--input-format", type=click.Choice(["csv", "parquet"]))
@click.option(
    "--output-format", type=click.Choice(["parquet", "csv"]), default="parquet", show_default=True
)
@click.option("--secret", help="Secret with the store's credentials (input and output).")
@click.option("--output-secret", help="Secret for the output store, when it is another one.")
@click.option("--name", "job_name", help="Default: <model>-score-<date>-<time>.")
@click.option("--wait", is_flag=True, help="Follow progress until it completes or fails.")
@click.option("--timeout", type=click.FloatRange(min=1), default=3600.0, show_default=True)
@_common
def score(
    model: str,
    input_uri: str,
    output_uri: str,
    revision: int | None,
    from_retrainjob: bool,
    parallelism: int,
    shards: int | None,
    key_columns: str | None,
    input_format: str | None,
    output_format: str,
    secret: str | None,
    output_secret: str | None,
    job_name: str | None,
    wait: bool,
    timeout: float,
    namespace: str | None,
    kubeconfig: str | None,
) -> None:
    """Score a dataset with MODEL's stable revision (or --revision N) as a ScoringJob."""
    from seaway.k8s.kube import Conflict, KubeError

    if revision is not None and from_retrainjob:
        raise click.UsageError("--revision names a ModelDeployment revision; drop one of them")
    name = job_name or default_name(model, datetime.now(UTC))
    body = build(
        name=name, model=model, from_retrain_job=from_retrainjob, revision=revision,
        input_uri=input_uri, output_uri=output_uri, input_format=input_format,
        output_format=output_format, key_columns=key_columns, parallelism=parallelism,
        shards=shards, secret=secret, output_secret=output_secret,
    )  # fmt: skip
    kube, ns = _connect(kubeconfig, namespace)
    source = "RetrainJob" if from_retrainjob else "ModelDeployment"
    found = _read(kube, ns, model, source)
    if revision is not None:
        numbers = [r.get("number") for r in (found.get("status") or {}).get("revisions") or []]
        if revision not in numbers:
            raise click.ClickException(
                f"{model} has no revision {revision} (revisions: "
                f"{', '.join(str(n) for n in numbers) or 'none'})"
            )
    body["metadata"]["namespace"] = ns
    try:
        kube.create(body)
    except Conflict as exc:
        raise click.ClickException(f"ScoringJob {name} exists already; pass --name") from exc
    except KubeError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"Created ScoringJob {name} in {ns} (kubectl get sj {name} -n {ns}).")
    if not wait:
        return
    status = follow(kube, ns, name, timeout)
    if _condition(status, "Complete").get("status") == "True":
        click.echo(_condition(status, "Complete").get("message") or "Succeeded.")
        return
    failed = _condition(status, "Failed")
    raise click.ClickException(f"{name} failed ({failed.get('reason')}): {failed.get('message')}")


COMMANDS = [score]
