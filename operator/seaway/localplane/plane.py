"""Start, inspect and stop one local control plane in a run directory.

Start order and readiness (each wait fails fast when the process exits, and fails with the tail of
the component's log when its deadline passes):

1. etcd                      ``GET http://127.0.0.1:<etcd>/health`` says ``"health":"true"``
2. kube-apiserver            ``GET /readyz`` is ``ok``; then the simulated Node is created
3. controller manager, scheduler and kwok together; each one's ``/healthz`` answers ``ok``
4. Node ``kwok-node-0`` Ready with no taints (kwok marks it Ready, the controller manager removes
   the ``not-ready`` taint), and ServiceAccount ``default/default`` exists (token controller up)

With a real node (``real_node=True``) there is no kwok and no simulated node. Its prerequisites
are checked first (:func:`real_node_problems`), before anything starts; then
:mod:`seaway.localplane.node` starts containerd and the image imports before etcd (they need no
API server and are the longest part), and the kubelet, kube-proxy and CoreDNS once the controller
manager and the scheduler answer; step 4 waits for the real Node.

The state file is rewritten after every process start, so :func:`stop` finds every process even
when a start failed halfway or the starting command was killed.
"""

from __future__ import annotations

import http.client
import logging
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seaway.localplane import api, binaries, config, node, nodeconfig, pki, preflight, processes

logger = logging.getLogger(__name__)

#: How long each readiness wait may take by default. Generous: on a loaded 2-core machine the API
#: server alone can need half a minute.
DEFAULT_TIMEOUT = 120.0
_PROBE_ERRORS = (OSError, ssl.SSLError, http.client.HTTPException, api.APIError, ValueError)


SIMULATED = "simulated"
REAL = "real"


class PlaneError(RuntimeError):
    """The plane could not start (or do what was asked); ``summary`` is one line for users."""

    def __init__(self, summary: str, log: str | None = None, log_tail: str = "") -> None:
        self.summary = summary
        self.log = log
        self.log_tail = log_tail
        text = summary
        if log_tail:
            text += f"\n--- last lines of {log} ---\n{log_tail}"
        super().__init__(text)

    def one_line(self) -> str:
        """The summary plus the last log line, for a CLI that prints one line."""
        last = [line for line in self.log_tail.splitlines() if line.strip()]
        if not last:
            return self.summary
        return f"{self.summary}; last log line: {last[-1].strip()[:240]} (log: {self.log})"


class NodeUnavailable(PlaneError):
    """The host cannot run a real node; one line per reason, nothing was started."""

    def __init__(self, problems: list[preflight.Problem]) -> None:
        self.problems = problems
        super().__init__("a real node cannot run here: " + "; ".join(p.line for p in problems))


