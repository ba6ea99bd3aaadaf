"""``seaway bundle``: package a fitted scikit-learn model as a Seaway model bundle.

Only argument parsing lives here; the bundle format belongs to ``seaway_serving.bundle`` (the
server reads what it writes, so both sides share one definition). scikit-learn is imported only
when a command runs, keeping ``seaway --help`` fast.
"""

from __future__ import annotations

import re
import shutil
import tarfile
from pathlib import Path

import click

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")


@click.group()
def bundle() -> None:
    """Build model bundles (a model file plus the manifest the server verifies)."""


def _metric(values: tuple[str, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in values:
        key, sep, value = item.partition("=")
        try:
            if not sep or not key:
                raise ValueError
            out[key] = float(value)
        except ValueError:
            raise click.BadParameter(
                f"{item!r} is not NAME=NUMBER", param_hint="--metric"
            ) from None
    return out


@bundle.command()
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Fitted estimator: a joblib/pickle file, or a .skops file.",
)
@click.option("--name", required=True, help="Model name (lowercase letters, digits, . _ -).")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write the bundle into.",
)
@click.option("--version", help="Bundle version; default: the first 12 hex digits of its sha256.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["sklearn-joblib", "skops"]),
    help="Model file format; default: skops for *.skops, else sklearn-joblib.",
)
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Training or representative rows (.csv with optional header, or .npy): "
    "the drift fingerprint and the self-check sample come from them.",
)
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    metavar="NAME=VALUE",
    help="A training metric to record (repeatable).",
)
@click.option("--code-version", help="Version of the training code (e.g. a git commit).")
@click.option(
    "--trust",
    multiple=True,
    metavar="TYPE",
    help="A type to trust when reading a .skops file (repeatable).",
)
@click.option("--archive", is_flag=True, help="Also write OUT.tar.gz, ready to upload.")
@click.option("--force", is_flag=True, help="Replace an existing bundle in OUT.")
def create(
    model_path: Path,
    name: str,
    out: Path,
    version: str | None,
    fmt: str | None,
    data: Path | None,
    metrics: tuple[str, ...],
    code_version: str | None,
    trust: tuple[str, ...],
    archive: bool,
    force: bool,
) -> None:
    """Create a bundle from a model file, keeping the file's exact bytes.

    Loading a pickle runs its code: bundle only model files you made or trust.
    """
    from seaway_serving import bundle as bundles

    if not NAME_RE.match(name):
        raise click.BadParameter(
            "use 1-63 lowercase letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit",
            param_hint="--name",
        )
    if (out / bundles.MANIFEST_FILE).exists():
        if not force:
            raise click.ClickException(f"{out} already holds a bundle (use --force to replace)")
        shutil.rmtree(out)
    elif out.exists() and any(out.iterdir()):
        raise click.ClickException(f"{out} exists and is not empty")
    try:
        rows, header = bundles.read_data(data) if data is not None else (None, None)
        manifest = bundles.create_from_file(
            model_path,
            out,
            name=name,
            fmt=fmt,  # type: ignore[arg-type]
            trusted=trust,
            data=rows,
            feature_names=header,
            version=version,
            metrics=_metric(metrics),
            code_version=code_version,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Created bundle {manifest.name} version {manifest.version} in {out}")
    click.echo(f"  model   {manifest.model_file} ({manifest.size_bytes} bytes, {manifest.format})")
    click.echo(f"  digest  {manifest.sha256}")
    click.echo(
        f"  inputs  {len(manifest.inputs)} features; "
        f"fingerprint {'yes' if manifest.fingerprint else 'no (pass --data)'}"
    )
    if archive:
        target = out.with_name(out.name + ".tar.gz")
        with tarfile.open(target, "w:gz") as tar:
            for path in sorted(out.iterdir()):
                tar.add(path, arcname=path.name)
        click.echo(f"  archive {target}")
