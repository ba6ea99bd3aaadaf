"""``seaway operator run``: the operator entry point (the chart's image runs the same)."""

from __future__ import annotations

import os

import click


@click.group("operator")
def operator_group() -> None:
    """Run the Seaway operator."""


@operator_group.command("run")
@click.option(
    "--namespace",
    "-n",
    "namespaces",
    multiple=True,
    help="Watch only these namespaces (repeatable); default: all.",
)
@click.option(
    "--kubeconfig",
    type=click.Path(exists=True, dir_okay=False),
    help="Default: $KUBECONFIG, ~/.kube/config or in-cluster.",
)
@click.option("--router-image", envvar="SEAWAY_ROUTER_IMAGE", help="Image of the built-in router.")
@click.option(
    "--prometheus-url",
    envvar="SEAWAY_PROMETHEUS_URL",
    help="Prometheus for canary analysis when a ModelDeployment names none.",
)
@click.option(
    "--allow-prometheus-host",
    "prometheus_hosts",
    multiple=True,
    metavar="HOST[:PORT]",
    help="A Prometheus host ModelDeployments may name (repeatable; *.domain for subdomains, *"
    " for any). The --prometheus-url host is always allowed.",
)
@click.option(
    "--allow-webhook-host",
    "webhook_hosts",
    multiple=True,
    metavar="HOST[:PORT]",
    help="A host notifications.webhookURL may name (repeatable; same forms). Default: none.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="Reconciles in parallel.",
)
@click.option(
    "--leader-elect",
    is_flag=True,
    envvar="SEAWAY_LEADER_ELECT",
    help="Run as one of several replicas: only the holder of a Lease reconciles.",
)
@click.option(
    "--lease-namespace",
    envvar="SEAWAY_LEASE_NAMESPACE",
    default="default",
    show_default=True,
    help="Namespace of the leader-election Lease.",
)
@click.option(
    "--lease-name",
    envvar="SEAWAY_LEASE_NAME",
    default="seaway-operator",
    show_default=True,
    help="Name of the leader-election Lease.",
)
@click.option(
    "--health",
    envvar="SEAWAY_HEALTH",
    help="Serve a liveness endpoint, e.g. http://0.0.0.0:8080/healthz.",
)
@click.option("--verbose", "-v", is_flag=True, help="Log every watch event and API call.")
def run(
    namespaces: tuple[str, ...],
    kubeconfig: str | None,
    router_image: str | None,
    prometheus_url: str | None,
    prometheus_hosts: tuple[str, ...],
    webhook_hosts: tuple[str, ...],
    workers: int,
    leader_elect: bool,
    lease_namespace: str,
    lease_name: str,
    health: str | None,
    verbose: bool,
) -> None:
    """Run the operator against the current kubeconfig until interrupted."""
    if kubeconfig:
        os.environ["KUBECONFIG"] = kubeconfig
    if router_image:
        os.environ["SEAWAY_ROUTER_IMAGE"] = router_image
    if prometheus_url:
        os.environ["SEAWAY_PROMETHEUS_URL"] = prometheus_url
    if prometheus_hosts:
        os.environ["SEAWAY_ALLOWED_PROMETHEUS_HOSTS"] = ",".join(prometheus_hosts)
    if webhook_hosts:
        os.environ["SEAWAY_ALLOWED_WEBHOOK_HOSTS"] = ",".join(webhook_hosts)
    os.environ["SEAWAY_WORKERS"] = str(workers)
    if leader_elect:
        os.environ["SEAWAY_LEADER_ELECT"] = "true"
        os.environ["SEAWAY_LEASE_NAMESPACE"] = lease_namespace
        os.environ["SEAWAY_LEASE_NAME"] = lease_name
    from seaway.handlers import operator

    operator.run(namespaces=list(namespaces), verbose=verbose, health=health)
