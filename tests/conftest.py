"""Fixtures shared by every test layer that needs a real API server (integration and e2e).

Request them by name; unit tests never do, so they never start anything:

``control_plane`` (session)
    A :class:`seaway.localplane.Plane` (etcd, kube-apiserver, controller manager, scheduler and
    kwok with the simulated node ``kwok-node-0``) started in a temporary directory for the whole
    session and stopped at its end. ``KUBECONFIG`` points at it for the session, so code under
    test that loads "the" kubeconfig talks to this plane and never to a user's cluster. When it
    cannot start, the tests FAIL with the reason if ``CI`` is set, and are skipped with the reason
    otherwise. ``control_plane.kubectl(...)`` runs the plane's kubectl.
``kube_api`` (session)
    A ``kubernetes.client.ApiClient`` for the admin user of the plane.
``seaway_crds`` (session)
    Seaway's CRDs from ``crds/`` applied server-side and Established.
``namespace``
    A fresh namespace per test whose ``default`` ServiceAccount exists (Pods are refused before
    it does); deleted afterwards.
``run_operator``
    Runs a kopf operator in-process for the duration of a ``with`` block (see its docstring).

Tests that use ``control_plane`` (directly or through another fixture) are marked ``cluster``
automatically, so ``pytest -m "not cluster"`` runs everything that needs no plane.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from seaway import localplane
from seaway.localplane import binaries, config

if TYPE_CHECKING:
    import kopf
    from kopf.testing import KopfRunner
    from kubernetes.client import ApiClient

ROOT = Path(__file__).resolve().parents[1]
_LOGIN_ADDED: weakref.WeakSet[kopf.OperatorRegistry] = weakref.WeakSet()
CRDS = ROOT / "crds"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "control_plane" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)


def unavailable(reason: str) -> NoReturn:
    """Fail (in CI) or skip (locally) a test that needs the plane, with the reason."""
    if os.environ.get("CI"):
        pytest.fail(f"the local control plane is required when CI is set: {reason}", pytrace=False)
    pytest.skip(f"the local control plane is unavailable: {reason}")


def start_plane(run_dir: Path, name: str) -> localplane.Plane:
    """A plane for tests in ``run_dir``, or :func:`unavailable` with the reason."""
    try:
        bins = binaries.paths(config.bin_dir(os.environ))
    except binaries.BinariesMissing as exc:
        unavailable(str(exc))
    try:
        # die_with_parent: a test run killed outright (SIGKILL, CI timeout) leaves nothing behind.
        return localplane.start(run_dir, name=name, bins=bins, die_with_parent=True)
    except localplane.PlaneError as exc:
        unavailable(str(exc))


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[localplane.Plane]:
    plane = start_plane(tmp_path_factory.mktemp("plane"), "seaway-test")
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("KUBECONFIG", str(plane.kubeconfig))
            _point_kubernetes_client_at(plane.kubeconfig, patch)
            yield plane
    finally:
        plane.stop()


def _point_kubernetes_client_at(kubeconfig: Path, patch: pytest.MonkeyPatch) -> None:
    """Make ``kubernetes.config.load_kube_config()`` (no arguments) load the plane's kubeconfig.

    The client reads ``$KUBECONFIG`` once, when it is first imported, which is usually while
    tests are collected, before the plane exists; kopf's default login and operator code calling
    ``load_kube_config()`` would otherwise look for ``~/.kube/config``.
    """
    try:
        from kubernetes import config as kube_config_package
        from kubernetes.config import kube_config
    except ImportError:
        return
    for module in (kube_config, kube_config_package):
        patch.setattr(module, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig), raising=False)


@pytest.fixture(scope="session")
def kube_api(control_plane: localplane.Plane) -> Iterator[ApiClient]:
    from kubernetes import config as kube_config

    api = kube_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(control_plane.kubeconfig)
    )
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def seaway_crds(control_plane: localplane.Plane) -> list[str]:
    """Install ``crds/`` once per session (the CRDs, then the approval admission policy that
    ships beside them); returns the CRD names."""
    control_plane.install_crds(CRDS)
    names = control_plane.kubectl(
        "get", "crd", "-l", "app.kubernetes.io/part-of=seaway", "-o", "name"
    )
    return [
        n.removeprefix("customresourcedefinition.apiextensions.k8s.io/")
        for n in names.stdout.split()
    ]


def namespace_name(test_name: str) -> str:
    """A valid, unique namespace name that still says which test made it."""
    stem = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"t-{stem}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(
    request: pytest.FixtureRequest, control_plane: localplane.Plane, kube_api: ApiClient
) -> Iterator[str]:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(kube_api)
    name = namespace_name(request.node.name)
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"seaway.dev/test": "1"}))
    )
    control_plane.wait_for_service_account(name)
    try:
        yield name
    finally:
        with contextlib.suppress(ApiException):
            core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def run_operator(
    control_plane: localplane.Plane,
) -> Callable[..., contextlib.AbstractContextManager[KopfRunner]]:
    """Run a kopf operator in-process (a thread, via ``kopf.testing.KopfRunner``).

    ::

        def test_something(run_operator, namespace):
            with run_operator(["seaway.handlers.modeldeployment"], namespace=namespace) as op:
                ...  # create objects, poll with a deadline for what the operator did
            assert op.exit_code == 0

    Arguments:

    ``modules``
        Import paths of handler modules (``kopf run -m``). Their handlers register in kopf's
        default registry when first imported.
    ``namespace``
        The one namespace the operator watches (``--namespace``); ``None`` watches all (``-A``).
    ``registry``
        A ``kopf.OperatorRegistry`` whose handlers the test declared itself
        (``@kopf.on.create(..., registry=registry)``); used instead of the default registry.
        A bare registry has no login handler, so ``kopf.login_with_kubeconfig`` is added to it
        once.
    ``settings``
        ``kopf.OperatorSettings`` to start with (e.g. shorter backoffs).
    ``args``
        Extra ``kopf run`` arguments, e.g. ``["--verbose"]``.
    ``timeout``
        Seconds the operator may take to stop when the block ends.

    The operator runs ``--standalone`` (no peering objects needed) with the plane's admin
    kubeconfig. Leaving the block stops it and re-raises whatever it crashed with; its output is
    ``runner.output`` afterwards.
    """
    import kopf
    from kopf.testing import KopfRunner

    @contextlib.contextmanager
    def run(
        modules: Sequence[str] = (),
        *,
        namespace: str | None,
        registry: kopf.OperatorRegistry | None = None,
        settings: kopf.OperatorSettings | None = None,
        args: Sequence[str] = (),
        timeout: float = 60.0,
    ) -> Iterator[KopfRunner]:
        argv = ["run", "--standalone"]
        argv += ["--namespace", namespace] if namespace is not None else ["--all-namespaces"]
        for module in modules:
            argv += ["-m", module]
        argv += list(args)
        env = {"KUBECONFIG": str(control_plane.kubeconfig)}
        options: dict[str, Any] = {"timeout": timeout, "env": env}
        if registry is not None:
            if registry not in _LOGIN_ADDED:
                kopf.on.login(registry=registry, id="seaway-tests-login")(
                    kopf.login_with_kubeconfig
                )
                _LOGIN_ADDED.add(registry)
            options["registry"] = registry
        if settings is not None:
            options["settings"] = settings
        # kopf's `run` makes a given registry the process-wide default and never restores it;
        # without this, every later operator would run that registry's handlers instead of the
        # ones its modules registered on import.
        default = kopf.get_default_registry()
        try:
            with KopfRunner(argv, **options) as runner:
                yield runner
        finally:
            kopf.set_default_registry(default)

    return run
