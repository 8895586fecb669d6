"""Loggers for modules on ``cfban test-filter --json``'s fast path, which never imports
``logging`` (4 ms of its start-up): the module is imported only when a message is logged."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging

__all__ = ["debug_logger", "logger"]


def logger(name: str) -> logging.Logger:
    """The logger ``name``, importing ``logging`` now if need be (for a message that must be
    seen: with nothing set up, ``logging`` still prints warnings on standard error)."""
    import logging

    return logging.getLogger(name)


def debug_logger(name: str) -> logging.Logger | None:
    """The logger ``name``, or ``None`` while ``logging`` was never imported: then nothing is
    set up to show a debug message, and there is no need to import it for one."""
    return logger(name) if "logging" in sys.modules else None
