"""The real node: start order, readiness, the host lock, and what ``down`` undoes.

Start order (each step waits for the one before; each process is recorded in the plane's state
file as soon as it runs, so ``down`` finds it even when a later step fails):

1. the host lock ``/run/seaway-real-node.lock`` and a record of the host (sysctls, the fixed
   directories that exist), saved in the state file before anything on the host changes;
2. the node's client certificate and kubeconfig, ``ip_forward``, the bridge and the CNI config;
3. containerd: ready when ``ctr version`` answers; the image archives are then imported in the
   background while the rest starts. Steps 1-3 run before the control plane starts;
4. (once the API server and the controllers answer) kubelet: ``/healthz`` on its loopback port;
5. kube-proxy: ``/healthz``;
6. CoreDNS: ``/ready`` (it has read Services and EndpointSlices);
7. the image imports finished and every reference tagged; the Node Ready and untainted.

Only one real node can run on a host (kube-proxy owns the host's ``KUBE-*`` chains, the kubelet
a fixed device-plugin socket and the ``kubepods`` cgroups, CoreDNS port 53 on the gateway). The
lock file names the cluster holding the host; a lock whose node is gone (a killed ``up``, a
rebooted machine's state) is taken over after cleaning up what that node left.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from seaway.localplane import (
    api,
    config,
    dns,
    host,
    images,
    kubelet,
    network,
    nodeconfig,
    pki,
    processes,
    proxy,
    runtime,
)

logger = logging.getLogger(__name__)

#: The node's processes, in start order (``down`` stops them in reverse).
COMPONENTS = ("containerd", "kubelet", "kube-proxy", "coredns")


class NodeError(RuntimeError):
    """The real node cannot start; ``str()`` is one line for users."""


class Starter(Protocol):
    """What the node needs of the plane that starts it (:class:`seaway.localplane.Plane`)."""

    layout: config.Layout
    name: str
    node_record: dict[str, Any] | None

    @property
    def api_server(self) -> str: ...

    def spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> processes.Component: ...

    def wait(
        self,
        what: str,
        probe: Callable[[], bool],
        timeout: float,
        *,
        watched: Sequence[processes.Component],
        blame: processes.Component | None,
        detail: Callable[[], str] | None = None,
    ) -> None: ...

    def save(self) -> None: ...

    def client(self, timeout: float = 5.0) -> api.Client: ...


@dataclass(frozen=True)
class NodeState:
    """What the state file keeps about the node (under the key ``node``)."""

    root: Path
    ports: nodeconfig.NodePorts
    record: host.Record

    def as_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "ports": self.ports.as_dict(),
            "host": self.record.as_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeState:
        return cls(
            root=Path(data["root"]),
            ports=nodeconfig.NodePorts.from_dict(data["ports"]),
            record=host.Record.from_dict(data.get("host", {})),
        )


# -- the host lock ------------------------------------------------------------------------------


def _read_lock(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) and "run_dir" in data else None


def _holder_alive(data: Mapping[str, Any]) -> bool:
    """The holder's ``up`` is still starting, or one of its node processes runs."""
    starter = processes.Component(
        "starter", int(data.get("pid", 0)), data.get("start_ticks"), (), ""
    )
    if starter.pid and processes.is_alive(starter):
        return True
    state = processes.read_state(Path(data["run_dir"]) / "state.json")
    if state is None:
        return False
    return any(c.name in COMPONENTS and processes.is_alive(c) for c in state[1])


@dataclass(frozen=True)
class Holder:
    """The cluster named in the host lock."""

    name: str
    run_dir: Path
    #: Its ``up`` is still running, or one of its node processes is.
    alive: bool

    def describe(self) -> str:
        return f"cluster {self.name} (run dir {self.run_dir})"


def holder(lock_file: Path = nodeconfig.LOCK_FILE) -> Holder | None:
    """The cluster holding the host's real node, live or crashed; None when the lock is free."""
    try:
        data = _read_lock(lock_file.read_text())
    except OSError:
        return None
    if data is None:
        return None
    return Holder(str(data.get("name", "?")), Path(data["run_dir"]), _holder_alive(data))


def acquire(name: str, run_dir: Path, lock_file: Path = nodeconfig.LOCK_FILE) -> None:
    """Take the host for this cluster's node; clean up after a crashed holder first."""
    with processes.locked(lock_file) as handle:
        data = _read_lock(handle.read())
        if data is not None and Path(data["run_dir"]) != run_dir:
            if _holder_alive(data):
                raise NodeError(
                    f"another real node runs on this host: cluster {data.get('name', '?')} "
                    f"(run dir {data['run_dir']})"
                )
            _clean_crashed(Path(data["run_dir"]))
        handle.seek(0)
        handle.truncate()
        handle.write(
            json.dumps(
                {
                    "name": name,
                    "run_dir": str(run_dir),
                    "pid": os.getpid(),
                    "start_ticks": processes.process_start_ticks(os.getpid()),
                }
            )
            + "\n"
        )