@dataclass
class Plane:
    """A running (or just stopped) plane. Also loadable from a run dir started elsewhere."""

    name: str
    layout: config.Layout
    ports: config.Ports
    bins: dict[str, Path]
    components: list[processes.Component] = field(default_factory=list)
    handles: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)
    started_at: float = 0.0
    #: Processes are killed when the thread that started them dies (see processes.spawn).
    die_with_parent: bool = False
    #: ``simulated`` (kwok's node) or ``real`` (a kubelet running containers).
    mode: str = SIMULATED
    #: The real node's record (:class:`seaway.localplane.node.NodeState`), kept in the state file.
    node_record: dict[str, Any] | None = None

    @property
    def node_name(self) -> str:
        return nodeconfig.NODE_NAME if self.mode == REAL else config.NODE_NAME

    @property
    def kubeconfig(self) -> Path:
        return self.layout.kubeconfig

    @property
    def api_server(self) -> str:
        return config.api_server_url(self.ports)

    @property
    def run_dir(self) -> Path:
        return self.layout.root

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) with KUBECONFIG pointing here."""
        merged = dict(os.environ if base is None else base)
        merged["KUBECONFIG"] = str(self.kubeconfig)
        return merged

    def client(self, timeout: float = 5.0) -> api.Client:
        return api.Client(self.ports.apiserver, self.layout, timeout=timeout)

    def component(self, name: str) -> processes.Component:
        for component in self.components:
            if component.name == name:
                return component
        raise KeyError(name)

    # -- using the plane ---------------------------------------------------------------------

    def kubectl(
        self, *args: str, input: str | None = None, timeout: float = 120.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the plane's kubectl with the admin kubeconfig; raises PlaneError on failure."""
        argv = [str(self.bins["kubectl"]), f"--kubeconfig={self.kubeconfig}", *args]
        try:
            result = subprocess.run(
                argv, input=input, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise PlaneError(
                f"kubectl {' '.join(args[:2])} did not finish within {timeout:.0f}s"
            ) from None
        if check and result.returncode != 0:
            detail = result.stderr.strip() or result.stdout.strip()
            raise PlaneError(f"kubectl {' '.join(args[:2])} failed: {detail}")
        return result

    def install_crds(self, source: Path | str, timeout: float = 60.0) -> None:
        """Apply CRDs (a file, a directory, or YAML text) server-side; wait until Established.

        Server-side apply, because big CRDs (Gateway API's HTTPRoute) exceed the annotation limit
        of client-side apply.
        """
        if isinstance(source, Path):
            target, text = str(source), None
        else:
            target, text = "-", source
        self.kubectl(
            "apply", "--server-side", "--force-conflicts", "--field-manager=seaway-localplane",
            "-f", target, input=text,
        )  # fmt: skip
        # Every CRD, not just "-f target": the files may carry other objects beside CRDs (the
        # approval admission policy), which have no Established condition to wait for.
        self.kubectl(
            "wait", "--for=condition=Established", f"--timeout={int(timeout)}s", "crd", "--all",
            timeout=timeout + 30,
        )  # fmt: skip
        logger.info("Installed CRDs from %s", source if text is None else "rendered YAML")

    def wait_for_service_account(
        self, namespace: str, name: str = "default", timeout: float = 60.0
    ) -> None:
        """Wait until ``namespace`` has its ServiceAccount (Pods are refused before that)."""
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}"
        client = self.client()

        def probe() -> bool:
            return client.request("GET", path).status == 200

        _poll(
            probe,
            timeout,
            what=f"ServiceAccount {namespace}/{name}",
            watched=self._alive_list("kube-controller-manager", "kube-apiserver"),
            blame=self._maybe("kube-controller-manager"),
        )

    def node_ready(self, name: str | None = None) -> tuple[bool, str]:
        """(Ready and schedulable, a short description) of the plane's node, asked live."""
        try:
            body = self.client(timeout=3.0).get(f"/api/v1/nodes/{name or self.node_name}")
        except _PROBE_ERRORS as exc:
            return False, f"unknown ({exc})"
        return node.node_status(body)

    # -- stopping ----------------------------------------------------------------------------

    def stop(self, grace: float = 10.0) -> list[processes.Component]:
        """Stop every process of the plane and discard its data (logs and PKI stay)."""
        stopped = processes.stop(self.components, self.handles, grace=grace)
        if self.node_record is not None:
            # The node's Pods outlive its processes (containerd's shims); they, and whatever the
            # node changed on the host, go now. The state file stays until that is done, so an
            # interrupted down is finished by the next one.
            node_layout = nodeconfig.NodeLayout.of(self.layout)
            errors = node.clean(node.NodeState.from_dict(self.node_record), node_layout)
            if not errors:
                logger.info("Removed the real node's network, mounts, cgroups and files")
            self.node_record = None
        if self.mode == REAL:
            node.release(self.layout.root)
        self.layout.state.unlink(missing_ok=True)
        shutil.rmtree(self.layout.etcd_data, ignore_errors=True)
        if stopped:
            logger.info("Stopped the local control plane %s", self.name)
        return stopped

    # -- starting ----------------------------------------------------------------------------

    def _save(self, ready: bool) -> None:
        processes.write_state(
            self.layout.state,
            {
                "name": self.name,
                "run_dir": str(self.layout.root),
                "api_server": self.api_server,
                "kubeconfig": str(self.kubeconfig),
                "ports": self.ports.as_dict(),
                "bin": {key: str(value) for key, value in self.bins.items()},
                "started_at": self.started_at,
                "ready": ready,
                "mode": self.mode,
                **({"node": self.node_record} if self.node_record is not None else {}),
            },
            self.components,
        )

    # -- what the real node needs of the plane (seaway.localplane.node.Starter) -------------

    def spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> processes.Component:
        return self._spawn(name, argv, env)

    def wait(
        self,
        what: str,
        probe: Callable[[], bool],
        timeout: float,
        *,
        watched: Sequence[processes.Component],
        blame: processes.Component | None,
        detail: Callable[[], str] | None = None,
    ) -> None:
        began = time.monotonic()
        _poll(probe, timeout, what=what, watched=watched, blame=blame, plane=self, detail=detail)
        logger.info("%s: ready in %.1fs", what, time.monotonic() - began)

    def save(self) -> None:
        self._save(ready=False)

    def run_alongside(self, name: str, argv: list[str]) -> processes.Component:
        """Start a process that belongs to the plane (the operator): ``stop`` stops it first.

        It runs with KUBECONFIG pointing at the plane, and logs to ``logs/<name>.log``.
        """
        component, proc = processes.spawn(
            name, argv, self.layout.log(name), env=self.env(), die_with_parent=self.die_with_parent
        )
        self.components.append(component)
        self.handles[proc.pid] = proc
        self._save(ready=True)
        return component

    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> processes.Component:
        component, proc = processes.spawn(
            name, argv, self.layout.log(name), env=env, die_with_parent=self.die_with_parent
        )
        self.components.append(component)
        self.handles[proc.pid] = proc
        self._save(ready=False)
        return component

    def _maybe(self, name: str) -> processes.Component | None:
        try:
            return self.component(name)
        except KeyError:
            return None

    def _alive_list(self, *names: str) -> list[processes.Component]:
        return [c for c in (self._maybe(n) for n in names) if c is not None]

    def _wait_component(
        self, component: processes.Component, what: str, probe: Callable[[], bool], timeout: float
    ) -> None:
        began = time.monotonic()
        _poll(probe, timeout, what=what, watched=[component], blame=component, plane=self)
        logger.info("%s became ready in %.1fs", component.name, time.monotonic() - began)

    def _start_all(self, timeout: float, env: Mapping[str, str]) -> None:
        if self.mode == SIMULATED:
            self._start_control_plane(timeout, env, None)
            return
        try:
            state = node.prepare(self, env)
            runtime = node.start_runtime(self, state, env, timeout)
        except (node.NodeError, OSError) as exc:
            raise PlaneError(f"the real node could not start: {exc}") from None
        try:
            self._start_control_plane(timeout, env, (state, runtime))
        finally:
            runtime.abort()

    def _start_control_plane(
        self,
        timeout: float,
        env: Mapping[str, str],
        real: tuple[node.NodeState, node.Runtime] | None,
    ) -> None:
        layout, ports, bins = self.layout, self.ports, self.bins
        etcd = self._spawn("etcd", config.etcd_args(bins["etcd"], layout, ports))

        def etcd_healthy() -> bool:
            status, body = api.http_get(ports.etcd_client, "/health")
            return status == 200 and '"health":"true"' in body

        self._wait_component(etcd, "etcd /health", etcd_healthy, timeout)

        apiserver = self._spawn(
            "kube-apiserver",
            config.apiserver_args(
                bins["kube-apiserver"],
                layout,
                ports,
                pod_gateway=nodeconfig.GATEWAY if real is not None else None,
            ),
        )
        client = self.client()

        def api_ready() -> bool:
            response = client.request("GET", "/readyz")
            return response.status == 200 and response.body.strip() == b"ok"

        self._wait_component(apiserver, "kube-apiserver /readyz", api_ready, timeout)
        if self.mode == SIMULATED and client.create("/api/v1/nodes", config.node_manifest()):
            logger.info("Created Node %s", config.NODE_NAME)

        kcm = self._spawn(
            "kube-controller-manager",
            config.controller_manager_args(bins["kube-controller-manager"], layout, ports),
        )
        scheduler = self._spawn(
            "kube-scheduler", config.scheduler_args(bins["kube-scheduler"], layout, ports)
        )
        if real is not None:
            self._wait_controllers(kcm, scheduler, timeout)
            try:
                node.start_node(self, *real, timeout)
            except (node.NodeError, OSError) as exc:
                raise PlaneError(f"the real node could not start: {exc}") from None
            self.wait_for_service_account("default", timeout=timeout)
            self._save(ready=True)
            return
        kwok = self._spawn("kwok", config.kwok_args(bins["kwok"], layout, ports))

        def kwok_healthy() -> bool:
            status, body = api.http_get(ports.kwok, "/healthz")
            return status == 200 and body.strip() == "ok"

        self._wait_controllers(kcm, scheduler, timeout)
        self._wait_component(kwok, "kwok /healthz", kwok_healthy, timeout)

        began = time.monotonic()
        last: list[str] = ["not seen yet"]

        def node_is_ready() -> bool:
            ready, description = node.node_status(client.get(f"/api/v1/nodes/{config.NODE_NAME}"))
            last[0] = description
            return ready

        _poll(
            node_is_ready,
            timeout,
            what=f"Node {config.NODE_NAME} Ready and untainted",
            watched=[etcd, apiserver, kcm, scheduler, kwok],
            blame=kwok,
            plane=self,
            detail=lambda: f"last seen: {last[0]}",
        )
        logger.info("Node %s became Ready in %.1fs", config.NODE_NAME, time.monotonic() - began)
        self.wait_for_service_account("default", timeout=timeout)
        self._save(ready=True)

    def _wait_controllers(
        self, kcm: processes.Component, scheduler: processes.Component, timeout: float
    ) -> None:
        def secure_healthz(port: int) -> Callable[[], bool]:
            probe_client = api.Client(port, self.layout, client_cert=False)

            def probe() -> bool:
                response = probe_client.request("GET", "/healthz")
                return response.status == 200 and response.body.strip() == b"ok"

            return probe

        self._wait_component(
            kcm, "controller manager /healthz", secure_healthz(self.ports.controller_manager),
            timeout,
        )  # fmt: skip
        self._wait_component(
            scheduler, "scheduler /healthz", secure_healthz(self.ports.scheduler), timeout
        )


