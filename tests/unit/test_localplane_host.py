"""What ``down`` undoes on the host, decided from what the host shows (no root needed):
iptables listings, mountinfo, ``ip addr`` output, sysctls, the host lock."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from seaway.localplane import host, network, node, processes

IPTABLES_NAT = """\
-P PREROUTING ACCEPT
-P POSTROUTING ACCEPT
-N CNI-0123456789abcdef
-N DOCKER-LIKE
-N KUBE-SERVICES
-N KUBE-POSTROUTING
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A POSTROUTING -s 10.88.0.5/32 -m comment --comment "name: \\"seaway\\" id: \\"abc\\"" -j CNI-0123456789abcdef
-A POSTROUTING -s 172.17.0.0/16 -j MASQUERADE
-A DOCKER-LIKE -j RETURN
-A CNI-0123456789abcdef -d 10.88.0.0/16 -j ACCEPT
-A KUBE-SERVICES -j RETURN
"""  # noqa: E501


def test_chains_are_read_from_a_listing() -> None:
    assert network.chains(IPTABLES_NAT) == [
        "CNI-0123456789abcdef", "DOCKER-LIKE", "KUBE-SERVICES", "KUBE-POSTROUTING",
    ]  # fmt: skip


def test_cleanup_unhooks_then_flushes_then_deletes_only_node_chains() -> None:
    commands = network.cleanup_commands("nat", IPTABLES_NAT)
    assert commands == [
        ["-t", "nat", "-D", "PREROUTING", "-m", "comment", "--comment",
         "kubernetes service portals", "-j", "KUBE-SERVICES"],
        ["-t", "nat", "-D", "POSTROUTING", "-m", "comment", "--comment",
         "kubernetes postrouting rules", "-j", "KUBE-POSTROUTING"],
        ["-t", "nat", "-D", "POSTROUTING", "-s", "10.88.0.5/32", "-m", "comment", "--comment",
         'name: "seaway" id: "abc"', "-j", "CNI-0123456789abcdef"],
        ["-t", "nat", "-F", "CNI-0123456789abcdef"],
        ["-t", "nat", "-F", "KUBE-SERVICES"],
        ["-t", "nat", "-F", "KUBE-POSTROUTING"],
        ["-t", "nat", "-X", "CNI-0123456789abcdef"],
        ["-t", "nat", "-X", "KUBE-SERVICES"],
        ["-t", "nat", "-X", "KUBE-POSTROUTING"],
    ]  # fmt: skip


def test_the_service_guard_is_hooked_first_and_removed_with_the_node_chains() -> None:
    commands = network.guard_commands("10.96.0.0/16")
    assert commands[0] == ["-t", "filter", "-N", "SEAWAY-SERVICES"]
    rejects = [c for c in commands if "-A" in c]
    assert all(c[c.index("-d") + 1] == "10.96.0.0/16" and "REJECT" in c for c in rejects)
    assert ["-t", "filter", "-I", "FORWARD", "1", "-j", "SEAWAY-SERVICES"] in commands
    assert ["-t", "filter", "-I", "OUTPUT", "1", "-j", "SEAWAY-SERVICES"] in commands
    listed = (  # how `iptables -t filter -S` shows the table once the guard is in
        "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n-N SEAWAY-SERVICES\n"
        "-A FORWARD -j SEAWAY-SERVICES\n-A OUTPUT -j SEAWAY-SERVICES\n"
        '-A SEAWAY-SERVICES -d 10.96.0.0/16 -p tcp -m comment --comment "ClusterIP without a '
        'kube-proxy rule yet" -j REJECT --reject-with tcp-reset\n'
    )
    assert network.cleanup_commands("filter", listed) == [
        ["-t", "filter", "-D", "FORWARD", "-j", "SEAWAY-SERVICES"],
        ["-t", "filter", "-D", "OUTPUT", "-j", "SEAWAY-SERVICES"],
        ["-t", "filter", "-F", "SEAWAY-SERVICES"],
        ["-t", "filter", "-X", "SEAWAY-SERVICES"],
    ]


def test_a_table_without_node_chains_needs_nothing() -> None:
    assert network.cleanup_commands("filter", "-P INPUT ACCEPT\n-A INPUT -j ACCEPT\n") == []


def test_addresses_in_the_pod_range_on_other_interfaces_are_conflicts() -> None:
    output = (
        "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n"
        "2: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\n"
        "5: seaway0    inet 10.88.0.1/16 scope global seaway0\n"
        "6: cni-podman0    inet 10.88.0.1/16 brd 10.88.255.255 scope global cni-podman0\n"
        "7: wg0    inet 10.0.0.1/8 scope global wg0\n"
    )
    assert network.addresses_in_pod_range(output) == [
        "cni-podman0 (10.88.0.1/16)",
        "wg0 (10.0.0.1/8)",
    ]


def test_sysctls_are_read_and_only_changed_ones_written_back(tmp_path: Path) -> None:
    (tmp_path / "net/ipv4").mkdir(parents=True)
    (tmp_path / "net/ipv4/ip_forward").write_text("1\n")
    (tmp_path / "kernel").mkdir()
    (tmp_path / "kernel/panic").write_text("0\n")
    values = network.read_sysctls(["net/ipv4/ip_forward", "kernel/panic", "vm/absent"], tmp_path)
    assert values == {"net/ipv4/ip_forward": "1", "kernel/panic": "0"}

    record = host.Record(sysctls={"net/ipv4/ip_forward": "0", "kernel/panic": "0"})
    changed = host.changed_sysctls(record, values)
    assert changed == {"net/ipv4/ip_forward": "0"}
    assert network.write_sysctls(changed, tmp_path) == []
    assert (tmp_path / "net/ipv4/ip_forward").read_text() == "0\n"


def test_sysctl_values_with_tabs_compare_by_words() -> None:
    record = host.Record(sysctls={"net/ipv4/ip_local_port_range": "32768 60999"})
    assert host.changed_sysctls(record, {"net/ipv4/ip_local_port_range": "32768\t60999"}) == {}


MOUNTINFO = """\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:26 / /run rw shared:5 - tmpfs tmpfs rw
101 30 0:4 net:[4026532300] /run/netns/cni-1 rw shared:9 - nsfs nsfs rw
102 22 0:50 / /r/node/containerd/state/x/rootfs rw - overlay overlay rw
103 22 0:51 / /r/node/kubelet/pods/p/volumes/kubernetes.io~empty-dir/tmp rw - tmpfs tmpfs rw
104 22 254:1 /r/node/kubelet /r/node/kubelet rw - ext4 /dev/vda rw
105 22 0:52 / /r/node\\040two/x rw - tmpfs tmpfs rw
106 22 0:53 / /r/nodeother rw - tmpfs tmpfs rw
"""


def test_mounts_below_the_node_are_found_deepest_first() -> None:
    assert host.mounts_under(MOUNTINFO, ["/r/node", "/run/netns/cni-1"]) == [
        "/r/node/kubelet/pods/p/volumes/kubernetes.io~empty-dir/tmp",
        "/r/node/containerd/state/x/rootfs",
        "/run/netns/cni-1",
        "/r/node/kubelet",
    ]


def test_escaped_mount_points_are_decoded() -> None:
    assert host.unescape_mount_path("/r/node\\040two/x") == "/r/node two/x"
    assert host.mounts_under(MOUNTINFO, ["/r/node two"]) == ["/r/node two/x"]


def test_only_paths_that_did_not_exist_before_are_removed() -> None:
    record = host.Record(existed={"/var/lib/kubelet": False, "/run/netns": True})
    assert host.to_remove(record) == ["/var/lib/kubelet"]
    assert host.Record.from_dict(record.as_dict()) == record


def test_a_path_with_a_mount_below_is_never_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dir/volume").mkdir(parents=True)
    (tmp_path / "dir/volume/precious").write_text("host data")
    mountinfo = f"103 22 0:51 / {tmp_path}/dir/volume rw - tmpfs tmpfs rw\n"
    real_read_text = Path.read_text

    def read_text(self: Path, *args: object, **kwargs: object) -> str:
        if str(self) == "/proc/self/mountinfo":
            return mountinfo
        return real_read_text(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", read_text)
    errors = host.remove_paths([str(tmp_path / "dir")])
    assert errors == [f"not removing {tmp_path}/dir: {tmp_path}/dir/volume is still mounted"]
    assert (tmp_path / "dir/volume/precious").exists()


def test_paths_are_removed_files_and_trees(tmp_path: Path) -> None:
    (tmp_path / "tree/sub").mkdir(parents=True)
    (tmp_path / "file").write_text("x")
    assert host.remove_paths([str(tmp_path / "tree"), str(tmp_path / "file"),
                              str(tmp_path / "absent")]) == []  # fmt: skip
    assert list(tmp_path.iterdir()) == []


# -- the host lock -----------------------------------------------------------------------------


def test_the_lock_names_the_holder_while_its_up_runs_and_is_released(tmp_path: Path) -> None:
    lock = tmp_path / "node.lock"
    assert node.holder(lock) is None
    node.acquire("a", tmp_path / "a", lock)
    data = json.loads(lock.read_text())
    assert data["name"] == "a"
    assert data["pid"] == os.getpid()
    # The starting command itself is alive: another cluster is refused.
    assert node.holder(lock) == node.Holder("a", tmp_path / "a", alive=True)
    with pytest.raises(node.NodeError, match="another real node runs on this host: cluster a"):
        node.acquire("b", tmp_path / "b", lock)
    node.acquire("a", tmp_path / "a", lock)  # the same cluster again is fine
    node.release(tmp_path / "b", lock)
    assert lock.exists(), "only the holder releases"
    node.release(tmp_path / "a", lock)
    assert not lock.exists()


def test_a_lock_whose_node_is_gone_is_taken_over(tmp_path: Path) -> None:
    lock = tmp_path / "node.lock"
    run_dir = tmp_path / "crashed"
    run_dir.mkdir()
    lock.write_text(json.dumps({"name": "crashed", "run_dir": str(run_dir), "pid": 999999999}))
    dead = processes.Component("kubelet", 999999999, 1, ("kubelet",), "")
    processes.write_state(run_dir / "state.json", {"name": "crashed"}, [dead])
    assert node.holder(lock) == node.Holder("crashed", run_dir, alive=False)
    node.acquire("b", tmp_path / "b", lock)
    assert json.loads(lock.read_text())["name"] == "b"


def test_node_status_needs_ready_and_no_taints() -> None:
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert node.node_status(ready) == (True, "Ready")
    tainted = {**ready, "spec": {"taints": [{"key": "node.kubernetes.io/not-ready"}]}}
    assert node.node_status(tainted) == (False, "Ready, tainted node.kubernetes.io/not-ready")
    assert node.node_status({}) == (False, "Ready=missing")