def release(run_dir: Path, lock_file: Path = nodeconfig.LOCK_FILE) -> None:
    """Give the host back, if this cluster holds it."""
    if not lock_file.exists():
        return
    with processes.locked(lock_file) as handle:
        data = _read_lock(handle.read())
        if data is None or Path(data["run_dir"]) == run_dir:
            lock_file.unlink(missing_ok=True)


def _clean_crashed(run_dir: Path) -> None:
    """Undo what a node whose processes are gone left on the host, and forget its record."""
    state_file = config.Layout(run_dir).state
    state = processes.read_state(state_file)
    if state is None or "node" not in state[0]:
        return
    data, components = state
    logger.info("Cleaning up after the real node of %s, which was not stopped", run_dir)
    node_state = NodeState.from_dict(data["node"])
    stop_components([c for c in components if c.name in COMPONENTS])
    clean(node_state, nodeconfig.NodeLayout(config.Layout(run_dir).node))
    data.pop("node")
    processes.write_state(state_file, data, components)


# -- starting -----------------------------------------------------------------------------------


def _check(argv: list[str], what: str, timeout: float = 120.0) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise NodeError(f"{what} did not finish within {timeout:.0f}s") from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise NodeError(f"{what} failed: {detail[-1] if detail else 'no output'}")
    return result.stdout


def prepare(starter: Starter, env: Mapping[str, str]) -> NodeState:
    """Step 1: lock the host and record it (saved before anything on the host changes)."""
    layout = starter.layout
    acquire(starter.name, layout.root)
    state = NodeState(
        root=nodeconfig.node_dir(env),
        ports=nodeconfig.NodePorts.from_list(processes.free_ports(nodeconfig.NodePorts.COUNT)),
        record=host.snapshot(),
    )
    starter.node_record = state.as_dict()
    starter.save()
    return state


@dataclass
class Runtime:
    """containerd started and the image archives importing (steps 2 and 3)."""

    containerd: processes.Component
    archives: list[images.Archive]
    imports: list[tuple[subprocess.Popen[bytes], images.Archive]]
    import_log: Path

    def abort(self) -> None:
        """Stop imports still running (the plane failed to start)."""
        for proc, _ in self.imports:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def start_runtime(
    starter: Starter, state: NodeState, env: Mapping[str, str], timeout: float
) -> Runtime:
    """Steps 2 and 3, which need no API server: they run first, so the image imports (the
    longest part of ``up``) overlap the start of the control plane. Raises
    :class:`NodeError`; the plane stops everything on any failure."""
    layout = starter.layout
    node = nodeconfig.NodeLayout.of(layout)
    bin_dir = state.root / "bin"
    cni_dir = Path(env.get("SEAWAY_CNI_BIN_DIR") or nodeconfig.CNI_BIN_DIR)
    ports = state.ports

    if node.root.exists():
        shutil.rmtree(node.root)
    for directory in (node.root, node.cni_conf_dir, node.ipam_dir, node.pod_logs):
        directory.mkdir(parents=True, exist_ok=True)
    try:
        host.mount_tmpfs(node.containerd_dir)
    except OSError as exc:
        raise NodeError(f"cannot mount a tmpfs on {node.containerd_dir}: {exc}") from None
    try:
        pki.create_node(layout, nodeconfig.NODE_NAME)
    except pki.PKIError as exc:
        raise NodeError(str(exc)) from None
    node.kubelet_kubeconfig.write_text(
        config.kubeconfig_text(
            starter.api_server,
            layout,
            starter.name,
            user=nodeconfig.NODE_NAME,
            cert=layout.node_cert(),
            key=layout.node_key(),
        )
    )
    node.kubelet_kubeconfig.chmod(0o600)

    errors = network.write_sysctls(network.REQUIRED_SYSCTLS)
    if errors:
        raise NodeError(errors[0])
    try:
        network.create_bridge()
        network.install_guard(config.SERVICE_CIDR)
    except network.NetworkError as exc:
        raise NodeError(str(exc)) from None
    node.cni_conflist.write_text(network.conflist_text(node))
    node.containerd_config.write_text(runtime.config_toml(node, bin_dir, cni_dir))
    node.kubelet_config.write_text(kubelet.config_text(layout, node, ports))
    node.proxy_config.write_text(proxy.config_text(layout, ports))
    node.corefile.write_text(dns.corefile(layout, ports))

    # 3. containerd, then the image imports in the background
    runtime_env = dict(env)
    runtime_env["PATH"] = nodeconfig.search_path(state.root, env.get("PATH", ""))
    containerd = starter.spawn("containerd", runtime.args(bin_dir, node), env=runtime_env)

    def containerd_answers() -> bool:
        if not node.containerd_socket.exists():
            return False
        argv = runtime.ctr_args(bin_dir, node, "version")
        try:
            answered = subprocess.run(argv, capture_output=True, timeout=10, check=False)
        except subprocess.TimeoutExpired:
            return False
        return answered.returncode == 0

    starter.wait(
        "containerd to answer", containerd_answers, timeout, watched=[containerd], blame=containerd
    )
    try:
        archives = images.load(nodeconfig.images_dir(state.root))
    except images.CatalogError as exc:
        raise NodeError(str(exc)) from None
    log = layout.log("image-import")
    return Runtime(containerd, archives, _start_imports(bin_dir, node, archives, log), log)


