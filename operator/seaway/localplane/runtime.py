"""The real node's container runtime: containerd (with runc), configured to live in the run dir.

containerd's root, state, socket, runc's state and the CRI's CNI configuration all sit under
``<run dir>/node``, so two runs never share a content store and ``down`` removes it all. What
containerd still puts elsewhere (the shims' sockets in ``/run/containerd``) is removed by
:mod:`seaway.localplane.host`.

Root and state live on a tmpfs mounted for the node (``<run dir>/node/containerd``). Measured on
a 2-core machine under load: importing the two images (1.1 GB of archives, about 36,000 files
once unpacked) took 24-33 s on ext4 and 18-26 s on the tmpfs, and ``down`` spent 30-50 s
deleting those files from ext4 against an instant unmount. The price is memory: about 2.1 GB
of the tmpfs is in use while the node runs, none after ``down``.

Why each non-default setting:

- ``restrict_oom_score_adj = true``: root on the machines Seaway's CI uses lacks
  ``CAP_SYS_RESOURCE``; without it runc fails every Pod sandbox ("can't get final child's PID
  from pipe") because the pause container asks for ``oom_score_adj -998``.
- the sandbox image pinned to the locally imported pause image, so no Pod waits on a registry;
- NRI and CDI off: both would create and watch directories outside the run dir
  (``/var/run/nri``, ``/etc/cdi``) for features a local node does not use;
- ``SystemdCgroup = false``: the kubelet uses the cgroupfs driver (no systemd on these hosts).
"""

from __future__ import annotations

import json
from pathlib import Path

from seaway.localplane import nodeconfig

#: The containerd namespace the CRI (and so the kubelet) uses.
K8S_NAMESPACE = "k8s.io"


def _q(value: str | Path) -> str:
    """A TOML basic string (JSON's string escapes are valid TOML)."""
    return json.dumps(str(value))


def config_toml(node: nodeconfig.NodeLayout, bin_dir: Path, cni_bin_dir: Path) -> str:
    """containerd 2's configuration (version 3) for the node in ``node``."""
    cri_images = "plugins.'io.containerd.cri.v1.images'"
    cri_runtime = "plugins.'io.containerd.cri.v1.runtime'"
    runc = f"{cri_runtime}.containerd.runtimes.runc"
    lines = [
        "version = 3",
        f"root = {_q(node.containerd_root)}",
        f"state = {_q(node.containerd_state)}",
        "",
        "[grpc]",
        f"  address = {_q(node.containerd_socket)}",
        "",
        f"[{cri_images}]",
        "  snapshotter = 'overlayfs'",
        f"  [{cri_images}.pinned_images]",
        f"    sandbox = {_q(nodeconfig.PAUSE_IMAGE)}",
        "",
        f"[{cri_runtime}]",
        "  restrict_oom_score_adj = true",
        "  enable_cdi = false",
        "  cdi_spec_dirs = []",
        f"  [{cri_runtime}.containerd]",
        "    default_runtime_name = 'runc'",
        f"  [{runc}]",
        "    runtime_type = 'io.containerd.runc.v2'",
        f"  [{runc}.options]",
        f"    BinaryName = {_q(bin_dir / 'runc')}",
        f"    Root = {_q(node.runc_root)}",
        "    SystemdCgroup = false",
        f"  [{cri_runtime}.cni]",
        f"    bin_dirs = [{_q(cni_bin_dir)}]",
        f"    conf_dir = {_q(node.cni_conf_dir)}",
        "",
        "[plugins.'io.containerd.nri.v1.nri']",
        "  disable = true",
        "",
        "[plugins.'io.containerd.internal.v1.opt']",
        f"  path = {_q(node.root / 'containerd' / 'opt')}",
        "",
    ]
    return "\n".join(lines)


def args(bin_dir: Path, node: nodeconfig.NodeLayout) -> list[str]:
    return [str(bin_dir / "containerd"), f"--config={node.containerd_config}"]


def ctr_args(bin_dir: Path, node: nodeconfig.NodeLayout, *command: str) -> list[str]:
    """``ctr`` against this node's containerd, in the CRI's namespace."""
    return [
        str(bin_dir / "ctr"),
        f"--address={node.containerd_socket}",
        f"--namespace={K8S_NAMESPACE}",
        *command,
    ]
