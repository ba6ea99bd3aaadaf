"""Can this host run a real node: one line per missing prerequisite, from facts (no host needed),
and what ``seaway cluster up`` says about the mode it picks."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from seaway.cli.main import main
from seaway.localplane import images, nodeconfig, plane, preflight

GOOD = preflight.Facts(
    is_root=True,
    has_iptables=True,
    has_ip=True,
    cni_dir=Path("/usr/lib/cni"),
    cni_missing=(),
    node_dir=Path("/c/seaway/node/v1.35.4"),
    binaries_missing=(),
    image_problems=(),
    other_node=None,
    pod_range_used=(),
    foreign_chains=(),
    long_sockets=(),
)


def test_a_host_with_everything_has_no_problem() -> None:
    assert preflight.problems(GOOD) == []


@pytest.mark.parametrize(
    ("change", "short", "line"),
    [
        ({"is_root": False}, "not root",
         "not root: a real node runs containers and sets up their network"),
        ({"has_iptables": False}, "no iptables",
         "iptables not found on PATH (install it: apt-get install iptables)"),
        ({"has_ip": False}, "no ip command",
         "ip not found on PATH (install it: apt-get install iproute2)"),
        ({"cni_missing": ("bridge", "portmap")}, "no CNI plugins",
         "CNI plugins missing in /usr/lib/cni: bridge, portmap "
         "(install them: apt-get install containernetworking-plugins)"),
        ({"binaries_missing": ("kubelet", "coredns")}, "node binaries not built",
         "node binaries missing in /c/seaway/node/v1.35.4/bin: kubelet, coredns "
         "(build them with `make node`)"),
        ({"image_problems": ("image catalog /x/manifest.json is missing (build ...)",)},
         "images not built", "image catalog /x/manifest.json is missing (build ...)"),
        ({"other_node": "cluster a (run dir /r/a)"}, "another real node runs on this host",
         "another real node runs on this host: cluster a (run dir /r/a); only one can "
         "(stop it with `seaway cluster down`, or use --simulated)"),
        ({"pod_range_used": ("cni-podman0 (10.88.0.1/16)",)},
         "the Pod network's addresses are taken",
         "10.88.0.0/16, the real node's Pod network, is already used here by "
         "cni-podman0 (10.88.0.1/16)"),
        ({"foreign_chains": ("iptables/nat/KUBE-SERVICES",)},
         "another Kubernetes node's iptables chains",
         "iptables chains of another Kubernetes node are on this host "
         "(iptables/nat/KUBE-SERVICES); a real node would remove them when it stops"),
        ({"has_overlay": False}, "no overlay file system",
         "the kernel has no overlay file system, which containerd needs "
         "(load it: modprobe overlay)"),
        ({"has_bridge_netfilter": False}, "no bridge netfilter",
         "bridged traffic does not pass iptables (/proc/sys/net/bridge is missing), so Pods "
         "could not reach Services (load it: modprobe br_netfilter)"),
        ({"long_sockets": ("/very/long/containerd.sock",)}, "run directory path too long",
         "the run directory's path is too long for a unix socket (/very/long/containerd.sock); "
         "use a shorter XDG_CACHE_HOME or --name"),
    ],
)  # fmt: skip
def test_each_missing_prerequisite_is_one_line(
    change: dict[str, object], short: str, line: str
) -> None:
    (problem,) = preflight.problems(dataclasses.replace(GOOD, **change))  # type: ignore[arg-type]
    assert problem == preflight.Problem(short, line)
    assert "\n" not in problem.line


def test_every_problem_is_reported_and_the_mode_line_names_each_reason_once() -> None:
    facts = dataclasses.replace(
        GOOD,
        is_root=False,
        binaries_missing=("kubelet",),
        image_problems=("a", "b"),
    )
    found = preflight.problems(facts)
    assert len(found) == 4
    assert preflight.reasons(found) == "not root, node binaries not built, images not built"


def test_many_foreign_chains_are_summarised() -> None:
    chains = tuple(f"iptables/nat/KUBE-{i}" for i in range(5))
    (problem,) = preflight.problems(dataclasses.replace(GOOD, foreign_chains=chains))
    assert "KUBE-0, iptables/nat/KUBE-1, iptables/nat/KUBE-2 and 2 more" in problem.line


# -- images ------------------------------------------------------------------------------------


def write_catalog(directory: Path, entries: list[dict[str, object]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifest.json").write_text(json.dumps({"images": entries}))


def test_image_catalog_missing(tmp_path: Path) -> None:
    assert images.problems(tmp_path) == [
        f"image catalog {tmp_path / 'manifest.json'} is missing "
        "(build the images with `make images`)"
    ]


def test_image_catalog_unreadable(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    (line,) = images.problems(tmp_path)
    assert line.startswith(f"{tmp_path / 'manifest.json'} is not a valid image catalog")
    assert line.endswith("(rebuild the images with `make images`)")


def test_image_archives_listed_but_absent_and_no_pause_image(tmp_path: Path) -> None:
    write_catalog(tmp_path, [{"archive": "server.oci.tar", "refs": ["ghcr.io/x/server:1"]}])
    assert images.problems(tmp_path) == [
        f"image archives missing in {tmp_path}: server.oci.tar "
        "(build the images with `make images`)",
        f"no archive in {tmp_path / 'manifest.json'} carries the sandbox image "
        f"{nodeconfig.PAUSE_IMAGE} (build it with `make node`)",
    ]


def test_a_complete_catalog_is_loaded_with_absolute_paths(tmp_path: Path) -> None:
    write_catalog(
        tmp_path,
        [
            {"archive": "pause.oci.tar", "refs": [nodeconfig.PAUSE_IMAGE], "bytes": 1},
            {"archive": "s.oci.tar", "refs": ["localhost/s:dev", "ghcr.io/x/s:1"]},
        ],
    )
    (tmp_path / "pause.oci.tar").write_bytes(b"")
    (tmp_path / "s.oci.tar").write_bytes(b"")
    assert images.problems(tmp_path) == []
    assert images.load(tmp_path) == [
        images.Archive(tmp_path / "pause.oci.tar", (nodeconfig.PAUSE_IMAGE,)),
        images.Archive(tmp_path / "s.oci.tar", ("localhost/s:dev", "ghcr.io/x/s:1")),
    ]


def test_references_missing_after_an_import_are_tagged_from_one_that_is_there() -> None:
    archives = [
        images.Archive(Path("/a"), ("localhost/s:dev", "ghcr.io/x/s:1")),
        images.Archive(Path("/b"), ("localhost/pause:3.10",)),
        images.Archive(Path("/c"), ("never/imported:1",)),
    ]
    present = {"localhost/s:dev", "localhost/pause:3.10"}
    assert images.missing_refs(archives, present) == [("localhost/s:dev", "ghcr.io/x/s:1")]


# -- the command line --------------------------------------------------------------------------

PROBLEMS = [
    preflight.Problem("not root", "not root: a real node runs containers"),
    preflight.Problem("images not built", "image catalog /x is missing"),
]


@pytest.fixture
def no_real_node(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    started: list[object] = []

    def start(*args: object, **options: object) -> None:
        started.append((args, options))
        raise plane.PlaneError("stopped here by the test")

    monkeypatch.setattr(plane, "real_node_problems", lambda run_dir, env: list(PROBLEMS))
    monkeypatch.setattr(plane, "start", start)
    monkeypatch.setattr("seaway.localplane.binaries.ensure", lambda env: {})
    return started


def invoke(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "KUBECONFIG": ""}
    result = CliRunner().invoke(main, ["cluster", "up", "--no-operator", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_real_node_required_lists_every_reason_and_starts_nothing(
    tmp_path: Path, no_real_node: list[object]
) -> None:
    code, out, err = invoke(tmp_path, "--real-node")
    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        "Error: not root: a real node runs containers",
        "Error: image catalog /x is missing",
    ]
    assert no_real_node == [], "nothing was started"


def test_by_default_the_mode_line_says_why_pods_are_simulated(
    tmp_path: Path, no_real_node: list[object]
) -> None:
    invoke(tmp_path)
    (_, options), *_ = no_real_node  # type: ignore[misc]
    assert options["real_node"] is False


def test_the_default_mode_line(tmp_path: Path, no_real_node: list[object]) -> None:
    _, _, err = invoke(tmp_path)
    assert err.splitlines()[0] == (
        "Mode: simulated node, not root, images not built: pods are simulated "
        "(`seaway cluster up --real-node` lists what is missing)."
    )


def test_simulated_skips_the_checks(tmp_path: Path, no_real_node: list[object]) -> None:
    _, _, err = invoke(tmp_path, "--simulated")
    assert err.splitlines()[0] == "Mode: simulated node (--simulated): Pods run no containers."
    (_, options), *_ = no_real_node  # type: ignore[misc]
    assert options["real_node"] is False


def test_a_host_that_can_runs_the_real_node_by_default(
    tmp_path: Path, no_real_node: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plane, "real_node_problems", lambda run_dir, env: [])
    _, _, err = invoke(tmp_path)
    assert err.splitlines()[0].startswith("Mode: real node, root and every prerequisite present")
    (_, options), *_ = no_real_node  # type: ignore[misc]
    assert options["real_node"] is True
