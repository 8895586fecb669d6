"""Logging for the daemon and the background deliverer: text for people, or one JSON object
per line for collectors."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message (and the traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def _formatted(handler: logging.Handler, fmt: str) -> logging.Handler:
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    return handler


def configure(fmt: str, level: str = "INFO", *, log_file: Path | None = None) -> None:
    """Send cfban's log records to stderr as ``fmt`` (``text`` or ``json``); with
    ``log_file``, to that file instead, and to stderr too when systemd collects it."""
    handlers: list[logging.Handler] = []
    if log_file is not None:
        log_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        handlers.append(_formatted(logging.FileHandler(log_file, encoding="utf-8"), fmt))
    if log_file is None or under_systemd():
        handlers.append(_formatted(logging.StreamHandler(sys.stderr), fmt))
    root = logging.getLogger("cfban")
    root.handlers[:] = handlers
    root.setLevel(level.upper())
    root.propagate = False


def under_systemd() -> bool:
    """Whether systemd runs this process and keeps its stderr in the journal."""
    return bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))
