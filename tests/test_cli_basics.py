"""The command itself: help for every command, version, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cfban.cli import app


def _commands() -> list[str]:
    import typer.main

    group = typer.main.get_command(app)
    return sorted(group.commands)  # type: ignore[attr-defined]


def test_help_teaches() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "Cloudflare" in result.output
    assert "dry run" in result.output


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert len(result.output.strip().splitlines()) > 3


def test_python_dash_m(isolated_env: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cfban", "--version"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0
    assert out.stdout.startswith("cfban ")


def test_unknown_option_is_usage_error(isolated_env: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cfban", "--no-such-option"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "No such option" in out.stderr


def test_missing_config_file_exits_78(isolated_env: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cfban", "--config", str(isolated_env / "nope.toml"), "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "No such command" in out.stderr:
        pytest.skip("no command that reads the configuration yet")
    assert out.returncode == 78
    assert "does not exist" in out.stderr
