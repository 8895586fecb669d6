"""Shared fixtures. Tests marked ``real`` drive real programs (nginx, fail2ban, podman).

Where a real program is missing they are skipped on a developer's machine, but under
``CFBAN_REQUIRE_REAL=1`` (set by ``./scripts/dev test``, which CI runs) a missing program is a
failure, and so is any skipped ``real`` test: CI cannot pass by skipping the real parts.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["tests.cfemu.plugin"]

REQUIRE_REAL = os.environ.get("CFBAN_REQUIRE_REAL") == "1"
_SBIN = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


def require_program(name: str) -> str:
    """The path of program ``name``; skip (locally) or fail (CI) when it is missing."""
    found = shutil.which(name) or next(
        (str(Path(d) / name) for d in _SBIN if (Path(d) / name).exists()), None
    )
    if found:
        return found
    message = f"{name} is not installed (apt-get install the Debian package that provides it)"
    if REQUIRE_REAL:
        pytest.fail(message)
    pytest.skip(message)


def require_path(path: Path, what: str) -> Path:
    """``path`` if it exists; skip (locally) or fail (CI) otherwise."""
    if path.exists():
        return path
    message = f"{what} not found at {path}"
    if REQUIRE_REAL:
        pytest.fail(message)
    pytest.skip(message)


_skipped_real: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "real" in report.keywords:
        _skipped_real.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if REQUIRE_REAL and _skipped_real:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REQUIRE_REAL and _skipped_real:
        terminalreporter.write_line(
            "FAILED: tests that drive real programs were skipped under CFBAN_REQUIRE_REAL=1: "
            + ", ".join(_skipped_real),
            red=True,
        )


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No configuration, token or state from the machine leaks into a test."""
    for var in list(os.environ):
        if (
            var.startswith("CFBAN_")
            and var != "CFBAN_REQUIRE_REAL"
            or var == ("CLOUDFLARE_API_TOKEN")
        ):
            monkeypatch.delenv(var)
    monkeypatch.setenv("CFBAN_CONFIG", str(tmp_path / "cfban.toml"))
    monkeypatch.setenv("CFBAN_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "cfban.toml").write_text("", encoding="utf-8")
    yield tmp_path
