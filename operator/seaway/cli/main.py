"""Entry point of the ``seaway`` command.

Each group of subcommands lives in a module of its own and is attached here, so ``seaway --help``
stays fast: a group imports its heavy dependencies (the Kubernetes client, scikit-learn) only when
one of its commands runs.
"""

from __future__ import annotations

import click

from seaway import __version__
from seaway.cli import retrain, rollout, score
from seaway.cli.bundle import bundle
from seaway.cli.cluster import cluster
from seaway.cli.demo import demo
from seaway.cli.operator_cmd import operator_group
from seaway.cli.report import report


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    __version__, "--version", "-V", prog_name="seaway", message="%(prog)s %(version)s"
)
def main() -> None:
    """Seaway takes scikit-learn models to production on Kubernetes and keeps them healthy."""


@main.command()
def crds() -> None:
    """Print the CustomResourceDefinitions (pipe into `kubectl apply --server-side -f -`)."""
    from seaway import crdgen

    click.echo("---\n".join(crdgen.render(kind) for kind in crdgen.KINDS), nl=False)


main.add_command(cluster)
main.add_command(bundle)
main.add_command(operator_group)
main.add_command(demo)
main.add_command(report)
for _command in [*rollout.COMMANDS, *retrain.COMMANDS, *score.COMMANDS]:
    main.add_command(_command)

if __name__ == "__main__":
    main()
