"""The local plane's pure parts: paths, command lines, kubeconfig, node and kwok configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from seaway.localplane import config

LAYOUT = config.Layout(Path("/run/seaway/test"))
PORTS = config.Ports(
    etcd_client=41001,
    etcd_peer=41002,
    apiserver=41003,
    controller_manager=41004,
    scheduler=41005,
    kwok=41006,
)
BIN = Path("/opt/bin")


def all_args() -> dict[str, list[str]]:
    return {
        "etcd": config.etcd_args(BIN / "etcd", LAYOUT, PORTS),
        "kube-apiserver": config.apiserver_args(BIN / "kube-apiserver", LAYOUT, PORTS),
        "kube-controller-manager": config.controller_manager_args(
            BIN / "kube-controller-manager", LAYOUT, PORTS
        ),
        "kube-scheduler": config.scheduler_args(BIN / "kube-scheduler", LAYOUT, PORTS),
        "kwok": config.kwok_args(BIN / "kwok", LAYOUT, PORTS),
    }


def flags(argv: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for arg in argv[1:]:
        name, _, value = arg.partition("=")
        assert name not in out, f"flag {name} given twice"
        out[name] = value
    return out


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"XDG_CACHE_HOME": "/x/cache", "HOME": "/home/u"}, Path("/x/cache")),
        ({"XDG_CACHE_HOME": "", "HOME": "/home/u"}, Path("/home/u/.cache")),
        ({"HOME": "/home/u"}, Path("/home/u/.cache")),
    ],
)
def test_cache_home_follows_xdg(env: dict[str, str], expected: Path) -> None:
    assert config.cache_home(env) == expected


def test_bin_dir_defaults_to_the_build_scripts_output_and_can_be_overridden() -> None:
    env = {"HOME": "/home/u"}
    assert config.bin_dir(env) == Path("/home/u/.cache/seaway/control-plane/v1.35.4/bin")
    assert config.bin_dir({**env, "SEAWAY_K8S_VERSION": "v1.34.4"}) == Path(
        "/home/u/.cache/seaway/control-plane/v1.34.4/bin"
    )
    assert config.bin_dir({**env, "SEAWAY_CONTROL_PLANE_BIN": "/opt/k8s"}) == Path("/opt/k8s")
    assert config.default_bin_dir({**env, "SEAWAY_CONTROL_PLANE_BIN": "/opt/k8s"}) == Path(
        "/home/u/.cache/seaway/control-plane/v1.35.4/bin"
    )


def test_cluster_dir_is_under_the_cache() -> None:
    env = {"XDG_CACHE_HOME": "/c"}
    assert config.cluster_dir("seaway", env) == Path("/c/seaway/clusters/seaway")
    assert config.cluster_dir("team-a2", env) == Path("/c/seaway/clusters/team-a2")


@pytest.mark.parametrize("name", ["", "Seaway", "a_b", "../etc", "-a", "a-", "x" * 41, "a b"])
def test_cluster_names_that_are_not_safe_directory_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid cluster name"):
        config.cluster_dir(name, {"XDG_CACHE_HOME": "/c"})


def test_every_component_binds_loopback_only() -> None:
    for component, argv in all_args().items():
        text = " ".join(argv)
        assert "0.0.0.0" not in text, component
        for name, value in flags(argv).items():
            if name.endswith(("-address", "-urls")) or name == "--etcd-servers":
                assert "127.0.0.1" in value, f"{component} {name}={value}"


def test_the_simulated_node_address_is_loopback_and_its_kubelet_port_is_kwok() -> None:
    kwok = flags(config.kwok_args(BIN / "kwok", LAYOUT, PORTS))
    assert kwok["--node-ip"] == "127.0.0.1"
    assert kwok["--node-port"] == str(PORTS.kwok)
    assert kwok["--server-address"] == f"127.0.0.1:{PORTS.kwok}"
    assert kwok["--config"] == str(LAYOUT.kwok_config)
    assert kwok["--manage-all-nodes"] == "false"
    assert kwok["--manage-nodes-with-annotation-selector"] == "kwok.x-k8s.io/node=fake"


def test_each_component_gets_its_own_port() -> None:
    args = all_args()
    etcd = flags(args["etcd"])
    assert etcd["--listen-client-urls"] == "http://127.0.0.1:41001"
    assert etcd["--listen-peer-urls"] == "http://127.0.0.1:41002"
    assert etcd["--unsafe-no-fsync"] == "true"
    assert etcd["--data-dir"] == str(LAYOUT.etcd_data)
    api = flags(args["kube-apiserver"])
    assert api["--secure-port"] == "41003"
    assert api["--etcd-servers"] == "http://127.0.0.1:41001"
    # Fixed well-known ports would collide between two planes (tests next to `cluster up`).
    assert flags(args["kube-controller-manager"])["--secure-port"] == "41004"
    assert flags(args["kube-scheduler"])["--secure-port"] == "41005"


def test_apiserver_uses_the_run_dirs_pki() -> None:
    api = flags(all_args()["kube-apiserver"])
    assert api["--client-ca-file"] == "/run/seaway/test/pki/ca.crt"
    assert api["--tls-cert-file"] == "/run/seaway/test/pki/serving.crt"
    assert api["--service-account-key-file"] == "/run/seaway/test/pki/sa.pub"
    assert api["--service-account-signing-key-file"] == "/run/seaway/test/pki/sa.key"
    assert api["--endpoint-reconciler-type"] == "none"


def test_controllers_use_the_admin_kubeconfig_without_leader_election() -> None:
    for component in ("kube-controller-manager", "kube-scheduler"):
        parsed = flags(all_args()[component])
        for name in ("--kubeconfig", "--authentication-kubeconfig", "--authorization-kubeconfig"):
            assert parsed[name] == "/run/seaway/test/kubeconfig", (component, name)
        assert parsed["--leader-elect"] == "false"
        assert "/healthz" in parsed["--authorization-always-allow-paths"]


def test_kubeconfig_points_at_the_api_server_with_absolute_paths() -> None:
    text = config.kubeconfig_text("https://127.0.0.1:41003", LAYOUT, "seaway")
    kubeconfig = yaml.safe_load(text)
    (cluster,) = kubeconfig["clusters"]
    (user,) = kubeconfig["users"]
    (context,) = kubeconfig["contexts"]
    assert cluster["cluster"]["server"] == "https://127.0.0.1:41003"
    assert cluster["cluster"]["certificate-authority"] == "/run/seaway/test/pki/ca.crt"
    assert user["user"] == {
        "client-certificate": "/run/seaway/test/pki/admin.crt",
        "client-key": "/run/seaway/test/pki/admin.key",
    }
    assert kubeconfig["current-context"] == context["name"]
    assert context["context"] == {"cluster": cluster["name"], "user": user["name"]}


def test_the_simulated_node_has_no_taints_and_room_for_pods() -> None:
    node = config.node_manifest()
    assert node["metadata"]["name"] == config.NODE_NAME == "kwok-node-0"
    assert "taints" not in node.get("spec", {})
    assert int(node["status"]["allocatable"]["pods"]) >= 5000, "room for scale benchmarks"
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "kwok-node-0"


def test_ports_round_trip_through_the_state_file_form() -> None:
    assert config.Ports.from_dict(PORTS.as_dict()) == PORTS
    assert config.Ports.from_list(list(PORTS.as_dict().values())) == PORTS
    assert len(PORTS.as_dict()) == config.PORT_COUNT


def test_api_server_url() -> None:
    assert config.api_server_url(PORTS) == "https://127.0.0.1:41003"


STAGE = """\
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {{name: {name}}}
spec:
  resourceRef: {{apiGroup: v1, kind: {kind}}}
  selector:
    matchExpressions: [{{key: .status.phase, operator: In, values: [Pending]}}]
  next: {{delete: true}}
