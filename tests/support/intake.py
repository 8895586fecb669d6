"""Helpers for the intake tests: a configuration pointing at an emulator, cfban run as the
console script runs it (in-process or as a subprocess), and the state read back as rows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cfban.cli import app
from cfban.cli._context import run_guarded
from cfban.clock import SystemClock
from cfban.intake.hook import fast_path
from cfban.intake.lock import deliverer_lock
from cfban.state import StateStore
from tests.support.waiting import wait_until


def write_config(path: Path, *, url: str, token: str, zone: str, extra: str = "") -> Path:
    """A configuration for an emulator at ``url``, with the state beside it."""
    path.write_text(
        f'state_dir = "{path.parent / "state"}"\n'
        "[realip]\nallow_test_nets = true\n"
        f'[cloudflare]\napi_url = "{url}"\napi_token = "{token}"\nzone_id = "{zone}"\n' + extra,
        encoding="utf-8",
    )
    return path


def cfban(argv: list[str]) -> int:
    """Run ``cfban ARGV`` in this process as the console script does: the hook's fast path
    first, else the full command line."""
    code = fast_path(argv)
    return code if code is not None else run_guarded(app, argv)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without cfban's and Cloudflare's variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CFBAN_", "CLOUDFLARE_"))}
    env.update(extra)
    return env


def cfban_process(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m cfban ARGS`` as a subprocess (the console script's path, fast path too)."""
    return subprocess.run(
        [sys.executable, "-m", "cfban", *args],
        capture_output=True, text=True, env=env if env is not None else clean_env(), timeout=120,
    )  # fmt: skip


def wait_for_deliverer(state_dir: Path, timeout: float = 60) -> None:
    """Wait until no background deliverer runs for ``state_dir``."""
    wait_until(lambda: not deliverer_lock(state_dir).held_elsewhere(), timeout=timeout)


def state_rows(state_dir: Path) -> dict[str, list[tuple[object, ...]]]:
    """The state as comparable rows (no times: the ways in run at different moments)."""
    with StateStore.open(state_dir, SystemClock()) as store:
        read = store.db.read
        return {
            "holders": [tuple(r) for r in read(
                "SELECT target, jail, address, expires_at IS NULL FROM holders "
                "ORDER BY target, jail")],
            "bans": [tuple(r) for r in read("SELECT target, state FROM bans ORDER BY target")],
            "history": [tuple(r) for r in read(
                "SELECT target, jail, COUNT(*) FROM ban_history GROUP BY target, jail "
                "ORDER BY target, jail")],
            "outbox": [tuple(r) for r in read("SELECT target, op FROM outbox ORDER BY target")],
        }  # fmt: skip
