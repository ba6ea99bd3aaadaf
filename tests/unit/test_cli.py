"""Every command parses its options (a broken decorator fails here, not in a user's hands)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from seaway import __version__
from seaway.cli.main import main


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output == f"seaway {__version__}\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["operator", "run"],
        ["status", "x"],
        ["history", "x"],
        ["promote", "x"],
        ["abort", "x"],
        ["retry", "x"],
        ["rollback", "x"],
        ["cluster", "up"],
        ["cluster", "status"],
        ["cluster", "down"],
        ["bundle", "create"],
        ["crds"],
    ],
)
def test_every_command_has_help(argv: list[str]) -> None:
    result = CliRunner().invoke(main, [*argv, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_user_mistakes_are_one_line_errors(tmp_path: object) -> None:
    runner = CliRunner(env={"KUBECONFIG": "/nonexistent/kubeconfig"})
    result = runner.invoke(main, ["status", "churn"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.startswith("Error: cannot load the kubeconfig")
    result = runner.invoke(main, ["rollback", "churn", "--to-revision", "0"])
    assert result.exit_code == 2 and "0 is not in the range" in result.output


def test_operator_run_passes_its_flags_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from seaway.handlers import operator

    seen: dict[str, object] = {}

    def fake_run(*, namespaces: list[str], verbose: bool, health: str | None = None) -> None:
        import os

        seen.update(namespaces=namespaces, verbose=verbose)
        seen["prometheus"] = os.environ.get("SEAWAY_PROMETHEUS_URL")
        seen["workers"] = os.environ.get("SEAWAY_WORKERS")

    monkeypatch.setattr(operator, "run", fake_run)
    for variable in ("SEAWAY_PROMETHEUS_URL", "SEAWAY_WORKERS", "SEAWAY_ROUTER_IMAGE"):
        monkeypatch.delenv(variable, raising=False)  # and restored afterwards
    result = CliRunner().invoke(
        main,
        ["operator", "run", "-n", "ml", "-n", "ml2", "--prometheus-url", "http://127.0.0.1:9090",
         "--workers", "3", "-v"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert seen == {
        "namespaces": ["ml", "ml2"],
        "verbose": True,
        "prometheus": "http://127.0.0.1:9090",
        "workers": "3",
    }