def start_node(starter: Starter, state: NodeState, started: Runtime, timeout: float) -> None:
    """Steps 4-7, once the API server and the controllers answer; raises :class:`NodeError`."""
    node = nodeconfig.NodeLayout.of(starter.layout)
    bin_dir = state.root / "bin"
    ports = state.ports
    containerd = started.containerd
    try:
        # 4. kubelet
        kubelet_process = starter.spawn("kubelet", kubelet.args(bin_dir / "kubelet", node))
        starter.wait(
            "kubelet /healthz",
            _http_ok(ports.kubelet_healthz, "/healthz"),
            timeout,
            watched=[containerd, kubelet_process],
            blame=kubelet_process,
        )
        # 5. kube-proxy
        proxy_process = starter.spawn("kube-proxy", proxy.args(bin_dir / "kube-proxy", node))
        starter.wait(
            "kube-proxy /healthz",
            _http_ok(ports.proxy_healthz, "/healthz"),
            timeout,
            watched=[proxy_process],
            blame=proxy_process,
        )
        # 6. CoreDNS
        coredns = starter.spawn("coredns", dns.args(bin_dir / "coredns", node))
        starter.wait(
            "CoreDNS /ready",
            _http_ok(ports.dns_ready, "/ready"),
            timeout,
            watched=[coredns],
            blame=coredns,
        )
        # 7. images, then the Node
        _finish_imports(started, bin_dir, node, timeout)
    finally:
        started.abort()

    client = starter.client()
    last = ["not seen yet"]

    def node_ready() -> bool:
        ready, description = node_status(client.get(f"/api/v1/nodes/{nodeconfig.NODE_NAME}"))
        last[0] = description
        return ready

    began = time.monotonic()
    starter.wait(
        f"Node {nodeconfig.NODE_NAME} Ready and untainted",
        node_ready,
        timeout,
        watched=[containerd, kubelet_process],
        blame=kubelet_process,
        detail=lambda: f"last seen: {last[0]}",
    )
    logger.info("Node %s became Ready in %.1fs", nodeconfig.NODE_NAME, time.monotonic() - began)


def _http_ok(port: int, path: str) -> Callable[[], bool]:
    def probe() -> bool:
        status, _ = api.http_get(port, path)
        return status == 200

    return probe


def _start_imports(
    bin_dir: Path,
    node: nodeconfig.NodeLayout,
    archives: list[images.Archive],
    log: Path,
) -> list[tuple[subprocess.Popen[bytes], images.Archive]]:
    started = []
    for archive in archives:
        argv = runtime.ctr_args(bin_dir, node, "images", "import", str(archive.path))
        with log.open("ab") as out:
            out.write(f"--- {' '.join(argv)}\n".encode())
            out.flush()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        started.append((proc, archive))
        logger.info("Importing %s", archive.path.name)
    return started


def _finish_imports(
    started: Runtime, bin_dir: Path, node: nodeconfig.NodeLayout, timeout: float
) -> None:
    archives = started.archives
    deadline = time.monotonic() + timeout
    for proc, archive in started.imports:
        try:
            code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise NodeError(f"importing {archive.path.name} took over {timeout:.0f}s") from None
        if code != 0:
            raise NodeError(
                f"importing {archive.path.name} failed with exit code {code} "
                f"(log: {started.import_log})"
            )
    listed = _check(runtime.ctr_args(bin_dir, node, "images", "list", "-q"), "ctr images list")
    present = set(listed.split())
    for source, target in images.missing_refs(archives, present):
        _check(
            runtime.ctr_args(bin_dir, node, "images", "tag", "--force", source, target),
            f"tagging {source} as {target}",
        )
    refs = sorted({ref for archive in archives for ref in archive.refs})
    logger.info("Imported images: %s", ", ".join(refs))


def node_status(body: Mapping[str, Any]) -> tuple[bool, str]:
    """(Ready and untainted, a short description) of a Node object (PURE)."""
    status = body.get("status", {})
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions", [])}
    taints = [t.get("key", "") for t in body.get("spec", {}).get("taints") or []]
    ready = conditions.get("Ready") == "True"
    description = "Ready" if ready else f"Ready={conditions.get('Ready', 'missing')}"
    if taints:
        description += f", tainted {', '.join(taints)}"
    return ready and not taints, description


# -- stopping -----------------------------------------------------------------------------------


def stop_components(components: Sequence[processes.Component]) -> None:
    processes.stop(components, grace=5.0)


def clean(state: NodeState, node: nodeconfig.NodeLayout) -> list[str]:
    """After the node's processes stopped: undo the host changes, remove the node's files."""
    errors = host.clean(state.record, node, proxy_binary=state.root / "bin" / "kube-proxy")
    if node.root.exists():
        errors += host.remove_paths([str(node.root)])
    return errors
