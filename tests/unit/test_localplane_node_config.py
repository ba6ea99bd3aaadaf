"""The real node's pure parts: containerd's TOML, the kubelet's and kube-proxy's YAML, the
Corefile, the CNI network and the node's file layout, read back the way each program reads them."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import yaml

from seaway.localplane import config, dns, kubelet, network, nodeconfig, proxy, runtime

LAYOUT = config.Layout(Path("/run/seaway/test"))
NODE = nodeconfig.NodeLayout.of(LAYOUT)
PORTS = nodeconfig.NodePorts(
    kubelet_healthz=42001, proxy_healthz=42002, proxy_metrics=42003, dns_health=42004,
    dns_ready=42005,
)  # fmt: skip
BIN = Path("/cache/seaway/node/v1.35.4/bin")


def test_every_file_of_the_node_is_inside_the_run_dir() -> None:
    paths = [
        NODE.containerd_config, NODE.containerd_root, NODE.containerd_state,
        NODE.containerd_socket, NODE.runc_root, NODE.kubelet_config, NODE.kubelet_kubeconfig,
        NODE.kubelet_root, NODE.kubelet_certs, NODE.pod_logs, NODE.volume_plugins,
        NODE.cni_conf_dir, NODE.cni_conflist, NODE.ipam_dir, NODE.proxy_config, NODE.corefile,
    ]  # fmt: skip
    for path in paths:
        assert LAYOUT.root in path.parents, path
    assert len(set(paths)) == len(paths)


def test_containerd_config_keeps_its_state_in_the_run_dir_and_clamps_oom_scores() -> None:
    parsed = tomllib.loads(runtime.config_toml(NODE, BIN, Path("/usr/lib/cni")))
    assert parsed["version"] == 3
    assert parsed["root"] == str(NODE.containerd_root)
    assert parsed["state"] == str(NODE.containerd_state)
    assert parsed["grpc"]["address"] == str(NODE.containerd_socket)
    plugins = parsed["plugins"]
    cri = plugins["io.containerd.cri.v1.runtime"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["enable_cdi"] is False
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"] == {
        "BinaryName": str(BIN / "runc"),
        "Root": str(NODE.runc_root),
        "SystemdCgroup": False,
    }
    assert cri["cni"] == {"bin_dirs": ["/usr/lib/cni"], "conf_dir": str(NODE.cni_conf_dir)}
    images = plugins["io.containerd.cri.v1.images"]
    assert images["pinned_images"]["sandbox"] == nodeconfig.PAUSE_IMAGE
    assert images["snapshotter"] == "overlayfs"
    assert plugins["io.containerd.nri.v1.nri"]["disable"] is True
    assert LAYOUT.root in Path(plugins["io.containerd.internal.v1.opt"]["path"]).parents


def test_a_path_with_quotes_and_backslashes_survives_toml() -> None:
    odd = nodeconfig.NodeLayout(Path('/tmp/we"ird\\dir'))
    parsed = tomllib.loads(runtime.config_toml(odd, BIN, Path("/usr/lib/cni")))
    assert parsed["root"] == str(odd.containerd_root)


def test_ctr_talks_to_this_nodes_containerd_in_the_cri_namespace() -> None:
    assert runtime.ctr_args(BIN, NODE, "images", "list") == [
        str(BIN / "ctr"), f"--address={NODE.containerd_socket}", "--namespace=k8s.io",
        "images", "list",
    ]  # fmt: skip


def test_kubelet_config_for_a_cgroupfs_host_serving_on_the_gateway() -> None:
    document = yaml.safe_load(kubelet.config_text(LAYOUT, NODE, PORTS))
    assert document["kind"] == "KubeletConfiguration"
    assert document["apiVersion"] == "kubelet.config.k8s.io/v1beta1"
    assert document["cgroupDriver"] == "cgroupfs"
    assert document["failCgroupV1"] is False
    assert document["containerRuntimeEndpoint"] == f"unix://{NODE.containerd_socket}"
    assert document["address"] == nodeconfig.GATEWAY == "10.88.0.1"
    assert document["port"] == 10250
    assert document["readOnlyPort"] == 0
    assert (document["healthzBindAddress"], document["healthzPort"]) == ("127.0.0.1", 42001)
    assert document["clusterDNS"] == ["10.88.0.1"]
    assert document["clusterDomain"] == "cluster.local"
    assert document["podLogsDir"] == str(NODE.pod_logs)
    assert document["volumePluginDir"] == str(NODE.volume_plugins)
    assert document["imageGCHighThresholdPercent"] == 100, "imported images are never collected"


def test_kubelet_trusts_only_the_planes_ca_and_asks_the_api_server() -> None:
    document = kubelet.config_document(LAYOUT, NODE, PORTS)
    assert document["authentication"] == {
        "anonymous": {"enabled": False},
        "webhook": {"enabled": True},
        "x509": {"clientCAFile": str(LAYOUT.ca_cert())},
    }
    assert document["authorization"] == {"mode": "Webhook"}


def test_kubelet_command_line() -> None:
    argv = kubelet.args(BIN / "kubelet", NODE)
    assert argv[0] == str(BIN / "kubelet")
    assert f"--hostname-override={nodeconfig.NODE_NAME}" in argv
    assert "--node-ip=10.88.0.1" in argv
    assert f"--root-dir={NODE.kubelet_root}" in argv
    assert f"--kubeconfig={NODE.kubelet_kubeconfig}" in argv
    assert f"--cert-dir={NODE.kubelet_certs}" in argv


def test_the_node_kubeconfig_names_the_node_certificate() -> None:
    text = config.kubeconfig_text(
        "https://127.0.0.1:6443", LAYOUT, "c", user="seaway-node-0",
        cert=LAYOUT.node_cert(), key=LAYOUT.node_key(),
    )  # fmt: skip
    document = yaml.safe_load(text)
    (user,) = document["users"]
    assert user == {
        "name": "c-seaway-node-0",
        "user": {"client-certificate": str(LAYOUT.node_cert()),
                 "client-key": str(LAYOUT.node_key())},
    }  # fmt: skip
    assert document["contexts"][0]["context"]["user"] == "c-seaway-node-0"


def test_kube_proxy_iptables_mode_leaves_conntrack_and_route_localnet_alone() -> None:
    document = yaml.safe_load(proxy.config_text(LAYOUT, PORTS))
    assert document["kind"] == "KubeProxyConfiguration"
    assert document["mode"] == "iptables"
    assert document["clusterCIDR"] == nodeconfig.POD_CIDR
    assert document["hostnameOverride"] == nodeconfig.NODE_NAME
    assert document["clientConnection"]["kubeconfig"] == str(LAYOUT.kubeconfig)
    assert document["healthzBindAddress"] == "127.0.0.1:42002"
    assert document["metricsBindAddress"] == "127.0.0.1:42003"
    assert document["conntrack"]["maxPerCore"] == 0
    assert document["conntrack"]["tcpEstablishedTimeout"] == "0s"
    assert document["iptables"]["localhostNodePorts"] is False
    assert proxy.args(BIN / "kube-proxy", NODE) == [
        str(BIN / "kube-proxy"), f"--config={NODE.proxy_config}",
    ]  # fmt: skip


def test_corefile_answers_the_cluster_domain_on_the_gateway_only() -> None:
    text = dns.corefile(LAYOUT, PORTS)
    blocks = text.split("\n}\n")
    assert blocks[0].startswith("cluster.local:53 {")
    assert "    bind 10.88.0.1\n" in blocks[0]
    assert f"kubeconfig {LAYOUT.kubeconfig}" in blocks[0]
    assert "health 127.0.0.1:42004" in blocks[0]
    assert "ready 127.0.0.1:42005" in blocks[0]
    assert blocks[1].startswith(".:53 {")
    assert "    bind 10.88.0.1\n" in blocks[1]
    assert "health" not in blocks[1], "health and ready may be enabled once only"
    assert text.count("{") == text.count("}")
    assert dns.args(BIN / "coredns", NODE) == [str(BIN / "coredns"), "-conf", str(NODE.corefile)]


def test_cni_network_is_a_bridge_on_the_pod_range_with_ipam_state_in_the_run_dir() -> None:
    document = json.loads(network.conflist_text(NODE))
    bridge, portmap, loopback = document["plugins"]
    assert (bridge["type"], portmap["type"], loopback["type"]) == ("bridge", "portmap", "loopback")
    assert bridge["bridge"] == "seaway0"
    assert bridge["isGateway"] and bridge["ipMasq"] and bridge["hairpinMode"]
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.88.0.0/16", "gateway": "10.88.0.1"}]]
    assert bridge["ipam"]["dataDir"] == str(NODE.ipam_dir)


def test_the_pod_range_does_not_overlap_the_simulated_or_service_ranges() -> None:
    import ipaddress

    pods = ipaddress.ip_network(nodeconfig.POD_CIDR)
    for other in (config.POD_CIDR, config.SERVICE_CIDR):
        assert not pods.overlaps(ipaddress.ip_network(other))
    assert ipaddress.ip_address(nodeconfig.GATEWAY) in pods


def test_node_ports_round_trip_through_the_state_file_form() -> None:
    assert nodeconfig.NodePorts.from_dict(PORTS.as_dict()) == PORTS
    assert nodeconfig.NodePorts.from_list(list(PORTS.as_dict().values())) == PORTS
    assert len(PORTS.as_dict()) == nodeconfig.NodePorts.COUNT


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"HOME": "/home/u"}, Path("/home/u/.cache/seaway/node/v1.35.4")),
        ({"HOME": "/home/u", "XDG_CACHE_HOME": "/c"}, Path("/c/seaway/node/v1.35.4")),
        ({"HOME": "/home/u", "SEAWAY_K8S_VERSION": "v1.36.0"},
         Path("/home/u/.cache/seaway/node/v1.36.0")),
        ({"HOME": "/home/u", "SEAWAY_NODE_DIR": "/opt/node"}, Path("/opt/node")),
    ],
)  # fmt: skip
def test_node_dir_follows_the_cache_and_can_be_overridden(
    env: dict[str, str], expected: Path
) -> None:
    assert nodeconfig.node_dir(env) == expected


def test_socket_paths_that_the_kernel_would_refuse_are_found() -> None:
    assert NODE.too_long() == []
    deep = nodeconfig.NodeLayout(Path("/" + "d" * 90) / "node")
    assert deep.too_long() == [deep.containerd_socket, Path(f"{deep.containerd_socket}.ttrpc")]


def test_containerd_finds_the_nodes_own_shim_first() -> None:
    assert nodeconfig.search_path(Path("/n"), "/usr/bin:/bin") == "/n/bin:/usr/bin:/bin"
    assert nodeconfig.search_path(Path("/n"), "") == "/n/bin"
