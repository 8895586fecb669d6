"""Default locations, without importing the configuration machinery (the hook's fast path)."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_CONFIG_PATH = Path("/etc/cfban/cfban.toml")


def default_state_dir() -> Path:
    """``/var/lib/cfban`` for root, else ``$XDG_STATE_HOME/cfban`` (``~/.local/state/cfban``)."""
    if os.geteuid() == 0:
        return Path("/var/lib/cfban")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "cfban"