"""


def test_kwok_config_keeps_every_shipped_stage() -> None:
    text = config.kwok_config_text(config.stages_text())
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert [d["metadata"]["name"] for d in docs] == [
        s["metadata"]["name"] for s in config.parse_stages(config.stages_text())
    ]
    assert {d["spec"]["resourceRef"]["kind"] for d in docs} == {"Node", "Pod"}


def test_kwok_config_refuses_duplicate_stage_names() -> None:
    text = STAGE.format(name="a", kind="Node") + "---\n" + STAGE.format(name="a", kind="Pod")
    with pytest.raises(ValueError, match="duplicate kwok Stage name 'a'"):
        config.kwok_config_text(text)


def test_kwok_config_refuses_a_stage_without_selector() -> None:
    stage = yaml.safe_load(STAGE.format(name="b", kind="Pod"))
    del stage["spec"]["selector"]
    text = STAGE.format(name="a", kind="Node") + "---\n" + yaml.safe_dump(stage)
    with pytest.raises(ValueError, match="has no selector"):
        config.kwok_config_text(text)


def test_kwok_config_refuses_other_documents_and_a_missing_kind() -> None:
    with pytest.raises(ValueError, match="not a kwok Stage"):
        config.kwok_config_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    with pytest.raises(ValueError, match="both Nodes and Pods"):
        config.kwok_config_text(STAGE.format(name="a", kind="Pod"))


def test_with_a_real_node_pods_reach_the_api_server_through_the_kubernetes_service() -> None:
    simulated = config.apiserver_args(BIN / "kube-apiserver", LAYOUT, PORTS)
    assert "--bind-address=127.0.0.1" in simulated
    assert "--endpoint-reconciler-type=none" in simulated
    real = config.apiserver_args(BIN / "kube-apiserver", LAYOUT, PORTS, pod_gateway="10.88.0.1")
    assert "--advertise-address=10.88.0.1" in real
    assert "--bind-address=0.0.0.0" in real
    assert not any(a.startswith("--endpoint-reconciler-type") for a in real)