def _poll(
    probe: Callable[[], bool],
    timeout: float,
    *,
    what: str,
    watched: Sequence[processes.Component],
    blame: processes.Component | None,
    plane: Plane | None = None,
    detail: Callable[[], str] | None = None,
) -> None:
    """Call ``probe`` until it is True; fail when a watched process dies or time runs out."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    last_error = ""
    while True:
        for component in watched:
            if not processes.is_alive(component):
                code = None
                if plane is not None and component.pid in plane.handles:
                    code = plane.handles[component.pid].poll()
                exited = "exited" if code is None else f"exited with code {code}"
                raise PlaneError(
                    f"{component.name} {exited} while waiting for {_fill(what, detail)}",
                    component.log,
                    processes.tail(component.log),
                )
        try:
            if probe():
                return
            last_error = ""
        except _PROBE_ERRORS as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            summary = f"timed out after {timeout:.0f}s waiting for {_fill(what, detail)}"
            if last_error:
                summary += f" ({last_error})"
            if blame is None:
                raise PlaneError(summary)
            raise PlaneError(summary, blame.log, processes.tail(blame.log))
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def _fill(what: str, detail: Callable[[], str] | None) -> str:
    return what if detail is None else f"{what} ({detail()})"


# -- the run directory -------------------------------------------------------------------------


def start(
    run_dir: Path,
    *,
    name: str = config.DEFAULT_CLUSTER_NAME,
    bins: Mapping[str, Path] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    die_with_parent: bool = False,
    real_node: bool = False,
    env: Mapping[str, str] | None = None,
) -> Plane:
    """Start a fresh plane in ``run_dir``; on any failure, everything started is stopped again.

    ``real_node`` runs Pods in containers on a real kubelet instead of kwok's simulated node;
    when the host cannot, :class:`NodeUnavailable` (one line per reason) is raised before
    anything starts. ``env`` (default: this process's environment) locates the node's binaries.

    ``bins`` defaults to the binaries in :func:`seaway.localplane.config.bin_dir` (never built
    here: :func:`seaway.localplane.binaries.ensure` does that). ``die_with_parent`` makes the
    processes go away with the calling thread even when it cannot stop them (a killed test run);
    leave it off when the plane must outlive the caller. Raises :class:`PlaneError`.
    """
    began = time.monotonic()
    env = os.environ if env is None else env
    try:
        resolved = dict(bins) if bins is not None else binaries.paths(config.bin_dir(os.environ))
    except binaries.BinariesMissing as exc:
        raise PlaneError(str(exc)) from None
    layout = config.Layout(run_dir.resolve())
    layout.root.mkdir(parents=True, exist_ok=True)
    with processes.locked(layout.lock):
        previous = processes.read_state(layout.state)
        if previous is not None and any(processes.is_alive(c) for c in previous[1]):
            raise PlaneError(
                f"a plane is already running in {layout.root}; stop it first (seaway cluster down)"
            )
        if previous is not None:
            # Nothing of it runs, but a real node it had may have left the host changed.
            stale = load(layout.root)
            if stale is not None:
                stale.stop(grace=1.0)
        if real_node:
            problems = real_node_problems(layout.root, env)
            if problems:
                raise NodeUnavailable(problems)
        shutil.rmtree(layout.etcd_data, ignore_errors=True)
        shutil.rmtree(layout.logs, ignore_errors=True)
        layout.logs.mkdir(parents=True)
        try:
            pki.create(layout)
        except pki.PKIError as exc:
            raise PlaneError(str(exc)) from None
        ports = config.Ports.from_list(processes.free_ports(config.PORT_COUNT))
        plane = Plane(
            name=name,
            layout=layout,
            ports=ports,
            bins=resolved,
            started_at=time.time(),
            die_with_parent=die_with_parent,
            mode=REAL if real_node else SIMULATED,
        )
        layout.kubeconfig.write_text(config.kubeconfig_text(plane.api_server, layout, name))
        layout.kubeconfig.chmod(0o600)
        try:
            layout.kwok_config.write_text(config.kwok_config_text(config.stages_text()))
        except ValueError as exc:
            raise PlaneError(f"invalid kwok stages: {exc}") from None
        logger.info("Starting the local control plane %s in %s", name, layout.root)
        try:
            plane._start_all(timeout, env)
        except BaseException:
            plane.stop(grace=5.0)
            raise
    logger.info(
        "Started the local control plane %s in %.1fs (API server %s)",
        name,
        time.monotonic() - began,
        plane.api_server,
    )
    return plane


def real_node_problems(run_dir: Path, env: Mapping[str, str]) -> list[preflight.Problem]:
    """Why this host cannot run a real node for the plane in ``run_dir`` ([] when it can)."""
    layout = config.Layout(run_dir.resolve())
    held = node.holder()
    other = None
    if held is not None and held.alive and held.run_dir != layout.root:
        other = held.describe()
    facts = preflight.gather(env, nodeconfig.NodeLayout.of(layout), other, held is not None)
    return preflight.problems(facts)


def load(run_dir: Path) -> Plane | None:
    """The plane recorded in ``run_dir``'s state file (its processes may or may not run)."""
    layout = config.Layout(run_dir.resolve())
    state = processes.read_state(layout.state)
    if state is None:
        return None
    data, components = state
    mode = REAL if data.get("mode") == REAL else SIMULATED
    node_record = data.get("node") if isinstance(data.get("node"), dict) else None
    try:
        ports = config.Ports.from_dict(data["ports"])
    except (KeyError, TypeError, ValueError):
        return Plane(
            name=str(data.get("name", "?")),
            layout=layout,
            ports=config.Ports(0, 0, 0, 0, 0, 0),
            bins={},
            components=components,
            mode=mode,
            node_record=node_record,
        )
    return Plane(
        name=str(data.get("name", config.DEFAULT_CLUSTER_NAME)),
        layout=layout,
        ports=ports,
        bins={key: Path(value) for key, value in data.get("bin", {}).items()},
        components=components,
        started_at=float(data.get("started_at", 0.0)),
        mode=mode,
        node_record=node_record,
    )


def stop(run_dir: Path, grace: float = 10.0) -> list[processes.Component]:
    """Stop whatever the state file in ``run_dir`` records; returns what was still running."""
    layout = config.Layout(run_dir.resolve())
    if not layout.root.exists():
        return []
    with processes.locked(layout.lock):
        plane = load(run_dir)
        if plane is None:
            return []
        return plane.stop(grace=grace)


@dataclass(frozen=True)
class Status:
    """What runs in a run dir: each recorded component, alive or not, and the node's state."""

    name: str
    run_dir: Path
    kubeconfig: Path
    api_server: str | None
    components: tuple[tuple[processes.Component, bool], ...]
    node_ready: bool
    node_description: str
    mode: str = SIMULATED
    node_name: str = config.NODE_NAME

    @property
    def recorded(self) -> bool:
        return bool(self.components)

    @property
    def running(self) -> bool:
        """Every component is alive (the node may still be becoming Ready)."""
        expected = {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}
        expected |= set(node.COMPONENTS) if self.mode == REAL else {"kwok"}
        alive = {c.name for c, ok in self.components if ok}
        return self.recorded and expected <= alive and all(ok for _, ok in self.components)

    @property
    def healthy(self) -> bool:
        return self.running and self.node_ready

    @property
    def partly_running(self) -> bool:
        return any(ok for _, ok in self.components) and not self.running


def status(run_dir: Path) -> Status:
    layout = config.Layout(run_dir.resolve())
    plane = load(run_dir)
    if plane is None:
        return Status(
            name=layout.root.name,
            run_dir=layout.root,
            kubeconfig=layout.kubeconfig,
            api_server=None,
            components=(),
            node_ready=False,
            node_description="no cluster",
        )
    components = tuple((c, processes.is_alive(c)) for c in plane.components)
    apiserver_alive = any(ok for c, ok in components if c.name == "kube-apiserver")
    if apiserver_alive and plane.ports.apiserver:
        node_ready, description = plane.node_ready()
    else:
        node_ready, description = False, "unknown (the API server is not running)"
    return Status(
        name=plane.name,
        run_dir=layout.root,
        kubeconfig=plane.kubeconfig,
        api_server=plane.api_server if plane.ports.apiserver else None,
        components=components,
        node_ready=node_ready,
        node_description=description,
        mode=plane.mode,
        node_name=plane.node_name,
    )
